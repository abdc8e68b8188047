"""Clean-room Dream / DiffuCoder model that loads the original checkpoints unchanged.

Dream-v0-7B and DiffuCoder-7B (``model_type "Dream"``) have the Qwen2 shape: pre-norm
decoder layers with RMSNorm, grouped-query attention with biased q/k/v projections, rotary
embeddings (base ``rope_theta``) and a SiLU-gated MLP, but attention is **bidirectional**.
This file re-implements that from its published description (the Qwen2 layer, made
bidirectional) with the checkpoint's parameter names (``model.embed_tokens``,
``model.layers.{i}.self_attn.q_proj`` ..., ``model.norm``, ``lm_head``).

Two Dream conventions matter to callers:

* **Shifted logits.** Dream was trained autoregressive-style: the raw output at position i
  predicts token i + 1. :class:`DreamModel` returns those raw outputs;
  :class:`DreamDenoiser` shifts them right by one so that row i predicts position i.
* **Padding.** Upstream code takes a 4-D boolean mask and position ids
  ``cumsum(mask) - 1`` for left-padded batches. :class:`DreamModel` accepts that, or a 2-D
  mask; :class:`DreamDenoiser` builds the position ids from the 2-D mask itself.

For Fast-dLLM block decoding, :meth:`DreamBaseModel.forward` can record every layer's keys
and values into a :class:`~remask.models._layers.KVCache` and
:meth:`DreamBaseModel.forward_window` recomputes only a window of positions against them;
:class:`DreamDenoiser` runs that window one position further left, because of the shift
(driven by :class:`remask.models.cache.Cached`).

:class:`DreamDenoiser` also implements the protocol's attention-bias capability (a custom
attention pattern over extra tokens, for WINO's shadow block) in one forward pass; see
:meth:`DreamDenoiser._forward_biased` for how the shift is handled there, and its gathered
capability (kept columns only, at their own positions: DPad's pruned forward), where a
column is read from the output of the gathered column before it
(:meth:`DreamDenoiser._forward_gathered`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_outputs import MaskedLMOutput

from remask.models._adapter import CheckpointDenoiser
from remask.models._configs import DreamConfig
from remask.models._layers import (
    CleanRoomLM,
    KVCache,
    RMSNorm,
    apply_rope,
    attend,
    check_heads,
    check_recording,
    check_window,
    key_padding_mask,
    lm_output,
    refuse_hf_options,
    rope_cos_sin,
    run_blocks,
)

__all__ = [
    "DreamBaseModel",
    "DreamConfig",
    "DreamDenoiser",
    "DreamModel",
    "check_dream_config",
    "dream_position_ids",
]


def check_dream_config(config: DreamConfig) -> None:
    """Raise ``ValueError`` for Dream options this implementation does not cover."""
    scaling = getattr(config, "rope_scaling", None)
    params = getattr(config, "rope_parameters", None)
    rope_type = None
    if isinstance(params, dict):
        rope_type = params.get("rope_type", params.get("type"))
    if scaling is not None or rope_type not in (None, "default"):
        raise ValueError(
            f"unsupported Dream config: rope_scaling={scaling or params!r} "
            "(remask implements plain RoPE only)"
        )
    if getattr(config, "use_sliding_window", False):
        raise ValueError("unsupported Dream config: use_sliding_window=True")
    check_heads(
        ("hidden_size", config.hidden_size),
        ("num_attention_heads", config.num_attention_heads),
        ("num_key_value_heads", config.num_key_value_heads),
    )
    if config.hidden_act not in ACT2FN:
        raise ValueError(f"unsupported Dream config: hidden_act={config.hidden_act!r}")


def dream_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch, the way Dream's generation code builds them.

    Parameters
    ----------
    attention_mask : (B, L) bool or integer
        True / 1 on real tokens.

    Returns
    -------
    (B, L) int64: the first real token of every row gets position 0. Padding positions get
    0 as well; their outputs are meaningless anyway.
    """
    keep = (
        attention_mask.long()
        if attention_mask.dtype == torch.bool
        else (attention_mask != 0).long()
    )
    return (keep.cumsum(dim=-1) - 1).clamp_min(0)


def _attention_mask_4d(attention_mask: object, batch: int, length: int) -> torch.Tensor | None:
    """Normalise Dream's accepted mask forms to None or a (B|1, 1, L, L) bool tensor."""
    if attention_mask is None or (isinstance(attention_mask, str) and attention_mask == "full"):
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(
            "attention_mask must be None, 'full', a (B, L) or a (B, 1, L, L) bool tensor; got "
            f"{type(attention_mask).__name__}"
        )
    if attention_mask.dim() == 2:
        if tuple(attention_mask.shape) != (batch, length):
            raise ValueError(
                f"2-D attention_mask has shape {tuple(attention_mask.shape)}, expected {(batch, length)}"
            )
        return key_padding_mask(attention_mask)
    if attention_mask.dim() == 4:
        if attention_mask.dtype.is_floating_point:
            raise TypeError("4-D attention_mask must be boolean (True = attend), got a float mask")
        mask = attention_mask.to(torch.bool)
        if mask.shape[-2:] != (length, length) or mask.shape[1] != 1:
            raise ValueError(
                f"4-D attention_mask has shape {tuple(mask.shape)}, expected (B, 1, {length}, {length})"
            )
        # Upstream masks pad *queries* too, giving fully masked rows; SDPA turns those into
        # NaN, which would then leak through 0 * NaN. Let such rows attend everywhere instead.
        return mask | ~mask.any(dim=-1, keepdim=True)
    raise ValueError(
        f"attention_mask must be 2-D (B, L) or 4-D (B, 1, L, L), got shape {tuple(attention_mask.shape)}"
    )


class DreamAttention(nn.Module):
    """Bidirectional grouped-query attention with q/k/v bias (Qwen2 layout)."""

    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = d // self.n_heads
        self.dropout = float(config.attention_dropout)
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> torch.Tensor:
        """(B, W, D) -> (B, W, D) for the positions ``[start, start + W)``.

        ``mask`` is None or bool, broadcastable to (B, H, W, L). Without ``cache`` W = L;
        with one, an empty layer records this pass's keys and values and a cached layer
        lets the W queries attend to all L cached keys, the window's slice fresh (see
        :class:`remask.models._layers.KVCache`).
        """
        b, length, _ = x.shape
        q = self.q_proj(x).view(b, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, full_precision=False)  # (B, H, L, Dh)
        k = apply_rope(k, cos, sin, full_precision=False)  # (B, Hkv, W, Dh)
        if cache is not None:
            k, v = cache.update(layer, k, v, start)  # (B, Hkv, L, Dh) each
        # Bidirectional, as every Dream layer is despite its autoregressive initialisation.
        out = attend(q, k, v, mask, self.dropout if self.training else 0.0)  # (B, H, L, Dh)
        return self.o_proj(out.transpose(1, 2).reshape(b, length, -1))


class DreamMLP(nn.Module):
    """Gated MLP: down(act(gate(x)) * up(x)), no biases."""

    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        d, hidden = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DreamDecoderLayer(nn.Module):
    """Pre-norm layer: x + Attn(RMSNorm(x)), then x + MLP(RMSNorm(x))."""

    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.self_attn = DreamAttention(config)
        self.mlp = DreamMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> torch.Tensor:
        """(B, W, D) -> (B, W, D); see :meth:`DreamAttention.forward` for the cache."""
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamBaseModel(nn.Module):
    """The trunk stored under ``model.`` in checkpoints: embeddings, layers, final norm."""

    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DreamDecoderLayer(config) for _ in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: object = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """(B, L) ids -> final normalised hidden states (B, L, D), optional per-layer states.

        An empty ``cache`` records every layer's keys and values for :meth:`forward_window`.
        """
        check_recording(cache)
        b, length = input_ids.shape
        position_ids = self._position_ids(position_ids, b, length, input_ids.device)
        mask = _attention_mask_4d(attention_mask, b, length)
        return self._run(input_ids, position_ids, mask, output_hidden_states, cache, 0)

    def forward_window(
        self,
        input_ids: torch.Tensor,
        start: int,
        stop: int,
        cache: KVCache,
        attention_mask: object = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, stop - start, D) of the positions ``[start, stop)`` only.

        The window's tokens go through the layers and attend to all L positions: fresh keys
        and values for the window, cached ones (from a full :meth:`forward` on an earlier
        canvas) elsewhere. ``attention_mask`` and ``position_ids`` describe the whole
        (B, L) canvas, as in :meth:`forward`. Raw outputs: row j predicts position
        ``start + j + 1``.
        """
        check_window(input_ids, start, stop, cache, len(self.layers))
        b, length = input_ids.shape
        position_ids = self._position_ids(position_ids, b, length, input_ids.device)
        mask = _attention_mask_4d(attention_mask, b, length)
        if mask is not None and mask.shape[-2] != 1:
            mask = mask[:, :, start:stop]  # (B, 1, W, L): the window's query rows
        x, _ = self._run(
            input_ids[:, start:stop], position_ids[..., start:stop], mask, False, cache, start
        )
        return x

    @staticmethod
    def _position_ids(
        position_ids: torch.Tensor | None, b: int, length: int, device: torch.device
    ) -> torch.Tensor:
        """(L,) default positions, or the given (B, L), (1, L) or (L,) ids after a shape check."""
        if position_ids is None:
            return torch.arange(length, device=device)
        if tuple(position_ids.shape) not in ((b, length), (1, length), (length,)):
            raise ValueError(
                f"position_ids has shape {tuple(position_ids.shape)}, expected {(b, length)}"
            )
        return position_ids

    def _run(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor | None,
        output_hidden_states: bool,
        cache: KVCache | None,
        start: int,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Layers and final norm over ``input_ids`` (B, W) at ``position_ids`` (..., W)."""
        cfg = self.config
        cos, sin = rope_cos_sin(
            position_ids, cfg.hidden_size // cfg.num_attention_heads, cfg.rope_theta
        )
        x = self.embed_tokens(input_ids)  # (B, W, D)
        hidden: list[torch.Tensor] | None = [] if output_hidden_states else None
        x = self.norm(run_blocks(self.layers, x, cos, sin, mask, cache, start, hidden))
        if hidden is not None:
            hidden.append(x)  # the final state, after the norm
        return x, (None if hidden is None else tuple(hidden))


class DreamModel(CleanRoomLM):
    """Dream with its output head, loadable from the original checkpoints.

    The class name matches the upstream ``architectures`` entry so configs round-trip. Use
    ``DreamModel.from_pretrained(dir)`` or, after ``import remask.models``,
    ``transformers.AutoModel.from_pretrained(dir)`` (no ``trust_remote_code`` needed).

    ``forward(input_ids, attention_mask=None, position_ids=None)`` returns a
    ``MaskedLMOutput`` with the **raw, unshifted** logits (B, L, V): row i predicts
    position i + 1. ``attention_mask`` may be None, ``"full"``, a (B, L) padding mask or
    upstream's (B, 1, L, L) boolean mask.
    """

    config_class = DreamConfig
    _no_split_modules = ["DreamDecoderLayer"]  # noqa: RUF012 (transformers convention)

    def __init__(self, config: DreamConfig) -> None:
        check_dream_config(config)
        super().__init__(config)
        self.model = DreamBaseModel(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def head_weight(self) -> torch.Tensor:
        """(V, D) output projection (the embedding when ``tie_word_embeddings``)."""
        if self.config.tie_word_embeddings:
            return self.model.embed_tokens.weight
        return self.lm_head.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: object = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput | tuple[torch.Tensor, ...]:
        """Raw logits (B, L, V), float, row i predicting position i + 1."""
        refuse_hf_options("DreamModel", use_cache, kwargs)
        x, hidden = self.model(
            input_ids, attention_mask, position_ids, output_hidden_states=bool(output_hidden_states)
        )
        logits = F.linear(x, self.head_weight())  # (B, L, V)
        return lm_output(logits, hidden, return_dict)


class DreamDenoiser(CheckpointDenoiser):
    """Denoiser adapter for Dream / DiffuCoder.

    Builds position ids ``cumsum(mask) - 1`` from the padding mask, hides padded keys, and
    shifts the raw logits right by one (row i <- raw row i - 1) so that row i predicts
    position i. Row 0 keeps its own raw output, which predicts position 1; since nothing
    precedes the first real token it cannot be predicted, so a canvas whose first real
    position holds ``mask_id`` is rejected with ``ValueError`` (start with BOS or a prompt).
    """

    family = "dream"
    shift = 1
    supports_kv_cache = True
    accepts_attention_bias = True
    accepts_gathered = True

    def _forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        position_ids = self._position_ids(tokens, attention_mask)
        if cache is None:
            raw = self.model(
                tokens, attention_mask=attention_mask, position_ids=position_ids
            ).logits
        else:  # the same operations as DreamModel.forward, so the logits are identical
            x, _ = self.model.model(tokens, attention_mask, position_ids, cache=cache)
            raw = F.linear(x, self.model.head_weight())
        return _shift_right(raw)

    def _forward_biased(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attention_bias: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        """The attention-bias call (protocol contract), shift included, in one forward pass.

        ``tokens`` (B, L') is a canvas of L columns followed by E extra tokens, each
        standing in for the canvas column ``position_ids`` names. Columns map to Dream's
        positions (``cumsum(mask) - 1``, as in the plain call). The canvas rows are the
        plain call's, under the pattern. An extra token k at column c must predict c, which
        a shifted model reads off the output at c - 1: a *predecessor* query is appended
        for it — the token of column c - 1 at that column's position, allowed to see exactly
        what extra token k may see (itself unseen by every query) — and its raw output is
        row k's prediction. One forward of L + 2E tokens.
        """
        B, length = tokens.shape
        device = tokens.device
        self._position_ids(tokens, attention_mask)  # the first-position check
        keep = (
            torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask
        )  # (B, L')
        positions = dream_position_ids(keep).gather(1, position_ids)  # (B, L')
        columns = torch.arange(length, device=device)
        # The canvas is the leading run of tokens that stand at their own column (one sync).
        L = int((position_ids == columns).all(0).long().cumprod(0).sum())
        allowed = attention_bias & keep.unsqueeze(1)  # (B, L', L'): padded keys stay hidden
        if L == length:  # no extra token: the plain call under a pattern
            raw = self.model(
                tokens, attention_mask=allowed.unsqueeze(1), position_ids=positions
            ).logits
            return _shift_right(raw)
        E = length - L
        before = (position_ids[:, L:] - 1).clamp_min(0)  # (B, E): column each prediction is read at
        ids = torch.cat([tokens, tokens.gather(1, before)], dim=1)  # (B, L' + E)
        pos = torch.cat(
            [positions, dream_position_ids(keep).gather(1, before)], dim=1
        )  # (B, L' + E)
        full = allowed.new_zeros(B, length + E, length + E)  # (B, N, N)
        full[:, :length, :length] = allowed
        full[:, length:, :length] = allowed[:, L:]  # a predecessor sees what its extra token sees
        raw = self.model(
            ids, attention_mask=full.unsqueeze(1), position_ids=pos
        ).logits  # (B, N, V)
        return torch.cat([_shift_right(raw[:, :L]), raw[:, length:]], dim=1)  # (B, L', V)

    def _forward_gathered(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        columns: torch.Tensor,
    ) -> torch.Tensor:
        """The gathered call (protocol contract), shift included, in one forward pass.

        ``tokens`` (B, K) are the canvas columns ``columns`` of each row, right-padded. The
        plain call's position of a real token is its rank among the row's real tokens, i.e.
        (left padding) its column minus the row's first real column, which the contract
        requires to be gathered first. The raw outputs are shifted within the gathered row:
        row i takes the output of gathered token i - 1, which predicts column c = columns[i]
        only when columns[i - 1] = c - 1; the other rows (and the right padding) are zeros
        ("not computed"). Row 0 keeps its own output, as in the plain call.
        """
        B, K = tokens.shape
        real = (
            torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask
        )
        first = tokens[:, 0]
        if bool((first == self.mask_id).any()):
            raise ValueError(
                "Dream predicts position i from position i-1, so the first gathered column of "
                f"every row (its first real one) must be a decided token, not mask_id={self.mask_id}"
            )
        positions = ((columns - columns[:, :1]) * real).clamp_min(0)  # (B, K)
        raw = self.model(
            tokens, attention_mask=attention_mask, position_ids=positions
        ).logits  # (B, K, V)
        logits = _shift_right(raw)  # (B, K, V)
        adjacent = columns[:, 1:] == columns[:, :-1] + 1  # (B, K - 1)
        computed = torch.cat([real[:, :1], real[:, 1:] & real[:, :-1] & adjacent], dim=1)
        return logits.masked_fill_(~computed.unsqueeze(-1), 0.0)

    def _forward_window(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: KVCache,
        start: int,
        stop: int,
    ) -> torch.Tensor:
        position_ids = self._position_ids(tokens, attention_mask)
        # Position p is predicted by raw row p - 1, so the layers run one position further
        # left; that position's keys and values are refreshed too, which only helps.
        first = max(start - 1, 0)
        x = self.model.model.forward_window(
            tokens, first, stop, cache, attention_mask, position_ids
        )
        raw = F.linear(x, self.model.head_weight())  # (B, stop - first, V)
        if start == 0:
            return _shift_right(raw)
        return raw[:, : stop - start]

    def _position_ids(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Position ids from the padding mask (None without one), after checking that the
        first real position of every row is decided."""
        if attention_mask is None:
            first = tokens[:, 0]
            position_ids = None
        else:
            first_index = attention_mask.long().argmax(dim=-1, keepdim=True)  # (B, 1)
            first = tokens.gather(1, first_index)[:, 0]
            position_ids = dream_position_ids(attention_mask)
        if bool((first == self.mask_id).any()):
            bos = f" such as bos_id={self.bos_id}" if self.bos_id is not None else ""
            raise ValueError(
                "Dream predicts position i from position i-1, so the first real position of "
                f"every row must be a decided token, not mask_id={self.mask_id}: generation "
                f"needs a non-empty prompt (start it with a token{bos})"
            )
        return position_ids


def _shift_right(raw: torch.Tensor) -> torch.Tensor:
    """(B, L, V) raw outputs -> (B, L, V) logits: row i takes raw row i - 1 (row 0 its own)."""
    return torch.cat([raw[:, :1], raw[:, :-1]], dim=1)
