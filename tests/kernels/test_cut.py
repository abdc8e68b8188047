"""The numba backend's selection of the top-p cut by a bracket (kernels/_numba/cut.py).

The bracket must return the whole-row radix selection's crossing value bit for bit, or give
up (``_UNDECIDED``) and leave the decision to it: on flat rows (where it is meant to decide),
on rows built against it (exact ties at the cut, cumulative masses equal to the target,
-inf lanes, all-equal and nearly uniform rows, p tiny and p ~ 1) and from brackets that
miss the cut on purpose. Its pieces (the word marks, the gather, the selection inside the
bracket) are checked against numpy restatements, and whole rows through ``propose`` against
the torch reference.
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
    return (
        np.empty(vocab, np.uint32),
        np.empty(vocab, np.uint32),
        np.empty(4 * 2048, np.float64),
        np.empty((vocab + 63) // 64, np.uint64),
    )


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
    cand, cand2, hist, words = _scratch(VOCAB)
    bmax = np.empty((VOCAB + 127) // 128, np.uint32)
    ready = np.zeros(1, np.bool_)  # the block maxima are computed on first use
    decided = 0
    for p in P_VALUES:
        target = p * total
        full = nb._radix_crossing(bits, VOCAB, target, False, cand, cand2, hist)
        got = nb._crossing(bits, VOCAB, target, total, False, cand, cand2, hist, bmax, ready, words)
        assert got == full == _todays(bits, VOCAB, target, cand, cand2, hist), (kind, p, got, full)
        lo, hi = nb._sample_bracket(bits, VOCAB, total - target, hist)
        assert 0 <= lo < hi <= 1 << 31
        alone = nb._bracket_crossing(bits, VOCAB, target, total, lo, hi, cand, cand2, hist, words)
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
        cand, cand2, hist, words = _scratch(VOCAB)
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
    cand, cand2, hist, words = _scratch(VOCAB)
    target = 0.9 * total
    full = nb._radix_crossing(bits, VOCAB, target, False, cand, cand2, hist)
    step = 1 << int(nb._FINE_SHIFT)
    base = (full // step + shift) * step
    for width in (1, 3):
        lo = max(0, base)
        hi = min(1 << 31, max(lo + step, base + width * step))
        got = nb._bracket_crossing(bits, VOCAB, target, total, lo, hi, cand, cand2, hist, words)
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
    cand, cand2, hist, words = _scratch(vocab)
    bmax = np.empty((vocab + 127) // 128, np.uint32)
    nb._block_max(bits, vocab, bmax)
    ready = np.ones(1, np.bool_)
    for target in (1.0, 1.0 + 4000 * 2.0**-10):  # M(1.0) and M(2^-10) exactly
        full = nb._radix_crossing(bits, vocab, target, False, cand, cand2, hist)
        assert full == _oracle_crossing(e, target)
        lo, hi = nb._sample_bracket(bits, vocab, total - target, hist)
        for lo_, hi_ in ((lo, hi), (0, 1 << 31), (full - 5, full + 5)):
            got = nb._bracket_crossing(
                bits, vocab, target, total, lo_, hi_, cand, cand2, hist, words
            )
            assert got == nb._UNDECIDED, (target, lo_, hi_, got)
        got = nb._crossing(bits, vocab, target, total, False, cand, cand2, hist, bmax, ready, words)
        assert got == _todays(bits, vocab, target, cand, cand2, hist) == full
    # one ulp of the target away from the tie, the margin is still too thin: undecided
    target = np.nextafter(1.0, 2.0)
    got = nb._bracket_crossing(bits, vocab, target, total, 0, 1 << 31, cand, cand2, hist, words)
    assert got == nb._UNDECIDED


def test_gather_marked_words():
    # Marks at the first and last lane of words, full words (> 4 marks: the loop), a last
    # partial word, and the refusal when the marks might not fit the output.
    rng = np.random.default_rng(0)
    vocab = 64 * 40 + 17
    ebits = rng.integers(1, 2**30, vocab).astype(np.uint32)
    lo, hi = np.uint32(2**29), np.uint32(2**29 + 2**26)
    ebits[[0, 63, 64, vocab - 1]] = lo  # word edges and the partial word
    ebits[128:192] = hi - np.uint32(1)  # a whole word marked
    words = np.empty((vocab + 63) // 64, np.uint64)
    nb._mark_bracket(ebits, vocab, lo, np.uint32(hi - lo), words)
    inside = (ebits >= lo) & (ebits < hi)
    got = np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab].astype(bool)
    assert np.array_equal(got, inside)
    out = np.empty(vocab, np.uint32)
    n = nb._gather_marked(ebits, words, out)
    assert n == inside.sum() and np.array_equal(out[:n], ebits[inside])
    assert nb._gather_marked(ebits, words, np.empty(n // 2, np.uint32)) == -1


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
    # Flat rows long enough for the bracket, both conventions, tempered and not: tokens and
    # sampled statistics as the torch reference's (which sorts).
    with np.errstate(divide="ignore"):  # the "dead" row's zero weights are -inf logits
        rows = [np.log(_row(k, seed=s)) for s, k in enumerate(["randn1", "randn3", "dead", "bf16"])]
    x = torch.from_numpy(np.stack(rows)).to(dtype)  # (4, V)
    key = K.split(4, x.shape[:-1])
    for kw in ({"top_p": 0.95}, {"top_p": 0.9, "nucleus": "strict"}, {"top_p": 0.5, "top_k": 7000}):
        for temperature in (0.0, 0.7, 1.0):
            out = K.propose(x, temperature=temperature, key=key, stats="sampled", **kw)
            ref = K.propose(
                x, temperature=temperature, key=key, stats="sampled", backend="torch", **kw
            )
            what = f"{dtype} T={temperature} {kw}"
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
