"""The numba backend's selection of the top-p cut by a bracket (kernels/_numba/cut.py).

The bracket must return the whole-row radix selection's crossing value bit for bit, or give
up (``_UNDECIDED``) and leave the decision to it: on flat rows (where it is meant to decide),
on rows built against it (exact ties at the cut, cumulative masses equal to the target,
-inf lanes, all-equal and nearly uniform rows, p tiny and p ~ 1) and from brackets that
miss the cut on purpose. Its pieces (the compresses, the selection inside the bracket) are
checked against numpy restatements; the gathered top-p (from logits, without a stored row
of e) against the stored passes' cut; whole rows through ``propose`` against the torch
reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import remask.kernels as K

nb = pytest.importorskip("remask.kernels._numba.cut")

VOCAB = 20_000  # >= nb._MIN_VOCAB: long enough for the bracket, short enough to be quick
P_VALUES = (1e-6, 0.05, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.999999)


def _e_of(x: np.ndarray) -> np.ndarray:
    """(V,) float32 e = exp(x - max) in [0, 1] (max 1), from logits that may hold -inf."""
    x = x.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(x - x.max()).astype(np.float32)


def _row(kind: str, seed: int, vocab: int = VOCAB) -> np.ndarray:
    """(V,) float32 e of an adversarial row."""
    rng = np.random.default_rng(seed)
    if kind.startswith("randn"):  # flat rows: the bracket's own case
        return _e_of(rng.standard_normal(vocab) * float(kind[5:]))
    if kind == "bf16":  # logits rounded to bf16: many exact ties everywhere, the cut included
        x = torch.from_numpy(rng.standard_normal(vocab).astype(np.float32) * 2)
        return _e_of(x.bfloat16().float().numpy())
    if kind == "ties":  # a few values only: the cut falls inside a group of thousands of ties
        return _e_of(rng.integers(0, 6, vocab).astype(np.float64) * -0.7)
    if kind == "dead":  # 70% -inf lanes (e = 0) under a flat row
        x = rng.standard_normal(vocab) * 2
        x[rng.random(vocab) < 0.7] = -np.inf
        x[0] = 0.0
        return _e_of(x)
    if kind == "equal":  # all-equal: every token ties with the cut
        return np.ones(vocab, np.float32)
    if kind == "uniform":  # nearly uniform: e in (1 - 1e-3, 1]
        return _e_of(rng.random(vocab) * 1e-3)
    if kind == "peaked":  # LM-like: a nucleus of a few large logits on a flat tail
        x = rng.standard_normal(vocab) * 3
        x[rng.choice(vocab, 8, replace=False)] = 20 + rng.standard_normal(8)
        return _e_of(x)
    if kind == "tiny":  # the mass spread over values far below 2^-40 of the maximum
        x = rng.standard_normal(vocab) - 40.0
        x[0] = 0.0
        return _e_of(x)
    raise AssertionError(kind)


KINDS = ["randn1", "randn3", "randn5", "bf16", "ties", "dead", "equal", "uniform", "peaked", "tiny"]


def _scratch(vocab: int):
    return np.empty(vocab, np.uint32), np.empty(vocab, np.uint32), np.empty(4 * 2048, np.float64)


def _tile_total(e: np.ndarray) -> float:
    """The kernel's ``total``: float64 sum of float32 sums of 4096-element tiles."""
    return float(
        sum(np.float64(e[i : i + 4096].sum(dtype=np.float32)) for i in range(0, len(e), 4096))
    )


def _todays(bits, vocab, target, cand, cand2, hist) -> int:
    """The selection before the bracket: the block bound, else the whole row."""
    bmax = np.empty((vocab + 127) // 128, np.uint32)
    nb._block_max(bits, vocab, bmax)
    w = nb._block_bound_crossing(bits, vocab, target, False, cand, cand2, hist, bmax)
    return nb._radix_crossing(bits, vocab, target, False, cand, cand2, hist) if w == -2 else w


def _oracle_crossing(e: np.ndarray, target: float) -> int:
    """Bits of max{v in e : Σ_{e_j >= v} e_j > target} by sorting, or -1 (float64 sums of
    float32 values: exact for the rows it is used on, far from near-ties otherwise)."""
    values, counts = np.unique(e, return_counts=True)
    values, counts = values[::-1], counts[::-1]  # distinct values, decreasing
    mass = np.cumsum(values.astype(np.float64) * counts)
    over = np.flatnonzero(mass > target)
    return -1 if len(over) == 0 else int(values[over[0]].view(np.uint32))


@pytest.mark.parametrize("kind", KINDS)
def test_crossing_is_the_whole_row_selection(kind):
    # Every p, through the dispatcher (block bound, bracket, whole row): the same bits as the
    # whole-row radix selection, which the bracket replaces on flat rows.
    e = _row(kind, seed=len(kind))
    bits = e.view(np.uint32)
    total = _tile_total(e)
    cand, cand2, hist = _scratch(VOCAB)
    bmax = np.empty((VOCAB + 127) // 128, np.uint32)
    ready = np.zeros(1, np.bool_)  # the block maxima are computed on first use
    decided = 0
    for p in P_VALUES:
        target = p * total
        full = nb._radix_crossing(bits, VOCAB, target, False, cand, cand2, hist)
        got = nb._crossing(bits, VOCAB, target, total, False, cand, cand2, hist, bmax, ready)
        assert got == full == _todays(bits, VOCAB, target, cand, cand2, hist), (kind, p, got, full)
        lo, hi = nb._sample_bracket(bits, VOCAB, total - target, hist)
        assert 0 <= lo < hi <= 1 << 31
        alone = nb._bracket_crossing(bits, VOCAB, target, total, lo, hi, cand, cand2, hist)
        assert alone in (full, nb._UNDECIDED), (kind, p, alone, full)
        decided += alone == full
    if kind.startswith("randn") or kind in ("bf16", "dead"):
        # on flat rows it does decide (peaked rows are the block bound's; p = 1e-6 keeps
        # the top-1 alone)
        assert decided >= len(P_VALUES) - 2, (kind, decided)


def test_crossing_matches_a_sorting_oracle():
    # The whole-row selection itself, far from near-ties, against exact sorted sums.
    for kind in ("randn3", "bf16", "ties", "dead"):
        e = _row(kind, seed=3)
        cand, cand2, hist = _scratch(VOCAB)
        total = _tile_total(e)
        for p in (0.3, 0.9, 0.95):
            got = nb._radix_crossing(e.view(np.uint32), VOCAB, p * total, False, cand, cand2, hist)
            assert got == _oracle_crossing(e, p * total), (kind, p)


@pytest.mark.parametrize("shift", [-4000, -600, -60, -3, 0, 3, 60, 600, 4000])
def test_bracket_that_misses_the_cut_is_moved(shift):
    # Brackets of one to a few fine bins, placed from far below to far above the cut (in
    # 1/32 octave steps): the bracket moves (4x wider each time) until it holds the cut, or
    # gives up; never a different answer. Near misses must still decide.
    e = _row("randn2", seed=7)
    bits = e.view(np.uint32)
    total = _tile_total(e)
    cand, cand2, hist = _scratch(VOCAB)
    target = 0.9 * total
    full = nb._radix_crossing(bits, VOCAB, target, False, cand, cand2, hist)
    step = 1 << int(nb._FINE_SHIFT)
    base = (full // step + shift) * step
    for width in (1, 3):
        lo = max(0, base)
        hi = min(1 << 31, max(lo + step, base + width * step))
        got = nb._bracket_crossing(bits, VOCAB, target, total, lo, hi, cand, cand2, hist)
        assert got in (full, nb._UNDECIDED), (shift, width, got, full)
        if abs(shift) <= 60:
            assert got == full, (shift, width, got, full)


def test_thin_margin_gives_up():
    # Powers of two sum exactly: a target equal to a cumulative mass (M(w+) == target) is
    # within any rounding of the decision, so the bracket must leave it to the whole row.
    vocab = VOCAB
    e = np.zeros(vocab, np.float32)
    e[0] = 1.0
    e[1:4001] = 2.0**-10  # 4000 exact ties
    e[4001:12001] = 2.0**-16
    total = float(e.astype(np.float64).sum())
    bits = e.view(np.uint32)
    cand, cand2, hist = _scratch(vocab)
    bmax = np.empty((vocab + 127) // 128, np.uint32)
    nb._block_max(bits, vocab, bmax)
    ready = np.ones(1, np.bool_)
    for target in (1.0, 1.0 + 4000 * 2.0**-10):  # M(1.0) and M(2^-10) exactly
        full = nb._radix_crossing(bits, vocab, target, False, cand, cand2, hist)
        assert full == _oracle_crossing(e, target)
        lo, hi = nb._sample_bracket(bits, vocab, total - target, hist)
        for lo_, hi_ in ((lo, hi), (0, 1 << 31), (full - 5, full + 5)):
            got = nb._bracket_crossing(bits, vocab, target, total, lo_, hi_, cand, cand2, hist)
            assert got == nb._UNDECIDED, (target, lo_, hi_, got)
        got = nb._crossing(bits, vocab, target, total, False, cand, cand2, hist, bmax, ready)
        assert got == _todays(bits, vocab, target, cand, cand2, hist) == full
    # one ulp of the target away from the tie, the margin is still too thin: undecided
    target = np.nextafter(1.0, 2.0)
    got = nb._bracket_crossing(bits, vocab, target, total, 0, 1 << 31, cand, cand2, hist)
    assert got == nb._UNDECIDED


@pytest.mark.parametrize("x86", [True, False], ids=["avx512", "generic"])
def test_gather_range(x86):
    # Both lowerings of the compress (AVX-512's register form, LLVM's generic compress-store;
    # the first only where the CPU has AVX-512): the values in [lo, hi) in index order, at
    # the first and last lanes of vectors, a whole vector kept, a partial last vector, and
    # the refusal when they might not fit the output.
    if x86 and not nb._avx512_target():
        pytest.skip("the AVX-512 lowering needs an AVX-512 CPU (the generic one ran)")
    _, gather_range = nb._make_gathers(x86)
    rng = np.random.default_rng(0)
    n = 16 * 40 + 7
    ebits = rng.integers(1, 2**30, n).astype(np.uint32)
    lo, hi = np.uint32(2**29), np.uint32(2**29 + 2**26)
    ebits[[0, 15, 16, n - 1]] = lo  # vector edges and the partial vector
    ebits[128:144] = hi - np.uint32(1)  # a whole vector inside
    inside = (ebits >= lo) & (ebits < hi)
    out = np.empty(n + 32, np.uint32)
    m = gather_range(ebits, n, lo, np.uint32(hi - lo), out)
    assert m == inside.sum() and np.array_equal(out[:m], ebits[inside])
    assert gather_range(ebits, n, lo, np.uint32(hi - lo), np.empty(m // 2, np.uint32)) == -1


@pytest.mark.parametrize("x86", [True, False], ids=["avx512", "generic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gather_at_least(x86, dtype):
    # The logits >= x_lo (float compare: -0.0 == 0.0, -inf never kept) as float32 bits (bf16
    # widened) in index order, with the count before each tile (tiles of 100: not a multiple
    # of the 16 lanes, and a partial last one), from both lowerings; the refusal too.
    if x86 and not nb._avx512_target():
        pytest.skip("the AVX-512 lowering needs an AVX-512 CPU (the generic one ran)")
    gather_at_least, _ = nb._make_gathers(x86)
    rng = np.random.default_rng(1)
    n, tile = 16 * 50 + 9, 100
    x = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).to(dtype)
    x[[3, 16, n - 1]] = 0.0
    x[[4, 31]] = -0.0
    x[[5, 47]] = float("-inf")
    if dtype == torch.bfloat16:
        raw = x.view(torch.int16).numpy().view(np.uint16)
    else:
        raw = x.numpy().view(np.uint32)
    xf = x.float().numpy()
    n_tiles = (n + tile - 1) // tile
    for x_lo in (np.float32(0.0), np.float32(-0.0), np.float32(1.25), np.float32(-np.inf)):
        keep = xf >= x_lo
        bits = np.empty(n + 32, np.uint32)
        bounds = np.empty(n_tiles + 1, np.int64)
        m = gather_at_least(raw, n, x_lo, tile, bits, bounds)
        assert m == keep.sum(), x_lo
        assert np.array_equal(bits[:m], xf[keep].view(np.uint32)), x_lo
        before = np.concatenate([[0], np.cumsum(keep)])[
            np.minimum(np.arange(n_tiles + 1) * tile, n)
        ]
        assert np.array_equal(bounds, before), x_lo
    small = np.empty(n // 2, np.uint32)
    bounds = np.empty(n_tiles + 1, np.int64)
    assert gather_at_least(raw, n, np.float32(-np.inf), tile, small, bounds) == -1


def test_select_inside_a_bracket():
    # The selection inside the bracket against sorted exact sums, spans from one value to 2^27.
    rng = np.random.default_rng(1)
    tmp = np.empty(5000, np.uint32)
    hist = np.empty(4 * 2048, np.float64)
    for span in (1, 7, 2048, 2049, 1 << 20, 1 << 27):
        lo = 0x38000000
        src = (lo + rng.integers(0, span, 3000)).astype(np.uint32)
        e = src.view(np.float32)
        for frac in (0.0, 0.1, 0.5, 0.99, 1.5):
            need = frac * float(e.astype(np.float64).sum())
            got = nb._select(src.copy(), len(src), lo, span, need, tmp, hist)
            assert got == _oracle_crossing(e, need), (span, frac)


# ------------------------------------------------------------- whole rows through propose()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flat_rows_match_reference(dtype, warm_numba):
    # Flat rows long enough for the bracket and the gathered top-p / min-p, both
    # conventions, tempered and not: tokens and sampled statistics as the torch reference's
    # (which sorts).
    with np.errstate(divide="ignore"):  # the "dead" row's zero weights are -inf logits
        rows = [np.log(_row(k, seed=s)) for s, k in enumerate(["randn1", "randn3", "dead", "bf16"])]
    x = torch.from_numpy(np.stack(rows)).to(dtype)  # (4, V)
    key = K.split(4, x.shape[:-1])
    for kw in (
        {"top_p": 0.95},
        {"top_p": 0.9, "nucleus": "strict"},
        {"top_p": 0.5, "top_k": 7000},
        {"min_p": 0.05},
        {"top_p": 0.9, "min_p": 0.2},
    ):
        # untempered statistics with a tempered filter: the first pass sums both (gathered)
        for temperature, stats in (
            (0.0, "sampled"),
            (0.7, "sampled"),
            (1.0, "sampled"),
            (0.7, "untempered"),
        ):
            out = K.propose(x, temperature=temperature, key=key, stats=stats, **kw)
            ref = K.propose(x, temperature=temperature, key=key, stats=stats, backend="torch", **kw)
            what = f"{dtype} T={temperature} {stats} {kw}"
            assert torch.equal(out.tokens, ref.tokens), what
            for name in ("prob", "margin", "entropy"):
                torch.testing.assert_close(
                    getattr(out, name), getattr(ref, name), rtol=1e-5, atol=2e-6, msg=what
                )


def test_flat_rows_skip_the_block_bound():
    # The 256-element peek sends flat rows (thousands kept) to the bracket first and LM-like
    # rows (a nucleus of tens) to the block bound first; either order gives the same cut.
    hist = np.empty(4 * 2048, np.float64)
    blocks = (VOCAB + 127) // 128
    for kind, flat in (("randn1", True), ("randn3", True), ("bf16", True), ("peaked", False)):
        e = _row(kind, seed=11)
        total = _tile_total(e)
        got = nb._looks_flat(e.view(np.uint32), VOCAB, 0.05 * total, blocks, hist)
        assert got == flat, kind


# ------------------------------------------------------------------ the gathered top-p

pp = pytest.importorskip("remask.kernels._numba.propose")
GATHERED_DECIDES = {  # p values the gathered top-p must decide (flat rows of thousands kept
    # and LM-like ones; 1.0 is min-p alone); wider nuclei (> V / 2 kept) and p ~ 0 or ~ 1 may
    # go to the stored passes
    "randn3": (0.3, 0.5, 0.8, 0.9, 0.95, 1.0),
    "randn5": (0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0),
    "peaked": (0.5, 0.8, 0.9, 0.95, 0.99, 1.0),
    "tiny": (1.0,),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_gathered_top_p_is_the_stored_cut(kind, dtype):
    # From the logits, without storing e: the stored passes' cut bit for bit whenever it
    # decides (every p, both conventions, with a min-p cut on top, tempered or not), their
    # kept mass, entropy term and tile masses up to float32 summation order, and a decision
    # where it is meant to decide.
    with np.errstate(divide="ignore"):  # zero weights are -inf logits
        x = torch.from_numpy(np.log(_row(kind, seed=len(kind)))).to(dtype)
    if dtype == torch.bfloat16:
        raw = x.view(torch.int16).numpy().view(np.uint16)
    else:
        raw = x.numpy().view(np.uint32)
    xf = x.float().numpy()
    m = np.float32(xf.max())
    tile = 4096
    n_tiles = (VOCAB + tile - 1) // tile
    cand, cand2, hist = _scratch(VOCAB)
    ebuf = np.empty(VOCAB, np.float32)
    for temperature in (1.0, 0.7):
        inv_t = np.float32(1.0 / temperature)
        e = np.empty(VOCAB, np.float32)  # the stored pass's e and total
        total = sum(
            pp._tile_exp_store(raw[lo : lo + tile], min(tile, VOCAB - lo), m, inv_t, e, lo)
            for lo in range(0, VOCAB, tile)
        )
        d = np.maximum(np.float32(-88.0), (xf - m) * inv_t).astype(np.float64)
        for p in (*P_VALUES, 1.0):  # 1.0: min-p alone
            for strict in (False, True):
                for min_bits in (0, pp.min_p_bits(0.01)) if p < 1.0 else (pp.min_p_bits(0.01),):
                    masses = np.zeros(n_tiles)
                    sk, tk, thr = pp._gathered_row(
                        raw, m, inv_t, total, p, min_bits, strict, ebuf, cand, cand2, hist, masses
                    )
                    what = (kind, temperature, p, strict, min_bits, thr)
                    if thr < 0:
                        assert p not in GATHERED_DECIDES.get(kind, ()), what
                        continue
                    stored = 0
                    if p < 1.0:
                        stored = int(
                            nb._kept_threshold(e, VOCAB, total, p, 0, strict, cand, cand2, hist)
                        )
                    if min_bits:
                        stored = max(stored, min(min_bits, int(nb._ONE_BITS)))
                    assert thr == stored, what
                    kept = e.view(np.uint32) >= stored
                    w = np.where(kept, e.astype(np.float64), 0.0)
                    np.testing.assert_allclose(sk, w.sum(), rtol=1e-6, err_msg=str(what))
                    np.testing.assert_allclose(
                        tk, (w * d).sum(), rtol=1e-5, atol=1e-9, err_msg=str(what)
                    )
                    np.testing.assert_allclose(
                        masses,
                        np.add.reduceat(w, np.arange(0, VOCAB, tile)),
                        rtol=1e-6,
                        err_msg=str(what),
                    )
