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
   marks its elements in 64-bit words, a gather collects them and a radix selection runs on
   them alone; a bracket that misses the cut is moved and the sweeps redone (see
   ``_bracket_crossing``). It goes first when a 256-element sample finds the row flat
   (``_looks_flat``), else after 1.;
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

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.cpython.unsafe.numbers import trailing_zeros
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
# sweeps (the float64 mass above hi; 64-bit words marking the elements in [lo, hi)) and a
# gather of the marked elements only, on which the radix selection runs.

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
_WORD = 64
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
    scale = np.float64(stride)
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


@intrinsic
def _inside16(typingctx, arr, start, lo, span):
    """uint32 whose bit k is ``uint32(arr[start + k] - lo) < span`` for k < 16 (``arr`` a
    C-contiguous uint32 array, ``start + 16 <= len(arr)`` unchecked): one 16-lane vector
    compare turned into a bit mask, which LLVM lowers to a mask move on any target. Numba
    has no vector types, and the scalar shift-and-or loop it vectorizes measured 1.6x
    slower."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint32 and arr.layout == "C"):
        return None
    sig = types.uint32(arr, start, lo, span)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        vec = ir.VectorType(i32, 16)
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        start = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(ary.data, [start]), vec.as_pointer())
        values = builder.load(ptr, align=4)
        undef = ir.Constant(vec, ir.Undefined)
        zeros = ir.Constant(ir.VectorType(i32, 16), [0] * 16)

        def splat(value, ty):
            scalar = context.cast(builder, value, ty, types.uint32)
            first = builder.insert_element(undef, scalar, ir.Constant(i32, 0))
            return builder.shuffle_vector(first, undef, zeros)

        below = builder.icmp_unsigned(
            "<",
            builder.sub(values, splat(args[2], signature.args[2])),
            splat(args[3], signature.args[3]),
        )
        return builder.zext(builder.bitcast(below, ir.IntType(16)), i32)

    return sig, codegen


@njit(cache=True)
def _mark_bracket(ebits, vocab, lo, span, words):  # pragma: no cover - compiled
    """words[w] bit k = (lo <= bits(e[64 w + k]) < lo + span): one unsigned compare per
    element (v - lo wraps below lo), 16 lanes at a time (_inside16). ``ebits`` must be
    C-contiguous."""
    n_full = vocab // _WORD
    for w in range(n_full):
        b = w * _WORD
        words[w] = (
            np.uint64(_inside16(ebits, b, lo, span))
            | (np.uint64(_inside16(ebits, b + 16, lo, span)) << np.uint64(16))
            | (np.uint64(_inside16(ebits, b + 32, lo, span)) << np.uint64(32))
            | (np.uint64(_inside16(ebits, b + 48, lo, span)) << np.uint64(48))
        )
    if n_full < words.shape[0]:
        m = np.uint64(0)
        for k in range(n_full * _WORD, vocab):
            if np.uint32(ebits[k] - lo) < span:
                m |= np.uint64(1) << np.uint64(k - n_full * _WORD)
        words[n_full] = m


@njit(cache=True)
def _gather_marked(ebits, words, out):  # pragma: no cover - compiled
    """out[:n] = the marked elements of ebits, in index order; returns n, or -1 (and stops)
    when they might not fit ``out``. A word's first three marks are taken branch-free, the
    rest by a loop: with ~3% of V marked a word holds 0 to 3 marks, in no predictable order
    (1 to 6 branch-free takes measured on a new row each time: 3 is fastest, 1 up to 2x
    slower; on one row timed again and again the predictor learns it and 1 looks best)."""
    c = 0
    one = np.uint64(1)
    room = out.shape[0] - _WORD - 1  # a word adds <= 64 marks plus one slack write
    for w in range(words.shape[0]):
        if c > room:
            return -1
        m = words[w]
        base = w * _WORD
        for _ in range(3):
            k = trailing_zeros(m)  # 64 when m == 0: then nothing is counted
            out[c] = ebits[base + (k & 63)]
            c += 1 if m != 0 else 0
            m &= m - one
        while m != 0:
            out[c] = ebits[base + trailing_zeros(m)]
            c += 1
            m &= m - one
    return c


@njit(cache=True)
def _select(src, n, lo, span, need, tmp, hist):  # pragma: no cover - compiled
    """Bits of the largest value v among src[:n] (all in [lo, lo + span)) with
    Σ_{src >= v} e > need, or -1 if the whole mass does not exceed ``need``.

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
        for b in range(nb):
            hist[b] = 0.0
        for i in range(n):
            v = src[i]
            hist[(np.int64(v) - base) >> shift] += np.float64(np.uint32(v).view(np.float32))
        chosen, acc = _walk_down(hist, nb, need)
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
    ebits, vocab, target, total, lo, hi, cand, cand2, hist, words
):  # pragma: no cover - compiled
    """The crossing value of a top-p cut through the bits bracket [lo, hi), or _UNDECIDED
    (see the module docstring for why a returned value is the radix selection's, bit for
    bit).

    Moves the bracket up (the mass above it already exceeds the target) or down (its mass
    does not reach the target) up to _TRIES - 1 times, four times as wide each time. Gives
    up on a bracket holding more than ~V / 2 elements (ties, nearly uniform rows), on a row
    without a crossing and on a margin too thin to prove the answer. ``cand``/``cand2``
    (V,) uint32 and ``hist`` (4 * 2048,) float64 are scratch, ``words`` ((V + 63) // 64,)
    uint64.
    """
    err = _margin(vocab, total)
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
        _mark_bracket(ebits, vocab, np.uint32(lo), np.uint32(hi - lo), words)
        n = _gather_marked(ebits, words, bracket)
        if n < 0:  # ties or a nearly uniform row: the whole-row selection
            return _UNDECIDED
        w = _select(bracket, n, lo, hi - lo, target - above, cand, hist)
        if w < 0:  # the cut is below the bracket
            if lo <= 0:
                return _UNDECIDED  # no crossing at all (top_p ~ 1): the whole row decides
            lo, hi = max(np.int64(0), lo - 4 * width), lo
            continue
        # Proof: M(w) > target + E and M(w+) < target - E (module docstring).
        at, over = _masses_at_and_over(bracket, n, np.uint32(w))
        if above + at > target + err and above + over < target - err:
            return w
        return _UNDECIDED
    return _UNDECIDED


@njit(cache=True)
def _crossing(
    ebits, vocab, target, total, by_count, cand, cand2, hist, bmax, bmax_ready, words
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
        w = _bracket_crossing(ebits, vocab, target, total, lo, hi, cand, cand2, hist, words)
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
        w = _bracket_crossing(ebits, vocab, target, total, lo, hi, cand, cand2, hist, words)
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
    words = np.empty((vocab + _WORD - 1) // _WORD, dtype=np.uint64)
    thr = np.int64(0)
    if top_p < 1.0:
        target = top_p * total
        w = _crossing(ebits, vocab, target, total, False, cand, cand2, hist, bmax, ready, words)
        if w >= 0:
            thr = w + 1 if strict else w  # strict: only strictly above the crossing value
    if top_k > 0:
        target = np.float64(top_k - 1)
        w = _crossing(ebits, vocab, target, total, True, cand, cand2, hist, bmax, ready, words)
        thr = max(thr, w)
    return np.uint32(min(thr, np.int64(_ONE_BITS)))  # the top-1 (e = 1) is always kept
