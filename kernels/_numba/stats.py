"""Numba (CPU) backend of :mod:`remask.kernels.stats` (``token_prob``, ``kl``).

``prange`` over rows; each row is streamed in ``SAMPLE_TILE``-wide tiles read in place
(float32 bits, or bf16 as 16-bit integers widened by a shift, as in
:mod:`remask.kernels._numba.propose`; fp16 is widened through a table into a tile buffer).
``token_prob`` reads each row once with an online max: per tile, the tile maximum (on 16-bit
keys for bf16), a float64 rescale of the running sum when it grows, then one fast-math
float32 exp sweep of the tile (then in L1), whose sum is accumulated in float64 (so
``token_prob`` shares ``propose``'s float32-lane bound: up to ~4e-6 relative on a peaked row
with a long tail, see :mod:`remask.kernels._numba.propose`). ``kl`` reads both rows twice:
their maxima first, then the sums, in blocks of ``_KL_BLOCK`` logits combined in float64
(its value is a difference of sums of size 1, so it cannot absorb their error). The same
range-reduced polynomial ``exp`` as ``propose`` (relative error < 4e-7).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from remask.kernels._numba.propose import (
    _D_MIN,
    _F16_BITS,
    _FAST,
    _KEY_NINF,
    _KEY_PINF,
    _KIND_BF16,
    _KIND_F16,
    _KIND_F32,
    SERIAL_ELEMENTS,
    _computed_rows,
    _exp_neg,
    _key_to_float,
    _load_tile,
    _renamed,
    _seg_max,
    _widen_row,
    row_mask,
)
from remask.kernels._numba.propose import _bits as _float_bits
from remask.kernels.propose import SAMPLE_TILE

__all__ = ["kl_rows", "token_prob_rows"]


# The most negative float32: the clamp of y - max y in the KL sums.
_NEG_MAX = np.float32(-np.finfo(np.float32).max)
# Logits per call of _tile_kl_sums. Its three sums run in float32 lanes, and a lane that holds
# a dominant term (p's top token, e = 1) loses the terms below half its ulp: with 4,096
# logits a call (~256 per lane) that was up to ~1.5e-5 of each sum, and the KL, a difference
# of sums of size 1 (a / sx - log sx + log sy), inherited it whole (2.9e-5 on a KL of 2.7e-4,
# 11%). Blocks of 256 logits hold that to ~16 terms per lane (~1e-6) for ~10% more time.
_KL_BLOCK = 256


@njit(cache=True, fastmath=_FAST)
def _tile_sum(seg, n, ref):  # pragma: no cover - compiled
    """Σ exp(x - ref) over the tile (float32 lanes, float64 result); ``seg`` holds float32
    bits, or bf16 bits read in place."""
    s = np.float32(0.0)
    for k in range(n):
        s += _exp_neg(max(_D_MIN, _float_bits(seg[k]).view(np.float32) - ref))
    return np.float64(s)


@njit(cache=True, fastmath=_FAST)
def _tile_kl_sums(segx, segy, n, mx, my):  # pragma: no cover - compiled
    """Σ e_x, Σ e_y and Σ e_x ((x - mx) - (y - my)) over the tile; ``hole`` counts the
    tokens with a finite x but y = -inf (p > 0 = q: the KL is +inf). ``segx``/``segy`` hold
    float32 bits, or bf16 bits read in place (widened by a shift, as in ``propose``)."""
    sx = np.float32(0.0)
    sy = np.float32(0.0)
    a = np.float32(0.0)
    hole = 0
    for k in range(n):
        x = _float_bits(segx[k]).view(np.float32)
        y = _float_bits(segy[k]).view(np.float32)
        dx = max(_D_MIN, x - mx)
        dy = y - my
        ex = _exp_neg(dx)
        sy += _exp_neg(max(_D_MIN, dy))
        sx += ex
        # Clamping dy at -FLT_MAX keeps each term finite where y = -inf (such rows report
        # +inf anyway) or where y - my overflows; any finite y keeps its own gap.
        hole += 1 if (x > -np.inf and y == -np.inf) else 0
        a += ex * (dx - max(dy, _NEG_MAX))
    return np.float64(sx), np.float64(sy), np.float64(a), hole


@njit(cache=True)
def _tile_max(src, r, lo, n, kind, table_bits, ubuf):  # pragma: no cover - compiled
    """(has_nan, max key) of src[r, lo:lo+n]: float32 and bf16 bits read in place (bf16 on
    16-bit keys, as ``propose``'s first pass), fp16 widened through the table into ``ubuf``
    (which then holds the tile's float32 bits)."""
    if kind == _KIND_F16:
        return _load_tile(src, r, lo, n, kind, table_bits, ubuf)
    kmax, kmin = _seg_max(src[r][lo : lo + n], n)
    return kmax > _KEY_PINF or kmin < _KEY_NINF, kmax


@njit(cache=True)
def _row_max(src, r, kind, table_bits, ubuf):  # pragma: no cover - compiled
    """(max as float64, has_nan) of row r, reading it once (see _tile_max)."""
    vocab = src.shape[1]
    m = -np.inf
    nan = False
    for lo in range(0, vocab, SAMPLE_TILE):
        n = min(SAMPLE_TILE, vocab - lo)
        has_nan, kmax = _tile_max(src, r, lo, n, kind, table_bits, ubuf)
        nan |= has_nan
        m = max(m, _key_to_float(kmax))
    return m, nan


@njit(cache=True, inline="always")
def _status(m, nan):  # pragma: no cover - compiled
    if nan:
        return 1
    if m == np.inf:
        return 2
    if m == -np.inf:
        return 3
    return 0


@njit(cache=True, parallel=True)
def _token_prob_kernel(
    src, kind, table_bits, tokens, rows, has_rows, out, status
):  # pragma: no cover
    n_rows, vocab = src.shape
    out[:] = 0.0
    status[:] = 0
    work = _computed_rows(rows, has_rows, n_rows)  # shared out evenly (see there)
    for i in prange(work.shape[0]):
        r = work[i]
        ubuf = np.empty(SAMPLE_TILE, dtype=np.uint32)
        fbuf = ubuf.view(np.float32)
        row = src[r]
        m = -np.inf
        s = 0.0
        nan = False
        for lo in range(0, vocab, SAMPLE_TILE):
            n = min(SAMPLE_TILE, vocab - lo)
            # Two sweeps of the tile: the max, then the sum (the tile is then in L1).
            has_nan, kmax = _tile_max(src, r, lo, n, kind, table_bits, ubuf)
            nan |= has_nan
            m_new = max(m, _key_to_float(kmax))
            if nan or m_new == -np.inf or m_new == np.inf:
                m = m_new
                continue
            if m_new > m and s > 0.0:
                s *= math.exp(m - m_new)  # online rescale in float64
            m = m_new
            if kind == _KIND_F16:
                s += _tile_sum(ubuf, n, np.float32(m))
            else:
                s += _tile_sum(row[lo : lo + n], n, np.float32(m))
        st = _status(m, nan)
        status[r] = st
        if st != 0:
            continue
        t = tokens[r]
        _load_tile(src, r, t, 1, kind, table_bits, ubuf)
        out[r] = math.exp(np.float64(fbuf[0]) - m) / s


@njit(cache=True, parallel=True)
def _kl_kernel(sx_, kx, sy_, ky, table_bits, rows, has_rows, out, status):  # pragma: no cover
    n_rows, vocab = sx_.shape
    out[:] = 0.0
    status[:] = 0
    work = _computed_rows(rows, has_rows, n_rows)  # shared out evenly (see there)
    for i in prange(work.shape[0]):
        r = work[i]
        ux = np.empty(SAMPLE_TILE, dtype=np.uint32)
        uy = np.empty(SAMPLE_TILE, dtype=np.uint32)
        # The KL needs both maxima before the sums: one pass for them (the rows are then in
        # cache for the second), because rescaling A = Σ e_x (dx - dy) online would need the
        # running y-maximum inside each term.
        mx, nx = _row_max(sx_, r, kx, table_bits, ux)
        my, ny = _row_max(sy_, r, ky, table_bits, uy)
        st = _status(mx, nx)
        if st == 0:
            st = _status(my, ny)
        status[r] = st
        if st != 0:
            continue
        sx = 0.0
        sy = 0.0
        a = 0.0
        holes = 0
        rx = sx_[r]
        ry = sy_[r]
        fmx = np.float32(mx)
        fmy = np.float32(my)
        for lo in range(0, vocab, _KL_BLOCK):
            n = min(_KL_BLOCK, vocab - lo)
            # The second read is of bits only (the maxima and NaN are known): float32 and
            # bf16 in place, fp16 widened through the table into the tile buffer.
            if kx == _KIND_F16:
                _widen_row(rx, lo, n, kx, table_bits, ux)
            if ky == _KIND_F16:
                _widen_row(ry, lo, n, ky, table_bits, uy)
            if kx == _KIND_F16 and ky == _KIND_F16:
                tx, ty, ta, th = _tile_kl_sums(ux, uy, n, fmx, fmy)
            elif kx == _KIND_F16:
                tx, ty, ta, th = _tile_kl_sums(ux, ry[lo : lo + n], n, fmx, fmy)
            elif ky == _KIND_F16:
                tx, ty, ta, th = _tile_kl_sums(rx[lo : lo + n], uy, n, fmx, fmy)
            else:
                tx, ty, ta, th = _tile_kl_sums(rx[lo : lo + n], ry[lo : lo + n], n, fmx, fmy)
            sx += tx
            sy += ty
            a += ta
            holes += th
        out[r] = np.inf if holes > 0 else a / sx - math.log(sx) + math.log(sy)


# The same kernels compiled without the thread pool, for calls too small to share out (see
# ``SERIAL_ELEMENTS``): the same results row for row, under their own names (and so their own
# cache entries: see ``_renamed``).
_token_prob_kernel_serial = njit(cache=True)(
    _renamed(_token_prob_kernel.py_func, "_token_prob_kernel_serial")
)
_kl_kernel_serial = njit(cache=True)(_renamed(_kl_kernel.py_func, "_kl_kernel_serial"))


def _bits(x: torch.Tensor) -> tuple[np.ndarray, int]:
    """Zero-copy raw-bits view of a CPU float tensor (float64 rounded to a float32 copy)."""
    if x.device.type != "cpu":
        raise ValueError(f"the numba backend needs CPU tensors, got {x.device}")
    if x.dtype == torch.float64:
        x = x.to(torch.float32)
    x = x.contiguous()
    if x.dtype == torch.float32:
        return x.view(torch.int32).numpy().view(np.uint32), _KIND_F32
    kind = _KIND_BF16 if x.dtype == torch.bfloat16 else _KIND_F16
    return x.view(torch.int16).numpy().view(np.uint16), kind


def _outputs(n_rows: int, computed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (N,) float32 values and (N,) int32 status of a call: left for the kernel to fill
    every row, or already its fill (zeros) when the call computes no row and runs none."""
    make = np.empty if computed else np.zeros
    return make(n_rows, dtype=np.float32), make(n_rows, dtype=np.int32)


def token_prob_rows(x: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor | None):
    """Numba implementation of :func:`remask.kernels.stats.token_prob_rows`.

    As ``propose``'s wrapper: outputs allocated by numpy (handed to torch without a copy), a
    call that computes no row returns without a kernel, and a small call runs the serial
    build on the calling thread (the thread pool's wake-up and the thread-count switch cost
    more than its work).
    """
    src, kind = _bits(x)
    n_rows = src.shape[0]
    rows_np, has_rows, computed = row_mask(rows, n_rows)
    out, status = _outputs(n_rows, computed)
    if computed:
        small = computed * src.shape[1] < SERIAL_ELEMENTS
        (_token_prob_kernel_serial if small else _token_prob_kernel)(
            src, kind, _F16_BITS, tokens.numpy(), rows_np, has_rows, out, status
        )
    return torch.from_numpy(out), torch.from_numpy(status)


def kl_rows(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None):
    """Numba implementation of :func:`remask.kernels.stats.kl_rows` (the wrapper as
    :func:`token_prob_rows`'s)."""
    src_x, kx = _bits(x)
    src_y, ky = _bits(y)
    n_rows = src_x.shape[0]
    rows_np, has_rows, computed = row_mask(rows, n_rows)
    out, status = _outputs(n_rows, computed)
    if computed:
        small = 2 * computed * src_x.shape[1] < SERIAL_ELEMENTS  # two rows read per row
        (_kl_kernel_serial if small else _kl_kernel)(
            src_x, kx, src_y, ky, _F16_BITS, rows_np, has_rows, out, status
        )
    return torch.from_numpy(out), torch.from_numpy(status)
