"""Clean-room LLaDA (dense) model that loads the original checkpoints unchanged.

LLaDA-8B-Base/-Instruct and LLaDA 1.5 (``model_type "llada"``) are OLMo-style bidirectional
transformers: pre-norm "llama" blocks with RMSNorm, rotary position embeddings (base
``rope_theta``), a SiLU-gated MLP and an untied output head. This file re-implements that
architecture from its published description (OLMo "llama" block, as configured by the
checkpoints' ``config.json``) with the checkpoint's parameter names, so ``config.json`` and the safetensors shards load as they are
(``model.transformer.wte``, ``model.transformer.blocks.{i}.q_proj`` ...,
``model.transformer.ln_f``, ``model.transformer.ff_out``).

Attention is never causal. A 2-D ``attention_mask`` hides padded keys; because rotary
embeddings are relative, left padding leaves the logits of real tokens unchanged.

For Fast-dLLM block decoding, :meth:`LLaDAModel.forward` can record every layer's keys and
values into a :class:`~remask.models._layers.KVCache`, and :meth:`LLaDAModel.forward_window`
recomputes only a window of positions against them (driven by
:class:`remask.models.cache.Cached`). It also takes a custom attention pattern and explicit
positions (``attention_bias``, ``position_ids``), which :class:`LLaDADenoiser` exposes as the
protocol's attention-bias capability for WINO's shadow block, and as its gathered capability
(a shorter sequence of kept columns at their own rotary positions: DPad's pruned forward).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput

from remask.models._adapter import CheckpointDenoiser
from remask.models._configs import LLADA_MOE_FIELDS, LLaDAConfig
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

__all__ = ["LLaDAConfig", "LLaDADenoiser", "LLaDAModel", "LLaDAModelLM", "check_llada_config"]


def check_llada_config(config: LLaDAConfig) -> None:
    """Raise ``ValueError`` for LLaDA options this implementation does not cover.

    Everything the released dense checkpoints use is supported, plus a few cheap variants
    (grouped-query attention, QKV bias, tied head, logit scaling, ``clip_qkv``).
    """
    present = [name for name in LLADA_MOE_FIELDS if getattr(config, name, None) is not None]
    if present:
        raise ValueError(
            f"config has LLaDA-MoE fields {present}: LLaDA-MoE (model_type 'llada' upstream) "
            "is not supported by remask's dense LLaDA class; use "
            "remask.models.llada_moe.LLaDAMoEModelLM (or transformers.AutoModel, which picks it)"
        )
    expected = {
        "block_type": "llama",
        "layer_norm_type": "rms",
        "activation_type": "silu",
        "rope": True,
        "alibi": False,
        "attention_layer_norm": False,
        "input_emb_norm": False,
    }
    for name, value in expected.items():
        got = getattr(config, name, value)
        if got != value:
            raise ValueError(
                f"unsupported LLaDA config: {name}={got!r} (remask implements {name}={value!r})"
            )
    if getattr(config, "bias_for_layer_norm", False):
        raise ValueError("unsupported LLaDA config: bias_for_layer_norm=True")
    check_heads(
        ("d_model", config.d_model),
        ("n_heads", config.n_heads),
        ("n_kv_heads", config.effective_n_kv_heads),
    )
    if (config.d_model // config.n_heads) % 2:
        raise ValueError(
            f"head size d_model / n_heads = {config.d_model // config.n_heads} must be even for RoPE"
        )


class LLaDABlock(nn.Module):
    """One pre-norm "llama" block: x + Attn(RMSNorm(x)), then x + MLP(RMSNorm(x)).

    Parameter names follow the checkpoint: ``attn_norm``, ``q_proj``, ``k_proj``, ``v_proj``,
    ``attn_out``, ``ff_norm``, ``ff_proj`` (gate), ``up_proj``, ``ff_out`` (down).
    """

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        d = config.d_model
        self.n_heads = config.n_heads
        self.n_kv_heads = config.effective_n_kv_heads
        self.head_dim = d // config.n_heads
        self.rope_theta = float(config.rope_theta)
        self.rope_full_precision = bool(config.rope_full_precision)
        self.clip_qkv = config.clip_qkv
        self.attention_dropout = float(config.attention_dropout)
        self.residual_dropout = float(config.residual_dropout)
        qkv_bias = bool(config.include_bias or config.include_qkv_bias)
        bias = bool(config.include_bias)
        affine = bool(config.layer_norm_with_affine)
        hidden = config.effective_mlp_hidden_size

        self.attn_norm = RMSNorm(d, config.rms_norm_eps, affine)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=bias)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps, affine)
        self.ff_proj = nn.Linear(d, hidden, bias=bias)
        self.up_proj = nn.Linear(d, hidden, bias=bias)
        self.ff_out = nn.Linear(hidden, d, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
        start: int = 0,
    ) -> torch.Tensor:
        """(B, W, D) -> (B, W, D) for the positions ``[start, start + W)``.

        ``cos``/``sin`` are (1, 1, W, Dh) float32 tables of those positions; ``attn_mask``
        is None or a (B, 1, 1, L) bool mask of allowed keys. Without ``cache``, W = L and
        the block attends among its inputs. With a ``cache`` (see :class:`KVCache`), an
        empty layer records this pass's keys and values, and a cached layer lets the W
        queries attend to all L cached keys with the window's slice replaced by fresh ones.
        """
        b, length, d = x.shape
        h = self.attn_norm(x)  # (B, L, D)
        q = self.q_proj(h)
        k = self.k_proj(h)
        v = self.v_proj(h)
        if self.clip_qkv is not None:
            q = q.clamp(-self.clip_qkv, self.clip_qkv)
            k = k.clamp(-self.clip_qkv, self.clip_qkv)
            v = v.clamp(-self.clip_qkv, self.clip_qkv)
        q = q.view(b, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)
        k = k.view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, L, Dh)
        v = v.view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, full_precision=self.rope_full_precision)
        k = apply_rope(k, cos, sin, full_precision=self.rope_full_precision)
        if cache is not None:
            k, v = cache.update(layer, k, v, start)  # (B, Hkv, L, Dh) each
        dropout = self.attention_dropout if self.training else 0.0
        att = attend(q, k, v, attn_mask, dropout)  # (B, H, L, Dh); LLaDA is bidirectional
        att = att.transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        x = x + F.dropout(self.attn_out(att), self.residual_dropout, self.training)

        h = self.ff_norm(x)
        h = self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))  # (B, L, D)
        return x + F.dropout(h, self.residual_dropout, self.training)


class LLaDAModel(nn.Module):
    """The transformer trunk, stored under ``model.transformer`` in checkpoints.

    Holds ``transformer.wte`` (embedding), ``transformer.blocks``, ``transformer.ln_f`` and,
    unless ``weight_tying``, the output head ``transformer.ff_out``.
    """

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        self.config = config
        rows = config.effective_embedding_size
        modules: dict[str, nn.Module] = {
            "wte": nn.Embedding(rows, config.d_model),
            "blocks": nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
            "ln_f": RMSNorm(config.d_model, config.rms_norm_eps, config.layer_norm_with_affine),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, rows, bias=bool(config.include_bias))
        self.transformer = nn.ModuleDict(modules)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        cache: KVCache | None = None,
        attention_bias: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Logits for every position.

        Parameters
        ----------
        input_ids : (B, L) int64
        attention_mask : (B, L) bool or integer, optional
            True / 1 on real tokens; padded keys are hidden from every query.
        output_hidden_states : bool
            Also return the input of every block and the final (pre-norm) state.
        cache : KVCache, optional
            An empty cache; every layer's keys and values are recorded into it for later
            :meth:`forward_window` calls. The logits are the same as without it.
        attention_bias : (B, L, L) bool, optional
            True where query i may attend to key j (on top of the padding mask). A query
            left with no key attends everywhere instead (no NaN).
        position_ids : (B, L) or (L,) int64, optional
            Rotary position of each token (default ``arange(L)``, the column; two tokens may
            share one).

        Returns
        -------
        logits : (B, L, V) float, V = ``embedding_size``; row i predicts position i.
        hidden_states : tuple of (B, L, D) tensors, or None.
        """
        check_recording(cache)
        if cache is not None and (attention_bias is not None or position_ids is not None):
            raise ValueError("a KV cache records plain passes only: no attention_bias/position_ids")
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self._run(
            input_ids, position_ids, attention_mask, output_hidden_states, cache, 0, attention_bias
        )

    def forward_window(
        self,
        input_ids: torch.Tensor,
        start: int,
        stop: int,
        cache: KVCache,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for the positions ``[start, stop)`` only, against cached keys and values.

        Only the window's tokens go through the blocks; at every layer their queries attend
        to all L positions, the window's keys and values fresh and the rest taken from
        ``cache`` (filled by a full :meth:`forward` on an earlier canvas). When the tokens
        outside the window are the ones the cache was computed from, and the window covers
        every position whose token changed, the result equals the full forward's rows
        ``[start, stop)`` up to float rounding; otherwise it is Fast-dLLM's approximation.

        Parameters
        ----------
        input_ids : (B, L) int64
            The whole canvas (only ``[start, stop)`` is read).
        start, stop : int
            Window bounds, ``0 <= start < stop <= L``.
        cache : KVCache
            Filled for a (B, L) canvas; the window's slice is overwritten in place.
        attention_mask : (B, L) bool or integer, optional
            Padding mask of the whole canvas, as in :meth:`forward`.

        Returns
        -------
        (B, stop - start, V) float logits; row j predicts position ``start + j``.
        """
        check_window(input_ids, start, stop, cache, len(self.transformer["blocks"]))
        positions = torch.arange(start, stop, device=input_ids.device)
        logits, _ = self._run(
            input_ids[:, start:stop], positions, attention_mask, False, cache, start
        )
        return logits

    def _run(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_hidden_states: bool,
        cache: KVCache | None,
        start: int,
        attention_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Blocks and head over the tokens ``input_ids`` (B, W) at ``positions`` (W,) or
        (B, W), under an optional (B, W, W) ``attention_bias``."""
        cfg = self.config
        t = self.transformer
        x = t["wte"](input_ids)  # (B, W, D)
        x = F.dropout(x, float(cfg.embedding_dropout), self.training)
        cos, sin = rope_cos_sin(positions, cfg.d_model // cfg.n_heads, cfg.rope_theta)
        mask = None if attention_mask is None else key_padding_mask(attention_mask)  # (B,1,1,L)
        if attention_bias is not None:
            bias = attention_bias.to(torch.bool)[:, None]  # (B, 1, L, L)
            mask = bias if mask is None else bias & mask
            # A query with no key would give NaN (which 0 * NaN then spreads): let it see all.
            mask = mask | ~mask.any(dim=-1, keepdim=True)
        hidden: list[torch.Tensor] | None = [] if output_hidden_states else None
        x = run_blocks(t["blocks"], x, cos, sin, mask, cache, start, hidden)
        if hidden is not None:
            hidden.append(x)  # the final state, before ln_f (as forward's docstring says)
        x = t["ln_f"](x)
        head = t["wte"].weight if cfg.weight_tying else t["ff_out"].weight
        bias = None if cfg.weight_tying else t["ff_out"].bias
        logits = F.linear(x, head, bias)  # (B, W, V)
        if cfg.scale_logits:
            logits = logits * (1.0 / math.sqrt(cfg.d_model))
        return logits, (None if hidden is None else tuple(hidden))


class LLaDAModelLM(CleanRoomLM):
    """LLaDA with its output head, loadable from the original checkpoints.

    The name matches the upstream ``architectures`` entry so configs round-trip. Use
    ``LLaDAModelLM.from_pretrained(dir)`` or, after ``import remask.models``,
    ``transformers.AutoModel.from_pretrained(dir)`` (no ``trust_remote_code`` needed).

    ``forward(input_ids, attention_mask=None, ...)`` returns a ``MaskedLMOutput`` whose
    ``logits`` (B, L, V) are unshifted: row i predicts position i.
    """

    config_class = LLaDAConfig
    _no_split_modules = ["LLaDABlock"]  # noqa: RUF012 (transformers convention)
    init_std_field = "init_std"

    def __init__(self, config: LLaDAConfig) -> None:
        check_llada_config(config)
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer["wte"]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.transformer["wte"] = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput | tuple[torch.Tensor, ...]:
        """See :meth:`LLaDAModel.forward`; ``use_cache`` is accepted and must be falsy."""
        refuse_hf_options("LLaDAModelLM", use_cache, kwargs)
        logits, hidden = self.model(
            input_ids,
            attention_mask=attention_mask,
            output_hidden_states=bool(output_hidden_states),
        )
        return lm_output(logits, hidden, return_dict)


class LLaDADenoiser(CheckpointDenoiser):
    """Denoiser adapter for LLaDA / LLaDA 1.5 (unshifted logits, 2-D padding mask).

    See :class:`remask.models._adapter.CheckpointDenoiser` for the attributes. The mask
    column of the logits is set to -inf; nothing else is changed.
    """

    family = "llada"
    supports_kv_cache = True
    accepts_attention_bias = True
    accepts_gathered = True

    def _forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        logits, _ = self.model.model(tokens, attention_mask=attention_mask, cache=cache)
        return logits

    def _forward_biased(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attention_bias: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        # LLaDA's plain call numbers positions by column (arange(L), padding included), so a
        # canvas column is its rotary position as it is: one forward of length L'.
        logits, _ = self.model.model(
            tokens,
            attention_mask=attention_mask,
            attention_bias=attention_bias,
            position_ids=position_ids,
        )
        return logits

    def _forward_gathered(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        columns: torch.Tensor,
    ) -> torch.Tensor:
        # The plain call's rotary position of a token is its column, so the gathered tokens
        # take their columns as positions; the right padding is hidden as keys (its own
        # queries still run, on real keys, and are zeroed below).
        positions = columns if attention_mask is None else columns * attention_mask  # (B, K)
        logits, _ = self.model.model(
            tokens, attention_mask=attention_mask, position_ids=positions
        )  # (B, K, V)
        if attention_mask is not None:
            logits.masked_fill_(~attention_mask.unsqueeze(-1), 0.0)
        return logits

    def _forward_window(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: KVCache,
        start: int,
        stop: int,
    ) -> torch.Tensor:
        return self.model.model.forward_window(tokens, start, stop, cache, attention_mask)
