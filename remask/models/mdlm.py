"""Clean-room MDLM DiT backbone that loads ``kuleshov-group/mdlm-owt`` unchanged.

MDLM (arXiv:2406.07524) uses a diffusion transformer: token embeddings, rotary attention,
and adaLN modulation of every block by an embedding of the noise level σ. The released OWT
checkpoint sets ``time_conditioning=false``, so σ is zeroed and the model is effectively
time-free. This file re-implements the backbone from its description
(the MDLM paper, arXiv 2406.07524, and the checkpoint's config.json) with the checkpoint's parameter names
(``backbone.vocab_embed.embedding``, ``backbone.sigma_map.mlp.{0,2}``,
``backbone.blocks.{i}.{norm1,attn_qkv,attn_out,norm2,mlp.{0,2},adaLN_modulation}``,
``backbone.output_layer.{norm_final,linear,adaLN_modulation}``), with plain PyTorch
attention (no ``flash_attn``).

Departures from upstream, both inert for the released weights: an optional ``attention_mask``
hides padded keys (upstream has no padding support; with rotary embeddings left padding then
leaves real tokens' logits unchanged), and no bf16 autocast is forced on CUDA (load with
``dtype=torch.bfloat16`` for that).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput
from transformers.modeling_utils import PreTrainedModel

from remask.models._adapter import CheckpointDenoiser
from remask.models._configs import MDLMConfig
from remask.models._layers import (
    apply_rope,
    init_normal,
    init_ones,
    init_zeros,
    key_padding_mask,
    rope_cos_sin,
)

__all__ = ["MDLM", "MDLMBackbone", "MDLMConfig", "MDLMDenoiser", "timestep_embedding"]

_ROPE_BASE = 10_000.0  # fixed in MDLM, not a config field
_FREQ_DIM = 256  # width of the sinusoidal σ features fed to the σ MLP


def timestep_embedding(
    sigma: torch.Tensor, dim: int = _FREQ_DIM, max_period: float = 10_000.0
) -> torch.Tensor:
    """Sinusoidal features of the noise level.

    Parameters
    ----------
    sigma : (B,) float
    dim : int
        Output width; the first half holds cosines, the second sines (zero-padded if odd).

    Returns
    -------
    (B, dim) float32.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half
    )
    args = sigma.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class MDLMLayerNorm(nn.Module):
    """Non-affine LayerNorm computed in float32, then scaled by a weight (no bias)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D) float32 (promoted, as upstream)."""
        return F.layer_norm(x.float(), [self.dim]) * self.weight


class MDLMEmbedding(nn.Module):
    """Token embedding stored as a bare ``embedding`` parameter (V, D)."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, D)."""
        return self.embedding[ids]


class MDLMSigmaEmbedder(nn.Module):
    """σ (B,) -> conditioning vector (B, cond_dim) via sinusoidal features and an MLP."""

    def __init__(self, cond_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(_FREQ_DIM, cond_dim, bias=True),
            nn.SiLU(),
            nn.Linear(cond_dim, cond_dim, bias=True),
        )

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, cond_dim)."""
        feats = timestep_embedding(sigma).to(self.mlp[0].weight.dtype)
        return self.mlp(feats)


class MDLMBlock(nn.Module):
    """DiT block: adaLN-modulated attention and MLP, each with a gated residual."""

    def __init__(
        self, dim: int, n_heads: int, cond_dim: int, dropout: float, mlp_ratio: int = 4
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = float(dropout)
        self.norm1 = MDLMLayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = MDLMLayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * dim, dim, bias=True),
        )
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim, bias=True)
        self.adaLN_modulation._zero_init = True  # read by MDLM._init_weights

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        c: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); ``c`` is (B, cond_dim); ``mask`` None or (B, 1, 1, L) bool."""
        b, length, d = x.shape
        mods = self.adaLN_modulation(c)[:, None]  # (B, 1, 6D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods.chunk(6, dim=2)

        h = _modulate(self.norm1(x), shift_a, scale_a).to(x.dtype)
        qkv = self.attn_qkv(h).view(b, length, 3, self.n_heads, d // self.n_heads)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, L, Dh) each
        # Upstream rotates q and k in float32 and leaves v alone.
        q = apply_rope(q, cos, sin, full_precision=True)
        k = apply_rope(k, cos, sin, full_precision=True)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
        att = att.transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        x = x + gate_a * F.dropout(self.attn_out(att), self.dropout, self.training)

        h = _modulate(self.norm2(x), shift_m, scale_m).to(self.mlp[0].weight.dtype)
        return x + gate_m * F.dropout(self.mlp(h), self.dropout, self.training)


class MDLMFinalLayer(nn.Module):
    """adaLN-modulated final norm and the output projection (with bias) to V columns."""

    def __init__(self, dim: int, vocab_size: int, cond_dim: int) -> None:
        super().__init__()
        self.norm_final = MDLMLayerNorm(dim)
        self.linear = nn.Linear(dim, vocab_size, bias=True)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim, bias=True)
        self.linear._zero_init = True  # read by MDLM._init_weights
        self.adaLN_modulation._zero_init = True

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(B, L, D), (B, cond_dim) -> (B, L, V)."""
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        h = _modulate(self.norm_final(x), shift, scale).to(self.linear.weight.dtype)
        return self.linear(h)


class MDLMBackbone(nn.Module):
    """The DiT stored under ``backbone.`` in the checkpoint."""

    def __init__(self, config: MDLMConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_embed = MDLMEmbedding(config.hidden_dim, config.vocab_size)
        self.sigma_map = MDLMSigmaEmbedder(config.cond_dim)
        self.blocks = nn.ModuleList(
            MDLMBlock(config.hidden_dim, config.n_heads, config.cond_dim, config.dropout)
            for _ in range(config.n_blocks)
        )
        self.output_layer = MDLMFinalLayer(config.hidden_dim, config.vocab_size, config.cond_dim)

    def forward(
        self,
        input_ids: torch.Tensor,
        sigma: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """(B, L) ids and (B,) σ -> logits (B, L, V), optional hidden states."""
        cfg = self.config
        if not cfg.time_conditioning:
            sigma = torch.zeros_like(sigma)  # the released model ignores the noise level
        x = self.vocab_embed(input_ids)  # (B, L, D)
        c = F.silu(self.sigma_map(sigma))  # (B, cond_dim)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        cos, sin = rope_cos_sin(positions, cfg.hidden_dim // cfg.n_heads, _ROPE_BASE)
        mask = None if attention_mask is None else key_padding_mask(attention_mask)
        hidden: list[torch.Tensor] = []
        for block in self.blocks:
            if output_hidden_states:
                hidden.append(x)
            x = block(x, cos, sin, c, mask)
        if output_hidden_states:
            hidden.append(x)
        return self.output_layer(x, c), (tuple(hidden) if output_hidden_states else None)


class MDLM(PreTrainedModel):
    """MDLM with its DiT backbone, loadable from ``kuleshov-group/mdlm-owt``.

    ``forward(input_ids, timesteps=None, attention_mask=None, output_hidden_states=None,
    return_dict=None)``: like upstream, returns the logits tensor (B, L, V) unless
    ``return_dict=True`` (then a ``MaskedLMOutput``). ``timesteps`` is σ, shape (B,);
    zeros when omitted, and ignored unless ``config.time_conditioning``.
    """

    config_class = MDLMConfig
    base_model_prefix = "backbone"
    _no_split_modules = ["MDLMBlock"]  # noqa: RUF012 (transformers convention)
    # Some exports carry the rotary frequency table as a buffer; it is recomputed here.
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]  # noqa: RUF012

    def __init__(self, config: MDLMConfig) -> None:
        if config.hidden_dim % config.n_heads or (config.hidden_dim // config.n_heads) % 2:
            raise ValueError(
                f"hidden_dim={config.hidden_dim} must split into n_heads={config.n_heads} "
                "heads of even size"
            )
        super().__init__(config)
        self.backbone = MDLMBackbone(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Upstream zero-initialises every adaLN projection and the output layer, so a fresh
        # model predicts uniform logits; embeddings and other linears get a small random init.
        if isinstance(module, MDLMEmbedding):
            init_normal(module.embedding, 0.02)
        elif isinstance(module, MDLMLayerNorm):
            init_ones(module.weight)
        elif isinstance(module, nn.Linear):
            if getattr(module, "_zero_init", False):
                init_zeros(module.weight)
            else:
                init_normal(module.weight, 0.02)
            if module.bias is not None:
                init_zeros(module.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.vocab_embed

    def forward(
        self,
        input_ids: torch.Tensor,
        timesteps: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> torch.Tensor | MaskedLMOutput:
        """Logits (B, L, V) where row i predicts position i (no shift)."""
        unknown = {k: v for k, v in kwargs.items() if v is not None}
        if unknown:
            raise TypeError(f"MDLM.forward got unsupported arguments {sorted(unknown)}")
        if timesteps is None:
            timesteps = torch.zeros(input_ids.shape[0], device=input_ids.device)
        logits, hidden = self.backbone(
            input_ids, timesteps, attention_mask, output_hidden_states=bool(output_hidden_states)
        )
        if return_dict:
            return MaskedLMOutput(logits=logits, hidden_states=hidden)
        return logits


class MDLMDenoiser(CheckpointDenoiser):
    """Denoiser adapter for MDLM: σ = 0 (time-free), unshifted, mask column -inf.

    MDLM's "subs" parameterisation also forbids changing decided tokens; samplers already
    never change committed positions, so the adapter only removes the mask column.
    """

    family = "mdlm"

    def _forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        logits, _ = self.model.backbone(
            tokens, torch.zeros(tokens.shape[0], device=tokens.device), attention_mask
        )
        return logits
