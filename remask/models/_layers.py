"""Small building blocks shared by the clean-room model classes.

Written from the architecture descriptions (RMSNorm, rotary embeddings in the
"rotate-half" layout, grouped-query attention); no upstream modeling code is copied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput
from transformers.modeling_utils import PreTrainedModel

__all__ = [
    "CleanRoomLM",
    "KVCache",
    "RMSNorm",
    "apply_rope",
    "attend",
    "check_heads",
    "check_recording",
    "check_window",
    "init_normal",
    "init_ones",
    "init_weights",
    "init_zeros",
    "key_padding_mask",
    "lm_output",
    "refuse_hf_options",
    "repeat_kv",
    "rope_cos_sin",
    "run_blocks",
]

try:  # transformers >= 5: init helpers that skip tensors already loaded from a checkpoint
    from transformers import initialization as _hf_init
except ImportError:  # transformers 4.x: from_pretrained only initialises missing weights
    _hf_init = None


def init_normal(tensor: torch.Tensor, std: float) -> None:
    """Fill ``tensor`` from N(0, std²) unless transformers marked it as loaded."""
    if _hf_init is not None:
        _hf_init.normal_(tensor, mean=0.0, std=std)
    else:
        nn.init.normal_(tensor, mean=0.0, std=std)


def init_zeros(tensor: torch.Tensor) -> None:
    """Zero ``tensor`` unless transformers marked it as loaded."""
    if _hf_init is not None:
        _hf_init.zeros_(tensor)
    else:
        nn.init.zeros_(tensor)


def init_ones(tensor: torch.Tensor) -> None:
    """Fill ``tensor`` with ones unless transformers marked it as loaded."""
    if _hf_init is not None:
        _hf_init.ones_(tensor)
    else:
        nn.init.ones_(tensor)


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' ``_init_weights`` for the layer types every family uses.

    Linear and embedding weights from N(0, std²) with zero biases, RMSNorm gains to one;
    other modules are left to the caller. Loaded tensors are kept (see :func:`init_normal`).
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        init_normal(module.weight, std)
        if getattr(module, "bias", None) is not None:
            init_zeros(module.bias)
    elif isinstance(module, RMSNorm) and module.weight is not None:
        init_ones(module.weight)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension, computed in float32.

    Parameters
    ----------
    dim : int
        Size of the normalised (last) dimension.
    eps : float
        Added to the mean square before the reciprocal square root.
    affine : bool
        Whether to keep a learned per-channel ``weight`` (LLaDA's
        ``layer_norm_with_affine``; always on for Dream).

    Notes
    -----
    The statistic is taken in float32 even for bf16 activations (both LLaDA and Dream do
    this, and bf16 mean squares lose too much precision); the normalised activations are
    cast back to the input dtype before the weight is applied.
    """

    def __init__(self, dim: int, eps: float, affine: bool = True) -> None:
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D), same dtype as ``x``."""
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        out = x32.to(x.dtype)
        return out if self.weight is None else self.weight * out


def check_heads(hidden: tuple[str, int], heads: tuple[str, int], kv_heads: tuple[str, int]) -> None:
    """Raise ``ValueError`` unless the hidden size splits into whole heads and the query heads
    into whole groups per key/value head; each argument is (config field name, value)."""
    if hidden[1] % heads[1]:
        raise ValueError(f"{hidden[0]}={hidden[1]} is not divisible by {heads[0]}={heads[1]}")
    if heads[1] % kv_heads[1]:
        raise ValueError(f"{heads[0]}={heads[1]} is not a multiple of {kv_heads[0]}={kv_heads[1]}")


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary-embedding tables for given positions, in float32.

    Parameters
    ----------
    positions : (L,) or (B, L) integer or float tensor
        Absolute position of each token.
    head_dim : int
        Per-head size (even); frequencies are ``theta ** (-2i / head_dim)``.
    theta : float
        RoPE base.

    Returns
    -------
    cos, sin : (1, 1, L, head_dim) or (B, 1, L, head_dim) float32
        Broadcastable against (B, H, L, head_dim) queries and keys. The two halves of the
        last dimension repeat the same frequencies ("rotate-half" layout).
    """
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
    # Computed on the fly rather than cached in a buffer: cheap next to attention, and
    # it keeps non-persistent buffers out of transformers' meta-device loading path.
    inv_freq = 1.0 / (
        float(theta)
        ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    pos = positions.to(torch.float32)
    freqs = pos[..., None] * inv_freq  # (..., L, head_dim / 2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (..., L, head_dim)
    if emb.dim() == 2:
        emb = emb[None, None]  # (1, 1, L, head_dim)
    else:
        emb = emb[:, None]  # (B, 1, L, head_dim)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, full_precision: bool
) -> torch.Tensor:
    """Rotate queries or keys by their positions.

    Parameters
    ----------
    x : (B, H, L, Dh) float
    cos, sin : broadcastable to (B, H, L, Dh), float32
    full_precision : bool
        Rotate in float32 and cast back (LLaDA's ``rope_full_precision``); otherwise rotate
        in ``x``'s dtype with the tables cast to it (Qwen2 / Dream behaviour).

    Returns
    -------
    (B, H, L, Dh), dtype of ``x``.
    """
    if full_precision:
        x32 = x.float()
        return (x32 * cos + _rotate_half(x32) * sin).to(x.dtype)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + _rotate_half(x) * sin


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, L, Dh) -> (B, H_kv * n_rep, L, Dh); query head h uses kv head h // n_rep."""
    if n_rep == 1:
        return x
    return x.repeat_interleave(n_rep, dim=1)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Bidirectional grouped-query attention.

    Parameters
    ----------
    q : (B, H, W, Dh)
        Queries of W positions.
    k, v : (B, H_kv, K, Dh)
        Keys and values of K positions; H is a multiple of H_kv (see :func:`repeat_kv`).
    mask : bool tensor broadcastable to (B, H, W, K), or None
        True = attend; None attends everywhere. Never causal: every family here is
        bidirectional unless its mask says otherwise.
    dropout_p : float
        Attention dropout (callers pass 0.0 outside training).

    Returns
    -------
    (B, H, W, Dh), dtype of ``q``.
    """
    rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, rep), repeat_kv(v, rep)  # (B, H, K, Dh) each
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=False
    )


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Boolean SDPA mask that hides padded keys.

    Parameters
    ----------
    attention_mask : (B, L) bool or integer
        True / nonzero on real tokens.

    Returns
    -------
    (B, 1, 1, L) bool, True where attention is allowed.

    Notes
    -----
    Only keys are masked: rows at padding positions then still attend to the real tokens
    and stay finite (their values are meaningless, but NaNs there would leak into later
    layers through 0 * NaN). A row with no real token at all is left unmasked for the
    same reason.
    """
    keep = attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
    keep = keep | ~keep.any(dim=-1, keepdim=True)
    return keep[:, None, None, :]


class KVCache:
    """Per-layer keys and values of one canvas, for windowed forward passes.

    Fast-dLLM-style block decoding (arXiv 2505.22618) runs one full forward pass, keeps every
    layer's keys and values, and then recomputes only a window of query positions against
    those cached keys and values. The clean-room model classes fill a ``KVCache`` during a
    full pass (an empty cache records) and read it during a windowed pass (a filled cache is
    spliced: the window's fresh keys and values overwrite its slice in place, as
    Fast-dLLM's ``replace_position`` does, so no (B, H, L, Dh) copy is made per layer).

    Attributes
    ----------
    keys, values : list of (B, H_kv, L, Dh) tensors
        One per layer, after RoPE and before grouped-query head repetition, in the model's
        dtype. Empty until a full pass has recorded them.
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def length(self) -> int:
        """Canvas length L the cache covers (0 while empty)."""
        return int(self.keys[0].shape[2]) if self.keys else 0

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Record or splice one layer's keys and values; return what the queries attend to.

        Parameters
        ----------
        layer : int
            Layer index; layers are visited in order.
        k, v : (B, H_kv, W, Dh)
            Fresh keys and values of the positions ``[start, start + W)``.
        start : int
            First canvas position of the window (0 for a full pass).

        Returns
        -------
        keys, values : (B, H_kv, L, Dh)
            During a full pass (the layer is not cached yet): ``k`` and ``v`` themselves,
            which are kept. During a windowed pass: the cached tensors with the window's
            slice overwritten by ``k`` and ``v``.
        """
        if layer == len(self.keys):
            if start != 0:
                raise ValueError(
                    f"layer {layer} is not cached yet, so the pass must start at position 0, "
                    f"got start={start}; run a full pass first"
                )
            self.keys.append(k)
            self.values.append(v)
            return k, v
        if layer > len(self.keys):
            raise ValueError(f"layer {layer} visited before layer {len(self.keys)} was cached")
        keys, values = self.keys[layer], self.values[layer]
        stop = start + k.shape[2]
        if keys.shape[0] != k.shape[0] or stop > keys.shape[2] or start < 0:
            raise ValueError(
                f"window [{start}, {stop}) of a batch of {k.shape[0]} does not fit the cache "
                f"(batch {keys.shape[0]}, length {keys.shape[2]})"
            )
        keys[:, :, start:stop] = k
        values[:, :, start:stop] = v
        return keys, values


def check_window(
    input_ids: torch.Tensor, start: int, stop: int, cache: KVCache, n_layers: int
) -> None:
    """Raise ``ValueError`` unless ``[start, stop)`` is a window of a canvas ``cache`` covers."""
    length = input_ids.shape[1]
    for name, value in (("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if not 0 <= start < stop <= length:
        raise ValueError(f"window [{start}, {stop}) is not inside a canvas of length {length}")
    if len(cache) != n_layers:
        raise ValueError(
            f"the KVCache holds {len(cache)} layers, the model has {n_layers}: fill it with a "
            "full forward pass first"
        )
    if cache.length != length or cache.keys[0].shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"the KVCache covers a batch of {cache.keys[0].shape[0]} canvases of length "
            f"{cache.length}, got input_ids of shape {tuple(input_ids.shape)}"
        )


class CleanRoomLM(PreTrainedModel):
    """What remask's model classes share on transformers' side.

    The trunk lives under ``model.`` (the checkpoints' parameter names), attention runs
    through SDPA, and ``from_pretrained`` initialises any weight the checkpoint lacks with
    :func:`init_weights` at the std named by the config field :attr:`init_std_field`.
    Subclasses set ``config_class`` and ``_no_split_modules`` and build their layers.
    """

    base_model_prefix = "model"
    _supports_sdpa = True
    #: Config field holding the std of the normal initialisation (default 0.02).
    init_std_field = "initializer_range"

    def _init_std(self) -> float:
        return float(getattr(self.config, self.init_std_field, 0.02))

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self._init_std())


def check_recording(cache: KVCache | None) -> None:
    """Raise ``ValueError`` unless ``cache`` is None or empty (a full pass records into it)."""
    if cache is not None and len(cache):
        raise ValueError(
            f"forward records into an empty KVCache, got one with {len(cache)} layers; "
            "use forward_window to read a filled cache"
        )


def run_blocks(
    blocks: Iterable[nn.Module],
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor | None,
    cache: KVCache | None,
    start: int,
    hidden: list[torch.Tensor] | None,
) -> torch.Tensor:
    """Apply the blocks in order to ``x`` (B, W, D), the positions ``[start, start + W)``.

    Every block is called as ``block(x, cos, sin, mask, cache, layer, start)`` (the
    signature of LLaDA's and Dream's layers); the input of every block is appended to
    ``hidden`` when it is a list. Returns the last block's output, (B, W, D).
    """
    for layer, block in enumerate(blocks):
        if hidden is not None:
            hidden.append(x)
        x = block(x, cos, sin, mask, cache, layer, start)
    return x


def refuse_hf_options(owner: str, use_cache: object, kwargs: dict[str, Any]) -> None:
    """Refuse the transformers ``forward`` options a clean-room KV-cache model does not have.

    ``use_cache`` must be falsy (the block-decoding cache is a :class:`KVCache` passed to
    the trunk), and any other keyword given a value is a ``TypeError`` naming it.
    """
    if use_cache:
        raise ValueError(
            f"{owner} has no transformers-style use_cache; pass use_cache=False. Block-"
            "decoding KV caches: remask.models.cache.Cached (or "
            f"{owner}.model.forward(..., cache=KVCache()) and .forward_window)"
        )
    unknown = {k: v for k, v in kwargs.items() if v is not None}
    if unknown:
        raise TypeError(f"{owner}.forward got unsupported arguments {sorted(unknown)}")


def lm_output(
    logits: torch.Tensor, hidden: tuple[torch.Tensor, ...] | None, return_dict: bool | None
) -> MaskedLMOutput | tuple[torch.Tensor, ...]:
    """transformers' return convention: a ``MaskedLMOutput``, or a tuple when
    ``return_dict is False`` (``(logits,)``, plus ``hidden`` when it was asked for)."""
    if return_dict is False:
        return (logits,) if hidden is None else (logits, hidden)
    return MaskedLMOutput(logits=logits, hidden_states=hidden)
