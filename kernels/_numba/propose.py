"""Numba (CPU) backend of :func:`remask.kernels.propose`.

Layout: ``prange`` over rows; each row is streamed once in tiles of ``SAMPLE_TILE`` elements
that are widened to float32 into a per-row scratch tile (16 KB, stays in L1), on which three
short vectorizable loops run: tile max, exp/sum (online softmax, row state merged in
float64), and, when sampling at T != 1, the tempered tile mass. Sampling re-reads one tile
(see :mod:`remask.kernels.propose` for the two-level rule).

Numerics that differ from the torch reference (within the tested tolerances):

* ``exp`` in the streaming loop is a range-reduced polynomial (the pip llvmlite has no SVML,
  so ``np.exp`` would be a scalar libm call, ~4x slower, measured when the kernel was
  written); relative error ~2e-7, and ``exp(d)`` is flushed to 0 below ``d ≈ -87.3`` (probabilities < 1e-38);
* the streaming loops are compiled with fast-math flags *without* ``ninf`` (−inf logits are
  legal) and with ``nnan``: NaN is detected on the raw bits instead, which fast-math cannot
  fold away;
* the chosen tile of a sampled row is recomputed in float64 with libm ``exp``, exactly as in
  the reference, so the Philox draw maps to the same token except at ~1-ulp near-ties.

Inputs are passed as raw bits (float32 as uint32, bf16/fp16 as uint16, zero-copy views);
float64 logits are rounded to a float32 copy first.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numba
import numpy as np
import torch
from numba import njit, prange

from remask.kernels._philox import (
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
    STREAM_PROPOSE,
)
from remask.kernels.propose import SAMPLE_TILE

__all__ = ["SERIAL_ELEMENTS", "philox4x32", "propose_rows", "serial_below", "unavailable_reason"]

#: Calls that compute fewer logits than this run on the calling thread alone: waking the
#: thread pool costs more than the work (tens of microseconds idle, and milliseconds on a
#: loaded machine, where the OpenMP barrier waits for a descheduled worker). This is the
#: per-step fixed cost of small batches (one row of 32 masks at V = 2048 is 65k logits).
SERIAL_ELEMENTS = 1 << 18

# Fast-math without `ninf`: -inf logits must compare and propagate correctly.
_FAST = {"nnan", "nsz", "arcp", "contract", "reassoc"}

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
_SH21 = np.uint64(21)
_SH11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0

# exp(d) = 2**k * p(r), k = round(d / ln 2), r = d - k ln 2 in [-ln2/2, ln2/2] (Cody-Waite
# split of ln 2 so that r is exact); p = degree-6 Taylor polynomial, truncation error
# r**7/7! < 2.2e-8 relative on that interval.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # few mantissa bits: k * _LN2_HI is exact for |k| < 2**9
_LN2_LO = np.float32(-2.12194440e-4)
_C2 = np.float32(1.0 / 2)
_C3 = np.float32(1.0 / 6)
_C4 = np.float32(1.0 / 24)
_C5 = np.float32(1.0 / 120)
_C6 = np.float32(1.0 / 720)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_D_MIN = np.float32(-88.0)  # below this exp underflows float32; clamping also tames -inf
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
def _philox_array(c0, c1, c2, c3, k0, k1, out):  # pragma: no cover - compiled
    for i in range(c0.shape[0]):
        w0, w1, w2, w3 = _philox(c0[i], c1[i], c2[i], c3[i], k0, k1)
        out[i, 0] = w0
        out[i, 1] = w1
        out[i, 2] = w2
        out[i, 3] = w3


def philox4x32(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of (n, 4) uint32-valued counters with key (k0, k1); returns (n, 4) uint64."""
    c = np.ascontiguousarray(counters, dtype=np.uint64)
    out = np.empty((c.shape[0], 4), dtype=np.uint64)
    _philox_array(
        c[:, 0].copy(),
        c[:, 1].copy(),
        c[:, 2].copy(),
        c[:, 3].copy(),
        np.uint64(key[0]),
        np.uint64(key[1]),
        out,
    )
    return out


@njit(cache=True, inline="always", fastmath=_FAST)
def _exp_neg(d):  # pragma: no cover - compiled
    """exp(d) for float32 d <= 0 already clamped to >= _D_MIN; 0 below ~-87.3."""
    kf = np.floor(d * _LOG2E + _HALF)
    r = d - kf * _LN2_HI - kf * _LN2_LO
    p = _ONE + r * (_ONE + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
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


@njit(cache=True)
def _tile_second_key(ubuf, n, skip):  # pragma: no cover - compiled
    """Largest key of the tile excluding position `skip` (duplicates of the max count)."""
    kmax = np.int32(-2147483648)
    for k in range(n):
        i = np.int32(ubuf[k])
        key = i ^ ((i >> np.int32(31)) & np.int32(0x7FFFFFFF))
        key = key if k != skip else np.int32(-2147483648)
        kmax = max(kmax, key)
    return kmax


@njit(cache=True, fastmath=_FAST)
def _tile_exp_sums(fbuf, n, ref):  # pragma: no cover - compiled
    """Σ exp(x - ref) and Σ exp(x - ref)(x - ref) over the tile (float32 lanes, float64 result)."""
    s = np.float32(0.0)
    t = np.float32(0.0)
    for k in range(n):
        d = fbuf[k] - ref
        d = max(_D_MIN, d)
        e = _exp_neg(d)
        s += e
        t += e * d
    return np.float64(s), np.float64(t)


@njit(cache=True, fastmath=_FAST)
def _tile_exp_sums_tempered(fbuf, n, ref, inv_t):  # pragma: no cover - compiled
    """_tile_exp_sums plus the tempered mass Σ exp((x - ref) / T), in the same sweep."""
    s = np.float32(0.0)
    t = np.float32(0.0)
    w = np.float32(0.0)
    for k in range(n):
        d = fbuf[k] - ref
        dt = d * inv_t
        d = max(_D_MIN, d)
        dt = max(_D_MIN, dt)
        e = _exp_neg(d)
        s += e
        t += e * d
        w += _exp_neg(dt)
    return np.float64(s), np.float64(t), np.float64(w)


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


@njit(cache=True)
def _sample_in_tile(fbuf, n, m, temperature, u2, wbuf, cbuf):  # pragma: no cover - compiled
    """Choose an element of the tile in float64, exactly as the torch reference does."""
    acc = 0.0
    for k in range(n):
        w = math.exp((np.float64(fbuf[k]) - m) / temperature)
        wbuf[k] = w
        acc += w
        cbuf[k] = acc
    return _pick(cbuf, n, u2 * acc, wbuf)


# ---------------------------------------------------------------------------------------------
# Filtered proposals (top-p / top-k / stats="sampled"): two more passes over the row plus a
# selection on the surviving candidates; no sort of the vocabulary.

_ONE_BITS = np.uint32(0x3F800000)  # float32 bits of 1.0 = e of the row maximum


@njit(cache=True, fastmath=_FAST)
def _tile_exp_store(fbuf, n, ref, inv_t, ebuf, lo):  # pragma: no cover - compiled
    """ebuf[lo + k] = exp((x_k - ref) / T_f) for the tile (float32); returns Σ of the tile."""
    acc = np.float32(0.0)
    for k in range(n):
        d = max(_D_MIN, (fbuf[k] - ref) * inv_t)
        e = _exp_neg(d)
        ebuf[lo + k] = e
        acc += e
    return np.float64(acc)


@njit(cache=True, fastmath=_FAST)
def _tile_kept_sums(fbuf, n, ref, inv_t, ebits, lo, thr):  # pragma: no cover - compiled
    """Σ_K e and Σ_K e·d over the tile, K = {bits(e) >= thr} (branch-free select)."""
    s = np.float32(0.0)
    t = np.float32(0.0)
    for k in range(n):
        d = max(_D_MIN, (fbuf[k] - ref) * inv_t)
        e = ebits[lo + k]
        w = np.uint32(e).view(np.float32) if e >= thr else np.float32(0.0)
        s += w
        t += w * d
    return np.float64(s), np.float64(t)


# Radix selection of the cut on the float32 bits of e (order-preserving for e >= 0): three
# levels of 11/10/10 bits; each level histograms mass and count of the current candidates,
# walks the bins from the top to the one holding the cut, and keeps only that bin's elements.
_LEVELS = ((20, 2048), (10, 1024), (0, 1024))


@njit(cache=True)
def _radix_crossing(ebits, vocab, target, by_count, cand, cand2, hist):  # pragma: no cover
    """Bits of the largest e with Σ_{e' >= e} weight(e') > target, or -1 if there is none.

    weight = e (top-p mass) or 1 (top-k count). ``cand``/``cand2`` are (V,) uint32 scratch,
    ``hist`` a (2048,) float64 scratch. Ties are grouped (a value is one bin at the end).
    """
    src = ebits
    n = vocab
    prefix = np.uint32(0)
    mask_hi = np.uint32(0)  # bits already fixed by the previous levels
    for level in range(3):
        shift = _LEVELS[level][0]
        nbins = _LEVELS[level][1]
        for b in range(nbins):
            hist[b] = 0.0
        if level == 0:
            for i in range(n):
                v = src[i]
                hist[v >> 20] += 1.0 if by_count else np.float64(np.uint32(v).view(np.float32))
        else:
            for i in range(n):
                v = src[i]
                hist[(v >> shift) & 1023] += (
                    1.0 if by_count else np.float64(np.uint32(v).view(np.float32))
                )
        acc = 0.0
        chosen = -1
        for b in range(nbins - 1, -1, -1):
            if acc + hist[b] > target:
                chosen = b
                break
            acc += hist[b]
        if chosen < 0 and level > 0:  # float64 sums in another order: take the lowest value
            for b in range(nbins):
                if hist[b] > 0.0:
                    chosen = b
                    break
        if chosen < 0:
            return np.int64(-1)  # the whole mass does not exceed the target (p ~ 1): keep all
        target -= acc
        prefix = np.uint32(prefix | np.uint32(chosen << shift))
        if level == 2:
            break
        mask_hi = np.uint32(mask_hi | np.uint32((nbins - 1) << shift))
        # Keep the chosen bin's elements (branch-free compaction).
        out = cand if level == 0 else cand2
        c = 0
        for i in range(n):
            v = src[i]
            out[c] = v
            c += 1 if (v & mask_hi) == prefix else 0
        src = out
        n = c
    return np.int64(prefix)


@njit(cache=True)
def _kept_threshold(
    ebuf, vocab, total, top_p, top_k, strict, cand, cand2, hist
):  # pragma: no cover
    """Bits threshold thr of the kept set K = {bits(e) >= thr} (see remask.kernels.propose)."""
    ebits = ebuf.view(np.uint32)
    thr = np.int64(0)
    if top_p < 1.0:
        w = _radix_crossing(ebits, vocab, top_p * total, False, cand, cand2, hist)
        if w >= 0:
            thr = w + 1 if strict else w  # strict: only strictly above the crossing value
    if top_k > 0:
        w = _radix_crossing(ebits, vocab, np.float64(top_k - 1), True, cand, cand2, hist)
        thr = max(thr, w)
    return np.uint32(min(thr, np.int64(_ONE_BITS)))  # the top-1 (e = 1) is always kept


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
    strict,
    sampling,
    ebuf,
    cand,
    cand2,
    hist,
    masses,
):  # pragma: no cover - compiled
    """Second and third passes of a filtered row. Returns (S_K, T_K, thr); fills masses."""
    vocab = src.shape[1]
    n_tiles = masses.shape[0]
    fbuf = ubuf.view(np.float32)
    ref = np.float32(m)
    total = 0.0
    for j in range(n_tiles):
        lo = j * SAMPLE_TILE
        n = min(SAMPLE_TILE, vocab - lo)
        _widen_row(src[r], lo, n, kind, table_bits, ubuf)  # max and status are known
        total += _tile_exp_store(fbuf, n, ref, inv_t, ebuf, lo)
    thr = np.uint32(0)
    if top_p < 1.0 or top_k > 0:
        thr = _kept_threshold(ebuf, vocab, total, top_p, top_k, strict, cand, cand2, hist)
    ebits = ebuf.view(np.uint32)
    sk = 0.0
    tk = 0.0
    for j in range(n_tiles):
        lo = j * SAMPLE_TILE
        n = min(SAMPLE_TILE, vocab - lo)
        _widen_row(src[r], lo, n, kind, table_bits, ubuf)
        ts, tt = _tile_kept_sums(fbuf, n, ref, inv_t, ebits, lo, thr)
        sk += ts
        tk += tt
        masses[j] = ts
    return sk, tk, thr


@njit(cache=True, fastmath=_FAST)
def _kept_weight(x, m, inv_t, thr):  # pragma: no cover - compiled
    """e of logit x as the filter computes it (float32), or 0 when it is outside K."""
    e = _exp_neg(max(_D_MIN, (np.float32(x) - np.float32(m)) * inv_t))
    return np.float64(e) if np.float32(e).view(np.uint32) >= thr else 0.0


@njit(cache=True)
def _sample_in_kept_tile(
    fbuf, n, m, temperature, u2, wbuf, cbuf, ebits, lo, thr
):  # pragma: no cover
    """_sample_in_tile with the weights outside K set to 0."""
    acc = 0.0
    for k in range(n):
        w = math.exp((np.float64(fbuf[k]) - m) / temperature) if ebits[lo + k] >= thr else 0.0
        wbuf[k] = w
        acc += w
        cbuf[k] = acc
    return _pick(cbuf, n, u2 * acc, wbuf)


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
    filtering = top_p < 1.0 or top_k > 0
    # The filter changes the sample (T > 0) and the sampled statistics; at T = 0 with
    # untempered statistics it changes nothing (the argmax is always kept).
    second_pass = sampled or (filtering and sampling)
    inv_tf = np.float32(1.0 / temperature) if sampling else np.float32(1.0)
    inv_t = np.float32(1.0 / temperature) if sampling else np.float32(1.0)
    unit_t = temperature == 1.0
    for r in prange(n_rows):
        if has_rows and not rows[r]:
            out_tok[r] = -1
            out_prob[r] = 0.0
            out_margin[r] = 0.0
            out_ent[r] = 0.0
            out_status[r] = 0
            continue
        ubuf = np.empty(SAMPLE_TILE, dtype=np.uint32)
        fbuf = ubuf.view(np.float32)
        masses = np.zeros(n_tiles, dtype=np.float64)  # tempered tile masses (rel. to refs)
        refs = np.zeros(n_tiles, dtype=np.float64)  # running max each mass is relative to
        m = -np.inf  # running max (float64 copy of a float32 value)
        s = 0.0  # Σ exp(x - m)
        t = 0.0  # Σ exp(x - m)(x - m)
        x1 = -np.inf
        i1 = 0
        x2 = -np.inf
        has_nan = False
        for j in range(n_tiles):
            lo = j * SAMPLE_TILE
            n = min(SAMPLE_TILE, vocab - lo)
            nan_here, kmax = _load_tile(src, r, lo, n, kind, table_bits, ubuf)
            has_nan |= nan_here
            mt = _key_to_float(kmax)
            # top-1 / top-2 bookkeeping; the index search runs only when the max improves.
            if mt > x1:
                k_arg = 0
                for k in range(n):
                    if np.float64(fbuf[k]) == mt:
                        k_arg = k
                        break
                second = _key_to_float(_tile_second_key(ubuf, n, k_arg))
                x2 = max(x1, second)
                x1 = mt
                i1 = lo + k_arg
            else:
                x2 = max(x2, mt)
            m_new = max(m, mt)
            if m_new == -np.inf or has_nan:
                continue  # all -inf so far contributes nothing; a NaN row is rejected anyway
            if m_new > m and s > 0.0:
                # Online-softmax rescale, in float64 so that huge |m - m_new| cannot overflow.
                alpha = math.exp(m - m_new)
                t = alpha * (t + s * (m - m_new))
                s = alpha * s
            m = m_new
            if sampling and not unit_t and not second_pass:
                ts, tt, tw = _tile_exp_sums_tempered(fbuf, n, np.float32(m), inv_t)
            else:
                ts, tt = _tile_exp_sums(fbuf, n, np.float32(m))
                tw = ts
            s += ts
            t += tt
            if sampling:
                refs[j] = m
                masses[j] = tw
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
        out_ent[r] = math.log(s) - t / s
        out_margin[r] = (1.0 - math.exp(x2 - m)) / s
        if second_pass:
            ebuf = np.empty(vocab, dtype=np.float32)
            cand = np.empty(vocab, dtype=np.uint32)
            cand2 = np.empty(vocab, dtype=np.uint32)
            hist = np.empty(2048, dtype=np.float64)
            sk, tk, thr = _filtered_row(
                src,
                r,
                kind,
                table_bits,
                ubuf,
                m,
                inv_tf,
                top_p,
                top_k,
                strict,
                sampling,
                ebuf,
                cand,
                cand2,
                hist,
                masses,
            )
            if sampled:
                out_ent[r] = math.log(sk) - tk / sk
                out_margin[r] = (1.0 - _kept_weight(x2, m, inv_tf, thr)) / sk
            if not sampling:
                out_tok[r] = i1
                out_prob[r] = 1.0 / sk if sampled else 1.0 / s
                continue
            lo, n, u2 = _draw_tile(keys[r], masses, vocab)
            _load_tile(src, r, lo, n, kind, table_bits, ubuf)
            wbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
            cbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
            k = _sample_in_kept_tile(
                fbuf, n, m, temperature, u2, wbuf, cbuf, ebuf.view(np.uint32), lo, thr
            )
            out_tok[r] = lo + k
            xk = np.float64(fbuf[k]) - m
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
        _load_tile(src, r, lo, n, kind, table_bits, ubuf)
        wbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
        cbuf = np.empty(SAMPLE_TILE, dtype=np.float64)
        k = _sample_in_tile(fbuf, n, m, temperature, u2, wbuf, cbuf)
        out_tok[r] = lo + k
        out_prob[r] = math.exp(np.float64(fbuf[k]) - m) / s


@contextlib.contextmanager
def serial_below(elements: int) -> Iterator[None]:
    """Run the numba kernels inside on one thread when ``elements < SERIAL_ELEMENTS``."""
    if elements >= SERIAL_ELEMENTS:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def propose_rows(
    x: torch.Tensor,
    rows: torch.Tensor | None,
    temperature: float,
    key: torch.Tensor | None,
    top_p: float = 1.0,
    top_k: int = 0,
    strict: bool = False,
    sampled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Numba implementation of :func:`remask.kernels.propose.propose_rows` (CPU tensors)."""
    if x.device.type != "cpu":
        raise ValueError(f"the numba backend needs CPU tensors, got {x.device}")
    if x.dtype == torch.float64:
        x = x.to(torch.float32)  # documented: float64 logits are rounded to float32
    x = x.contiguous()
    n_rows = x.shape[0]
    if x.dtype == torch.float32:
        src, kind = x.view(torch.int32).numpy().view(np.uint32), _KIND_F32
    elif x.dtype == torch.bfloat16:
        src, kind = x.view(torch.int16).numpy().view(np.uint16), _KIND_BF16
    else:
        src, kind = x.view(torch.int16).numpy().view(np.uint16), _KIND_F16
    has_rows = rows is not None
    rows_np = rows.numpy() if has_rows else np.ones(1, dtype=np.bool_)
    # One uint64 key per row (the int64 bits); a dummy at temperature 0, never read.
    keys = (key.numpy() if key is not None else np.zeros(max(n_rows, 1), dtype=np.int64)).view(
        np.uint64
    )
    tokens = torch.empty(n_rows, dtype=torch.int64)
    prob = torch.empty(n_rows, dtype=torch.float32)
    margin = torch.empty(n_rows, dtype=torch.float32)
    entropy = torch.empty(n_rows, dtype=torch.float32)
    status = torch.empty(n_rows, dtype=torch.int32)
    computed = int(rows_np.sum()) if has_rows else n_rows
    with serial_below(computed * src.shape[1]):
        _propose_kernel(
            src,
            kind,
            _F16_BITS,
            rows_np,
            has_rows,
            float(temperature),
            keys,
            float(top_p),
            int(top_k),
            bool(strict),
            bool(sampled),
            tokens.numpy(),
            prob.numpy(),
            margin.numpy(),
            entropy.numpy(),
            status.numpy(),
        )
    return tokens, prob, margin, entropy, status
