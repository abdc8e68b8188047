"""propose(top_p=, top_k=, nucleus=, stats=): reference vs a sorting loop oracle, every CPU
backend vs the reference, the sampling law by chi-square, and argument validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2

import remask.kernels as K
from remask.kernels._reference import kept_oracle, propose_oracle

BACKENDS = [b for b in K.backends("cpu") if b != "triton"]
FAST_BACKENDS = [b for b in BACKENDS if b != "torch"]
PROB_RTOL, PROB_ATOL = 1e-5, 1e-7
ENT_RTOL, ENT_ATOL = 1e-5, 2e-6
# Significance of each chi-square test: a correct kernel fails one in a million runs (the
# seeds are fixed, so a given run is deterministic anyway).
ALPHA = 1e-6


def random_case(seed: int, vocab: int, dtype=torch.float32, scale: float = 3.0, rows=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, vocab, generator=gen) * scale  # (B, L, V)
    if vocab > 2:
        dead = torch.rand(2, 3, vocab, generator=gen) < 0.2  # some -inf lanes
        dead[..., 0] = False
        x = x.masked_fill(dead, -math.inf)
        top = x.argmax(-1, keepdim=True)  # a tied maximum in one row
        x[0, 0, (int(top[0, 0, 0]) + 1) % vocab] = x[0, 0, int(top[0, 0, 0])]
    mask = (torch.rand(2, 3, generator=gen) < 0.7) if rows else None
    return x.to(dtype), mask


def oracle(x, rows, temperature, key, top_p, top_k, strict, sampled, min_p=0.0) -> K.Proposal:
    v = x.shape[-1]
    flat_rows = None if rows is None else rows.reshape(-1).numpy()
    keys = key.reshape(-1).tolist()
    out = propose_oracle(
        x.float().reshape(-1, v).numpy(),
        temperature,
        keys,
        flat_rows,
        top_p=top_p,
        top_k=top_k,
        strict=strict,
        sampled=sampled,
        min_p=min_p,
    )
    shape = x.shape[:-1]
    toks, *rest = (torch.from_numpy(a) for a in out)
    return K.Proposal(toks.reshape(shape), *(r.float().reshape(shape) for r in rest))


def assert_matches(out: K.Proposal, ref: K.Proposal, what: str) -> None:
    bad = (out.tokens != ref.tokens).nonzero().tolist()
    assert not bad, f"{what}: tokens differ at {bad[:5]}: {out.tokens} vs {ref.tokens}"
    torch.testing.assert_close(out.prob, ref.prob, rtol=PROB_RTOL, atol=PROB_ATOL, msg=what)
    torch.testing.assert_close(out.margin, ref.margin, rtol=PROB_RTOL, atol=PROB_ATOL, msg=what)
    torch.testing.assert_close(out.entropy, ref.entropy, rtol=ENT_RTOL, atol=ENT_ATOL, msg=what)


FILTERS = [  # (top_p, top_k, nucleus, stats, min_p)
    (0.9, None, "crossing", "sampled", None),
    (0.9, None, "strict", "sampled", None),
    (0.5, None, "strict", "untempered", None),
    (None, 3, "crossing", "sampled", None),
    (0.95, 5, "crossing", "sampled", None),
    (0.3, 50, "strict", "sampled", None),
    (None, None, "crossing", "sampled", None),
    (0.99, None, "crossing", "untempered", None),
    (None, None, "crossing", "sampled", 0.05),
    (None, None, "crossing", "untempered", 0.3),
    (0.9, None, "crossing", "sampled", 0.1),
    (None, 5, "crossing", "sampled", 0.02),
    (None, None, "crossing", "sampled", 1.0),  # only the (tied) top tokens
]


@pytest.mark.parametrize("top_p,top_k,nucleus,stats,min_p", FILTERS)
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_reference_matches_sorting_oracle(top_p, top_k, nucleus, stats, min_p, temperature):
    x, rows = random_case(11, 40)
    key = K.split(5, x.shape[:-1])
    kw = dict(top_p=top_p, top_k=top_k, nucleus=nucleus, stats=stats, min_p=min_p)
    ref = K.propose(x, temperature=temperature, key=key, rows=rows, backend="torch", **kw)
    want = oracle(
        x,
        rows,
        temperature,
        key,
        top_p or 1.0,
        top_k or 0,
        nucleus == "strict",
        stats == "sampled",
        min_p or 0.0,
    )
    assert_matches(ref, want, f"reference vs oracle {kw} T={temperature}")


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize(
    "vocab,dtype",
    [(7, torch.float32), (1000, torch.bfloat16), (9000, torch.float32), (9000, torch.float16)],
)
@pytest.mark.parametrize("top_p,top_k,nucleus,stats,min_p", FILTERS)
def test_backend_matches_reference(
    backend, vocab, dtype, top_p, top_k, nucleus, stats, min_p, warm_numba
):
    x, rows = random_case(vocab, vocab, dtype)
    key = K.split(3, x.shape[:-1])
    kw = dict(top_p=top_p, top_k=top_k, nucleus=nucleus, stats=stats, min_p=min_p)
    for temperature in (0.0, 0.5, 1.0):
        out = K.propose(x, temperature=temperature, key=key, rows=rows, backend=backend, **kw)
        ref = K.propose(x, temperature=temperature, key=key, rows=rows, backend="torch", **kw)
        assert_matches(out, ref, f"{backend} {dtype} V={vocab} T={temperature} {kw}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_filter_keeps_the_expected_set(backend, warm_numba):
    # Over many seeds every sampled token must lie in the oracle's kept set, and every kept
    # token of a small row must show up.
    x, _ = random_case(4, 30, scale=1.0, rows=False)
    x = x[0, :1].expand(4000, 30).contiguous()  # (N, V): one row, 4000 independent draws
    for top_p, top_k, nucleus in [
        (0.8, None, "crossing"),
        (0.8, None, "strict"),
        (None, 4, "crossing"),
        (0.9, 6, "strict"),
    ]:
        keep = kept_oracle(
            [float(v) for v in x[0]], 0.8, top_p or 1.0, top_k or 0, nucleus == "strict"
        )
        out = K.propose(
            x,
            temperature=0.8,
            key=K.split(1, x.shape[:-1]),
            top_p=top_p,
            top_k=top_k,
            nucleus=nucleus,
            backend=backend,
        )
        seen = set(out.tokens.tolist())
        assert seen == {i for i, k in enumerate(keep) if k}, (top_p, top_k, nucleus)


def _chi_square_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    n = counts.sum()
    expected = n * probs
    stat = ((counts - expected) ** 2 / expected).sum()
    return float(chi2.sf(stat, len(probs) - 1))


def _four_token_rows(backend: str, seed: int):
    """N identical rows of probabilities [0.5, 0.3, 0.15, 0.05] and one key per row."""
    n = 40_000 if backend != "torch" else 4_000  # the float64 reference pads rows to a tile
    x = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(n, 4).contiguous()  # (N, V)
    return n, x, K.split(seed, x.shape[:-1])


@pytest.mark.statistical
@pytest.mark.parametrize("backend", BACKENDS)
def test_issue_example_law_of_both_conventions(backend, warm_numba):
    # probs [0.5, 0.3, 0.15, 0.05] at top_p = 0.9: ReMDM's convention keeps {0, 1} (the third
    # token's cumulative 0.95 exceeds 0.9), Dream's keeps {0, 1, 2} (the crossing token).
    n, x, key = _four_token_rows(backend, seed=7)
    strict = K.propose(x, temperature=1.0, key=key, top_p=0.9, nucleus="strict", backend=backend)
    counts = torch.bincount(strict.tokens, minlength=4).numpy()
    assert counts[2] == 0 and counts[3] == 0, counts
    assert _chi_square_pvalue(counts[:2], np.array([0.5, 0.3]) / 0.8) > ALPHA, counts
    crossing = K.propose(
        x, temperature=1.0, key=key, top_p=0.9, nucleus="crossing", backend=backend
    )
    counts = torch.bincount(crossing.tokens, minlength=4).numpy()
    assert counts[3] == 0, counts
    assert _chi_square_pvalue(counts[:3], np.array([0.5, 0.3, 0.15]) / 0.95) > ALPHA, counts
    # The third token's share is 0.15 / 0.95 within 5 standard errors of N draws.
    share, p = counts[2] / n, 0.15 / 0.95
    assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), share


@pytest.mark.statistical
@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_tile_filtered_law(backend, warm_numba):
    # V = 9000 spans three sampling tiles; a few large logits spread over the tiles carry the
    # nucleus. The sampled law must be the oracle's renormalised kept distribution.
    vocab, n = 9000, (10_000 if backend != "torch" else 1_500)
    gen = torch.Generator().manual_seed(3)
    row = torch.randn(vocab, generator=gen) * 0.5
    hot = torch.tensor([5, 4100, 4101, 8999, 2000, 7000])
    row[hot] = torch.tensor([6.0, 5.5, 5.0, 4.5, 4.0, 3.0])
    x = row.expand(n, vocab).contiguous()
    temperature, top_p, top_k = 0.9, 0.7, 5
    keep = np.array(kept_oracle([float(v) for v in row], temperature, top_p, top_k, False))
    w = np.where(keep, np.exp((row.double().numpy() - float(row.max())) / temperature), 0.0)
    probs = w / w.sum()
    out = K.propose(
        x,
        temperature=temperature,
        key=K.split(11, x.shape[:-1]),
        top_p=top_p,
        top_k=top_k,
        backend=backend,
    )
    counts = np.bincount(out.tokens.numpy(), minlength=vocab)
    assert counts[~keep].sum() == 0
    kept = np.flatnonzero(keep)
    assert _chi_square_pvalue(counts[kept], probs[kept]) > ALPHA, counts[kept]


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_token_unchanged_by_filters(backend, warm_numba):
    x, rows = random_case(2, 500)
    plain = K.propose(x, rows=rows, backend=backend)
    for kw in ({"top_p": 0.1}, {"top_k": 1}, {"top_p": 0.5, "nucleus": "strict", "top_k": 2}):
        out = K.propose(x, rows=rows, backend=backend, **kw)
        assert torch.equal(out.tokens, plain.tokens), kw
        # untempered statistics do not see the filter at T = 0
        assert torch.equal(out.prob, plain.prob), kw


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_filter_arguments(backend):
    x = torch.randn(2, 5)
    bad = [
        ({"top_p": 0.0}, ValueError, "top_p"),
        ({"top_p": 1.5}, ValueError, "top_p"),
        ({"top_p": float("nan")}, ValueError, "top_p"),
        ({"top_p": "0.9"}, TypeError, "top_p"),
        ({"top_p": True}, TypeError, "top_p"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"top_k": -3}, ValueError, "top_k"),
        ({"top_k": 2.0}, TypeError, "top_k"),
        ({"top_k": True}, TypeError, "top_k"),
        ({"nucleus": "dream"}, ValueError, "nucleus"),
        ({"stats": "tempered"}, ValueError, "stats"),
    ]
    for kw, error, name in bad:
        with pytest.raises(error, match=name):
            K.propose(x, temperature=1.0, key=K.split(0, x.shape[:-1]), backend=backend, **kw)
    # accepted edge values
    K.propose(x, top_p=1.0, top_k=99, backend=backend)
    K.propose(x, top_k=np.int64(2), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_at_the_cut_are_all_kept(backend, warm_numba):
    # A flat row: every token ties with the cut, so top-p and top-k keep all of them
    # ("strict" drops the tied group that crosses p but always keeps the top-1 ties).
    x = torch.zeros(2, 5000)
    x[1, 4000:] = -1.0  # second row: 4000 tied maxima, then a lower tail
    for kw in ({"top_p": 0.3}, {"top_k": 7}, {"top_p": 0.3, "nucleus": "strict"}):
        out = K.propose(x, stats="sampled", backend=backend, **kw)
        torch.testing.assert_close(out.prob, torch.tensor([1 / 5000, 1 / 4000]), rtol=1e-5, atol=0)


# ------------------------------------------------------------------------------------ min-p


@pytest.mark.statistical
@pytest.mark.parametrize("backend", BACKENDS)
def test_min_p_law(backend, warm_numba):
    # probs [0.5, 0.3, 0.15, 0.05]: min_p = 0.25 keeps p >= 0.125, i.e. the first three tokens,
    # drawn in proportion 0.5 : 0.3 : 0.15; min_p = 0.5 keeps p >= 0.25, the first two.
    n, x, key = _four_token_rows(backend, seed=8)
    for min_p, kept in ((0.25, 3), (0.5, 2)):
        out = K.propose(x, temperature=1.0, key=key, min_p=min_p, backend=backend)
        counts = torch.bincount(out.tokens, minlength=4).numpy()
        assert counts[kept:].sum() == 0, (min_p, counts)
        probs = np.array([0.5, 0.3, 0.15])[:kept]
        assert _chi_square_pvalue(counts[:kept], probs / probs.sum()) > ALPHA, (min_p, counts)
    # at T = 2 the tempered probabilities are ∝ sqrt(p): 0.05 gives sqrt(0.1) = 0.32 of the top
    out = K.propose(x, temperature=2.0, key=key, min_p=0.3, backend=backend)
    counts = torch.bincount(out.tokens, minlength=4).numpy()
    assert counts.min() > 0, counts  # all four kept (0.316 >= 0.3)
    out = K.propose(x, temperature=2.0, key=key, min_p=0.33, backend=backend)
    assert torch.bincount(out.tokens, minlength=4)[3] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_min_p(backend):
    x = torch.randn(2, 5)
    for value, error in [
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        ("0.1", TypeError),
        (True, TypeError),
    ]:
        with pytest.raises(error, match="min_p"):
            K.propose(x, temperature=1.0, key=K.split(0, 2), min_p=value, backend=backend)
    # 0 and None are off: identical to no argument
    plain = K.propose(x, temperature=1.0, key=K.split(0, 2), backend=backend)
    for off in (0, 0.0, None):
        out = K.propose(x, temperature=1.0, key=K.split(0, 2), min_p=off, backend=backend)
        assert torch.equal(out.tokens, plain.tokens)


# ------------------------------------------------------- the numba selection's block bound
#
# The numba backend bounds the cut from below by the maxima of 128-element blocks of e and
# runs the radix selection only on the elements above that bound (kernels/_numba/cut.py,
# _BLOCK). These rows are built so that the bound holds (asserted, so that each case really
# takes the short path) in awkward ways: exact ties at the cut, a bound that is exactly the
# cut, block maxima that are all equal. The cut must be the full selection's, bit for bit.

BLOCK = 128


def _e_row(kind: str, vocab: int, seed: int) -> np.ndarray:
    """(V,) float32 e = exp(x - max) of an adversarial row (max 1, entries >= 0)."""
    rng = np.random.default_rng(seed)
    if kind == "peaked":  # LM-like: randn * 3 plus a nucleus of a few large logits
        x = rng.standard_normal(vocab) * 3
        x[rng.choice(vocab, 8, replace=False)] = 20 + rng.standard_normal(8) * 2
    elif kind == "ties":  # a handful of exactly tied large values, one per block, + a tail
        x = rng.standard_normal(vocab) - 12
        # at the first, a middle and the last lane of a block (block edges of the gather)
        hot = rng.choice(vocab // BLOCK, 12, replace=False) * BLOCK + np.tile([0, 77, BLOCK - 1], 4)
        x[hot] = np.repeat([0.0, -0.5, -1.0], 4)  # three groups of four exact ties
    elif kind == "one_per_block":  # each block's maximum carries all its mass: bound == cut
        x = np.full(vocab, -np.inf)
        x[BLOCK - 1 :: BLOCK] = -rng.integers(0, 4, size=len(x[BLOCK - 1 :: BLOCK])).astype(float)
        x[-1] = 0.0  # and in the last, partial block
    elif kind == "equal_block_maxima":  # one block in 8 has the same maximum: 20 exact ties
        x = rng.standard_normal(vocab) - 20
        x[:: 8 * BLOCK] = 0.0
    elif kind == "dead":  # -inf entries (e = 0) and a few large values
        x = np.where(rng.random(vocab) < 0.6, -np.inf, rng.standard_normal(vocab) - 30)
        x[rng.choice(vocab - 1, 4, replace=False)] = [0.0, -0.1, -2.0, -2.0]
        x[-1] = -0.2  # the last lane of the last, partial block
    else:
        raise AssertionError(kind)
    x = x.astype(np.float32)
    return np.exp(x - x.max()).astype(np.float32)


def _bound_holds(e: np.ndarray, target: float, by_count: bool) -> bool:
    """numpy restatement of the kernel's condition for the short path (for the assert)."""
    pad = (-len(e)) % BLOCK
    bmax = np.concatenate([e, np.zeros(pad, np.float32)]).reshape(-1, BLOCK).max(1)
    desc = np.sort(bmax.astype(np.float64))[::-1]
    weight = np.arange(1, len(desc) + 1) if by_count else np.cumsum(desc)
    if weight[-1] <= target:
        return False
    g = desc[np.argmax(weight > target)]
    g_bits = (np.float32(g).view(np.uint32) >> 20) << 20
    hits = (bmax.view(np.uint32) >= g_bits).sum()
    return 4 * hits <= len(bmax)


@pytest.mark.parametrize("kind", ["peaked", "ties", "one_per_block", "equal_block_maxima", "dead"])
def test_block_bound_gives_the_full_selection_cut(kind, warm_numba):
    from remask.kernels._numba import cut as nb

    vocab = 20_000
    e = _e_row(kind, vocab, seed=len(kind))
    bits = e.view(np.uint32)
    total = float(e.astype(np.float64).sum())
    cand = np.empty(vocab, np.uint32)
    cand2 = np.empty(vocab, np.uint32)
    hist = np.empty(4 * 2048, np.float64)
    short = 0
    # top-p targets from small to almost all the mass, top-k counts around the tie groups
    cases = [(p * total, False) for p in (0.05, 0.3, 0.5, 0.7, 0.9, 0.95, 0.999)]
    cases += [(float(k - 1), True) for k in (1, 2, 4, 5, 8, 9, 12, 13, 50, 150)]
    for target, by_count in cases:
        full = nb._radix_crossing(bits, vocab, target, by_count, cand, cand2, hist)
        bmax = np.empty((vocab + BLOCK - 1) // BLOCK, np.uint32)
        nb._block_max(bits, vocab, bmax)
        bound = nb._block_bound_crossing(bits, vocab, target, by_count, cand, cand2, hist, bmax)
        holds = _bound_holds(e, target, by_count)
        assert bound == (full if holds else nb._UNDECIDED), (kind, target, by_count, bound, full)
        short += holds
    assert short >= 5, f"{kind}: only {short} cases took the block-bounded path"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["peaked", "ties", "one_per_block", "equal_block_maxima", "dead"])
def test_block_bounded_rows_match_reference(kind, dtype, warm_numba):
    # The same rows through propose(): kept set, tokens and sampled statistics as the torch
    # reference for both nucleus conventions, top-k and both filters at once.
    vocab = 20_000
    with np.errstate(divide="ignore"):  # e = 0 lanes are -inf logits
        rows = [np.log(_e_row(kind, vocab, seed=s)) for s in range(3)]
    x = torch.from_numpy(np.stack(rows)).to(dtype)  # (3, V)
    key = K.split(9, x.shape[:-1])
    for kw in (
        {"top_p": 0.9},
        {"top_p": 0.5, "nucleus": "strict"},
        {"top_k": 5},
        {"top_k": 13, "top_p": 0.95},
    ):
        for temperature in (0.0, 1.0):
            out = K.propose(x, temperature=temperature, key=key, stats="sampled", **kw)
            ref = K.propose(
                x, temperature=temperature, key=key, stats="sampled", backend="torch", **kw
            )
            assert_matches(out, ref, f"{kind} {dtype} T={temperature} {kw}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampled_stats_rows_keep_status_and_ties(backend, temperature, warm_numba):
    # With stats="sampled" the numba backend's first pass reads only the max, its index, the
    # runner-up and the status (no sums): bad rows, found in any tile, must still raise, NaN
    # before +inf, and a tied maximum still gives the lowest index and margin 0.
    kw = dict(temperature=temperature, top_p=0.9, stats="sampled", backend=backend)
    x = torch.randn(2, 3, 9000)
    key = K.split(2, x.shape[:-1])
    for cells, message in [
        ({8000: math.nan}, "contains NaN"),
        ({4200: math.inf}, r"contains \+inf"),
        ({10: math.inf, 8999: math.nan}, "contains NaN"),
    ]:
        y = x.clone()
        for i, v in cells.items():
            y[1, 2, i] = v
        with pytest.raises(ValueError, match=rf"row \(1, 2\) {message}"):
            K.propose(y, key=key, **kw)
    y = x.clone()
    y[0, 1] = -math.inf
    with pytest.raises(ValueError, match=r"row \(0, 1\) has no finite logit"):
        K.propose(y, key=key, **kw)
    y = x.clone()
    y[0, 0, [17, 4100, 8999]] = 30.0  # tied maximum holding almost all the mass
    out = K.propose(y, key=key, **kw)
    ref = K.propose(y, key=key, **{**kw, "backend": "torch"})
    assert_matches(out, ref, f"{backend} T={temperature}")
    assert float(out.margin[0, 0]) == 0.0
    if temperature == 0.0:
        assert int(out.tokens[0, 0]) == 17
