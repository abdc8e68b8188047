"""Shared numerics of the analysis module: units, safe entropies and divergences, model calls."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__: list[str] = []

LN2 = math.log(2.0)


def unit_scale(unit: str) -> float:
    """Multiplier from nats to ``unit`` ("nats" or "bits")."""
    if unit == "nats":
        return 1.0
    if unit == "bits":
        return 1.0 / LN2
    raise ValueError(f"unit must be 'nats' or 'bits', got {unit!r}")


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """float64 log-softmax over the last axis; columns at -inf stay -inf (probability 0)."""
    return torch.log_softmax(logits.double(), dim=-1)


def xlogy(p: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Elementwise p * log q with the convention 0 * log 0 = 0 (and 0 * anything = 0)."""
    return torch.where(p > 0, p * logq, torch.zeros_like(p))


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of distributions given as log-probs over the last axis."""
    return -xlogy(logp.exp(), logp).sum(-1, dtype=torch.float64)


def kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) in nats over the last axis; +inf when q misses mass of p."""
    p = logp.exp()
    diff = torch.where(p > 0, logp - logq, torch.zeros_like(logp))
    return (p * diff).sum(-1, dtype=torch.float64)


def tv(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Total-variation distance over the last axis."""
    return 0.5 * (logp.exp() - logq.exp()).abs().sum(-1, dtype=torch.float64)


def js(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) over the last axis, broadcasting."""
    p, q = logp.exp(), logq.exp()
    m = 0.5 * (p + q)
    logm = torch.where(m > 0, m.clamp_min(1e-300).log(), torch.full_like(m, -math.inf))
    return 0.5 * (xlogy(p, logp) - xlogy(p, logm)).sum(-1, dtype=torch.float64) + 0.5 * (
        xlogy(q, logq) - xlogy(q, logm)
    ).sum(-1, dtype=torch.float64)


def model_device(model) -> torch.device | None:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    params = getattr(model, "parameters", None)
    if callable(params):
        try:
            return next(iter(params())).device
        except (StopIteration, TypeError):
            return None
    return None


def check_model(model) -> None:
    for attr in ("mask_id", "vocab_size"):
        if not isinstance(getattr(model, attr, None), int):
            raise TypeError(
                f"model must be a Denoiser with an int {attr!r} attribute, got {type(model).__name__}"
            )
    if not callable(model):
        raise TypeError(f"model must be callable (a Denoiser), got {type(model).__name__}")


def check_oracle(oracle) -> None:
    check_model(oracle)
    if not callable(getattr(oracle, "log_prob", None)) or not isinstance(
        getattr(oracle, "seq_len", None), int
    ):
        raise TypeError(
            f"an exact oracle (with log_prob and seq_len) is required, got {type(oracle).__name__}"
        )


def as_tokens(tokens, *, name: str = "tokens") -> torch.Tensor:
    """(L,) or (B, L) int tensor/list -> (B, L) int64 tensor."""
    if not isinstance(tokens, torch.Tensor):
        try:
            tokens = torch.as_tensor(tokens, dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be a (B, L) int64 tensor, got {type(tokens).__name__}"
            ) from None
    if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
    tokens = tokens.long()
    if tokens.dim() == 1:
        tokens = tokens.unsqueeze(0)
    if tokens.dim() != 2 or tokens.shape[1] == 0:
        raise ValueError(
            f"{name} must have shape (L,) or (B, L) with L >= 1, got {tuple(tokens.shape)}"
        )
    return tokens


def as_positions(positions, L: int, *, name: str = "positions") -> list[int]:
    """A sequence of distinct ints in [0, L) (negative indices not allowed)."""
    if isinstance(positions, (int,)) and not isinstance(positions, bool):
        positions = [positions]
    if isinstance(positions, torch.Tensor):
        positions = positions.flatten().tolist()
    if not isinstance(positions, Sequence) and not hasattr(positions, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {positions!r}")
    out = list(positions)
    for p in out:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < L:
            raise ValueError(f"{name} must hold ints in [0, {L}), got {p!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must be distinct, got {out!r}")
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


@torch.no_grad()
def call_log_probs(
    model,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Run a denoiser in chunks and return float64 log-probs (B, L, V) on the tokens' device."""
    out = []
    B = tokens.shape[0]
    step = B if batch_size is None else max(1, int(batch_size))
    for s in range(0, B, step):
        am = None if attention_mask is None else attention_mask[s : s + step]
        out.append(log_probs(call_logits(model, tokens[s : s + step], am)).to(tokens.device))
    return torch.cat(out, 0)


def code_rows(x: torch.Tensor) -> torch.Tensor:
    """Group ids of the rows of a (N, k) int tensor (equal rows share an id), (N,) int64.

    Ids are non-negative and small enough to index a dense array (at most ~2**22), but
    not necessarily contiguous.
    """
    if x.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=torch.int64)
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    base = int(x.max()) + 1
    if int(x.min()) >= 0 and x.shape[1] * math.log2(max(base, 2)) < 62:
        powers = base ** torch.arange(x.shape[1] - 1, -1, -1, dtype=torch.int64)
        codes = (x * powers).sum(-1)
        if base ** x.shape[1] <= 2**22:
            return codes  # already dense ids
    else:
        codes = None
    # numpy's unique is much faster than torch's on CPU here.
    if codes is not None:
        inv = np.unique(codes.cpu().numpy(), return_inverse=True)[1]
    else:
        inv = np.unique(x.cpu().numpy(), axis=0, return_inverse=True)[1]
    return torch.from_numpy(np.asarray(inv).reshape(-1).astype(np.int64))


def compact_ids(ids: torch.Tensor) -> torch.Tensor:
    """Relabel ids to 0..K-1 (K distinct values), (N,) int64."""
    inv = np.unique(ids.cpu().numpy(), return_inverse=True)[1]
    return torch.from_numpy(np.asarray(inv).reshape(-1).astype(np.int64))


def group_sum(p: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """For each row, the sum of ``p`` over its group, (N,) float64."""
    tot = torch.zeros(int(groups.max()) + 1 if groups.numel() else 0, dtype=p.dtype).index_add_(
        0, groups, p
    )
    return tot[groups]


# Elements of one working chunk (b, c, V) of the streamed estimators: 2**21 (8 MiB in float32,
# 16 MiB in float64) whatever L and V are, so no (B, L, V) float64 tensor is ever formed.
CHUNK_ELEMENTS = 2**21


# Vocabularies up to this size are reduced in float64 (exact on oracles, negligible cost);
# larger ones (LLaDA's 126,464) in float32, whose per-position sums are then stored in float64.
FLOAT64_VOCAB = 4096


def work_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax of one bounded chunk of logits in the working dtype (:data:`FLOAT64_VOCAB`)."""
    dtype = torch.float64 if logits.shape[-1] <= FLOAT64_VOCAB else torch.float32
    x = logits.to(dtype, copy=True)
    # A -inf logit (a mask column) becomes a finite floor: probability 0 as before, and
    # p * log p = 0 * (finite) = 0, so dot products need no NaN guard.
    x.clamp_(min=-1e30 if dtype == torch.float32 else -1e300)
    return torch.log_softmax(x, dim=-1)


def position_chunks(rows: int, L: int, V: int, *, budget: int | None = None):
    """Slices of [0, L) whose (rows, c, V) working tensors hold at most ``budget``
    elements (default :data:`CHUNK_ELEMENTS`, read at call time)."""
    budget = CHUNK_ELEMENTS if budget is None else budget
    c = max(1, budget // max(1, rows * V))
    return [slice(s, min(L, s + c)) for s in range(0, L, c)]


@torch.no_grad()
def call_logits(
    model, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """One forward pass: the denoiser's logits (B, L, V) in its own dtype, on its own device.

    Nothing is upcast here: the streamed estimators read log-probs of one bounded position
    chunk at a time (:func:`position_chunks`, :func:`work_log_probs`).
    """
    device = model_device(model)
    if device is not None:
        tokens = tokens.to(device)
        attention_mask = None if attention_mask is None else attention_mask.to(device)
    logits = model(tokens, attention_mask)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (
        *tokens.shape,
        model.vocab_size,
    ):
        raise ValueError(
            f"model returned {getattr(logits, 'shape', type(logits).__name__)}, expected (B, L, V) = "
            f"{(*tokens.shape, model.vocab_size)}"
        )
    return logits


def support_kl(logp: torch.Tensor, logu: torch.Tensor, support: torch.Tensor | None):
    """KL(p restricted to supp(u), renormalised ‖ u) and the mass of p outside supp(u).

    Parameters
    ----------
    logp : (..., V) float64 log-probs
    logu : (V,) float64, -inf off the support
    support : (V,) bool or None (None: u > 0 everywhere)

    Returns
    -------
    kl, missed : (...) float64
    """
    if support is None:
        return kl(logp, logu), torch.zeros(logp.shape[:-1], dtype=logp.dtype, device=logp.device)
    on = logp.masked_fill(~support, -math.inf)
    logz = torch.logsumexp(on, -1, keepdim=True)  # log p(supp u)
    value = kl(on - logz, logu)
    # A prediction with no mass on the support has no restriction: NaN, not a silent inf.
    value = torch.where(torch.isfinite(logz[..., 0]), value, torch.full_like(value, math.nan))
    return value, (1.0 - logz[..., 0].exp()).clamp_min(0.0)


def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_v a[..., v] b[..., v] over the last axis, returned as float64, (…).

    ``sum`` reduces with cascade (pairwise) summation: at V = 126,464 in float32 its error on
    an entropy of ~12 nats is ~1e-6, where a GEMM dot (one running float32 sum) is off by
    ~1e-4, and it is 1.5x faster than accumulating in float64.
    """
    return (a * b).sum(-1).double()
