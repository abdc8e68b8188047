"""Selection of the filter's cut for the Numba backend of :func:`remask.kernels.propose`.

The filtered passes of :mod:`remask.kernels._numba.propose` store ``e = exp((x - m) / T_f)``
of a row to a (V,) float32 buffer (``0 <= e <= 1``; the row max has ``e = 1``) and need the
bits threshold ``thr`` of the kept set ``K = {bits(e) >= thr}`` (float32 bits of ``e >= 0``
order as the values). Top-p needs the *crossing value*

    w = max{v in e : M(v) > target},   M(v) = Σ_{e_j >= v} e_j,   target = top_p · total,

and top-k the same with the weight 1 instead of ``e`` (``target = k - 1``). No sort of the
vocabulary; three ways to the same ``w``:

1. **block bound** (peaked rows, top-k with ``k <= V / 128``): the maxima of 128-element
   blocks bound ``w`` from below; the radix selection runs on the few elements above the
   bound (see ``_BLOCK``);
2. **bracket** (top-p of flat rows, e.g. ``top_p = 0.95`` of randn logits keeps ~9% of V):
   a strided sample of ~2k elements guesses a bracket ``[lo, hi)`` of bits holding the cut
   (~3% of V); one vectorized sweep sums the mass ``M(hi)`` above it (float64), a second
   collects its elements (vector compares and compresses, ``_gather_range``) and a radix
   selection runs on them alone; a bracket that misses the cut is moved and the sweeps
   redone (see ``_bracket_crossing``). It goes first when a 256-element sample finds the
   row flat (``_looks_flat``), else after 1.;
3. **radix selection of the whole row**: three levels of 11/10/10 bits, histograms of
   float64 masses.

1. then 3. is the selection as it was before 2. existed, and it still decides every row 2.
gives up on, so those keep their old cut to the bit. Why a cut 2. returns is also theirs:
all three compare float64 sums of the same float32 values with the same ``target`` and
differ only in the order of the additions, so each computed ``M(v)`` lies within ``E`` of
the exact one (a sum of ``n`` non-negative terms in any order is within ``(n - 1) · 2^-53``
of its value, relatively). 2. returns its candidate ``w`` only if ``M(w) > target + E`` and
``M(w+) < target - E`` with ``w+`` the next larger value in the row (``_margin`` gives
``E`` for the computations together); then every float64 decision of 1. and 3. (at every
level, on the whole row or on block-bounded candidates) falls on the exact side and they
return the same ``w``. Otherwise (a cumulative mass within ~1e-10 of the target: exact ties
built on purpose) 2. gives up. Top-k counts are exact integers in float64 (1. and 3. only).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__: list[str] = []

# Fast-math without `ninf`: -inf logits must compare and propagate correctly (the flags of
# every streaming loop of the Numba kernels; here only the vectorized float64 mass sum uses
# them, whose order does not matter: the margin covers any order).
_FAST = {"nnan", "nsz", "arcp", "contract", "reassoc"}

_ONE_BITS = np.uint32(0x3F800000)  # float32 bits of 1.0 = e of the row maximum

# "No answer here": the caller tries the next method. Distinct from -1 (no crossing: the whole
# mass does not exceed the target, everything is kept).
_UNDECIDED = np.int64(-2)
# The gathered top-p's bracket (a floor > 0): the cut lies below the floor.
_BELOW_FLOOR = np.int64(-3)

# Radix selection of the cut on the float32 bits of e (order-preserving for e >= 0): three
# levels of 11/10/10 bits; each level histograms mass and count of the current candidates,
# walks the bins from the top to the one holding the cut, and keeps only that bin's elements.
_LEVELS = ((20, 2048), (10, 1024), (0, 1024))


@njit(cache=True, inline="always")
def _walk_down(hist, nbins, target):  # pragma: no cover - compiled
    """The highest bin b whose mass, added to that of the bins above it (walked from the top
    in float64), exceeds ``target``, and that mass above it; (-1, all the mass) if none."""
    acc = 0.0
    for b in range(nbins - 1, -1, -1):
        if acc + hist[b] > target:
            return b, acc
        acc += hist[b]
    return -1, acc


@njit(cache=True)
def _radix_crossing(ebits, vocab, target, by_count, cand, cand2, hist):  # pragma: no cover
    """Bits of the largest e with Σ_{e' >= e} weight(e') > target, or -1 if there is none.

    weight = e (top-p mass) or 1 (top-k count). ``cand``/``cand2`` are (V,) uint32 scratch,
    ``hist`` a (4 * 2048,) float64 scratch: four interleaved histograms, because most
    elements of a row fall in a few bins (the tiny weights) and one histogram would chain
    every update on the previous one through memory (~15 cycles per element, measured).
    Ties are grouped (a value is one bin at the end).
    """
    src = ebits
    n = vocab
    prefix = np.uint32(0)
    mask_hi = np.uint32(0)  # bits already fixed by the previous levels
    for level in range(3):
        shift = _LEVELS[level][0]
        nbins = _LEVELS[level][1]
        for b in range(4 * nbins):
            hist[b] = 0.0
        mask = np.uint32(nbins - 1)
        if by_count:
            for i in range(n):
                hist[(i & 3) * nbins + ((src[i] >> shift) & mask)] += 1.0
        else:
            for i in range(n):
                v = src[i]
                hist[(i & 3) * nbins + ((v >> shift) & mask)] += np.float64(
                    np.uint32(v).view(np.float32)
                )
        for b in range(nbins):
            hist[b] += hist[nbins + b] + hist[2 * nbins + b] + hist[3 * nbins + b]
        chosen, acc = _walk_down(hist, nbins, target)
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


# Candidate bound of the selection: the row is cut into blocks of _BLOCK elements whose maxima
# (one vectorized pass over the stored e) bound the cut from below. If the block maxima alone
# carry weight > target above some value g, the cut is >= g (every block maximum is an element),
# so only the elements >= g -- found in the few blocks whose maximum reaches g -- need the radix
# selection. g is lowered to a level-0 bin boundary, so the candidates hold whole level-0 bins
# (the cut's bin among them) and the selection walks the same bins as on the full row, with
# float64 sums of the same values (decisions: see the module docstring). A peaked row (LM
# logits: a nucleus of tens of tokens) or any top-k with k <= V / _BLOCK is then decided on a
# few hundred elements; a flat row (the block maxima do not reach the target, e.g. top-p =
# 0.95 of randn logits) or too many candidate blocks go on to the bracket or the whole row.
_BLOCK = 128  # 64 measured 5x slower: LLVM vectorizes the 128-wide max reduction better
_LEVEL0_SHIFT = np.uint32(20)  # bits below the level-0 bin (_LEVELS[0][0])


@njit(cache=True)
def _block_max(ebits, vocab, bmax):  # pragma: no cover - compiled
    """bmax[b] = max bits of ebits[b*_BLOCK : (b+1)*_BLOCK]: e >= 0, so its bits order as its
    values and fit an int32 (LLVM vectorizes the signed int max, not the unsigned one)."""
    keys = ebits.view(np.int32)
    n_full = vocab // _BLOCK
    for b in range(n_full):
        seg = keys[b * _BLOCK : (b + 1) * _BLOCK]  # indexed by the range variable
        top = np.int32(0)
        for k in range(_BLOCK):
            top = max(top, seg[k])
        bmax[b] = top
    if n_full < bmax.shape[0]:
        top = np.int32(0)
        for k in range(n_full * _BLOCK, vocab):
            top = max(top, keys[k])
        bmax[n_full] = top


@njit(cache=True, fastmath=_FAST)
def _mass(bits, n):  # pragma: no cover - compiled
    """Σ of the float32 values with these bits, in float64 (vectorized)."""
    acc = 0.0
    for k in range(n):
        acc += np.float64(np.uint32(bits[k]).view(np.float32))
    return acc


@njit(cache=True)
def _block_bound_crossing(
    ebits, vocab, target, by_count, cand, cand2, hist, bmax
):  # pragma: no cover
    """_radix_crossing of the whole row computed on the block-bounded candidates, or
    _UNDECIDED when the bound does not hold or leaves too many candidates (see _BLOCK)."""
    n_blocks = bmax.shape[0]
    reach = 0.0  # weight of all block maxima: no g exists unless it exceeds the target
    if by_count:
        reach = np.float64(n_blocks)
    else:
        reach = _mass(bmax, n_blocks)
    g = np.int64(-1)
    if reach > target:
        g = _radix_crossing(bmax, n_blocks, target, by_count, cand, cand2, hist)
    if g >= 0:
        g_al = np.uint32((np.uint32(g) >> _LEVEL0_SHIFT) << _LEVEL0_SHIFT)
        hits = 0
        for b in range(n_blocks):
            hits += 1 if bmax[b] >= g_al else 0
        if hits * 4 <= n_blocks:  # else the gather would cost as much as the full selection
            c = 0
            for b in range(n_blocks):
                if bmax[b] >= g_al:
                    for i in range(b * _BLOCK, min(vocab, (b + 1) * _BLOCK)):
                        v = ebits[i]
                        cand[c] = v
                        c += 1 if v >= g_al else 0
            # in place: the level-0 compaction writes cand[c'] with c' <= i
            w = _radix_crossing(cand, c, target, by_count, cand, cand2, hist)
            if w >= 0:
                return w
            # float64 rounding put the crossing below g (the bound was within 1e-16 of the
            # target): decide on the whole row.
    return _UNDECIDED


# ------------------------------------------------------------------------------ the bracket
#
# Flat rows: the cut lies among many small weights, no block bound holds, and the radix
# selection of the whole row (a scatter of every element into float64 histograms plus a
# compaction, ~1 ns per element) is the cost. The bracket replaces it by two vectorized
# sweeps (the float64 mass above hi; a compress of the elements in [lo, hi)), on whose
# output alone the radix selection runs.

_SAMPLE = 2048  # elements of the strided sample that guesses the cut
_MIN_VOCAB = 4 * _SAMPLE  # shorter rows: the whole-row selection is as cheap
_PEEK = 256  # elements of the sample that tells flat rows from peaked ones
# The sample's histogram: bins of 1/32 octave (bits >> 18) for e in [2^-40, 1]; bin 0 holds
# everything smaller (0 included).
_FINE_SHIFT = np.uint32(18)
_FINE_BASE = np.int64(87 << 5)  # bits >> 18 of 2^-40
_NFINE = 41 * 32 + 2
_Z = 3.0  # bracket half-width in standard deviations of the sample's tail-mass estimate
_TRIES = 4  # brackets tried before giving up (each costs one or two sweeps of the row)
_SEL_BINS = 2048  # bins of each level of the selection inside the bracket
_EPS52 = 2.0**-52


@njit(cache=True, inline="always")
def _fine_edge(b):  # pragma: no cover - compiled
    """Lowest bits of fine bin b (bin 0 starts at 0)."""
    return np.int64(0) if b <= 0 else np.int64((b - 1 + _FINE_BASE) << _FINE_SHIFT)


@njit(cache=True)
def _sample_hist(ebits, vocab, stride, squares, hist):  # pragma: no cover - compiled
    """Histogram of the strided sample e[stride // 2 :: stride] on the fine bins: hist[b] the
    mass, hist[_NFINE + b] the squares (``squares``) or the count. Returns the sample size."""
    n = vocab // stride
    off = stride // 2
    for b in range(2 * _NFINE):
        hist[b] = 0.0
    for j in range(n):
        v = ebits[j * stride + off]
        b = min(max(np.int64(v >> _FINE_SHIFT) - _FINE_BASE + 1, 0), _NFINE - 1)
        f = np.float64(np.uint32(v).view(np.float32))
        hist[b] += f
        hist[_NFINE + b] += f * f if squares else 1.0
    return n


@njit(cache=True)
def _sample_bracket(ebits, vocab, goal, hist):  # pragma: no cover - compiled
    """Bits bracket (lo, hi) of the cut guessed from a strided sample of ~_SAMPLE elements.

    ``goal`` is the mass *below* the cut (total - target): the sample estimates the tail
    mass below a value t as stride · Σ_{sample < t} e, whose spread is small because every
    tail element is below the cut (the head's few large values would make a head-mass
    estimate noisy). The bracket spans ±_Z estimated standard deviations (stride² · Σ e² of
    the sampled tail) around the estimate. Only a guess: _bracket_crossing checks it.
    ``hist`` is float64 scratch of >= 2 * _NFINE entries (masses, then squares).
    """
    stride = vocab // _SAMPLE
    _sample_hist(ebits, vocab, stride, True, hist)
    return _bracket_from_hist(hist, np.float64(stride), goal)


@njit(cache=True)
def _bracket_from_hist(hist, scale, goal):  # pragma: no cover - compiled
    """_sample_bracket's bracket from the sample's histogram (``_sample_hist`` with squares),
    each sampled element standing for ``scale`` elements of the row."""
    cum = 0.0
    sq = 0.0
    for b in range(_NFINE):
        if scale * (cum + hist[b]) > goal:
            break
        cum += hist[b]
        sq += hist[_NFINE + b]
    sigma = _Z * scale * np.sqrt(sq)  # spread of the tail estimate at the guessed cut
    lo_b = 0
    hi_b = _NFINE
    cum = 0.0
    for b in range(_NFINE):
        if scale * cum <= goal - sigma:
            lo_b = b  # the tail below bin b's edge is surely below the goal
        if scale * cum >= goal + sigma:
            hi_b = b
            break
        cum += hist[b]
    hi = np.int64(1) << np.int64(31) if hi_b >= _NFINE else _fine_edge(hi_b)
    return _fine_edge(lo_b), hi


@njit(cache=True)
def _looks_flat(ebits, vocab, goal, n_blocks, hist):  # pragma: no cover - compiled
    """Whether a strided sample of ~_PEEK elements guesses more kept elements than there
    are blocks: then most blocks reach the cut and the block bound would fail (a flat row,
    the bracket's case); LM rows keep tens. The cut is guessed as in _sample_bracket (the
    tail mass below it is ``goal``). Only chooses the order of the two; ``hist`` is float64
    scratch of >= 2 * _NFINE entries."""
    stride = vocab // _PEEK
    n = _sample_hist(ebits, vocab, stride, False, hist)
    scale = np.float64(stride)
    cum = 0.0
    below = 0.0  # sampled elements below the guessed cut's bin
    for b in range(_NFINE):
        if scale * (cum + hist[b]) > goal:
            break
        cum += hist[b]
        below += hist[_NFINE + b]
    return scale * (n - below) > n_blocks


@njit(cache=True, fastmath=_FAST)
def _mass_at_least(ebits, vocab, hi):  # pragma: no cover - compiled
    """Σ_{bits(e) >= hi} e in float64, vectorized (any summation order: see _margin)."""
    acc = 0.0
    for i in range(vocab):
        v = ebits[i]
        kept = v if v >= hi else np.uint32(0)  # integer select, then one conversion
        acc += np.float64(np.uint32(kept).view(np.float32))
    return acc


@njit(cache=True)
def _select(src, n, lo, span, need, tmp, hist):  # pragma: no cover - compiled
    """Bits of the largest value v among src[:n] (those in [lo, lo + span); elements below
    ``lo`` are passed over) with Σ_{src >= v} e > need, or -1 if the mass in the span does
    not exceed ``need``.

    Radix levels over the bracket's span, each of about as many bins as candidates (16 to
    _SEL_BINS: a few candidates left need no walk over thousands of empty bins); a single
    histogram (the bracket's values spread over the bins); the chosen bin's elements are
    compacted into ``tmp`` (then in place). Its float64 decisions need not be exact: the
    caller proves the answer or gives up.
    """
    base = np.int64(lo)
    span = np.int64(span)
    while True:
        bins = np.int64(16)
        while bins < n and bins < _SEL_BINS:
            bins *= 2
        shift = np.int64(0)
        while ((span - 1) >> shift) >= bins:
            shift += 1
        nb = ((span - 1) >> shift) + 1
        for b in range(nb + 1):
            hist[b] = 0.0
        for i in range(n):
            v = src[i]
            # hist[0] takes the elements below the span (the gathered top-p passes them).
            b = max((np.int64(v) - base) >> shift, np.int64(-1)) + 1
            hist[b] += np.float64(np.uint32(v).view(np.float32))
        chosen, acc = _walk_down(hist[1:], nb, need)
        if chosen < 0:
            return np.int64(-1)
        need -= acc
        if shift == 0:
            return base + chosen
        base += np.int64(chosen) << shift
        span = np.int64(1) << shift
        c = 0
        for i in range(n):
            v = src[i]
            tmp[c] = v
            c += 1 if (np.int64(v) - base) >> shift == 0 else 0
        src = tmp
        n = c


@njit(cache=True, fastmath=_FAST)
def _masses_at_and_over(src, n, wb):  # pragma: no cover - compiled
    """(Σ_{bits >= wb} e, Σ_{bits > wb} e) over src[:n] in float64, vectorized (any order:
    see _margin)."""
    at = 0.0
    over = 0.0
    for i in range(n):
        v = src[i]
        f = np.float64(np.uint32(v).view(np.float32))
        at += f if v >= wb else 0.0
        over += f if v > wb else 0.0
    return at, over


@njit(cache=True)
def _margin(vocab, total):  # pragma: no cover - compiled
    """E: how far from the exact M(v) a float64 sum of the row's weights may land, for the
    whole-row or block-bounded radix selection and the bracket's computation together.

    The exact total S is within 2.5e-4 of ``total`` (float32 sums of 4096-element tiles), so
    ``T = 2 · total`` bounds S and the target. The radix selection's three levels each sum
    at most V + 4 · 2048 terms and subtract once from the target (<= 4 (V + 8192) roundings
    of at most 2^-53 T each, counted twice); the bracket sums <= 2 V terms; the + 64 covers
    rounding ``target ± E`` itself.
    """
    return (6.0 * vocab + 4.0 * 8192.0 + 64.0) * _EPS52 * 2.0 * total


@njit(cache=True)
def _bracket_crossing(
    ebits, vocab, target, total, lo, hi, cand, cand2, hist, row_vocab=0, floor=0
):  # pragma: no cover - compiled
    """The crossing value of a top-p cut through the bits bracket [lo, hi), or _UNDECIDED
    (see the module docstring for why a returned value is the radix selection's, bit for
    bit).

    Moves the bracket up (the mass above it already exceeds the target) or down (its mass
    does not reach the target) up to _TRIES - 1 times, four times as wide each time. Gives
    up on a bracket holding more than ~V / 2 elements (ties, nearly uniform rows), on a row
    without a crossing and on a margin too thin to prove the answer. ``cand``/``cand2``
    (V,) uint32 and ``hist`` (4 * 2048,) float64 are scratch. The gathered top-p passes its
    gathered e as ``ebits`` (every e >= ``floor`` of a row of ``row_vocab`` logits, and
    some below): the bracket then never moves below ``floor`` (_BELOW_FLOOR when the cut
    lies below it) and the margin is the whole row's.
    """
    err = _margin(max(vocab, row_vocab), total)
    bracket = cand2[vocab // 2 :]
    top = np.int64(1) << np.int64(31)  # above the bits of any e <= 1
    lo = np.int64(lo)
    hi = np.int64(hi)
    for _ in range(_TRIES):
        width = max(hi - lo, np.int64(1) << _FINE_SHIFT)
        above = _mass_at_least(ebits, vocab, np.uint32(hi))
        if above > target:  # the cut is above the bracket
            if hi >= top:
                return _UNDECIDED
            lo, hi = hi, min(top, hi + 4 * width)
            continue
        n = _gather_range(ebits, vocab, np.uint32(lo), np.uint32(hi - lo), bracket)
        if n < 0:  # ties or a nearly uniform row: the whole-row selection
            return _UNDECIDED
        w = _select(bracket, n, lo, hi - lo, target - above, cand, hist)
        if w < 0:  # the cut is below the bracket
            if lo <= floor:  # no crossing above the floor (top_p ~ 1 when it is 0)
                return _BELOW_FLOOR if floor > 0 else _UNDECIDED
            lo, hi = max(np.int64(floor), lo - 4 * width), lo
            continue
        # Proof: M(w) > target + E and M(w+) < target - E (module docstring).
        at, over = _masses_at_and_over(bracket, n, np.uint32(w))
        if above + at > target + err and above + over < target - err:
            return w
        return _UNDECIDED
    return _UNDECIDED


@njit(cache=True)
def _crossing(
    ebits, vocab, target, total, by_count, cand, cand2, hist, bmax, bmax_ready
):  # pragma: no cover - compiled
    """Bits of the crossing value (see the module docstring), or -1 if there is none.

    The block bound, then the whole row: the selection before the bracket existed, run as
    is whenever the bracket gives up (near-ties, where the two may round differently, keep
    their old answer). For top-p of a long row the bracket goes first when the row
    _looks_flat (the block bound would fail on too many candidate blocks), else second.
    ``bmax`` holds the block maxima once ``bmax_ready[0]`` is set (computed on first use).
    """
    use_bracket = not by_count and vocab >= _MIN_VOCAB
    flat = use_bracket and _looks_flat(ebits, vocab, total - target, bmax.shape[0], hist)
    if flat:
        lo, hi = _sample_bracket(ebits, vocab, total - target, hist)
        w = _bracket_crossing(ebits, vocab, target, total, lo, hi, cand, cand2, hist)
        if w != _UNDECIDED:
            return w
    if not bmax_ready[0]:
        _block_max(ebits, vocab, bmax)
        bmax_ready[0] = True
    w = _block_bound_crossing(ebits, vocab, target, by_count, cand, cand2, hist, bmax)
    if w != _UNDECIDED:
        return w
    if use_bracket and not flat:
        lo, hi = _sample_bracket(ebits, vocab, total - target, hist)
        w = _bracket_crossing(ebits, vocab, target, total, lo, hi, cand, cand2, hist)
        if w != _UNDECIDED:
            return w
    return _radix_crossing(ebits, vocab, target, by_count, cand, cand2, hist)


@njit(cache=True)
def _kept_threshold(
    ebuf, vocab, total, top_p, top_k, strict, cand, cand2, hist
):  # pragma: no cover
    """Bits threshold thr of the kept set K = {bits(e) >= thr} (see remask.kernels.propose).

    ``ebuf`` (V,) float32 holds e, ``total`` its float64 sum of float32 tile sums;
    ``cand``/``cand2`` (V,) uint32 and ``hist`` (4 * 2048,) float64 are scratch.
    """
    ebits = ebuf.view(np.uint32)
    bmax = np.empty((vocab + _BLOCK - 1) // _BLOCK, dtype=np.uint32)
    ready = np.zeros(1, dtype=np.bool_)  # bmax is computed on first use
    thr = np.int64(0)
    if top_p < 1.0:
        target = top_p * total
        w = _crossing(ebits, vocab, target, total, False, cand, cand2, hist, bmax, ready)
        if w >= 0:
            thr = w + 1 if strict else w  # strict: only strictly above the crossing value
    if top_k > 0:
        target = np.float64(top_k - 1)
        w = _crossing(ebits, vocab, target, total, True, cand, cand2, hist, bmax, ready)
        thr = max(thr, w)
    return np.uint32(min(thr, np.int64(_ONE_BITS)))  # the top-1 (e = 1) is always kept


# --------------------------------------------------------------------- the gathered top-p
#
# Top-p and/or min-p (no top-k) on long float32/bf16 rows, without the (V,) buffer of e
# (propose's _gathered_row): the first pass of the propose kernel also sums the filter's e
# (that sum is then the filter's total on every path of the row); a strided sample of e
# guesses a bracket [lo, hi) of the cut; one sweep of vector compares and compresses
# (_gather_at_least) collects the logits ``x >= x_lo``, a bound a little below the logit of
# ``lo``, so that every e >= lo is among them (~12% of V for top_p = 0.95 of randn * 3 rows,
# tens for LM rows), and only those are exponentiated. The bracket's selection runs on them
# and is proven as on a stored row, with the whole row's margin (M(w) and M(w+) farther
# than E from the target), and never moves below ``lo``: the answer is then the stored
# passes', bit for bit. A cut below ``lo`` (the sample held one of a peaked row's few large
# e) gets one more guess from the sampled values below ``lo``; min-p alone needs no guess
# (its cut is known). Anything else goes to the stored passes.

_LANES = 16  # elements per compress: one AVX-512 vector of 32-bit lanes


def _avx512_target() -> bool:
    """Whether Numba compiles for a CPU with AVX-512F (the host's, unless NUMBA_CPU_NAME /
    NUMBA_CPU_FEATURES name another target)."""
    if numba.config.CPU_NAME is not None or numba.config.CPU_FEATURES is not None:
        return "+avx512f" in (numba.config.CPU_FEATURES or "")
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def _make_compress(x86: bool):
    """The two compress intrinsics, ``(_compress_at_least, _compress_range)``, lowered by
    AVX-512's register-form compress and one whole-vector store (``x86``) or by LLVM's
    generic compress-store (any target). Zen 4 runs the memory form that LLVM emits for the
    generic one at ~1/8 of the register form's speed (measured: 194 vs 25 us per
    126,464-logit row), hence two lowerings of the same result (tests build both)."""

    def append(context, builder, values, keep, out, c):
        """Stores the lanes of ``values`` where ``keep`` at out[c:], in lane order; returns
        their count (int64)."""
        vec = values.type
        i16 = ir.IntType(16)
        dst = builder.gep(out.data, [c])
        word = builder.bitcast(keep, i16)
        if x86:
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vec, [vec, vec, i16]),
                "llvm.x86.avx512.mask.compress.d.512",
            )
            packed = builder.call(fn, [values, ir.Constant(vec, [0] * _LANES), word])
            builder.store(packed, builder.bitcast(dst, vec.as_pointer()), align=4)
        else:
            i32p = ir.IntType(32).as_pointer()
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [vec, i32p, keep.type]),
                "llvm.masked.compressstore.v16i32",
            )
            builder.call(fn, [values, builder.bitcast(dst, i32p), keep])
        pop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i16, [i16]), "llvm.ctpop.i16"
        )
        return builder.zext(builder.call(pop, [word]), ir.IntType(64))

    def operands(context, builder, signature, args, dst_at):
        """(source array, destination array, start, count so far) of a compress call: the
        source is argument 0, ``start`` argument 1, the destination argument ``dst_at``, the
        count the last."""
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(signature.args[dst_at])(context, builder, args[dst_at])
        start = context.cast(builder, args[1], signature.args[1], types.intp)
        c = context.cast(builder, args[-1], signature.args[-1], types.intp)
        return src, dst, start, c

    def splat(builder, vec, scalar):
        undef = ir.Constant(vec, ir.Undefined)
        first = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), _LANES), [0] * _LANES)
        return builder.shuffle_vector(first, undef, zeros)

    @intrinsic
    def _compress_at_least(typingctx, row, start, x_lo, xbits, c):
        """Appends to ``xbits[c:]`` the float32 bits of the logits ``row[start + k] >= x_lo``
        (k < 16; float compare; ``row`` float32 bits as uint32 or bf16 bits as uint16,
        widened by the shift; ``x_lo`` float32), in index order; returns how many.
        ``xbits`` (uint32) needs room for 16 more; bounds unchecked."""
        if not (
            isinstance(row, types.Array)
            and row.dtype in (types.uint32, types.uint16)
            and row.layout == "C"
            and xbits.dtype == types.uint32
        ):
            return None
        narrow = row.dtype.bitwidth == 16
        sig = types.int64(row, start, types.float32, xbits, c)

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            vec = ir.VectorType(i32, _LANES)
            rows, out_x, start, c = operands(context, builder, signature, args, 3)
            if narrow:
                half_t = ir.VectorType(ir.IntType(16), _LANES)
                ptr = builder.bitcast(builder.gep(rows.data, [start]), half_t.as_pointer())
                half = builder.load(ptr, align=2)
                bits = builder.shl(
                    builder.zext(half, vec), splat(builder, vec, ir.Constant(i32, 16))
                )
            else:
                ptr = builder.bitcast(builder.gep(rows.data, [start]), vec.as_pointer())
                bits = builder.load(ptr, align=4)
            floats = builder.bitcast(bits, ir.VectorType(ir.FloatType(), _LANES))
            lo = splat(builder, ir.VectorType(ir.FloatType(), _LANES), args[2])
            keep = builder.fcmp_ordered(">=", floats, lo)
            return append(context, builder, bits, keep, out_x, c)

        return sig, codegen

    @intrinsic
    def _compress_range(typingctx, bits, start, lo, span, out, c):
        """Appends to ``out[c:]`` the values ``bits[start + k]`` (k < 16, uint32) with
        ``uint32(v - lo) < span`` (one unsigned compare: v - lo wraps below lo), in index
        order; returns how many. ``out`` (uint32) needs room for 16 more; bounds
        unchecked."""
        if not (
            isinstance(bits, types.Array)
            and bits.dtype == types.uint32
            and bits.layout == "C"
            and out.dtype == types.uint32
        ):
            return None
        sig = types.int64(bits, start, types.uint32, types.uint32, out, c)

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.IntType(32), _LANES)
            src, dst, start, c = operands(context, builder, signature, args, 4)
            ptr = builder.bitcast(builder.gep(src.data, [start]), vec.as_pointer())
            values = builder.load(ptr, align=4)
            keep = builder.icmp_unsigned(
                "<",
                builder.sub(values, splat(builder, vec, args[2])),
                splat(builder, vec, args[3]),
            )
            return append(context, builder, values, keep, dst, c)

        return sig, codegen

    return _compress_at_least, _compress_range


def _make_gathers(x86: bool):
    """``(_gather_at_least, _gather_range)`` built on one lowering of the compresses."""
    compress_at_least, compress_range = _make_compress(x86)

    def _gather_at_least(row, vocab, x_lo, tile, xbits, bounds):  # pragma: no cover
        """xbits[:n] = the float32 bits of the logits of ``row`` (float32 or bf16 bits) that
        are >= ``x_lo`` (float32), in index order, and ``bounds[j]`` the count before tile
        j (``tile`` logits each; ``bounds[-1] = n``); returns n, or -1 (and stops) when they
        might not fit ``xbits``: 16 logits per vector compare and compress."""
        room = xbits.shape[0] - 2 * _LANES
        c = 0
        n_tiles = (vocab + tile - 1) // tile
        for j in range(n_tiles):
            bounds[j] = c
            lo = j * tile
            hi = min(lo + tile, vocab)
            full = lo + (hi - lo) // _LANES * _LANES
            for start in range(lo, full, _LANES):
                if c > room:
                    return -1
                c += compress_at_least(row, start, x_lo, xbits, c)
            for k in range(full, hi):
                b = np.uint32(row[k])
                if row.itemsize == 2:
                    b = np.uint32(b << np.uint32(16))
                xbits[c] = b
                c += 1 if np.uint32(b).view(np.float32) >= x_lo else 0
        bounds[n_tiles] = c
        return c

    def _gather_range(ebits, n, lo, span, out):  # pragma: no cover - compiled
        """out[:m] = the values of ebits[:n] in [lo, lo + span) (unsigned), in index order;
        returns m, or -1 (and stops) when they might not fit ``out``."""
        room = out.shape[0] - 2 * _LANES
        c = 0
        n_full = n // _LANES * _LANES
        for start in range(0, n_full, _LANES):
            if c > room:
                return -1
            c += compress_range(ebits, start, lo, span, out, c)
        for k in range(n_full, n):
            out[c] = ebits[k]
            c += 1 if np.uint32(ebits[k] - lo) < span else 0
        return c

    return njit(cache=True)(_gather_at_least), njit(cache=True)(_gather_range)


_gather_at_least, _gather_range = _make_gathers(_avx512_target())


@njit(cache=True)
def _sample_floor(sample, n, scale, goal, hist):  # pragma: no cover - compiled
    """Bits (lo, hi) of a bracket of the row's crossing value guessed from a strided sample
    of its e (``sample[:n]``, float32 bits, each standing for ``scale`` elements): the
    bracket of _sample_bracket, or, when its lower edge lies above the largest sampled
    value, [that value, 2^31) (a peaked row's head is not in the sample: the cut lies among
    values the sample does not see, so only the sampled bulk can place ``lo``). A guess:
    the caller checks it."""
    _sample_hist(sample, n, 1, True, hist)
    lo, hi = _bracket_from_hist(hist, scale, goal)
    top = np.int64(0)
    for j in range(n):
        top = max(top, np.int64(sample[j]))
    # A bracket edge of 0 (the spread of the sampled tail exceeds the goal: a peaked row
    # with a large goal) says nothing: the largest sampled value is tried instead.
    if lo == 0 or top < lo:
        return top, np.int64(1) << np.int64(31)
    return lo, hi
