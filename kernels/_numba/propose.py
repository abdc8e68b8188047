"""Numba (CPU) backend of :func:`remask.kernels.propose`.

Layout: ``prange`` over rows; each row is streamed once in tiles of ``SAMPLE_TILE`` elements.
A tile is read in place (float32 bits, or bf16 bits widened by a 16-bit shift; fp16 goes
through a lookup table into a 16 KB scratch tile) by **one** vectorized loop that finds the
tile max (as an order-preserving integer key: LLVM vectorizes integer max reductions, not
float ones), checks for NaN on the same keys and sums ``e = exp(x - ref)`` and ``e·(x - ref)``
(plus the tempered mass when sampling at T != 1) relative to ``ref``, the running row max
*before* the tile. When the tile's max exceeds ``ref`` by more than ``_REBASE_MAX`` (and for
the first tile with a finite logit) the tile is swept again relative to its own max; smaller
jumps are rebased in float64, as the row sums are. bf16 tiles are swept twice instead: the
max and NaN check on 16-bit keys (half the bytes, 32 lanes per AVX-512 vector), then the sums
relative to the max so far from L1, with no key work in the exp loop (the exp bounds a bf16
row, not the read). The argmax index and the runner-up are searched (vectorized) only in
tiles that raise the max. Sampling re-reads one tile (see
:mod:`remask.kernels.propose` for the two-level rule). Filtered rows (top-p/top-k/min-p,
``stats="sampled"``) take more work after the first pass (see below and
:mod:`remask.kernels._numba.cut`): top-p and/or min-p without top-k on float32/bf16 rows of
>= 8192 logits the *gathered* way (the first pass also sums the filter's e; only the logits
that can be kept are gathered and exponentiated again), everything else two more passes
over a stored row of e. Where the stored passes give every statistic (``stats="sampled"``)
the first pass only reads the max, its index, the runner-up and the row status (no exp).
``stats="sampled"`` without a filter at T = 0 or 1 is the untempered statistics: one pass.

Numerics that differ from the torch reference (within the tested tolerances):

* ``exp`` in the streaming loops is a range-reduced polynomial (the pip llvmlite has no
  SVML, so ``np.exp`` would be a scalar libm call); relative error < 2.5e-7 for
  ``d > -10`` and < 4e-7 down to ``d = -87`` (tested), exactly 1 at ``d = 0``, and flushed to
  0 below ``d ≈ -87.3`` (probabilities < 1e-38);
* the streaming loops are compiled with fast-math flags *without* ``ninf`` (−inf logits are
  legal) and with ``nnan``: NaN is detected on the raw bits instead, which fast-math cannot
  fold away;
* the element of a sampled row's chosen tile is located on float32 weights (the fast
  ``exp``) whenever the target lies farther than a rigorous error bound from the element's
  cumulative-sum boundaries (~98% of draws); otherwise the tile is recomputed in float64
  with a vectorized polynomial ``exp`` (within 2 ulp of libm, tested) and its cumulative
  sum walked per 64-element block. Either way the Philox draw maps to the float64 walk's
  token (tested on targets placed on the boundaries), i.e. to the reference's except at
  near-ties of a few ulp;
* the sums of a tile (``s``, ``t``, the tempered masses) run in float32 vector lanes — about
  64 terms per lane with AVX-512 vectors, twice that with AVX2 — and are combined in float64
  from tile to tile. A lane that holds a dominant term (``e`` near 1) drops the terms below
  half its ulp (6e-8), so a peaked row whose long tail sits just under that loses up to
  ~64 × 6e-8 ≈ 4e-6 of ``s`` (relative): on such a row ``prob`` is 3.5e-6 low (relative)
  and ``entropy`` 3.5e-6 nats (absolute) off, tested against a bound of 1e-5. Random rows
  stay far below it (their rounding errors cancel). Summing in blocks, as ``kl`` does
  (:mod:`remask.kernels._numba.stats`), costs 10–30% in this exp-bound loop (measured on
  one tile in L1), so it is not done here.

Inputs are passed as raw bits (float32 as uint32, bf16/fp16 as uint16, zero-copy views);
float64 logits are rounded to a float32 copy first.
"""

from __future__ import annotations

import math
import types

import numpy as np
import torch
from numba import njit, prange
from numba.extending import overload

from remask.kernels._numba.cut import (
    _BELOW_FLOOR,
    _FAST,
    _MIN_VOCAB,
    _ONE_BITS,
    _SAMPLE,
    _UNDECIDED,
    _bracket_crossing,
    _gather_at_least,
    _kept_threshold,
    _sample_floor,
)
from remask.kernels._philox import (
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
    STREAM_FOLD,
    STREAM_PROPOSE,
)
from remask.kernels.propose import SAMPLE_TILE

__all__ = [
    "SERIAL_ELEMENTS",
    "min_p_bits",
    "philox4x32",
    "philox4x32_keyed",
    "position_keys",
    "propose_rows",
    "row_mask",
    "unavailable_reason",
]

#: Calls that compute fewer logits than this run the kernels' serial builds on the calling
#: thread alone (``propose``, ``token_prob``, ``kl``; ``kl`` counts both rows): waking the
#: thread pool costs more than the work (tens of microseconds idle, and milliseconds on a
#: loaded machine, where the OpenMP barrier waits for a descheduled worker). This is the
#: per-step fixed cost of small batches (one row of 32 masks at V = 2048 is 65k logits).
SERIAL_ELEMENTS = 1 << 18

_KIND_F32, _KIND_BF16, _KIND_F16 = 0, 1, 2

# fp16 bits -> float32 value for all 65536 patterns (exact, built by numpy's conversion).
_F16_BITS = (
    np.arange(65536, dtype=np.uint32)
    .astype(np.uint16)
    .view(np.float16)
    .astype(np.float32)
    .view(np.uint32)
)

_U32 = np.uint64(0xFFFFFFFF)
_M0 = np.uint64(PHILOX_M0)
_M1 = np.uint64(PHILOX_M1)
_W0 = np.uint64(PHILOX_W0)
_W1 = np.uint64(PHILOX_W1)
_SH32 = np.uint64(32)
_ZERO64 = np.uint64(0)
_STREAM_FOLD = np.uint64(STREAM_FOLD)
_SH21 = np.uint64(21)
_SH11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0

# exp(d) = 2**k * p(r), k = round(d / ln 2), r = d - k ln 2 in [-ln2/2, ln2/2] (one fused
# multiply-add with ln 2 rounded to float32, contracted under the _FAST flags every caller
# compiles with; the error k * 1.9e-9 matters only for tiny e); p = 1 + r q(r), q the degree-4
# polynomial minimising the relative error of p on [-ln2/2, ln2/2] (a linear-programming
# minimax fit: 7.5e-8 in exact arithmetic, against 1.6e-7 for the degree-6 Taylor polynomial,
# with one FMA fewer: 0.159 -> 0.142 ns per logit in an exp-and-sum loop, one thread).
# Relative error < 2.5e-7 for d in (-10, 0], < 4e-7 down to d = -87, exactly 1 at d = 0
# (tests/kernels/test_propose.py::test_fast_exp_relative_error).
_LOG2E = np.float32(1.4426950408889634)
_LN2 = np.float32(0.6931471805599453)
_ONE = np.float32(1.0)
_P1 = np.float32(1.0000001192092896)
_P2 = np.float32(0.49999043345451355)
_P3 = np.float32(0.16666916012763977)
_P4 = np.float32(0.041908156126737595)
_P5 = np.float32(0.008326794020831585)
_HALF = np.float32(0.5)
_D_MIN = np.float32(-88.0)  # below this exp underflows float32; clamping also tames -inf
# Upper clamp of the fused pass, whose tiles are exponentiated relative to the running max
# *before* their own max is known: exp(64) * SAMPLE_TILE stays far below float32 overflow.
_D_MAX = np.float32(64.0)
# A tile whose max exceeds the reference by more than this is redone relative to its own
# max: beyond it the float32 entropy term t = Σ e·d, rebased in float64, would lose more
# than ~1e-6 nats to cancellation (t and s·δ agree to float32 rounding, times δ).
_REBASE_MAX = 8.0
_I127 = np.int32(127)
_I23 = np.int32(23)


def unavailable_reason() -> str | None:
    """None: numba imported, and CPU is all it needs."""
    return None


@njit(cache=True, inline="always")
def _philox(c0, c1, c2, c3, k0, k1):  # pragma: no cover - compiled
    """Philox4x32 on uint64 scalars holding 32-bit words (same spec as _philox.philox4x32)."""
    for _ in range(PHILOX_ROUNDS):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0 = p0 >> _SH32
        lo0 = p0 & _U32
        hi1 = p1 >> _SH32
        lo1 = p1 & _U32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _U32
        k1 = (k1 + _W1) & _U32
    return c0, c1, c2, c3


@njit(cache=True)
def _philox_keyed_array(c0, c1, c2, c3, k0, k1, out):  # pragma: no cover - compiled
    for i in range(c0.shape[0]):
        w0, w1, w2, w3 = _philox(c0[i], c1[i], c2[i], c3[i], k0[i], k1[i])
        out[0, i] = w0
        out[1, i] = w1
        out[2, i] = w2
        out[3, i] = w3


def philox4x32_keyed(c0, c1, c2, c3, k0, k1) -> np.ndarray:
    """Philox4x32-10 with one key per element: six (n,) uint64 arrays of 32-bit words (the
    counter and the key words); returns (4, n) uint64, the four output words."""
    out = np.empty((4, c0.shape[0]), dtype=np.uint64)
    _philox_keyed_array(c0, c1, c2, c3, k0, k1, out)
    return out


@njit(cache=True, inline="always")
def _fold(key, data):  # pragma: no cover - compiled
    """_philox.fold of one uint64 key and one uint64 datum."""
    w0, w1, _, _ = _philox(
        data & _U32, data >> _SH32, _ZERO64, _STREAM_FOLD, key & _U32, key >> _SH32
    )
    return (w1 << _SH32) | w0


@njit(cache=True)
def _position_keys(key, real, purpose, out):  # pragma: no cover - compiled
    """out[b, l] = fold(fold(key[b], purpose), max(rank, 0)), rank = l's count of real
    positions up to l, minus 1 (the cumulative sum of _philox.position_keys)."""
    for b in range(real.shape[0]):
        kp = _fold(key[b], purpose)
        rank = -1
        for pos in range(real.shape[1]):
            rank += 1 if real[b, pos] else 0
            out[b, pos] = _fold(kp, np.uint64(max(rank, 0)))


def position_keys(key: np.ndarray, real: np.ndarray, purpose: int) -> np.ndarray:
    """:func:`remask.kernels.position_keys` in one compiled loop (same bits): ``key`` (B,)
    uint64, ``real`` (B, L) bool; returns (B, L) uint64."""
    out = np.empty(real.shape, dtype=np.uint64)
    _position_keys(key, real, np.uint64(purpose), out)
    return out


def philox4x32(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of (n, 4) uint32-valued counters with key (k0, k1); returns (n, 4) uint64."""
    c = np.ascontiguousarray(counters, dtype=np.uint64)
    n = c.shape[0]
    k0, k1 = (np.full(n, k, dtype=np.uint64) for k in key)
    return philox4x32_keyed(*(c[:, i].copy() for i in range(4)), k0, k1).T.copy()


@njit(cache=True, inline="always", fastmath=_FAST)
def _exp_neg(d):  # pragma: no cover - compiled
    """exp(d) for float32 d <= 0 already clamped to >= _D_MIN; 0 below ~-87.3."""
    kf = np.floor(d * _LOG2E + _HALF)
    r = d - kf * _LN2  # contracted to one FMA
    p = _ONE + r * (_P1 + r * (_P2 + r * (_P3 + r * (_P4 + r * _P5))))
    # 2**k through the exponent bits; k = -127 gives the bit pattern 0, i.e. exactly 0.
    scale = np.int32((np.int32(kf) + _I127) << _I23).view(np.float32)
    return p * scale


@njit(cache=True)
def _widen_row(row, lo, n, kind, table_bits, ubuf):  # pragma: no cover - compiled
    """ubuf[:n] = float32 bits of row[lo:lo+n] (row: 1-D, unit stride, so that LLVM sees
    contiguous loads); one loop per kind so each vectorizes."""
    seg = row[lo : lo + n]  # indexed by the range variable: no negative-index fix-up per load
    if kind == _KIND_F32:
        for k in range(n):
            ubuf[k] = seg[k]
    elif kind == _KIND_BF16:
        for k in range(n):
            ubuf[k] = np.uint32(seg[k]) << np.uint32(16)  # bf16 = top half of fp32
    else:
        for k in range(n):
            ubuf[k] = table_bits[seg[k]]


@njit(cache=True)
def _load_tile(src, r, lo, n, kind, table_bits, ubuf):  # pragma: no cover - compiled
    """Widen src[r, lo:lo+n] to float32 bits in ubuf[:n].

    Returns ``(has_nan, max_key)``: NaN is detected on the bits (fast-math cannot fold it
    away), and the tile maximum is found as the largest *order-preserving integer key*
    (float bits with the magnitude bits flipped for negatives), because LLVM vectorizes
    integer max reductions but not float ones built from compare+select.
    """
    _widen_row(src[r], lo, n, kind, table_bits, ubuf)
    worst = np.uint32(0)
    kmax = np.int32(-2147483648)
    for k in range(n):
        b = ubuf[k]
        a = b & np.uint32(0x7FFFFFFF)
        worst = max(worst, a)
        i = np.int32(b)
        key = i ^ ((i >> np.int32(31)) & np.int32(0x7FFFFFFF))
        kmax = max(kmax, key)
    return worst > np.uint32(0x7F800000), kmax


@njit(cache=True, inline="always")
def _key_to_float(key):  # pragma: no cover - compiled
    """Inverse of the order-preserving key map (the map is an involution)."""
    i = key ^ ((key >> np.int32(31)) & np.int32(0x7FFFFFFF))
    return np.float64(np.int32(i).view(np.float32))


# ---------------------------------------------------------------------------------------------
# Fused first pass: the tile is read once from the logits themselves (float32 bits, or bf16
# bits widened by a shift) and max, NaN check and the exp sums run in the same vectorized
# loop, relative to the running row max *before* this tile (the tile's own max is found in the
# same sweep; when it exceeds that reference by more than _REBASE_MAX the tile is redone).


def _bits(v):  # pragma: no cover - replaced by the overload below inside compiled code
    """float32 bits of one element: bf16 is the top half of a float32 (shift), fp32 as is."""
    raise NotImplementedError


@overload(_bits, inline="always")
def _bits_overload(v):
    if v.bitwidth == 16:  # bf16 only: fp16 is widened into a uint32 tile first (table)
        return lambda v: np.uint32(np.uint32(v) << np.uint32(16))
    return lambda v: np.uint32(v)


@njit(cache=True, inline="always")
def _key(b):  # pragma: no cover - compiled
    """Order-preserving int32 key of float32 bits (LLVM vectorizes int max, not float max)."""
    i = np.int32(b)
    return np.int32(i ^ np.int32(np.int32(i >> np.int32(31)) & np.int32(0x7FFFFFFF)))


# Keys of +inf and -inf: a key above the first or below the second is a NaN.
_KEY_PINF = np.int32(0x7F800000)
_KEY_NINF = np.int32(np.int32(np.uint32(0xFF800000).view(np.int32)) ^ np.int32(0x7FFFFFFF))


def _narrow(seg):  # pragma: no cover - replaced by the overload below inside compiled code
    """True for a tile of bf16 bits (16-bit elements), False for float32 bits."""
    raise NotImplementedError


@overload(_narrow, inline="always")
def _narrow_overload(seg):
    narrow = seg.dtype.bitwidth == 16
    return lambda seg: narrow


@njit(cache=True, inline="always")
def _key16(i):  # pragma: no cover - compiled
    """Order-preserving int16 key of int16 bf16 bits (_key in 16 bits; an involution)."""
    return np.int16(i ^ np.int16(np.int16(i >> np.int16(15)) & np.int16(0x7FFF)))


@njit(cache=True, inline="always")
def _key16_to_key(k16):  # pragma: no cover - compiled
    """The int32 key of the float32 whose top half has the int16 key ``k16`` (bf16 bits)."""
    return _key(np.uint32(np.uint32(np.uint16(_key16(k16))) << np.uint32(16)))


@njit(cache=True)
def _seg_max(seg, n):  # pragma: no cover - compiled
    """(max key, min key) of seg[:n] (a NaN shows as a key beyond ±inf's). On bf16 bits the
    sweep runs on 16-bit keys (the same order: bf16 is the top half of a float32), 32 lanes
    per AVX-512 vector, and the two extremes are mapped to the float32 keys at the end."""
    if _narrow(seg):
        k16max = np.int16(-32768)
        k16min = np.int16(32767)
        for k in range(n):
            key16 = _key16(np.int16(seg[k]))
            k16max = max(k16max, key16)
            k16min = min(k16min, key16)
        return _key16_to_key(k16max), _key16_to_key(k16min)
    kmax = np.int32(-2147483648)
    kmin = np.int32(2147483647)
    for k in range(n):
        key = _key(_bits(seg[k]))
        kmax = max(kmax, key)
        kmin = min(kmin, key)
    return kmax, kmin


@njit(cache=True, fastmath=_FAST)
def _seg_pass(seg, n, ref):  # pragma: no cover - compiled
    """One sweep of seg[:n]: (max key, min key, Σ e, Σ e·d) with d = x - ref clamped to
    [_D_MIN, _D_MAX] and e = exp(d) (float32 lanes, float64 results)."""
    kmax = np.int32(-2147483648)
    kmin = np.int32(2147483647)
    s = np.float32(0.0)
    t = np.float32(0.0)
    for k in range(n):
        b = _bits(seg[k])
        key = _key(b)
        kmax = max(kmax, key)
        kmin = min(kmin, key)
        d = min(_D_MAX, max(_D_MIN, b.view(np.float32) - ref))
        e = _exp_neg(d)
        s += e
        t += e * d
    return kmax, kmin, np.float64(s), np.float64(t)


@njit(cache=True, fastmath=_FAST)
def _seg_pass_tempered(seg, n, ref, inv_t):  # pragma: no cover - compiled
    """_seg_pass plus the tempered mass Σ exp((x - ref) / T), in the same sweep."""
    kmax = np.int32(-2147483648)
    kmin = np.int32(2147483647)
    s = np.float32(0.0)
    t = np.float32(0.0)
    w = np.float32(0.0)
    for k in range(n):
        b = _bits(seg[k])
        key = _key(b)
        kmax = max(kmax, key)
        kmin = min(kmin, key)
        d0 = b.view(np.float32) - ref
        d = min(_D_MAX, max(_D_MIN, d0))
        dt = min(_D_MAX, max(_D_MIN, d0 * inv_t))
        e = _exp_neg(d)
        s += e
        t += e * d
        w += _exp_neg(dt)
    return kmax, kmin, np.float64(s), np.float64(t), np.float64(w)


@njit(cache=True, fastmath=_FAST)
def _seg_sums(seg, n, ref):  # pragma: no cover - compiled
    """(Σ e, Σ e·d) over seg[:n] with d = x - ref clamped below at _D_MIN, for ``ref`` >= every
    element (d <= 0: no key, no upper clamp; the exp-floor loop plus one FMA)."""
    s = np.float32(0.0)
    t = np.float32(0.0)
    for k in range(n):
        d = max(_D_MIN, _bits(seg[k]).view(np.float32) - ref)
        e = _exp_neg(d)
        s += e
        t += e * d
    return np.float64(s), np.float64(t)


@njit(cache=True, fastmath=_FAST)
def _seg_sums_tempered(seg, n, ref, inv_t):  # pragma: no cover - compiled
    """_seg_sums plus the tempered mass Σ exp((x - ref) / T), in the same sweep."""
    s = np.float32(0.0)
    t = np.float32(0.0)
    w = np.float32(0.0)
    for k in range(n):
        d0 = _bits(seg[k]).view(np.float32) - ref
        d = max(_D_MIN, d0)
        e = _exp_neg(d)
        s += e
        t += e * d
        w += _exp_neg(max(_D_MIN, d0 * inv_t))
    return np.float64(s), np.float64(t), np.float64(w)


@njit(cache=True, fastmath=_FAST)
def _seg_first_equal(seg, n, value):  # pragma: no cover - compiled
    """First k < n with seg[k] == value as floats (so -0.0 == 0.0, as torch.argmax)."""
    first = n
    for k in range(n):
        first = min(first, k if _bits(seg[k]).view(np.float32) == value else n)
    return first


@njit(cache=True)
def _seg_second_key(seg, n, skip):  # pragma: no cover - compiled
    """Largest key of seg[:n] excluding position `skip` (duplicates of the max count)."""
    kmax = np.int32(-2147483648)
    for k in range(n):
        key = _key(_bits(seg[k]))
        kmax = max(kmax, key if k != skip else np.int32(-2147483648))
    return kmax


@njit(cache=True)
def _tile_step(seg, n, ref, tempered, inv_t):  # pragma: no cover - compiled
    """First-pass work on one tile. ``ref`` is the running row max (float32), or -inf when
    no finite logit has been seen: the tile's max is then found first.

    Returns ``(bad, mt, ref_used, s, t, w, first, second)``: ``bad`` 1 for a NaN, 2 for +inf
    (sums not computed), ``mt`` the tile max, sums relative to ``ref_used``, ``first`` the
    index of the tile max and ``second`` the largest other value (computed only when
    ``mt > ref``, i.e. when they may change the row's top-2).
    """
    if ref == -np.inf or _narrow(seg):
        kmax, kmin = _seg_max(seg, n)
        mt = _key_to_float(kmax)
        if kmax > _KEY_PINF or kmin < _KEY_NINF:
            return 1, mt, ref, 0.0, 0.0, 0.0, 0, -np.inf
        if mt == np.inf:
            return 2, mt, ref, 0.0, 0.0, 0.0, 0, -np.inf
        if mt == -np.inf:
            return 0, mt, ref, 0.0, 0.0, 0.0, 0, -np.inf
        ref_used = np.float32(max(np.float64(ref), mt))
    else:
        ref_used = ref
    if _narrow(seg):
        # bf16: the max is known (its 16-bit key sweep costs a fraction of the exp sweep and
        # leaves the tile in L1), so the sums need no key, no upper clamp and no redo.
        if tempered:
            s, t, w = _seg_sums_tempered(seg, n, ref_used, inv_t)
        else:
            s, t = _seg_sums(seg, n, ref_used)
            w = s
    else:
        # float32: one sweep from memory finds the max and sums relative to the running max
        # (two sweeps would not overlap the read with the exp).
        for _attempt in range(2):
            if tempered:
                kmax, kmin, s, t, w = _seg_pass_tempered(seg, n, ref_used, inv_t)
            else:
                kmax, kmin, s, t = _seg_pass(seg, n, ref_used)
                w = s
            if kmax > _KEY_PINF or kmin < _KEY_NINF:
                return 1, np.nan, ref, 0.0, 0.0, 0.0, 0, -np.inf
            mt = _key_to_float(kmax)
            if mt == np.inf:
                return 2, mt, ref, 0.0, 0.0, 0.0, 0, -np.inf
            delta = mt - np.float64(ref_used)
            if delta <= _REBASE_MAX and delta * inv_t <= 60.0:
                break
            ref_used = np.float32(mt)  # a jump of the max: redo relative to the tile's own max
    first = 0
    second = -np.inf
    if mt > ref or ref == -np.inf:
        first = _seg_first_equal(seg, n, np.float32(mt))
        second = _key_to_float(_seg_second_key(seg, n, first))
    return 0, mt, np.float64(ref_used), s, t, w, first, second


@njit(cache=True)
def _tile_max_step(seg, n, ref):  # pragma: no cover - compiled
    """_tile_step without the sums, for rows whose statistics all come from the filtered
    passes (``stats="sampled"``): ``(bad, mt, first, second)`` as there, from one read of the
    keys (the exp of the first pass is skipped; the filtered passes recompute e anyway)."""
    kmax, kmin = _seg_max(seg, n)
    if kmax > _KEY_PINF or kmin < _KEY_NINF:
        return 1, np.nan, 0, -np.inf
    mt = _key_to_float(kmax)
    if mt == np.inf:
        return 2, mt, 0, -np.inf
    first = 0
    second = -np.inf
    if mt > ref:
        first = _seg_first_equal(seg, n, np.float32(mt))
        second = _key_to_float(_seg_second_key(seg, n, first))
    return 0, mt, first, second


@njit(cache=True)
def _pick(cum, n, target, weights):  # pragma: no cover - compiled
    """First i < n with cum[i] > target, clamped to the last positive weight (cf. reference)."""
    last = 0
    for k in range(n):
        if weights[k] > 0.0:
            last = k
    for k in range(n):
        if cum[k] > target:
            return min(k, last)
    return last


# float64 exp for the chosen tile of a sampled row (y <= 0): 2**k * p(r), Cody-Waite split of
# ln 2, p the degree-13 Taylor polynomial (truncation < 4e-18 relative on |r| <= ln2/2), so
# within ~2 ulp of libm; vectorizable, unlike the libm call (~5 ns per element).
_LOG2E_64 = 1.4426950408889634
_LN2_HI_64 = 0.6931471803691238  # 32 significant bits: k * _LN2_HI_64 is exact
_LN2_LO_64 = 1.9082149292705877e-10
_EXP64_MIN = -708.0  # exp below this is < 3.3e-308; returned as 0 (as for -inf)
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))


@njit(cache=True, inline="always", fastmath={"nsz", "contract"})
def _exp64(y):  # pragma: no cover - compiled
    """exp(y) in float64 for y <= 0 (-inf included), 0 below _EXP64_MIN."""
    yc = max(y, _EXP64_MIN)
    kf = np.floor(yc * _LOG2E_64 + 0.5)
    r = (yc - kf * _LN2_HI_64) - kf * _LN2_LO_64
    p = _INV_FACT[13]
    p = _INV_FACT[12] + r * p
    p = _INV_FACT[11] + r * p
    p = _INV_FACT[10] + r * p
    p = _INV_FACT[9] + r * p
    p = _INV_FACT[8] + r * p
    p = _INV_FACT[7] + r * p
    p = _INV_FACT[6] + r * p
    p = _INV_FACT[5] + r * p
    p = _INV_FACT[4] + r * p
    p = _INV_FACT[3] + r * p
    p = _INV_FACT[2] + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    scale = np.int64((np.int64(kf) + np.int64(1023)) << np.int64(52)).view(np.float64)
    return p * scale if y >= _EXP64_MIN else 0.0


_PICK_BLOCK = 64


@njit(cache=True, fastmath={"nsz", "contract", "reassoc", "arcp"})
def _pick_blocked(wbuf, n, u):  # pragma: no cover - compiled
    """First i < n whose running sum of wbuf exceeds u * Σ wbuf, clamped to the last
    positive weight: sums of 64-element blocks (vectorized) locate the block, a sequential
    walk finds the element. Same rule as the reference's cumsum up to float64 rounding."""
    n_blocks = (n + _PICK_BLOCK - 1) // _PICK_BLOCK
    bsum = np.empty(n_blocks, dtype=np.float64)
    last = 0
    for k in range(n):
        last = max(last, k if wbuf[k] > 0.0 else 0)
    total = 0.0
    for b in range(n_blocks):
        lo = b * _PICK_BLOCK
        hi = min(n, lo + _PICK_BLOCK)
        acc = 0.0
        for k in range(lo, hi):
            acc += wbuf[k]
        bsum[b] = acc
        total += acc
    target = u * total
    acc = 0.0
    for b in range(n_blocks):
        if acc + bsum[b] > target or b == n_blocks - 1:
            lo = b * _PICK_BLOCK
            for k in range(lo, min(n, lo + _PICK_BLOCK)):
                acc += wbuf[k]
                if acc > target:
                    return min(k, last)
            return last
        acc += bsum[b]
    return last


@njit(cache=True, fastmath={"nsz", "contract"})
def _tile_weights64(seg, n, m, temperature, wbuf):  # pragma: no cover - compiled
    """wbuf[k] = exp((x_k - m) / T) in float64 (the reference's weights); ``seg`` holds the
    tile's float32 bits, or bf16 bits (widened by the shift)."""
    for k in range(n):
        wbuf[k] = _exp64((np.float64(_bits(seg[k]).view(np.float32)) - m) / temperature)


# The pick inside the chosen tile, fast path. The reference's float64 weights cost ~10 us per
# 4096-element tile (a degree-13 polynomial on 8 lanes) -- at (4, 128, 8192) that is most of a
# T = 1 step. Float32 weights (the first pass's exp, 16 lanes) locate the element instead, with
# a rigorous bound E on |float32 cumulative sums - float64 ones|; the element stands when the
# target lies more than 2E inside its cumulative interval (then the float64 walk picks the same
# element), else the float64 path runs (a few % of draws). Per element:
#   d32 = fl(fl(x - m) * fl(1/T)) = d (1 + eta), |eta| <= 3 * 2**-24 -> exp error |d| * 1.8e-7;
#   the polynomial exp: relative error < 4e-7 for d >= -87 (tested; 5e-7 is used here);
#   below d = -80 (weights < 1.9e-35) the float32 weight may be flushed: an absolute term;
# plus float64 rounding of both walks' sums (n * 2**-53 of the total each).
_W32_REL = 6e-7
_W32_PER_D = 2.5e-7
_W32_ABS = 4e-35
_W32_SUM = 1e-11


@njit(cache=True, fastmath={"nsz", "contract", "arcp"})
def _tile_weights32(seg, n, m32, inv_t, w32, a32):  # pragma: no cover - compiled
    """w32[k] = float32 exp((x_k - m) / T), a32[k] = w32[k] * |d_k| (no reassociation: d must
    be computed in the order the error bound assumes)."""
    for k in range(n):
        d = max(_D_MIN, (_bits(seg[k]).view(np.float32) - m32) * inv_t)
        e = _exp_neg(d)
        w32[k] = e
        a32[k] = -(e * d)


@njit(cache=True, fastmath={"nsz", "contract", "reassoc", "arcp"})
def _pick32(w32, a32, n, u):  # pragma: no cover - compiled
    """The element the float64 walk of ``_pick_blocked`` would pick, found on float32 weights;
    -1 when the target lies within the error bound of an element boundary (or the tile has no
    mass), for the caller to walk in float64."""
    n_blocks = (n + _PICK_BLOCK - 1) // _PICK_BLOCK
    bsum = np.empty(n_blocks, dtype=np.float64)
    total = 0.0
    err = 0.0
    for b in range(n_blocks):
        lo = b * _PICK_BLOCK
        acc = 0.0
        bound = 0.0
        if lo + _PICK_BLOCK <= n:  # a full block: a constant trip count, which LLVM vectorizes
            wseg = w32[lo : lo + _PICK_BLOCK]
            aseg = a32[lo : lo + _PICK_BLOCK]
            for k in range(_PICK_BLOCK):
                acc += np.float64(wseg[k])
                bound += np.float64(aseg[k])
        else:
            for k in range(lo, n):
                acc += np.float64(w32[k])
                bound += np.float64(a32[k])
        bsum[b] = acc
        total += acc
        err += bound
    # E >= |C32 - C64| for every cumulative sum C, and >= |target32 - target64|.
    e = (_W32_REL * total + _W32_PER_D * err + _W32_ABS * n) * 1.01 + _W32_SUM * total
    if not total > 0.0:
        return -1
    target = u * total
    acc = 0.0
    for b in range(n_blocks):
        if acc + bsum[b] > target:
            lo = b * _PICK_BLOCK
            for k in range(lo, min(n, lo + _PICK_BLOCK)):
                before = acc
                acc += np.float64(w32[k])
                if acc > target:
                    return k if (target - before > 2.0 * e and acc - target > 2.0 * e) else -1
            return -1
        acc += bsum[b]
    return -1


@njit(cache=True)
def _sample_in_tile(seg, n, m, temperature, u2, wbuf, cbuf):  # pragma: no cover - compiled
    """Choose an element of the tile (``seg``: its float32 or bf16 bits, read in place) as the
    torch reference does (float64 weights): located on float32 weights when the bound
    allows, else walked in float64."""
    w32 = cbuf.view(np.float32)
    k = _fast_pick(seg, n, m, temperature, u2, w32[:n], w32[n : 2 * n])
    if k >= 0:
        return k
    _tile_weights64(seg, n, m, temperature, wbuf)
    return _pick_blocked(wbuf, n, u2)


@njit(cache=True)
def _fast_pick(seg, n, m, temperature, u2, w32, a32):  # pragma: no cover - compiled
    """``_pick32`` on the tile's float32 weights (computed here)."""
    _tile_weights32(seg, n, np.float32(m), np.float32(1.0 / temperature), w32, a32)
    return _pick32(w32, a32, n, u2)


# ---------------------------------------------------------------------------------------------
# Filtered proposals (top-p / top-k / stats="sampled"): no sort of the vocabulary. The stored
# passes: pass 2 stores e = exp((x - m) / T_f) to a (V,) float32 buffer and sums it; the cut
# is selected on the bits of the stored e (kernels/_numba/cut.py: block-max bound, bracket,
# radix selection); pass 3 re-reads x for d = x - m and takes e from the buffer (a compare
# and masked sums, no exp). The gathered top-p / min-p (_gathered_row) replaces both passes
# where it can decide (the README's Kernels section has the measurements).


@njit(cache=True, fastmath=_FAST)
def _tile_exp_store(seg, n, ref, inv_t, ebuf, lo):  # pragma: no cover - compiled
    """ebuf[lo + k] = exp((x_k - ref) / T_f) for the tile (float32); returns Σ of the tile.
    ``seg`` holds float32 or bf16 bits (read in place, as in the first pass)."""
    out = ebuf[lo : lo + n]  # indexed by the range variable: no negative-index fix-up
    acc = np.float32(0.0)
    for k in range(n):
        d = max(_D_MIN, (_bits(seg[k]).view(np.float32) - ref) * inv_t)
        e = _exp_neg(d)
        out[k] = e
        acc += e
    return np.float64(acc)


@njit(cache=True, fastmath=_FAST)
def _tile_kept_sums(seg, n, ref, inv_t, ebits, lo, thr):  # pragma: no cover - compiled
    """Σ_K e and Σ_K e·d over the tile, K = {bits(e) >= thr} (branch-free select)."""
    eseg = ebits[lo : lo + n]  # indexed by the range variable (vectorizes)
    s = np.float32(0.0)
    t = np.float32(0.0)
    for k in range(n):
        d = max(_D_MIN, (_bits(seg[k]).view(np.float32) - ref) * inv_t)
        e = eseg[k]
        w = np.uint32(e).view(np.float32) if e >= thr else np.float32(0.0)
        s += w
        t += w * d
    return np.float64(s), np.float64(t)


@njit(cache=True)
def _filtered_row(
    src,
    r,
    kind,
    table_bits,
    ubuf,
    m,
    inv_t,
    top_p,
    top_k,
    min_bits,
    strict,
    sampling,
    ebuf,
    cand,
    cand2,
    hist,
    masses,
    gather,
    total_in,
):  # pragma: no cover - compiled
    """Second and third passes of a filtered row. Returns (S_K, T_K, thr, stored) and fills
    masses; ``stored``: ebuf holds the row's e (else the gathered top-p / min-p decided the
    row, ``gather`` set, and ebuf holds scratch). ``total_in`` > 0: the first pass's Σ e,
    the total of the filter (the gathered top-p; also when it falls back to the stored
    passes), else 0."""
    vocab = src.shape[1]
    n_tiles = masses.shape[0]
    ref = np.float32(m)
    if gather:
        sk, tk, thr = _gathered_row(
            src[r], ref, inv_t, total_in, top_p, min_bits, strict, ebuf, cand, cand2, hist, masses
        )
        if thr >= 0:
            return sk, tk, np.uint32(thr), False
    total = 0.0
    for j in range(n_tiles):
        lo = j * SAMPLE_TILE
        n = min(SAMPLE_TILE, vocab - lo)
        if kind == _KIND_F16:  # max and status are known
            _widen_row(src[r], lo, n, kind, table_bits, ubuf)
            total += _tile_exp_store(ubuf, n, ref, inv_t, ebuf, lo)
        else:
            total += _tile_exp_store(src[r][lo : lo + n], n, ref, inv_t, ebuf, lo)
    if total_in > 0.0:
        total = total_in
    thr = np.uint32(0)
    if top_p < 1.0 or top_k > 0:
        thr = _kept_threshold(ebuf, vocab, total, top_p, top_k, strict, cand, cand2, hist)
    if min_bits > 0:  # min-p: e >= min_p, a cut known in advance (capped: the top-1 stays)
        thr = np.uint32(max(np.int64(thr), min(min_bits, np.int64(_ONE_BITS))))
    ebits = ebuf.view(np.uint32)
    sk = 0.0
    tk = 0.0
    for j in range(n_tiles):
        lo = j * SAMPLE_TILE
        n = min(SAMPLE_TILE, vocab - lo)
        if kind == _KIND_F16:
            _widen_row(src[r], lo, n, kind, table_bits, ubuf)
            ts, tt = _tile_kept_sums(ubuf, n, ref, inv_t, ebits, lo, thr)
        else:
            ts, tt = _tile_kept_sums(src[r][lo : lo + n], n, ref, inv_t, ebits, lo, thr)
        sk += ts
        tk += tt
        masses[j] = ts
    return sk, tk, thr, True


_GATHER_SHARE = 2  # the gathered top-p gives up beyond V / 2 gathered logits
# How far below the logit of e = lo the gather bound lies, relative to 1 + |d_lo|: far more
# than the fast exp's error (< 4e-7 relative) and the rounding of d = (x - m) / T.
_GATHER_SLACK = 1e-3


@njit(cache=True)
def _floor_f32(x):  # pragma: no cover - compiled
    """The largest float32 <= x (float64): the logits >= it are those >= x."""
    f = np.float32(x)
    if np.float64(f) > x:  # rounded up: one step down (away from 0 below 0)
        b = np.int64(np.uint32(f.view(np.uint32)))
        b = b - 1 if f > 0 else (b + 1 if f < 0 else np.int64(0x80000001))
        f = np.uint32(b).view(np.float32)
    return f


@njit(cache=True)
def _gathered_row(
    row, ref, inv_t, total, top_p, min_bits, strict, ebuf, cand, cand2, hist, masses
):  # pragma: no cover - compiled
    """Top-p and/or min-p (no top-k) of one float32/bf16 row without storing e (see the
    gathered top-p in remask.kernels._numba.cut). Returns (S_K, T_K, thr) and fills masses
    as the stored passes do, or thr = -1 when it cannot decide (the stored passes then run).

    ``total`` is Σ e from the first pass. A strided sample of e guesses a bracket [lo, hi)
    of the cut (min-p alone: the cut itself); one sweep of vector compares and compresses
    gathers the logits >= ``x_lo`` (every e >= lo among them) and only those are
    exponentiated; the bracket's selection and proof run on them (never below ``lo``);
    S_K, T_K and the tile masses are summed over the kept ones. Against the stored passes:
    no pass that exponentiates the whole row, no (V,) store of e and no sweep of it.
    """
    vocab = row.shape[0]
    ebits = ebuf.view(np.uint32)
    xg = cand[: vocab // _GATHER_SHARE]  # the gathered logits' bits
    bounds = np.empty(masses.shape[0] + 1, dtype=np.int64)  # where each tile's logits start
    if top_p >= 1.0:  # min-p alone: the cut e >= min_p is known, nothing to select
        thr = min(min_bits, np.int64(_ONE_BITS))
        n = _gather_above(row, ref, inv_t, thr, xg, bounds)
        if n < 0:
            return 0.0, 0.0, np.int64(-1)
        _tile_exp_store(xg, n, ref, inv_t, ebuf, 0)
        return _kept_sums(xg, ebits, bounds, ref, inv_t, thr, masses)
    target = top_p * total
    # The strided sample of e (positions as cut._sample_bracket's).
    stride = vocab // _SAMPLE
    ns = vocab // stride
    off = stride // 2
    xs = cand2[:ns]
    for j in range(ns):
        xs[j] = _bits(row[j * stride + off])
    sample = np.empty(ns, dtype=np.uint32)
    _tile_exp_store(xs, ns, ref, inv_t, sample.view(np.float32), 0)
    goal = total - target
    lo_bits, hi_bits = _sample_floor(sample, ns, np.float64(stride), goal, hist)
    n = 0
    w = _UNDECIDED
    for _attempt in range(2):
        n = _gather_above(row, ref, inv_t, lo_bits, xg, bounds)
        if n < 0:
            return 0.0, 0.0, np.int64(-1)
        _tile_exp_store(xg, n, ref, inv_t, ebuf, 0)
        # The bracket's selection on the gathered e alone (scratch: cand2, ebuf beyond them).
        w = _bracket_crossing(
            ebits[:n],
            n,
            target,
            total,
            lo_bits,
            hi_bits,
            cand2[: vocab // 2],
            ebits[n:],
            hist,
            vocab,
            lo_bits,
        )
        if w != _BELOW_FLOOR:
            break
        # The cut lies below lo: the sample held one of a peaked row's few large e, which
        # made the tail look heavy. Those above lo are all gathered now; guess again from
        # the sampled values below it alone.
        for j in range(ns):
            sample[j] = 0 if sample[j] >= lo_bits else sample[j]
        lower, hi_bits = _sample_floor(sample, ns, np.float64(stride), goal, hist)
        if lower >= lo_bits:
            return 0.0, 0.0, np.int64(-1)
        lo_bits = lower
    if w < 0:
        return 0.0, 0.0, np.int64(-1)
    thr = min(w + 1 if strict else w, np.int64(_ONE_BITS))
    if min_bits > 0:
        thr = max(thr, min(min_bits, np.int64(_ONE_BITS)))
    return _kept_sums(xg, ebits, bounds, ref, inv_t, thr, masses)


@njit(cache=True)
def _gather_above(row, ref, inv_t, lo_bits, xbits, bounds):  # pragma: no cover - compiled
    """Gathers into ``xbits`` (with tile ``bounds``, see cut._gather_at_least) the logits of
    ``row`` whose e = exp((x - ref) / T) may be >= the float32 value of ``lo_bits``: those
    >= x_lo, a bound a little below the logit of that e (far more than the fast exp's error
    and the rounding of d), so that every such logit is among them. Returns their count, or
    -1 (nothing or nearly the whole row known below the cut, or too many for ``xbits``)."""
    if lo_bits <= 0:
        return -1
    d_lo = math.log(np.float64(np.uint32(lo_bits).view(np.float32)))
    if d_lo < _D_MIN + 1.0:  # the gather would take nearly the whole row
        return -1
    x_lo = np.float64(ref) + (d_lo - _GATHER_SLACK * (1.0 + abs(d_lo))) / np.float64(inv_t)
    return _gather_at_least(row, row.shape[0], _floor_f32(x_lo), SAMPLE_TILE, xbits, bounds)


@njit(cache=True)
def _kept_sums(xg, ebits, bounds, ref, inv_t, thr, masses):  # pragma: no cover - compiled
    """(S_K, T_K, thr) over the gathered logits (bits ``xg``, e in ``ebits``, tile j's at
    ``bounds[j]:bounds[j + 1]``) with bits(e) >= thr, and each tile's kept mass in
    ``masses``."""
    sk = 0.0
    tk = 0.0
    for j in range(masses.shape[0]):
        a = bounds[j]
        b = bounds[j + 1]
        ts, tt = 0.0, 0.0
        if b > a:
            ts, tt = _tile_kept_sums(xg[a:b], b - a, ref, inv_t, ebits, a, np.uint32(thr))
        masses[j] = ts
        sk += ts
        tk += tt
    return sk, tk, thr


@njit(cache=True, fastmath=_FAST)
def _kept_weight(x, m, inv_t, thr):  # pragma: no cover - compiled
    """e of logit x as the filter computes it (float32), or 0 when it is outside K."""
    e = _exp_neg(max(_D_MIN, (np.float32(x) - np.float32(m)) * inv_t))
    return np.float64(e) if np.float32(e).view(np.uint32) >= thr else 0.0


@njit(cache=True, fastmath={"nsz"})
def _mask_outside(wbuf, n, ebits, lo, thr):  # pragma: no cover - compiled
    """wbuf[k] = 0 where bits(e[lo + k]) < thr (outside K), branch-free."""
    for k in range(n):
        wbuf[k] = wbuf[k] if ebits[lo + k] >= thr else 0.0


@njit(cache=True)
def _sample_in_kept_tile(
    seg, n, m, temperature, u2, wbuf, cbuf, ebits, lo, thr
):  # pragma: no cover
    """_sample_in_tile with the weights outside K set to 0."""
    w32 = cbuf.view(np.float32)
    _tile_weights32(seg, n, np.float32(m), np.float32(1.0 / temperature), w32[:n], w32[n : 2 * n])
    _mask_outside(w32[:n], n, ebits, lo, thr)
    _mask_outside(w32[n : 2 * n], n, ebits, lo, thr)
    k = _pick32(w32[:n], w32[n : 2 * n], n, u2)
    if k >= 0:
        return k
    _tile_weights64(seg, n, m, temperature, wbuf)
    _mask_outside(wbuf, n, ebits, lo, thr)
    return _pick_blocked(wbuf, n, u2)


@njit(cache=True)
def _draw_tile(key, masses, vocab):  # pragma: no cover - compiled
    """First level of the two-level draw: the row's Philox uniforms pick a tile by its mass.

    ``key`` is the row's 64-bit key (uint64); the counter is (0, 0, 0, STREAM_PROPOSE).
    Returns (tile start, tile width, u2 for the pick inside the tile).
    """
    zero = np.uint64(0)
    w0, w1, w2, w3 = _philox(zero, zero, zero, np.uint64(STREAM_PROPOSE), key & _U32, key >> _SH32)
    u1 = (np.float64((w1 << _SH21) | (w0 >> _SH11)) + 0.5) * _TWO_M53
    u2 = (np.float64((w3 << _SH21) | (w2 >> _SH11)) + 0.5) * _TWO_M53
    n_tiles = masses.shape[0]
    cum = np.empty(n_tiles, dtype=np.float64)
    acc = 0.0
    for j in range(n_tiles):
        acc += masses[j]
        cum[j] = acc
    j = _pick(cum, n_tiles, u1 * acc, masses)
    lo = j * SAMPLE_TILE
    return lo, min(SAMPLE_TILE, vocab - lo), u2


@njit(cache=True)
def _computed_rows(rows, has_rows, n_rows):  # pragma: no cover - compiled
    """(n,) int64: the rows a kernel computes, in order. ``prange`` splits its range into
    one equal chunk per thread, so a kernel shares out this list, not all N rows with the
    others skipped: the masked rows of a block are contiguous and would all land in one
    thread's chunk (16 rows of 126,464 bf16 logits at the end of a 512-row canvas took
    0.52 ms on two threads and 0.54 ms on one)."""
    if has_rows:
        return np.flatnonzero(rows)
    return np.arange(n_rows)


@njit(cache=True, parallel=True)
def _propose_kernel(
    src,
    kind,
    table_bits,
    rows,
    has_rows,
    temperature,
    keys,
    top_p,
    top_k,
    min_bits,
    strict,
    sampled,
    out_tok,
    out_prob,
    out_margin,
    out_ent,
    out_status,
):  # pragma: no cover
    n_rows, vocab = src.shape
    n_tiles = (vocab + SAMPLE_TILE - 1) // SAMPLE_TILE
    sampling = temperature > 0.0
    filtering = top_p < 1.0 or top_k > 0 or min_bits > 0
    if sampled and not filtering and (not sampling or temperature == 1.0):
        # Unfiltered and untempered (T_f = 1): the sampled statistics are the first pass's
        # own (every Dream step at T = 0 without a filter): the stored passes would repeat them.
        sampled = False
    # The filter changes the sample (T > 0) and the sampled statistics; at T = 0 with
    # untempered statistics it changes nothing (the argmax is always kept).
    second_pass = sampled or (filtering and sampling)
    inv_tf = np.float32(1.0 / temperature) if sampling else np.float32(1.0)
    inv_t = np.float32(1.0 / temperature) if sampling else np.float32(1.0)
    unit_t = temperature == 1.0
    # Top-p and/or min-p (no top-k) on long float32/bf16 rows go the gathered way
    # (_gathered_row); top-p's total of the filter's e (tempered) is the first pass's.
    gathered = (
        second_pass
        and kind != _KIND_F16
        and (top_p < 1.0 or min_bits > 0)
        and top_k == 0
        and vocab >= _MIN_VOCAB
    )
    # Top-p needs the total before its gather; min-p alone (a cut known in advance) does not.
    need_total = gathered and top_p < 1.0
    max_only = sampled and not need_total
    work = _computed_rows(rows, has_rows, n_rows)
    if has_rows:
        for r in range(n_rows):
            if not rows[r]:
                out_tok[r] = -1
                out_prob[r] = 0.0
                out_margin[r] = 0.0
                out_ent[r] = 0.0
                out_status[r] = 0
    for i in prange(work.shape[0]):
        r = work[i]
        ubuf = np.empty(SAMPLE_TILE, dtype=np.uint32)
        fbuf = ubuf.view(np.float32)
        masses = np.zeros(n_tiles, dtype=np.float64)  # tempered tile masses (rel. to refs)
        refs = np.zeros(n_tiles, dtype=np.float64)  # running max each mass is relative to
        m = -np.inf  # reference of the row sums s, t (float64 copy of a float32 value)
        s = 0.0  # Σ exp(x - m)
        t = 0.0  # Σ exp(x - m)(x - m)
        x1 = -np.inf  # row max so far, its index and the runner-up (duplicates count)
        i1 = 0
        x2 = -np.inf
        has_nan = False
        has_inf = False
        row = src[r]
        tempered = sampling and not unit_t and (need_total or not second_pass)
        inv_t_pass = inv_t if tempered else np.float32(1.0)
        for j in range(n_tiles):
            lo = j * SAMPLE_TILE
            n = min(SAMPLE_TILE, vocab - lo)
            ref = np.float32(x1)
            if max_only:  # every statistic comes from the filtered passes: max and status only
                ref_t, ts, tt, tw = 0.0, 0.0, 0.0, 0.0
                if kind == _KIND_F16:
                    _widen_row(row, lo, n, kind, table_bits, ubuf)
                    bad, mt, first, second = _tile_max_step(ubuf, n, ref)
                else:
                    bad, mt, first, second = _tile_max_step(row[lo : lo + n], n, ref)
            elif kind == _KIND_F16:
                _widen_row(row, lo, n, kind, table_bits, ubuf)
                bad, mt, ref_t, ts, tt, tw, first, second = _tile_step(
                    ubuf, n, ref, tempered, inv_t_pass
                )
            else:  # float32 bits or bf16 bits straight from the logits
                bad, mt, ref_t, ts, tt, tw, first, second = _tile_step(
                    row[lo : lo + n], n, ref, tempered, inv_t_pass
                )
            if bad == 1:
                has_nan = True
                break  # the row is rejected; NaN is reported before +inf
            if bad == 2:
                has_inf = True
            if has_inf or mt == -np.inf:
                continue  # nothing to add (an all -inf tile contributes 0)
            if mt > x1:  # top-1 / top-2 bookkeeping
                x2 = max(x1, second)
                x1 = mt
                i1 = lo + first
            else:
                x2 = max(x2, mt)
            if max_only:
                continue  # no sums in this pass (see _tile_max_step)
            # Merge the tile's sums (relative to ref_t) into the row's (relative to m), in
            # float64 so that huge |m - ref_t| cannot overflow.
            if ref_t > m:
                if s > 0.0:
                    alpha = math.exp(m - ref_t)
                    t = alpha * (t + s * (m - ref_t))
                    s = alpha * s
                m = ref_t
                s += ts
                t += tt
            elif ref_t == m:
                s += ts
                t += tt
            else:
                beta = math.exp(ref_t - m)
                s += beta * ts
                t += beta * (tt + ts * (ref_t - m))
            if sampling:
                refs[j] = ref_t
                masses[j] = tw
        if m != x1 and s > 0.0:  # rebase the sums to the row max
            alpha = math.exp(m - x1)
            t = alpha * (t + s * (m - x1))
            s = alpha * s
        m = x1
        if has_inf:
            m = np.inf
        status = 0
        if has_nan:
            status = 1
        elif m == np.inf:
            status = 2
        elif m == -np.inf:
            status = 3
        out_status[r] = status
        if status != 0:
            out_tok[r] = -1
            out_prob[r] = 0.0
            out_margin[r] = 0.0
            out_ent[r] = 0.0
            continue
        if not sampled:  # (sampled: s = t = 0 here; the filtered passes give the statistics)
            out_ent[r] = math.log(s) - t / s
            out_margin[r] = (1.0 - math.exp(x2 - m)) / s
        if second_pass:
            ebuf = np.empty(vocab, dtype=np.float32)
            cand = np.empty(vocab, dtype=np.uint32)
            cand2 = np.empty(vocab, dtype=np.uint32)
            hist = np.empty(4 * 2048, dtype=np.float64)
            total = 0.0  # the filter's Σ e from the first pass (gathered top-p only)
            if need_total and sampling and not unit_t:
                for j in range(n_tiles):
                    if masses[j] > 0.0:
                        total += masses[j] * math.exp((refs[j] - m) / temperature)
            elif need_total:
                total = s
            sk, tk, thr, stored = _filtered_row(
                src,
                r,
                kind,
                table_bits,
                ubuf,
                m,
                inv_tf,
                top_p,
                top_k,
                min_bits,
                strict,
                sampling,
                ebuf,
                cand,
                cand2,
                hist,
                masses,
                gathered,
                total,
            )
            if sampled:
                out_ent[r] = math.log(sk) - tk / sk
                out_margin[r] = (1.0 - _kept_weight(x2, m, inv_tf, thr)) / sk
            if not sampling:
                out_tok[r] = i1
                out_prob[r] = 1.0 / sk if sampled else 1.0 / s
                continue
            lo, n, u2 = _draw_tile(keys[r], masses, vocab)
            wbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
            cbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
            ebits = ebuf.view(np.uint32)
            # The tile's bits in place (fp16: widened through the table into ubuf first).
            if kind == _KIND_F16:
                _widen_row(row, lo, n, kind, table_bits, ubuf)
                k = _sample_in_kept_tile(ubuf, n, m, temperature, u2, wbuf, cbuf, ebits, lo, thr)
                xk = np.float64(fbuf[k]) - m
            else:
                seg = row[lo : lo + n]
                elo = lo
                if not stored:  # the tile's e, as the filter computed them
                    _tile_exp_store(seg, n, np.float32(m), inv_tf, fbuf, 0)
                    ebits = ubuf
                    elo = 0
                k = _sample_in_kept_tile(seg, n, m, temperature, u2, wbuf, cbuf, ebits, elo, thr)
                xk = np.float64(_bits(seg[k]).view(np.float32)) - m
            out_tok[r] = lo + k
            out_prob[r] = (math.exp(xk / temperature) / sk) if sampled else math.exp(xk) / s
            continue
        if not sampling:
            out_tok[r] = i1
            out_prob[r] = 1.0 / s
            continue
        # Two-level inverse-CDF draw (see remask.kernels.propose); masses to the final max.
        for j in range(n_tiles):
            if masses[j] > 0.0:
                masses[j] *= math.exp((refs[j] - m) / temperature)
        lo, n, u2 = _draw_tile(keys[r], masses, vocab)
        wbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
        cbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
        if kind == _KIND_F16:
            _widen_row(row, lo, n, kind, table_bits, ubuf)
            k = _sample_in_tile(ubuf, n, m, temperature, u2, wbuf, cbuf)
            xk = np.float64(fbuf[k])
        else:
            seg = row[lo : lo + n]
            k = _sample_in_tile(seg, n, m, temperature, u2, wbuf, cbuf)
            xk = np.float64(_bits(seg[k]).view(np.float32))
        out_tok[r] = lo + k
        out_prob[r] = math.exp(xk - m) / s


def _renamed(fn, name: str):
    """A copy of the Python function ``fn`` under ``name``. Numba's on-disk cache is keyed by
    the function's qualified name, line and signature, not by its compile flags: a serial
    build of the parallel kernel under the same name would share its cache entry, and
    whichever build compiled first would be loaded by both (measured: the parallel kernel then
    ran on one thread, 9.8 ms at one or two threads against 6.2 ms when compiled apart)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = fn.__doc__
    return copy


# The same kernel compiled without the thread pool (``prange`` runs as ``range``): the same
# results row for row, for calls too small to share out (see ``SERIAL_ELEMENTS``).
_propose_kernel_serial = njit(cache=True)(
    _renamed(_propose_kernel.py_func, "_propose_kernel_serial")
)


def row_mask(rows: torch.Tensor | None, n_rows: int) -> tuple[np.ndarray, bool, int]:
    """The kernels' ``rows`` argument: ``(mask, given, computed)`` — the flat (N,) bool mask as
    numpy (a dummy when ``rows`` is None), whether it was given, and how many rows the call
    computes (the wrappers skip the kernel at 0 and take the serial build below
    ``SERIAL_ELEMENTS``)."""
    if rows is None:
        return np.ones(1, dtype=np.bool_), False, n_rows
    mask = rows.numpy().reshape(-1)
    return mask, True, int(np.count_nonzero(mask))


def min_p_bits(min_p: float) -> int:
    """float32 bits of the smallest float32 >= min_p (0 when off): ``e >= min_p`` for a
    float32 ``e >= 0`` is ``bits(e) >= min_p_bits(min_p)``."""
    if min_p <= 0.0:
        return 0
    f = np.float32(min_p)
    if float(f) < min_p:
        f = np.nextafter(f, np.float32(np.inf))
    return int(f.view(np.uint32))


def propose_rows(
    x: torch.Tensor,
    rows: torch.Tensor | None,
    temperature: float,
    key: torch.Tensor | None,
    top_p: float = 1.0,
    top_k: int = 0,
    strict: bool = False,
    sampled: bool = False,
    min_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Numba implementation of :func:`remask.kernels.propose.propose_rows` (CPU tensors).

    Also takes any leading shape (``any_lead``): ``x`` (..., V) with ``rows`` and ``key`` of
    shape (...), outputs of shape (...); the rows are flattened by numpy, not torch. The
    outputs are numpy arrays handed to torch without a copy (``torch.from_numpy``); ``prob``,
    ``margin`` and ``entropy`` are the three slices of one (3, ...) float32 block. At B = 1
    this wrapper ran as often as the kernel and cost several times its work, so it makes as
    few torch calls as it can.
    """
    if x.device.type != "cpu":
        raise ValueError(f"the numba backend needs CPU tensors, got {x.device}")
    if x.requires_grad:  # a model called outside no_grad: the kernel reads values only
        x = x.detach()
    if x.dtype == torch.float64:
        x = x.to(torch.float32)  # documented: float64 logits are rounded to float32
    if not x.is_contiguous():
        x = x.contiguous()
    lead, vocab = x.shape[:-1], x.shape[-1]
    # The bits, viewed by numpy (numpy has float32 and float16 but no bfloat16: that one is
    # viewed as int16 by torch first).
    if x.dtype == torch.float32:
        src, kind = x.numpy().view(np.uint32), _KIND_F32
    elif x.dtype == torch.bfloat16:
        src, kind = x.view(torch.int16).numpy().view(np.uint16), _KIND_BF16
    else:
        src, kind = x.numpy().view(np.uint16), _KIND_F16
    src = src.reshape(-1, vocab)  # (N, V): a view of the contiguous array
    n_rows = src.shape[0]
    rows_np, has_rows, computed = row_mask(rows, n_rows)
    # One uint64 key per row (the int64 bits); a dummy at temperature 0, never read.
    keys = (
        key.numpy().reshape(-1) if key is not None else np.zeros(max(n_rows, 1), dtype=np.int64)
    ).view(np.uint64)
    tokens = np.empty(lead, dtype=np.int64)
    stats = np.empty((3, *lead), dtype=np.float32)  # prob, margin, entropy
    status = np.empty(lead, dtype=np.int32)
    if not computed:  # nothing to read (e.g. an early exit no row takes): the fill alone
        tokens.fill(-1)
        stats.fill(0.0)
        status.fill(0)
    else:
        # A small call runs the serial build on the calling thread: neither the thread pool
        # nor the thread-count switch is touched (their fixed cost exceeds the work at B = 1).
        small = computed * vocab < SERIAL_ELEMENTS
        flat_stats = stats.reshape(3, n_rows)
        (_propose_kernel_serial if small else _propose_kernel)(
            src,
            kind,
            _F16_BITS,
            rows_np,
            has_rows,
            float(temperature),
            keys,
            float(top_p),
            int(top_k),
            min_p_bits(min_p),
            bool(strict),
            bool(sampled),
            tokens.reshape(-1),
            flat_stats[0],
            flat_stats[1],
            flat_stats[2],
            status.reshape(-1),
        )
    prob, margin, entropy = torch.from_numpy(stats).unbind(0)  # (...) each, contiguous views
    return torch.from_numpy(tokens), prob, margin, entropy, torch.from_numpy(status)


propose_rows.any_lead = True  # see the docstring; remask.kernels.propose reads it
