"""Exact quantities against brute-force enumeration, identities, and published closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from _analysis_brute import condition, dtc, joint_table, marginal, partition_law, tc

from remask.analysis import (
    conditional_joint,
    entropy_profile,
    partition_error,
    schedule_error,
    total_correlation,
)
from remask.models import (
    FiniteSupportOracle,
    ListOpOracle,
    MarkovChainOracle,
    MixtureOracle,
    StickyHMMOracle,
)

LN2 = math.log(2)


def _oracles():
    return {
        "markov": MarkovChainOracle(3, 6, seed=1, concentration=0.3),
        "hmm": StickyHMMOracle(3, 6, seed=0, n_states=2, stickiness=0.9),
        "mixture": MixtureOracle(3, 6, seed=0, n_components=2),
    }


@pytest.mark.parametrize("name", ["markov", "hmm", "mixture"])
def test_conditional_joint_and_tc_match_brute_force(name):
    oracle = _oracles()[name]
    M = oracle.mask_id
    X, p = joint_table(oracle)
    cases = [
        ([M] * 6, [0, 1, 2]),
        ([1, M, M, M, 0, M], [1, 3, 5]),  # another masked position (2) is marginalised out
        ([2, M, M, M, M, M], [1, 2, 3, 4, 5]),
        ([M, 0, M, M, 2, M], [3, 5]),
    ]
    for tokens, positions in cases:
        q = condition(X, p, np.array(tokens), M)
        values, logp = conditional_joint(oracle, torch.tensor(tokens), positions)
        ref = marginal(X, q, positions)
        got = dict(zip(map(tuple, values.tolist()), logp.exp().tolist()))
        assert set(got) == set(ref)
        for key, w in ref.items():
            assert got[key] == pytest.approx(w, abs=1e-12)
        res = total_correlation(oracle, torch.tensor(tokens), positions)
        assert res.tc[0] == pytest.approx(tc(X, q, positions), abs=1e-10)
        assert res.dtc[0] == pytest.approx(dtc(X, q, positions), abs=1e-10)
        bits = total_correlation(oracle, torch.tensor(tokens), positions, unit="bits")
        assert bits.tc[0] == pytest.approx(res.tc[0] / LN2, rel=1e-12)


def test_tc_closed_forms_on_finite_sets():
    # "New York" / "Mexico City": marginals are fair coins, the joint has 1 bit: TC = DTC = 1 bit.
    r = total_correlation(FiniteSupportOracle.cities(), [4, 4], [0, 1], unit="bits")
    assert r.tc[0] == pytest.approx(1.0) and r.dtc[0] == pytest.approx(1.0)
    # Even parity on n bits: n fair marginals, n-1 bits jointly -> TC = 1 bit; DTC = n-1 bits.
    for n in (3, 5):
        r = total_correlation(FiniteSupportOracle.parity(n), [2] * n, range(n), unit="bits")
        assert r.tc[0] == pytest.approx(1.0) and r.dtc[0] == pytest.approx(n - 1)


# ParallelBench's closed forms (arXiv 2510.04767), bits: replace_random C = (n−1) log2(n/(n−1)),
# shuffle C = n log2 n − log2 n!.
REPLACE_RANDOM_TC = {3: 1.1699, 4: 1.2451, 5: 1.2877, 6: 1.3152}
SHUFFLE_TC = {3: 2.1699, 4: 3.4150, 5: 4.7027, 6: 6.0179}


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_parallelbench_tc_closed_forms(n):
    for op, table, formula in (
        ("replace_random", REPLACE_RANDOM_TC, (n - 1) * (math.log2(n) - math.log2(n - 1))),
        ("shuffle", SHUFFLE_TC, n * math.log2(n) - math.log2(math.factorial(n))),
    ):
        oracle = ListOpOracle(op, n, n_items=n + 1)
        prompt = oracle.prompts(1, seed=n)[0]
        tokens = torch.cat([prompt, torch.full((n,), oracle.mask_id)])
        r = total_correlation(oracle, tokens, range(n, 2 * n), unit="bits")
        assert r.tc[0] == pytest.approx(formula, abs=1e-9)
        assert r.tc[0] == pytest.approx(table[n], abs=5e-5)
    for op in ("copy", "reverse", "sort"):
        oracle = ListOpOracle(op, n)
        tokens = torch.cat([oracle.prompts(1, seed=0)[0], torch.full((n,), oracle.mask_id)])
        assert total_correlation(oracle, tokens, range(n, 2 * n)).tc[0] == pytest.approx(
            0.0, abs=1e-12
        )


@pytest.mark.parametrize("n,k,expected", [(6, 2, 0.3125), (8, 2, 0.2734), (6, 6, 0.0154)])
def test_shuffle_topk_accuracy_closed_form(n, k, expected):
    # ParallelBench: Acc(k) = Π_i P(n-(i-1)k, k) / (n-(i-1)k)^k for an exact model; any fixed
    # partition into blocks of k gives the same value by symmetry.
    oracle = ListOpOracle("shuffle", n)
    prompt = oracle.prompts(1, seed=1)[0]
    partition = [list(range(n + s, n + s + k)) for s in range(0, n, k)]
    err = partition_error(oracle, partition, prompt=prompt)
    formula = math.prod(math.perm(n - i * k, k) / (n - i * k) ** k for i in range(n // k))
    assert err.validity == pytest.approx(formula, abs=1e-12)
    assert err.validity == pytest.approx(expected, abs=5e-5)
    # Invalid outputs have q > 0 and p = 0: reverse KL diverges, forward KL stays finite.
    assert err.reverse_kl == math.inf and math.isfinite(err.kl)


def test_replace_random_one_step_accuracy():
    # Temperature-1, one step: valid iff exactly one position is NEW: ((n-1)/n)^(n-1) -> 1/e.
    n = 5
    oracle = ListOpOracle("replace_random", n)
    err = partition_error(oracle, [list(range(n, 2 * n))], prompt=oracle.prompts(1)[0])
    assert err.validity == pytest.approx(((n - 1) / n) ** (n - 1), abs=1e-12)


PARTITIONS = {
    "ar": [[i] for i in range(6)],
    "pairs": [[0, 1], [2, 3], [4, 5]],
    "dilated": [[0, 2, 4], [1, 3, 5]],
    "halves": [[0, 1, 2], [3, 4, 5]],
    "reverse_pairs": [[5, 4], [3], [2, 1, 0]],
    "one_step": [list(range(6))],
}


@pytest.mark.parametrize("name", ["markov", "hmm", "mixture"])
def test_partition_error_identity_and_brute_force(name):
    oracle = _oracles()[name]
    X, p = joint_table(oracle)
    for part_name, part in PARTITIONS.items():
        err = partition_error(oracle, part)
        q = partition_law(X, p, part, 0)
        on = p > 0
        assert q.sum() == pytest.approx(1.0, abs=1e-10)
        assert err.kl == pytest.approx(float(np.sum(p[on] * np.log(p[on] / q[on]))), abs=1e-9), (
            part_name
        )
        assert err.tv == pytest.approx(0.5 * float(np.abs(p - q).sum()), abs=1e-9), part_name
        # The chain-rule identity KL(p‖q) = Σ_t E[TC(S_t | ·)], each side computed separately.
        assert err.kl == pytest.approx(float(err.tc_per_step.sum()), abs=1e-9), part_name
        # Step 1 has no revealed context: its E[TC] is the plain TC of S_1.
        assert err.tc_per_step[0] == pytest.approx(tc(X, p, part[0]), abs=1e-9)
    assert partition_error(oracle, PARTITIONS["ar"]).kl == pytest.approx(0.0, abs=1e-10)
    one = partition_error(oracle, PARTITIONS["one_step"])
    assert one.kl == pytest.approx(tc(X, p, list(range(6))), abs=1e-9)  # one step costs TC(x)


def test_partition_error_with_prompt_matches_brute_force():
    oracle = StickyHMMOracle(3, 6, seed=3, stickiness=0.7)
    X, p = joint_table(oracle)
    prompt = [2, 0]
    part = [[3, 5], [2, 4]]
    err = partition_error(oracle, part, prompt=prompt)
    pc = condition(X, p, np.array(prompt + [oracle.mask_id] * 4), oracle.mask_id)
    q = partition_law(X, pc, part, 2)
    on = pc > 0
    assert err.kl == pytest.approx(float(np.sum(pc[on] * np.log(pc[on] / q[on]))), abs=1e-9)
    assert err.kl == pytest.approx(float(err.tc_per_step.sum()), abs=1e-9)
    assert err.tv == pytest.approx(0.5 * float(np.abs(pc - q).sum()), abs=1e-9)


def test_dilated_beats_contiguous_on_a_markov_chain():
    # A Markov chain (V=4, L=8, Dirichlet(0.3) rows): for a fast-mixing chain,
    # distant positions are nearly independent, so dilated sets cost far less than
    # contiguous ones, and the one-step error is the largest (TC(x)).
    oracle = MarkovChainOracle(4, 8, seed=0, concentration=0.3)
    res = {
        name: partition_error(oracle, part, unit="bits")
        for name, part in {
            "pairs": [[0, 1], [2, 3], [4, 5], [6, 7]],
            "dilated": [[0, 2, 4, 6], [1, 3, 5, 7]],
            "halves": [[0, 1, 2, 3], [4, 5, 6, 7]],
            "one_step": [list(range(8))],
        }.items()
    }
    assert res["dilated"].kl < res["pairs"].kl < res["halves"].kl < res["one_step"].kl
    assert res["dilated"].tv < res["pairs"].tv < res["halves"].tv < res["one_step"].tv
    for r in res.values():
        assert r.kl == pytest.approx(float(r.tc_per_step.sum()), abs=1e-4)  # "to 4 decimals"
    tc_all = total_correlation(oracle, [oracle.mask_id] * 8, range(8), unit="bits").tc[0]
    assert res["one_step"].kl == pytest.approx(tc_all, abs=1e-9)


def test_entropy_profile_and_random_order_formula():
    oracle = MarkovChainOracle(3, 5, seed=2, concentration=0.5)
    X, p = joint_table(oracle)
    h = entropy_profile(oracle)
    n = 5
    # h(0) is the mean single-site entropy; Σ_m Z_m = TC(x) (Z_{m+1} = h(0) − h(m)).
    from _analysis_brute import entropy as H

    assert h[0] == pytest.approx(np.mean([H(marginal(X, p, [i])) for i in range(n)]), abs=1e-12)
    assert float(np.sum(h[0] - h)) == pytest.approx(tc(X, p, list(range(n))), abs=1e-10)
    assert schedule_error(h, [n]) == pytest.approx(tc(X, p, list(range(n))), abs=1e-10)
    assert schedule_error(h, [1] * n) == 0.0
    # Exact expectation over uniformly random orders: average the exact partition error over
    # every order (ordered set partitions with the given sizes are equally likely).
    for sizes in ([2, 3], [3, 2], [2, 2, 1]):
        parts = set()
        for perm in itertools.permutations(range(n)):
            cuts = np.cumsum([0] + sizes)
            parts.add(tuple(tuple(sorted(perm[a:b])) for a, b in zip(cuts[:-1], cuts[1:])))
        mean_kl = np.mean([partition_error(oracle, [list(s) for s in part]).kl for part in parts])
        assert schedule_error(h, sizes) == pytest.approx(mean_kl, abs=1e-10)


def test_bad_partitions_and_inputs_raise():
    oracle = MarkovChainOracle(3, 4, seed=0)
    with pytest.raises(ValueError, match="exactly once"):
        partition_error(oracle, [[0, 1], [1, 2, 3]])
    with pytest.raises(ValueError, match="exactly once"):
        partition_error(oracle, [[0, 1]])
    with pytest.raises(ValueError, match="exactly once"):
        partition_error(oracle, [[0], [1, 2, 3]], prompt=[1])
    with pytest.raises(ValueError, match="unit"):
        total_correlation(oracle, [3, 3, 3, 3], [0, 1], unit="hartleys")
    with pytest.raises(ValueError, match="positions"):
        total_correlation(oracle, [3, 3, 3, 3], [0, 7])
    with pytest.raises(TypeError, match="exact oracle"):
        from remask.models.tiny import TinyTransformer

        total_correlation(TinyTransformer(vocab_size=4), [3, 3, 3, 3], [0, 1])
    with pytest.raises(ValueError, match="max_states"):
        conditional_joint(oracle, [3, 3, 3, 3], [0, 1, 2, 3], max_states=10)
