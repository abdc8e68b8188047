"""Triton (GPU) backend of :func:`remask.kernels.propose`.

Two launches. **Pass 1** (``_stream_kernel``, programs rows x splits) reads each row once: a
row of ``V`` logits is cut into sampling tiles (``SAMPLE_TILE``, or the whole row when it is
shorter) and each program takes a run of tiles, so that a few rows still fill the GPU (as
long as they fit in one wave). A thread loads 16 bytes of logits at a time (a group); per
logit the loop computes only an exp2 relative to the group's max and two sums, then the group
folds into the thread's lane of online-softmax state (max, the block it was met in, second
largest group max, Σe, Σe·d). The lanes merge once at the end (the winning group re-read for
the first maximal index and the runner-up inside it), so the loop has no cross-thread
reduction and keeps the next two blocks' loads in flight. Sampling adds each tile's tempered
mass (float32 exps, float64 sums). **Pass 2** (``_finish_kernel``, one program per row) merges the
programs' states in float64, writes the statistics and draws: two Philox uniforms pick a tile
by its mass and an element inside it, re-reading that one tile in float64 like the reference.
Rows outside ``rows`` run zero iterations and store the documented defaults, so the launch
needs no host-side gather, and nothing is copied to the GPU per call (the temperature and
top-p travel as their float64 bits in integer arguments): no host sync.

Filtered proposals (``top_p``/``top_k``/``min_p``/``stats="sampled"``, constexpr ``FILTER``)
add, in pass 2: one pass for ``S = Σ e`` (``e = exp((x - m) / T_f)`` in float32), a bisection
on the float32 bits of the cut (31 passes over the row, the two cuts searched together; min-p
needs no search, its cut is the float32 bits of ``min_p`` rounded up), and one pass for the
kept sums and tile masses.

Tested on CPU through ``TRITON_INTERPRET=1`` (which must be set before triton is imported),
compiled ahead of time for sm_90 without a GPU, and compiled on a GPU when one exists.
"""

from __future__ import annotations

import os
import struct

import torch
import triton
import triton.language as tl

from remask.kernels._philox import (
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_W0,
    PHILOX_W1,
    STREAM_PROPOSE,
)
from remask.kernels.propose import SAMPLE_TILE

# Compiled Triton reads a module global inside a kernel only when it is a constexpr (the
# interpreter does not check this): the shared Philox constants are re-declared as such.
_M0 = tl.constexpr(PHILOX_M0)
_M1 = tl.constexpr(PHILOX_M1)
_W0 = tl.constexpr(PHILOX_W0)
_W1 = tl.constexpr(PHILOX_W1)
_STREAM_PROPOSE = tl.constexpr(STREAM_PROPOSE)

__all__ = ["philox4x32", "philox4x32_kernel", "propose_rows", "unavailable_reason"]


def unavailable_reason() -> str | None:
    """Why triton cannot launch here (None when it can)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return None
    if not torch.cuda.is_available():
        return "triton needs a CUDA device (or TRITON_INTERPRET=1)"
    return None


@triton.jit
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 values (same spec as remask.kernels._philox.philox4x32)."""
    m0 = tl.full([], _M0, tl.uint32)
    m1 = tl.full([], _M1, tl.uint32)
    w0 = tl.full([], _W0, tl.uint32)
    w1 = tl.full([], _W1, tl.uint32)
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(m0, c0)
        lo0 = m0 * c0
        hi1 = tl.umulhi(m1, c2)
        lo1 = m1 * c2
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = k0 + w0
        k1 = k1 + w1
    return c0, c1, c2, c3


@triton.jit
def philox4x32_kernel(c_ptr, out_ptr, k0, k1, N, BLOCK: tl.constexpr):
    """Philox of N counters stored as (N, 4) int64 words; writes (N, 4) int64 words."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < N
    c0 = tl.load(c_ptr + i * 4 + 0, mask=ok, other=0).to(tl.uint32)
    c1 = tl.load(c_ptr + i * 4 + 1, mask=ok, other=0).to(tl.uint32)
    c2 = tl.load(c_ptr + i * 4 + 2, mask=ok, other=0).to(tl.uint32)
    c3 = tl.load(c_ptr + i * 4 + 3, mask=ok, other=0).to(tl.uint32)
    r0, r1, r2, r3 = _philox(c0, c1, c2, c3, k0.to(tl.uint32), k1.to(tl.uint32))
    tl.store(out_ptr + i * 4 + 0, r0.to(tl.int64), mask=ok)
    tl.store(out_ptr + i * 4 + 1, r1.to(tl.int64), mask=ok)
    tl.store(out_ptr + i * 4 + 2, r2.to(tl.int64), mask=ok)
    tl.store(out_ptr + i * 4 + 3, r3.to(tl.int64), mask=ok)


@triton.jit
def _unit64(lo, hi):
    """float64 uniform in (0, 1) from the top 53 bits of hi:lo (uint32 words)."""
    k = (hi.to(tl.uint64) << 21) | (lo.to(tl.uint64) >> 11)
    return (k.to(tl.float64) + 0.5) * 1.1102230246251565e-16  # 2**-53


@triton.jit
def _filter_e(xv, m, inv_tf):
    """float32 weights e = exp((x - m) / T_f) and their int32 bits (order-preserving, e >= 0)."""
    e = tl.exp((xv - m) * inv_tf)
    return e, e.to(tl.int32, bitcast=True)


@triton.jit
def _lane_merge(x1, i1, x2, s, t):
    """Merge online-softmax states held per lane (vectors) into one row state (scalars).

    Each lane holds its max ``x1`` (the reference of its sums), the lowest index ``i1`` of
    that max (indices of different lanes differ), ``x2``, ``s = Σ exp(x - x1)`` and
    ``t = Σ exp(x - x1)(x - x1)``. Returns the same five for the union of the lanes, the
    sums in float64 relative to the union's max. ``x2`` must be the runner-up (duplicates
    count) in the lane that holds the union's first max; elsewhere any value <= ``x1`` will
    do, since every other lane's max is a candidate itself. Empty lanes have
    ``x1 = -inf, s = t = 0``.
    """
    neg_inf = float("-inf")
    m = tl.max(x1, 0)
    live = x1 > neg_inf
    shift = tl.where(live, x1.to(tl.float64) - m.to(tl.float64), 0.0)  # <= 0, finite
    scale = tl.where(live, tl.exp(shift), 0.0)
    s64 = s.to(tl.float64)
    s_all = tl.sum(s64 * scale, 0)
    t_all = tl.sum(tl.where(live, (t.to(tl.float64) + s64 * shift) * scale, 0.0), 0)
    i_all = tl.min(tl.where(x1 == m, i1, 2147483647), 0)  # lowest index of the max
    # Runner-up: every lane's own runner-up, and the max of every lane but the winner's.
    x2_all = tl.max(tl.maximum(x2, tl.where(i1 == i_all, neg_inf, x1)), 0)
    return m, i_all, x2_all, s_all, t_all


@triton.jit
def _f64(bits):
    """The float64 whose bits an integer argument carries (see ``_bits``).

    Triton passes an int that fits in 32 bits (0.0's bits, say) as int32: widen first.
    """
    return bits.to(tl.int64).to(tl.float64, bitcast=True)


_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)
_FLT_MAX = tl.constexpr(3.4028234663852886e38)


@triton.jit
def _row(x_ptr, stride_row, rows_ptr, r, HAS_ROWS: tl.constexpr):
    """Row r's first logit and whether ``rows`` asks for it (always, without ``rows``)."""
    computed = tl.full([], 1, tl.int32) != 0
    if HAS_ROWS:
        computed = tl.load(rows_ptr + r).to(tl.int32) != 0
    return x_ptr + r.to(tl.int64) * stride_row, computed


@triton.jit
def _load_block(row_ptr, start, b, last, V, offs):
    """Block ``min(b, last)`` of a program's logits: ``offs`` (R, G) from ``start + b·BLOCK``.

    Clamping to the program's last block (rather than masking past it) keeps the mask a
    compare with the row's end only, which Triton proves constant over a thread's G lanes
    when V is a multiple of 16: one 16-byte load per thread and block.
    """
    at = start + tl.minimum(b, last) * offs.numel  # int32: offsets within a row
    return tl.load(row_ptr + at + offs, mask=offs < V - at, other=float("-inf"))


@triton.jit
def _max_nan(a, b):
    """Combine of a max that propagates NaN (a group holding one has a NaN max: the NaN test)."""
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _shift2(x, ref):
    """(x - ref)·log2(e), NaN (-inf - -inf) and -inf sent to -FLT_MAX: exp2 of it is 0, and
    0 times it is 0. (One fma, x·log2(e) - ref·log2(e), would overflow for |x| > 2.3e38.)"""
    return tl.maximum((x - ref) * _LOG2E, -_FLT_MAX)


# Triton turns an integer argument equal to 1 into a compile-time constant (a Python int with
# no `.to`): these can be 1, so they are never specialised. The row keys are read from memory.
@triton.jit(do_not_specialize=["tiles_per_split", "temp_bits"])
def _stream_kernel(
    x_ptr,
    stride_row,
    V,
    tiles_per_split,
    rows_ptr,
    temp_bits,
    part_ptr,
    mass_ptr,
    HAS_ROWS: tl.constexpr,
    SAMPLING: tl.constexpr,
    UNIT_T: tl.constexpr,
    BLOCK: tl.constexpr,
    G: tl.constexpr,
    SPAN: tl.constexpr,
    NT: tl.constexpr,
):
    """Pass 1: program (r, c) reads tiles ``[c·tps, (c+1)·tps)`` of row r once.

    A tile is ``SPAN`` logits (the sampling tile; a power of two covering the row when it is
    shorter), read as blocks of ``BLOCK`` = R groups of G (the G logits one thread loads in 16
    bytes). Per logit the loop does only what the sums need: one exp2 relative to its group's
    max, two adds, and the group's max (NaN-propagating: the NaN test), all inside one
    thread's registers. Each group then updates its lane's online-softmax state (max, the
    block it was met in, the second largest group max, Σe, Σe·d): a per-lane state, so the
    loop has no cross-thread reduction, and the next two blocks' loads are in flight
    meanwhile. Sampling also sums each group's tempered weights into the lane's mass of the
    current tile and, at each tile's end, sums the lanes relative to the program's running
    max (two reductions per tile). Writes the program's merged state to ``part`` (6, n, S)
    float64 and, sampling, each tile's mass and the max it is relative to to ``mass``
    (2, n, NT) float64.
    """
    R: tl.constexpr = BLOCK // G
    SUB: tl.constexpr = SPAN // BLOCK
    r = tl.program_id(0)
    c = tl.program_id(1)
    n_split = tl.num_programs(1)
    n_rows = tl.num_programs(0)
    row_ptr, computed = _row(x_ptr, stride_row, rows_ptr, r, HAS_ROWS)
    n_tiles = tl.cdiv(V, SPAN)
    first = c * tiles_per_split
    stop = tl.minimum(first + tiles_per_split, n_tiles)
    n_iter = tl.where(computed, tl.maximum(stop - first, 0) * SUB, 0)
    start = first * SPAN  # the program's logits are [start, min(stop·SPAN, V)), contiguous
    last = tl.maximum(n_iter - 1, 0)
    lane = tl.arange(0, R)
    col = tl.arange(0, G)
    offs = lane[:, None] * G + col[None, :]  # (R, G)
    neg_inf = float("-inf")

    x1 = tl.full([R], neg_inf, tl.float32)  # per lane: max, its block, runner-up group, sums
    b1 = tl.zeros([R], tl.int32)
    x2 = tl.full([R], neg_inf, tl.float32)
    s = tl.zeros([R], tl.float32)  # Σ exp(x - x1)
    t = tl.zeros([R], tl.float32)  # Σ exp(x - x1)·(x - x1)·log2(e)
    w = tl.zeros([R], tl.float32)  # sampling: Σ exp((x - x1) / T) over the current tile
    nan = tl.full([R], neg_inf, tl.float32)  # NaN-propagating max: NaN iff a NaN was read
    inv_t = tl.full([], 1.0, tl.float32)
    if SAMPLING:
        inv_t = (1.0 / _f64(temp_bits)).to(tl.float32)

    xa = _load_block(row_ptr, start, 0, last, V, offs)
    xb = _load_block(row_ptr, start, 1, last, V, offs)
    for b in range(n_iter):
        xv = xa.to(tl.float32)  # (R, G); lanes past the row are -inf
        xa = xb
        xb = _load_block(row_ptr, start, b + 2, last, V, offs)  # in flight meanwhile

        gh = tl.reduce(xv, 1, _max_nan)  # (R,)
        nan = tl.maximum(nan, gh, propagate_nan=tl.PropagateNan.ALL)
        gref = tl.where(gh == neg_inf, 0.0, gh)  # a group of -inf: every exp is 0 anyway
        d2 = _shift2(xv, gref[:, None])  # (R, G)
        e = tl.exp2(d2)
        gs = tl.sum(e, 1)
        gt = tl.sum(e * d2, 1)

        # Fold the group into its lane: both sums move to the new max M.
        m_new = tl.maximum(x1, gh)
        x2 = tl.maximum(x2, tl.minimum(x1, gh))  # second largest group max (duplicates count)
        b1 = tl.where(gh > x1, b, b1)
        sl = _shift2(x1, m_new)
        sg = _shift2(gh, m_new)
        al = tl.exp2(sl)
        ag = tl.exp2(sg)
        t = al * (t + s * sl) + ag * (gt + gs * sg)
        s = al * s + ag * gs
        if SAMPLING:
            gw = gs
            wl = al
            wg = ag
            if not UNIT_T:
                gw = tl.sum(tl.exp2(d2 * inv_t), 1)
                wl = tl.exp2(sl * inv_t)
                wg = tl.exp2(sg * inv_t)
            w = wl * w + wg * gw
        x1 = m_new
        if SAMPLING:
            if (b % SUB == SUB - 1) | (b == n_iter - 1):  # the tile's last block
                ref = tl.max(x1, 0)  # the program's max so far
                scale = tl.exp2(_shift2(x1, tl.where(ref == neg_inf, 0.0, ref)) * inv_t)
                j = first + b // SUB
                slot = mass_ptr + r * NT + j
                tl.store(slot, tl.sum(w.to(tl.float64) * scale.to(tl.float64), 0))
                tl.store(slot + n_rows * NT, ref.to(tl.float64))
                w = tl.zeros([R], tl.float32)

    # The program's first maximal logit: lanes whose max is the program's max met it in block
    # b1, somewhere in their group; the lowest such group holds the first one. Re-read, it
    # also gives the runner-up inside that group, the one element the lanes' group maxima
    # (x1 of the other lanes, x2 of every lane) do not stand for.
    m = tl.max(x1, 0)
    base = start + b1 * BLOCK + lane * G  # (R,) where each lane's max group starts
    at = tl.min(tl.where(x1 == m, base, 2147483647), 0)
    at = tl.where(m == neg_inf, 0, at)  # nothing finite: any index (the row is rejected)
    xg = tl.load(row_ptr + at + col, mask=col < V - at, other=neg_inf).to(tl.float32)  # (G,)
    k = tl.min(tl.where(xg == m, col, G), 0)
    inside = tl.max(tl.where(col == k, neg_inf, xg), 0)  # duplicates of the max count
    winner = base == at
    index = tl.where(winner, at + k, base)  # other lanes' maxima lie past their base
    x2 = tl.where(winner, tl.maximum(x2, inside), x2)
    m, i_max, x_2, s_all, t_all = _lane_merge(x1, index, x2, s, t * _LN2)
    plane = n_rows * n_split
    slot = part_ptr + r * n_split + c
    tl.store(slot, m.to(tl.float64))
    tl.store(slot + plane, i_max.to(tl.float64))
    tl.store(slot + 2 * plane, x_2.to(tl.float64))
    tl.store(slot + 3 * plane, s_all)
    tl.store(slot + 4 * plane, t_all)
    n_nan = tl.sum((nan != nan).to(tl.int32), 0)  # noqa: PLR0124  (the NaN test)
    tl.store(slot + 5 * plane, n_nan.to(tl.float64))


@triton.jit(do_not_specialize=["temp_bits", "top_p_bits", "top_k", "min_bits", "tiles_per_split"])
def _finish_kernel(
    x_ptr,
    stride_row,
    V,
    rows_ptr,
    temp_bits,
    top_p_bits,
    key_ptr,
    top_k,
    min_bits,
    tiles_per_split,
    part_ptr,
    mass_ptr,
    tok_ptr,
    prob_ptr,
    margin_ptr,
    ent_ptr,
    status_ptr,
    HAS_ROWS: tl.constexpr,
    SAMPLING: tl.constexpr,
    BLOCK: tl.constexpr,
    NT: tl.constexpr,
    NS: tl.constexpr,
    FILTER: tl.constexpr,
    STRICT: tl.constexpr,
    SAMPLED: tl.constexpr,
):
    """Pass 2, one program per row: merge the pass-1 states, filter, draw, write outputs.

    ``BLOCK`` is the sampling tile (or the row, when shorter): the filter's passes and the
    draw's re-read walk the row tile by tile.
    """
    r = tl.program_id(0)
    n_rows = tl.num_programs(0)
    row_ptr, computed = _row(x_ptr, stride_row, rows_ptr, r, HAS_ROWS)
    n_tiles = tl.cdiv(V, BLOCK)
    offs = tl.arange(0, BLOCK)
    tiles = tl.arange(0, NT)
    neg_inf = float("-inf")
    temperature = _f64(temp_bits)  # a float argument would arrive as float32

    n_split = tl.cdiv(n_tiles, tiles_per_split)
    splits = tl.arange(0, NS)
    used = splits < n_split
    plane = n_rows * n_split
    slot = part_ptr + r * n_split + splits
    part_m = tl.load(slot, mask=used, other=neg_inf).to(tl.float32)
    part_i = tl.load(slot + plane, mask=used, other=0.0).to(tl.int32)
    part_x2 = tl.load(slot + 2 * plane, mask=used, other=neg_inf).to(tl.float32)
    part_s = tl.load(slot + 3 * plane, mask=used, other=0.0)
    part_t = tl.load(slot + 4 * plane, mask=used, other=0.0)
    n_nan = tl.sum(tl.load(slot + 5 * plane, mask=used, other=0.0), 0)
    m, i1, x2, s, t = _lane_merge(part_m, part_i, part_x2, part_s, part_t)

    status = tl.where(n_nan > 0, 1, tl.where(m == float("inf"), 2, tl.where(m == neg_inf, 3, 0)))
    status = tl.where(computed, status, 0)
    good = computed & (status == 0)
    n_good = tl.where(good, n_tiles, 0)
    s_safe = tl.where(good, s, 1.0)
    m64 = tl.where(good, m.to(tl.float64), 0.0)
    entropy = tl.log(s_safe) - t / s_safe
    margin = (1.0 - tl.exp(tl.where(good, x2.to(tl.float64) - m64, 0.0))) / s_safe
    tok = i1.to(tl.int64)
    prob = 1.0 / s_safe
    thr = tl.zeros([], tl.int32)
    s_k = s_safe
    inv_tf = tl.full([], 1.0, tl.float32)
    masses = tl.zeros([NT], tl.float64)
    if SAMPLING:
        inv_tf = (1.0 / temperature).to(tl.float32)
    if SAMPLING and not FILTER:
        # Pass 1 left each tile's tempered mass relative to a max of its own.
        masses = tl.load(mass_ptr + r * NT + tiles, mask=tiles < n_good, other=0.0)
        ref = tl.load(mass_ptr + (n_rows + r) * NT + tiles, mask=tiles < n_good, other=0.0)
        masses = tl.where(masses > 0, masses * tl.exp((ref - m64) / temperature), 0.0)
    if FILTER:
        m_f = tl.where(good, m, 0.0)
        total = tl.zeros([], tl.float64)
        for j in range(n_good):
            idx = j * BLOCK + offs
            xv = tl.load(row_ptr + idx, mask=idx < V, other=neg_inf).to(tl.float32)
            e, _ = _filter_e(xv, m_f, inv_tf)
            total += tl.sum(e, 0).to(tl.float64)
        # Bisection on the bits b of the cut: the largest b with Σ_{bits(e) >= b} e > p·S
        # (top-p crossing value) and with #{bits(e) >= b} >= k (k-th largest).
        top_p = _f64(top_p_bits)  # float64, like the temperature
        target = top_p * total
        use_p = top_p < 1.0
        use_k = top_k > 0
        lo_p = tl.zeros([], tl.int32)
        hi_p = tl.full([], 0x3F800001, tl.int32)
        lo_k = tl.zeros([], tl.int32)
        hi_k = tl.full([], 0x3F800001, tl.int32)
        n_search = tl.where(use_p | use_k, n_good, 0)
        for _ in range(31):
            mid_p = lo_p + (hi_p - lo_p) // 2
            mid_k = lo_k + (hi_k - lo_k) // 2
            mass = tl.zeros([], tl.float64)
            count = tl.zeros([], tl.int32)
            for j in range(n_search):
                idx = j * BLOCK + offs
                xv = tl.load(row_ptr + idx, mask=idx < V, other=neg_inf).to(tl.float32)
                e, bits = _filter_e(xv, m_f, inv_tf)
                mass += tl.sum(tl.where(bits >= mid_p, e, 0.0), 0).to(tl.float64)
                count += tl.sum((bits >= mid_k).to(tl.int32), 0)
            ok_p = mass > target
            lo_p = tl.where(ok_p, mid_p, lo_p)
            hi_p = tl.where(ok_p, hi_p, mid_p)
            ok_k = count >= top_k
            lo_k = tl.where(ok_k, mid_k, lo_k)
            hi_k = tl.where(ok_k, hi_k, mid_k)
        thr_p = tl.zeros([], tl.int32)
        if STRICT:
            thr_p = tl.where(use_p, lo_p + 1, 0)
        else:
            thr_p = tl.where(use_p, lo_p, 0)
        thr = tl.maximum(thr_p, tl.where(use_k, lo_k, 0))
        thr = tl.maximum(thr, min_bits)  # min-p: e >= min_p (0 when off)
        thr = tl.minimum(thr, 0x3F800000)  # the top-1 (e = 1) is always kept
        s_k64 = tl.zeros([], tl.float64)
        t_k64 = tl.zeros([], tl.float64)
        masses = tl.zeros([NT], tl.float64)
        for j in range(n_good):
            idx = j * BLOCK + offs
            xv = tl.load(row_ptr + idx, mask=idx < V, other=neg_inf).to(tl.float32)
            e, bits = _filter_e(xv, m_f, inv_tf)
            w = tl.where(bits >= thr, e, 0.0)
            dz = tl.maximum((xv - m_f) * inv_tf, -3.0e38)  # -inf lanes: 0 * finite = 0
            tile_mass = tl.sum(w, 0).to(tl.float64)
            s_k64 += tile_mass
            t_k64 += tl.sum(w * dz, 0).to(tl.float64)
            masses = masses + tl.where(tiles == j, tile_mass, 0.0)
        s_k = tl.where(good, s_k64, 1.0)
        if SAMPLED:
            entropy = tl.log(s_k) - t_k64 / s_k
            e2, bits2 = _filter_e(tl.where(good, x2, 0.0), m_f, inv_tf)
            e2 = tl.where(bits2 >= thr, e2, 0.0)
            margin = (1.0 - e2.to(tl.float64)) / s_k
            prob = 1.0 / s_k
    if SAMPLING:
        # The row's own 64-bit key (int64 bits); counter (0, 0, 0, STREAM_PROPOSE).
        key = tl.load(key_ptr + r)
        k0 = (key & 0xFFFFFFFF).to(tl.uint32)
        k1 = ((key >> 32) & 0xFFFFFFFF).to(tl.uint32)
        zero = tl.full([], 0, tl.uint32)
        c3 = tl.full([], _STREAM_PROPOSE, tl.uint32)
        w0, w1, w2, w3 = _philox(zero, zero, zero, c3, k0, k1)
        u1 = _unit64(w0, w1)
        u2 = _unit64(w2, w3)
        cum = tl.cumsum(masses, 0)
        total = tl.max(cum, 0)
        first = tl.sum((cum <= u1 * total).to(tl.int32), 0)
        last = tl.max(tl.where(masses > 0, tiles, 0), 0)
        jt = tl.minimum(first, last)
        idx = jt * BLOCK + offs
        xv = tl.load(
            row_ptr + idx, mask=(idx < V) & ((offs * 0 + good.to(tl.int32)) > 0), other=neg_inf
        ).to(tl.float64)
        w = tl.exp((xv - m64) / temperature)  # float64, as in the reference
        if FILTER:
            _, bits = _filter_e(xv.to(tl.float32), m64.to(tl.float32), inv_tf)
            w = tl.where(bits >= thr, w, 0.0)
        cum = tl.cumsum(w, 0)
        total = tl.max(cum, 0)
        first = tl.sum((cum <= u2 * total).to(tl.int32), 0)
        last = tl.max(tl.where(w > 0, offs, 0), 0)
        k = tl.minimum(first, last)
        x_tok = tl.sum(tl.where(offs == k, xv, 0.0), 0)
        tok = (jt * BLOCK + k).to(tl.int64)
        if SAMPLED:
            prob = tl.exp(tl.where(good, x_tok - m64, 0.0) / temperature) / s_k
        else:
            prob = tl.exp(tl.where(good, x_tok - m64, 0.0)) / s_safe
    tl.store(tok_ptr + r, tl.where(good, tok, -1))
    tl.store(prob_ptr + r, tl.where(good, prob, 0.0).to(tl.float32))
    tl.store(margin_ptr + r, tl.where(good, margin, 0.0).to(tl.float32))
    tl.store(ent_ptr + r, tl.where(good, entropy, 0.0).to(tl.float32))
    tl.store(status_ptr + r, status.to(tl.int32))


#: Pass-1 launch: logits per block and warps per program, and how many programs to aim for
#: per multiprocessor when a row is split over several (rows x splits programs in all).
BLOCK = 1024
WARPS = 4
PROGRAMS_PER_SM = 8


def launch_config(n_rows: int, vocab: int, device: torch.device) -> tuple[int, int, int]:
    """(block, warps, splits) of pass 1 for ``n_rows`` rows of ``vocab`` logits."""
    n_tiles = triton.cdiv(vocab, SAMPLE_TILE)
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
    else:  # the interpreter: split anyway, so that CPU tests merge several programs
        sms = 2
    # Rows split only while all programs still fit in one wave: on an H200, 5 splits of 1,024
    # rows (2.4 waves) ran 1.5x slower than 4 or 1 (bench/results/gpu_logs, the run at a149b8c).
    splits = max(1, min(n_tiles, (PROGRAMS_PER_SM * sms) // max(n_rows, 1)))
    return BLOCK, WARPS, splits


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
    config: tuple[int, int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton implementation of :func:`remask.kernels.propose.propose_rows`.

    ``config`` overrides :func:`launch_config`'s (block, warps, splits) of pass 1 (the
    benchmark's sweep; every choice gives the same results up to float rounding).
    """
    n_rows, vocab = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    device = x.device
    group = max(1, 16 // x.element_size())  # logits per 16-byte load
    # Logits per tile: the sampling tile, or a power of two covering a shorter row.
    span = SAMPLE_TILE if vocab > SAMPLE_TILE else max(triton.next_power_of_2(vocab), group)
    n_tiles = triton.cdiv(vocab, span)
    block, warps, splits = config or launch_config(n_rows, vocab, device)
    block = max(min(block, span), group)
    splits = max(1, min(splits, n_tiles))
    tiles_per_split = triton.cdiv(n_tiles, splits)
    splits = triton.cdiv(n_tiles, tiles_per_split)  # no empty program
    nt = triton.next_power_of_2(n_tiles)
    tokens = torch.empty(n_rows, dtype=torch.int64, device=device)
    prob = torch.empty(n_rows, dtype=torch.float32, device=device)
    margin = torch.empty(n_rows, dtype=torch.float32, device=device)
    entropy = torch.empty(n_rows, dtype=torch.float32, device=device)
    status = torch.empty(n_rows, dtype=torch.int32, device=device)
    part = torch.empty((6, n_rows, splits), dtype=torch.float64, device=device)
    sampling = temperature > 0
    rows_arg = rows if rows is not None else status  # unused placeholder when HAS_ROWS=False
    key_arg = key if key is not None else tokens  # unused placeholder when SAMPLING=False
    # At T = 0 with untempered statistics the filter changes nothing (the argmax is kept).
    filtering = sampled or ((top_p < 1.0 or top_k > 0 or min_p > 0.0) and sampling)
    tile_masses = sampling and not filtering  # pass 1's; the filter recomputes the kept ones
    mass = torch.empty((2, n_rows, nt), dtype=torch.float64, device=device) if tile_masses else part
    _stream_kernel[(n_rows, splits)](
        x,
        x.stride(0),
        vocab,
        tiles_per_split,
        rows_arg,
        _bits(temperature),
        part,
        mass,
        HAS_ROWS=rows is not None,
        SAMPLING=tile_masses,
        UNIT_T=temperature == 1.0,
        BLOCK=block,
        G=group,
        SPAN=span,
        NT=nt,
        num_warps=warps,
    )
    _finish_kernel[(n_rows,)](
        x,
        x.stride(0),
        vocab,
        rows_arg,
        _bits(temperature),
        _bits(top_p),
        key_arg,
        int(top_k),
        _min_p_bits(min_p),
        tiles_per_split,
        part,
        mass,
        tokens,
        prob,
        margin,
        entropy,
        status,
        HAS_ROWS=rows is not None,
        SAMPLING=sampling,
        BLOCK=span,
        NT=nt,
        NS=triton.next_power_of_2(splits),
        FILTER=filtering,
        STRICT=bool(strict),
        SAMPLED=bool(sampled),
        num_warps=8 if span >= 2048 else 4,
    )
    return tokens, prob, margin, entropy, status


def _bits(value: float) -> int:
    """The float64 bits of ``value`` as an int64 kernel argument.

    A Python float reaches a Triton kernel as float32; a (1,) float64 tensor would cost a
    host-to-device copy, which torch waits for, on every call.
    """
    return struct.unpack("<q", struct.pack("<d", value))[0]


def _min_p_bits(min_p: float) -> int:
    """float32 bits of the smallest float32 >= min_p (0 when off); e >= 0 compares as bits."""
    if min_p <= 0.0:
        return 0
    bits = int(torch.tensor(min_p, dtype=torch.float32).view(torch.int32))
    if float(torch.tensor(bits, dtype=torch.int32).view(torch.float32)) < min_p:
        bits += 1  # next float32 up (positive floats order like their bits)
    return bits


def philox4x32(counters: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """Run the kernel's Philox on (n, 4) int64 counters (test hook); returns (n, 4) int64."""
    counters = counters.contiguous()
    out = torch.empty_like(counters)
    n = counters.shape[0]
    philox4x32_kernel[(triton.cdiv(n, 64),)](counters, out, key[0], key[1], n, BLOCK=64)
    return out
