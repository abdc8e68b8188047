"""Philox 4x32-10 counter-based random numbers: the one RNG spec of the kernel layer.

Every backend (this torch file, ``remask.kernels._numba``, ``remask.kernels._triton``)
implements the same function, so a seed gives the same bits everywhere.

The spec
--------
Philox 4x32 with 10 rounds (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC 2011), multipliers ``0xD2511F53, 0xCD9E8D57`` and Weyl key increments
``0x9E3779B9, 0xBB67AE85``, known-answer tested against Random123's ``tests/kat_vectors``.

* key ``(k0, k1)`` = the 64-bit ``seed`` split into low and high 32-bit words;
* counter ``(c0, c1, c2, c3)`` = ``(index & 0xFFFFFFFF, index >> 32, offset, stream)``.

``index`` is the flat position of the output element (``propose``: the flat row index
``b * L + l`` of the logits row, whether or not that row is in ``rows``; ``uniform``: the
flat C-order index of the element). ``offset`` is a 32-bit step counter chosen by the caller
(samplers pass the step number). ``stream`` separates the consumers that share a seed and an
offset, so their numbers never collide:

* :data:`STREAM_PROPOSE` (0): the two per-row uniforms of ``propose`` at ``temperature > 0``;
* :data:`STREAM_UNIFORM` (1): :func:`uniform` (random scores, random remasking, ...).

Uniforms are built from enough bits that no noise tail is truncated (arXiv 2409.02908):
float64 uniforms use 53 random bits, ``(k + 0.5) * 2**-53`` with ``k`` the top 53 bits of
two words (word 1 high), float32 uniforms ``(k + 0.5) * 2**-24`` with ``k`` the top 24 bits of
word 1 (the same leading bits); both are strictly inside (0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_ROUNDS",
    "PHILOX_W0",
    "PHILOX_W1",
    "STREAM_PROPOSE",
    "STREAM_UNIFORM",
    "check_offset",
    "check_seed",
    "philox4x32",
    "row_uniforms",
    "split_seed",
    "uniform",
]

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10

STREAM_PROPOSE = 0
STREAM_UNIFORM = 1

_MASK32 = 0xFFFFFFFF
# 2**-53 and 2**-24: the spacing of the float64 / float32 uniform grids.
_TWO_M53 = 1.0 / 9007199254740992.0
_TWO_M24 = 1.0 / 16777216.0


def check_seed(seed: object) -> int:
    """Validate a seed (an int in [0, 2**64)) and return it as a Python int."""
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(f"seed must be an int, got {seed!r}")
    value = int(seed.__index__())  # type: ignore[attr-defined]
    if not 0 <= value < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value


def check_offset(offset: object) -> int:
    """Validate an offset (an int in [0, 2**32)) and return it as a Python int."""
    if isinstance(offset, bool) or not hasattr(offset, "__index__"):
        raise TypeError(f"offset must be an int, got {offset!r}")
    value = int(offset.__index__())  # type: ignore[attr-defined]
    if not 0 <= value < 2**32:
        raise ValueError(f"offset must be in [0, 2**32), got {value}")
    return value


def split_seed(seed: int) -> tuple[int, int]:
    """Return the Philox key ``(k0, k1)``: low and high 32-bit words of a 64-bit seed."""
    return seed & _MASK32, (seed >> 32) & _MASK32


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * m`` for 32-bit ``a`` (int64 tensor) and constant ``m``.

    The 64-bit product would overflow int64, so ``m`` is split in 16-bit halves; every partial
    product stays below 2**49.
    """
    p0 = a * (m & 0xFFFF)  # < 2**48
    p1 = a * (m >> 16)  # < 2**48
    mid = p0 + ((p1 & 0xFFFF) << 16)  # < 2**49
    lo = mid & _MASK32
    hi = (p1 >> 16) + (mid >> 32)
    return hi, lo


def philox4x32(
    c0: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    c3: torch.Tensor,
    k0: int,
    k1: int,
    rounds: int = PHILOX_ROUNDS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox 4x32 block function on int64 tensors holding unsigned 32-bit words.

    Parameters
    ----------
    c0, c1, c2, c3 : int64 tensors (broadcastable), values in [0, 2**32)
        The counter words.
    k0, k1 : int
        The key words, in [0, 2**32).
    rounds : int
        Number of rounds (10 for Philox4x32-10; other counts only for known-answer tests).

    Returns
    -------
    tuple of four int64 tensors with values in [0, 2**32)
    """
    x0, x1, x2, x3 = (torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3))
    x0, x1, x2, x3 = torch.broadcast_tensors(x0, x1, x2, x3)
    for r in range(rounds):
        # The key is bumped before every round but the first (Random123's schedule).
        rk0 = (k0 + r * PHILOX_W0) & _MASK32
        rk1 = (k1 + r * PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo(x0, PHILOX_M0)
        hi1, lo1 = _mulhilo(x2, PHILOX_M1)
        x0, x1, x2, x3 = hi1 ^ x1 ^ rk0, lo1, hi0 ^ x3 ^ rk1, lo0
    return x0, x1, x2, x3


def _to_unit64(lo_word: torch.Tensor, hi_word: torch.Tensor) -> torch.Tensor:
    """float64 uniform in (0, 1) from the top 53 bits of the 64-bit value ``hi:lo``."""
    k = (hi_word << 21) | (lo_word >> 11)  # 53 random bits, < 2**53
    return (k.to(torch.float64) + 0.5) * _TWO_M53


def _to_unit32(word: torch.Tensor) -> torch.Tensor:
    """float32 uniform in (0, 1) from the top 24 bits of one word (exact in float32)."""
    return ((word >> 8).to(torch.float32) + 0.5) * _TWO_M24


def row_uniforms(
    index: torch.Tensor, seed: int, offset: int, stream: int = STREAM_PROPOSE
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two float64 uniforms ``propose`` draws for each row.

    Parameters
    ----------
    index : int64 tensor
        Flat row indices ``b * L + l``.

    Returns
    -------
    (u1, u2) : float64 tensors shaped like ``index``
        ``u1`` from words (0, 1) chooses the tile, ``u2`` from words (2, 3) the element.
    """
    k0, k1 = split_seed(seed)
    w0, w1, w2, w3 = philox4x32(index & _MASK32, index >> 32, torch.full_like(index, offset),
                                torch.full_like(index, stream), k0, k1)
    return _to_unit64(w0, w1), _to_unit64(w2, w3)


def uniform(
    shape: int | Sequence[int] | torch.Size,
    *,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Counter-based uniforms in the open interval (0, 1), reproducible on every device.

    Element ``i`` (flat C-order index) is Philox4x32-10 with key ``seed`` and counter
    ``(i_lo, i_hi, offset, STREAM_UNIFORM)``. Because the stream word differs from the one
    :func:`remask.kernels.propose` uses, ``uniform(..., seed=s, offset=o)`` and
    ``propose(..., seed=s, offset=o)`` never share random bits; a sampler can therefore pass
    the same seed and the step number as ``offset`` to both.

    Parameters
    ----------
    shape : int or sequence of int
    seed : int
        In [0, 2**64).
    offset : int
        In [0, 2**32); e.g. the step number.
    device : torch.device or str, optional
    dtype : torch.float32 or torch.float64
        float32 uses 24 random bits per value, float64 53 bits.

    Returns
    -------
    tensor of ``shape``, ``dtype``
        Values in (0, 1), never 0 or 1.
    """
    seed = check_seed(seed)
    offset = check_offset(offset)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    size = torch.Size([shape] if isinstance(shape, int) else shape)
    if any(s < 0 for s in size):
        raise ValueError(f"shape must have non-negative sizes, got {tuple(size)}")
    index = torch.arange(size.numel(), dtype=torch.int64, device=device)  # (numel,)
    k0, k1 = split_seed(seed)
    w0, w1, _, _ = philox4x32(index & _MASK32, index >> 32, torch.full_like(index, offset),
                              torch.full_like(index, STREAM_UNIFORM), k0, k1)
    out = _to_unit64(w0, w1) if dtype == torch.float64 else _to_unit32(w1)
    return out.reshape(size)
