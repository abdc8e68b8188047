"""Layers shared by the decoder-shaped families: LLaDA 2.x, LLaDA-MoE, SDAR, Fast-dLLM v2.

All four are pre-norm transformers with RMSNorm, grouped-query attention, rotary position
embeddings ("rotate-half" layout, optionally on only the first ``rotary_dim`` channels of a
head), optional per-head RMSNorm on queries and keys before RoPE, and a SiLU-gated MLP that
is either dense or a mixture of experts. They differ in parameter names, biases and routing,
which a :class:`DecoderSpec` records; each family's file builds the spec from its
``config.json``.

Written from the architecture descriptions (the golden README's implementer notes); no
upstream modeling code is copied.

Attention is never implicitly causal. A forward pass takes an explicit boolean mask
(True = attend) of shape (B, 1, W, P + W): W query positions against P cached keys plus the
W fresh ones. :func:`block_causal_keep` builds the block-diffusion rule from position ids.

Mixture of experts (:class:`SparseMoE`) is computed exactly and without a Python loop over
tokens: the (token, expert) assignments are sorted by expert, the tokens gathered into one
contiguous slab, each expert's MLP applied to its contiguous slice (a loop over the E
experts, i.e. a grouped matmul written as E dense matmuls), and the weighted outputs
scattered back with ``index_add_``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput

from remask.models._layers import (
    CleanRoomLM,
    RMSNorm,
    apply_rope,
    attend,
    init_normal,
    init_zeros,
    rope_cos_sin,
)

__all__ = [
    "DecoderLM",
    "DecoderSpec",
    "DecoderTrunk",
    "GatedMLP",
    "MoESpec",
    "SparseMoE",
    "block_causal_keep",
    "padding_positions",
]


@dataclass(frozen=True)
class MoESpec:
    """Routing of one family's mixture-of-experts layers.

    Attributes
    ----------
    num_experts, top_k : int
        Routed experts, and experts chosen per token.
    intermediate_size : int
        Width of each routed expert's gated MLP.
    score : {"sigmoid", "softmax"}
        Router scores from the fp32 router logits.
    n_group, topk_group : int
        Group-limited selection: experts form ``n_group`` equal groups, a group's rank is the
        sum of its 2 best (biased) scores, and only the ``topk_group`` best groups compete.
        ``n_group = 1`` disables it.
    expert_bias : bool
        Whether the router has an ``expert_bias`` buffer added to the scores for selection.
    bias_in_weights : bool
        Whether the mixing weights include the bias too (LLaDA-MoE) or use the unbiased
        scores (LLaDA 2.x).
    normalize : bool
        Divide the chosen weights by their sum (+1e-20) when ``top_k > 1``.
    scaling : float
        Multiplies the mixing weights (``routed_scaling_factor``).
    shared_intermediate_size : int or None
        Width of the always-on shared expert (added without a gate), or None.
    """

    num_experts: int
    top_k: int
    intermediate_size: int
    score: str
    n_group: int = 1
    topk_group: int = 1
    expert_bias: bool = False
    bias_in_weights: bool = False
    normalize: bool = False
    scaling: float = 1.0
    shared_intermediate_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_experts", "top_k", "intermediate_size", "n_group", "topk_group"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MoE config: {name} must be a positive int, got {value!r}")
        if self.score not in ("sigmoid", "softmax"):
            raise ValueError(
                f"MoE config: score function {self.score!r} is not 'sigmoid' or 'softmax'"
            )
        if self.top_k > self.num_experts:
            raise ValueError(
                f"MoE config: num_experts_per_tok={self.top_k} exceeds num_experts={self.num_experts}"
            )
        if self.num_experts % self.n_group:
            raise ValueError(
                f"MoE config: num_experts={self.num_experts} is not divisible by n_group={self.n_group}"
            )
        if self.topk_group > self.n_group:
            raise ValueError(
                f"MoE config: topk_group={self.topk_group} exceeds n_group={self.n_group}"
            )
        per_group = self.num_experts // self.n_group
        if self.n_group > 1 and per_group < 2:
            raise ValueError(
                f"MoE config: group-limited routing ranks groups by their 2 best experts, but "
                f"num_experts={self.num_experts} / n_group={self.n_group} leaves {per_group}"
            )
        if self.top_k > self.topk_group * per_group:
            raise ValueError(
                f"MoE config: num_experts_per_tok={self.top_k} exceeds the "
                f"{self.topk_group * per_group} experts of the topk_group={self.topk_group} "
                f"selected groups"
            )


@dataclass(frozen=True)
class DecoderSpec:
    """Shape and parameter layout of a decoder trunk (see the family files).

    Attributes
    ----------
    vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, head_dim : int
    rotary_dim : int
        Leading channels of each head that RoPE rotates (``head_dim`` for full RoPE).
    rope_theta, rms_norm_eps : float
    fused_qkv : bool
        LLaDA 2.x layout: one ``query_key_value`` projection and ``dense`` output, under the
        module name ``attention``; else ``q_proj``/``k_proj``/``v_proj``/``o_proj`` under
        ``self_attn``.
    qkv_bias, out_bias, qk_norm : bool
    intermediate_size : int
        Width of the dense MLP.
    moe : MoESpec or None
    moe_layers : tuple of bool
        Which layers use ``moe`` (the rest are dense).
    embed_name : str
        ``model.<embed_name>``: ``word_embeddings`` (LLaDA 2.x) or ``embed_tokens``.
    tie_word_embeddings : bool
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rotary_dim: int
    rope_theta: float
    rms_norm_eps: float
    fused_qkv: bool
    qkv_bias: bool
    out_bias: bool
    qk_norm: bool
    intermediate_size: int
    moe: MoESpec | None
    moe_layers: tuple[bool, ...]
    embed_name: str = "embed_tokens"
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "rotary_dim",
            "intermediate_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"config: {name} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"config: num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}"
            )
        if self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise ValueError(
                f"config: rotary dim {self.rotary_dim} must be even and at most head_dim={self.head_dim}"
            )
        if len(self.moe_layers) != self.num_layers:
            raise ValueError(
                f"config: {len(self.moe_layers)} MoE layer flags for {self.num_layers} layers"
            )
        if any(self.moe_layers) and self.moe is None:
            raise ValueError("config: MoE layers requested without an MoE configuration")


class Attention(nn.Module):
    """Grouped-query attention with optional QK-norm and partial RoPE."""

    def __init__(self, spec: DecoderSpec) -> None:
        super().__init__()
        d, hd = spec.hidden_size, spec.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = spec.num_heads, spec.num_kv_heads, hd
        self.rotary_dim = spec.rotary_dim
        self.fused = spec.fused_qkv
        q_out, kv_out = spec.num_heads * hd, spec.num_kv_heads * hd
        if self.fused:
            self.query_key_value = nn.Linear(d, q_out + 2 * kv_out, bias=spec.qkv_bias)
            self.dense = nn.Linear(q_out, d, bias=spec.out_bias)
            if spec.qk_norm:
                self.query_layernorm = RMSNorm(hd, spec.rms_norm_eps)
                self.key_layernorm = RMSNorm(hd, spec.rms_norm_eps)
        else:
            self.q_proj = nn.Linear(d, q_out, bias=spec.qkv_bias)
            self.k_proj = nn.Linear(d, kv_out, bias=spec.qkv_bias)
            self.v_proj = nn.Linear(d, kv_out, bias=spec.qkv_bias)
            self.o_proj = nn.Linear(q_out, d, bias=spec.out_bias)
            if spec.qk_norm:
                self.q_norm = RMSNorm(hd, spec.rms_norm_eps)
                self.k_norm = RMSNorm(hd, spec.rms_norm_eps)
        self.qk_norm = spec.qk_norm

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        r = self.rotary_dim
        if r == self.head_dim:
            return apply_rope(x, cos, sin, full_precision=False)
        # Partial RoPE: only the leading r channels rotate, the rest pass through.
        return torch.cat(
            [apply_rope(x[..., :r], cos, sin, full_precision=False), x[..., r:]], dim=-1
        )

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(B, W, D) -> (B, W, D), and this window's keys and values.

        ``cos``/``sin`` are (B | 1, 1, W, rotary_dim) float32; ``mask`` is None or a
        (B, 1, W, P + W) bool (True = attend); ``past`` holds P cached (B, H_kv, P, Dh) keys
        and values (after RoPE) that precede the window.
        """
        b, w, _ = x.shape
        hd = self.head_dim
        if self.fused:
            qkv = self.query_key_value(x).view(b, w, self.num_heads + 2 * self.num_kv_heads, hd)
            q, k, v = qkv.split([self.num_heads, self.num_kv_heads, self.num_kv_heads], dim=2)
        else:
            q = self.q_proj(x).view(b, w, self.num_heads, hd)
            k = self.k_proj(x).view(b, w, self.num_kv_heads, hd)
            v = self.v_proj(x).view(b, w, self.num_kv_heads, hd)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, W, Dh)
        if self.qk_norm:
            # Per-head RMSNorm over Dh, before RoPE.
            q_norm = self.query_layernorm if self.fused else self.q_norm
            k_norm = self.key_layernorm if self.fused else self.k_norm
            q, k = q_norm(q), k_norm(k)
        q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        fresh = (k, v)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, H_kv, P + W, Dh)
            v = torch.cat([past[1], v], dim=2)
        out = attend(q, k, v, mask)  # (B, H, W, Dh)
        out = out.transpose(1, 2).reshape(b, w, self.num_heads * hd)
        return (self.dense if self.fused else self.o_proj)(out), fresh


class GatedMLP(nn.Module):
    """``down_proj(silu(gate_proj(x)) * up_proj(x))``, no biases."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Router(nn.Module):
    """Router weights (``mlp.gate.weight``) and, when enabled, ``mlp.gate.expert_bias``."""

    def __init__(self, hidden: int, spec: MoESpec) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(spec.num_experts, hidden))
        if spec.expert_bias:
            # A buffer in the checkpoints (trained by load balancing, not by gradients).
            self.register_buffer("expert_bias", torch.zeros(spec.num_experts))


class SparseMoE(nn.Module):
    """Routed experts (top-k of ``num_experts``) plus an optional shared expert.

    Routing is computed in float32 (``router_dtype: fp32`` in LLaDA 2.x configs). Experts
    are ``experts.{e}.{gate,up,down}_proj`` as in the checkpoints.
    """

    def __init__(self, hidden: int, spec: MoESpec) -> None:
        super().__init__()
        self.spec = spec
        self.gate = Router(hidden, spec)
        self.experts = nn.ModuleList(
            GatedMLP(hidden, spec.intermediate_size) for _ in range(spec.num_experts)
        )
        if spec.shared_intermediate_size is not None:
            self.shared_experts = GatedMLP(hidden, spec.shared_intermediate_size)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) -> chosen experts (N, k) int64 and their mixing weights (N, k) float32."""
        spec = self.spec
        logits = F.linear(x.float(), self.gate.weight.float())  # (N, E) float32
        scores = torch.sigmoid(logits) if spec.score == "sigmoid" else logits.softmax(-1)
        bias = getattr(self.gate, "expert_bias", None)
        choice = scores if bias is None else scores + bias.float()  # (N, E)
        if spec.n_group > 1:
            n = choice.shape[0]
            grouped = choice.view(n, spec.n_group, -1)  # (N, G, E / G)
            group_score = grouped.topk(2, dim=-1).values.sum(-1)  # (N, G)
            groups = group_score.topk(spec.topk_group, dim=-1).indices  # (N, g)
            keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, groups, True)
            choice = grouped.masked_fill(~keep[..., None], float("-inf")).view(n, -1)
        top, experts = choice.topk(spec.top_k, dim=-1)  # (N, k)
        weights = top if spec.bias_in_weights else scores.gather(1, experts)
        if spec.normalize and spec.top_k > 1:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return experts, weights * spec.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, D) -> (B, W, D)."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, D)
        experts, weights = self.route(flat)  # (N, k) each
        k = experts.shape[1]
        # Sort the N * k assignments by expert: each expert then reads one contiguous slice.
        order = experts.reshape(-1).argsort(stable=True)  # (N k,)
        token = order // k  # (N k,) source token of each sorted assignment
        counts = torch.bincount(experts.reshape(-1), minlength=self.spec.num_experts)
        slab = flat[token]  # (N k, D) gathered inputs, grouped by expert
        out = torch.empty_like(slab)
        # One host sync per layer for the slice bounds; the loop runs over experts only.
        start = 0
        for expert, count in zip(self.experts, counts.tolist()):
            if count:
                out[start : start + count] = expert(slab[start : start + count])
                start += count
        mixed = out.float() * weights.reshape(-1)[order, None]  # (N k, D) float32
        y = torch.zeros(flat.shape, dtype=torch.float32, device=x.device)
        y.index_add_(0, token, mixed)
        y = y.to(x.dtype)  # (N, D)
        if self.spec.shared_intermediate_size is not None:
            y = y + self.shared_experts(flat)
        return y.view(shape)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + Attn(RMSNorm(x)), then x + MLP(RMSNorm(x))."""

    def __init__(self, spec: DecoderSpec, moe: bool) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        attention = Attention(spec)
        # The checkpoints name the attention module differently per family.
        self.attn_name = "attention" if spec.fused_qkv else "self_attn"
        self.add_module(self.attn_name, attention)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = (
            SparseMoE(spec.hidden_size, spec.moe)
            if moe
            else GatedMLP(spec.hidden_size, spec.intermediate_size)
        )

    def forward(self, x, cos, sin, mask, past):
        """See :meth:`Attention.forward`; returns (B, W, D) and the window's (k, v)."""
        h, fresh = getattr(self, self.attn_name)(self.input_layernorm(x), cos, sin, mask, past)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), fresh


class DecoderTrunk(nn.Module):
    """Embedding, layers and final norm, stored under ``model`` in the checkpoints."""

    def __init__(self, spec: DecoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.add_module(spec.embed_name, nn.Embedding(spec.vocab_size, spec.hidden_size))
        self.layers = nn.ModuleList(DecoderLayer(spec, moe) for moe in spec.moe_layers)
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)

    @property
    def embedding(self) -> nn.Embedding:
        return getattr(self, self.spec.embed_name)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor | None,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Final hidden states of a window, and every layer's fresh keys and values.

        Parameters
        ----------
        input_ids : (B, W) int64
            The window's tokens.
        position_ids : (B, W) or (W,) int64
            Their absolute positions (RoPE).
        mask : (B, 1, W, P + W) bool or None
            True where query i may attend key j; None = attend everything.
        past : list of (keys, values), optional
            Per layer, (B, H_kv, P, Dh) keys and values of P earlier positions.

        Returns
        -------
        hidden : (B, W, D) after the final norm.
        present : list of (B, H_kv, W, Dh) (keys, values) of the window, per layer.
        """
        x = self.embedding(input_ids)  # (B, W, D)
        cos, sin = rope_cos_sin(position_ids, self.spec.rotary_dim, self.spec.rope_theta)
        present = []
        for i, layer in enumerate(self.layers):
            x, fresh = layer(x, cos, sin, mask, None if past is None else past[i])
            present.append(fresh)
        return self.norm(x), present


def padding_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) int64 position ids counted from each row's first real token (0 on left pads)."""
    real = attention_mask.long()
    return (real.cumsum(-1) - 1).clamp_min(0)


def block_causal_keep(
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    block_size: int,
    key_real: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block-diffusion attention rule as a boolean SDPA mask.

    Query at position p may attend key at position q iff ``q // block_size <= p //
    block_size`` (its own block and every earlier one) and the key is a real token.

    Parameters
    ----------
    query_positions : (B, W) int64
    key_positions : (B, K) int64
    block_size : int
    key_real : (B, K) bool, optional
        False on padded keys.

    Returns
    -------
    (B, 1, W, K) bool, True = attend. A query row that would see nothing (a row with no
    real token) is left unmasked so that SDPA stays finite; such rows are meaningless.
    """
    keep = (key_positions // block_size)[:, None, :] <= (query_positions // block_size)[:, :, None]
    if key_real is not None:
        keep = keep & key_real[:, None, :]
    keep = keep | ~keep.any(-1, keepdim=True)
    return keep[:, None]  # (B, 1, W, K)


def _as_mask(
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    block_size: int | None,
) -> torch.Tensor | None:
    """The SDPA mask of a full forward from a model's ``attention_mask`` argument."""
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
    ):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}")
    if attention_mask is None:
        if block_size is None:
            return None
        return block_causal_keep(position_ids, position_ids, block_size)
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(
            f"attention_mask must be a tensor or None, got {type(attention_mask).__name__}"
        )
    if attention_mask.dtype.is_floating_point:
        raise TypeError(
            f"attention_mask must be bool (True = attend) or 0/1 integers, got {attention_mask.dtype}; "
            "additive float masks are not accepted (0/1 and 0/-inf conventions would be ambiguous)"
        )
    if attention_mask.dim() == 2:
        real = attention_mask.bool()
        if block_size is None:
            real = real | ~real.any(-1, keepdim=True)
            return real[:, None, None, :]  # (B, 1, 1, L): hide padded keys
        return block_causal_keep(position_ids, position_ids, block_size, real)
    if attention_mask.dim() == 4:
        if block_size is not None:
            raise ValueError("give either a 4-D attention_mask or block_size, not both")
        return attention_mask.bool()
    raise ValueError(
        f"attention_mask must be (B, L) padding or (B, 1, L, L) bool, got shape {tuple(attention_mask.shape)}"
    )


class DecoderLM(CleanRoomLM):
    """Base of the four families' LM classes: ``model`` (a :class:`DecoderTrunk`) + ``lm_head``.

    Subclasses set ``config_class`` and ``spec_from_config``, the family's function from a
    config to its :class:`DecoderSpec` (``spec_from_config = staticmethod(sdar_spec)``).

    ``forward(input_ids, attention_mask=None, position_ids=None, block_size=None)`` returns a
    ``MaskedLMOutput`` whose ``logits`` (B, L, V) are the raw outputs (for Fast-dLLM v2 row i
    predicts token i + 1). Attention is full unless masked: ``attention_mask`` is a (B, L)
    padding mask (padded keys hidden) or a (B, 1, L, L) boolean mask (True = attend), and
    ``block_size`` adds the block-causal rule on ``position_ids`` (default ``arange(L)``).
    """

    _no_split_modules = ["DecoderLayer"]  # noqa: RUF012 (transformers convention)

    @staticmethod
    def spec_from_config(config) -> DecoderSpec:  # pragma: no cover - abstract
        raise NotImplementedError

    def __init__(self, config) -> None:
        spec = self.spec_from_config(config)
        super().__init__(config)
        self.spec = spec
        self.model = DecoderTrunk(spec)
        if not spec.tie_word_embeddings:
            self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Router):
            init_normal(module.weight, self._init_std())
            if getattr(module, "expert_bias", None) is not None:
                init_zeros(module.expert_bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        setattr(self.model, self.spec.embed_name, value)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, W, D) final hidden states -> (B, W, V) raw logits."""
        weight = (
            self.model.embedding.weight if self.spec.tie_word_embeddings else self.lm_head.weight
        )
        return F.linear(hidden, weight)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        block_size: int | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        """See the class docstring; ``use_cache`` must be falsy (the block cache lives in
        :class:`remask.models.block_diffusion.BlockDiffusionDenoiser`)."""
        if use_cache:
            raise ValueError(
                "use_cache=True is not supported by remask's clean-room classes; decode with "
                "remask.models.block_diffusion.BlockDiffusionDenoiser for an exact block cache"
            )
        extra = sorted(k for k, v in kwargs.items() if v is not None and v is not False)
        if extra:
            raise TypeError(f"unsupported forward arguments: {extra}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
        b, length = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device)[None].expand(b, length)
        elif position_ids.dim() == 1:
            position_ids = position_ids[None].expand(b, length)
        mask = _as_mask(attention_mask, position_ids, block_size)
        hidden, _ = self.model(input_ids, position_ids, mask)
        return MaskedLMOutput(logits=self.head(hidden))


def check_common(config, family: str) -> None:
    """Raise ``ValueError`` for options none of the four families' checkpoints use."""
    scaling = getattr(config, "rope_scaling", None)
    params = getattr(config, "rope_parameters", None)
    rope_type = params.get("rope_type", params.get("type")) if isinstance(params, dict) else None
    if scaling is not None or rope_type not in (None, "default"):
        raise ValueError(
            f"unsupported {family} config: rope_scaling={scaling or params!r} (remask implements plain RoPE)"
        )
    act = getattr(config, "hidden_act", "silu")
    if act != "silu":
        raise ValueError(
            f"unsupported {family} config: hidden_act={act!r} (remask implements 'silu')"
        )
    if getattr(config, "use_sliding_window", False):
        raise ValueError(f"unsupported {family} config: use_sliding_window=True")


def head_dim_of(config, family: str) -> int:
    """``config.head_dim``, else ``hidden_size / num_attention_heads`` (must divide)."""
    head_dim = getattr(config, "head_dim", None)
    if head_dim is not None:
        return int(head_dim)
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"{family} config: hidden_size={config.hidden_size} is not divisible by "
            f"num_attention_heads={config.num_attention_heads}"
        )
    return config.hidden_size // config.num_attention_heads


def qwen_spec(config, family: str, *, qk_norm: bool, qkv_bias: bool, out_bias: bool) -> DecoderSpec:
    """The :class:`DecoderSpec` of a dense Qwen2/Qwen3-shaped config (SDAR, Fast-dLLM v2)."""
    check_common(config, family)
    head_dim = head_dim_of(config, family)
    layers = int(config.num_hidden_layers)
    return DecoderSpec(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=layers,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads,
        head_dim=head_dim,
        rotary_dim=head_dim,
        rope_theta=float(config.rope_theta),
        rms_norm_eps=float(config.rms_norm_eps),
        fused_qkv=False,
        qkv_bias=qkv_bias,
        out_bias=out_bias,
        qk_norm=qk_norm,
        intermediate_size=config.intermediate_size,
        moe=None,
        moe_layers=(False,) * layers,
        tie_word_embeddings=bool(config.tie_word_embeddings),
    )
