"""Clamp-and-rerun estimators and homogenization profiles, validated against exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _analysis_brute import condition, joint_table, mutual_information

from remask.analysis import (
    cmi_matrix,
    distances_to_observed,
    homogenization_profile,
    marginal_consistency,
    pairwise_cmi,
)
from remask.models import EOSPaddedOracle, MarkovChainOracle, MixtureOracle, StickyHMMOracle
from remask.models.tiny import TinyTransformer


def _kl(p, q):
    on = p > 0
    return float(np.sum(p[on] * np.log(p[on] / q[on])))


@pytest.mark.parametrize(
    "oracle",
    [
        MarkovChainOracle(3, 6, seed=1, concentration=0.3),
        StickyHMMOracle(3, 6, seed=0, n_states=2, stickiness=0.9),
        MixtureOracle(3, 6, seed=0, n_components=2),
    ],
    ids=["markov", "hmm", "mixture"],
)
def test_pairwise_cmi_is_exact_on_oracles(oracle):
    M = oracle.mask_id
    X, p = joint_table(oracle)
    tokens = torch.tensor([[1, M, M, M, M, M], [M, M, 0, M, M, 2]])
    row = pairwise_cmi(oracle, tokens, 1)
    for b in range(2):
        q = condition(X, p, tokens[b].numpy(), M)
        for j in range(6):
            if j == 1 or tokens[b, j] != M:
                assert np.isnan(row.cmi[b, j])
            else:
                assert row.cmi[b, j] == pytest.approx(mutual_information(X, q, 1, j), abs=1e-10)
    both = pairwise_cmi(oracle, tokens, 1, 4)
    np.testing.assert_allclose(both.cmi, both.reverse, atol=1e-10)  # a coherent joint: symmetric
    assert np.all(both.asymmetry < 1e-10)
    top = pairwise_cmi(oracle, tokens, 1, top_k=oracle.vocab_size)
    np.testing.assert_allclose(top.cmi, row.cmi, atol=1e-12)
    np.testing.assert_allclose(top.missed_mass, 0.0, atol=1e-12)


def test_top_k_reports_missed_mass():
    oracle = MarkovChainOracle(5, 6, seed=0, concentration=1.0)
    tokens = torch.tensor([[0] + [oracle.mask_id] * 5])
    res = pairwise_cmi(oracle, tokens, 2, top_k=2)
    pi = oracle(tokens)[0, 2].exp()
    assert res.missed_mass[0] == pytest.approx(float(1 - pi.topk(2).values.sum()), abs=1e-12)
    assert res.n_candidates[0] == 2


def _exact_row_terms(model, tokens, i, j):
    """Per-candidate KL(p(x_j|a) ‖ p̄_j) and weights, by explicit clamping (test-side)."""
    lp0 = torch.log_softmax(model(tokens).double(), -1)[0]
    w = lp0[i].exp()
    rows = []
    for a in range(model.vocab_size):
        if w[a] > 0:
            t = tokens.clone()
            t[0, i] = a
            rows.append((float(w[a]), torch.softmax(model(t).double(), -1)[0, j].numpy()))
    pbar = sum(wa * pa for wa, pa in rows)
    return (
        np.array([wa for wa, _ in rows]),
        np.array([_kl(pa, pbar) for _, pa in rows]),
        pbar,
        lp0[j].exp().numpy(),
    )


@pytest.mark.statistical
def test_sampled_cmi_tracks_the_models_exact_value():
    # A random (untrained) transformer is a denoiser whose conditionals are not those of any
    # joint; its exact full-vocabulary CMI is the target of the sampled estimator.
    model = TinyTransformer(vocab_size=7, seed=3, logit_scale=3.0)
    tokens = torch.tensor([[1, 2] + [model.mask_id] * 6])
    i, j = 2, 3
    w, f, _, _ = _exact_row_terms(model, tokens, i, j)
    exact = float(np.sum(w * f))
    assert pairwise_cmi(model, tokens, i, j).cmi[0] == pytest.approx(exact, abs=1e-6)
    m = 4000
    est = pairwise_cmi(model, tokens, i, j, n_samples=m, seed=0).cmi[0]
    # First order, Î − I = Σ_a (ŵ_a − w_a) KL(p_a ‖ p̄): its standard deviation is
    # sd_w(KL)/√M; allow 5 of them plus the O(1/M) plug-in bias.
    sd = math.sqrt(float(np.sum(w * (f - exact) ** 2)) / m)
    assert abs(est - exact) <= 5 * sd + 10.0 / m
    # The same model is incoherent: I(i;j) and I(j;i) differ.
    both = pairwise_cmi(model, tokens, i, j)
    assert both.asymmetry[0] > 1e-4


def test_marginal_consistency_zero_on_oracles_nonzero_on_untrained_model():
    oracle = EOSPaddedOracle(3, 7, seed=0)
    M = oracle.mask_id
    tokens = torch.tensor([[0, M, M, M, M, M, M], [M, 1, M, M, M, oracle.eos_id, M]])
    res = marginal_consistency(oracle, tokens, 2)
    assert np.nanmax(res.kl) < 1e-12 and np.nanmax(res.tv) < 1e-12
    assert np.isnan(res.kl[0, 2]) and np.isnan(res.kl[0, 0])
    model = TinyTransformer(vocab_size=7, seed=0, logit_scale=3.0)
    t = torch.tensor([[1] + [model.mask_id] * 7])
    kl = marginal_consistency(model, t, 1).kl
    _, _, pbar, p0 = _exact_row_terms(model, t, 1, 4)
    assert kl[0, 4] == pytest.approx(_kl(pbar, p0), abs=1e-6)
    assert np.nanmax(kl) > 1e-4  # oracles: < 1e-12


@pytest.mark.statistical
def test_sampled_rollouts_stay_within_noise_on_an_oracle():
    oracle = StickyHMMOracle(4, 8, seed=1, stickiness=0.8)
    tokens = torch.tensor([[2] + [oracle.mask_id] * 7])
    res = marginal_consistency(oracle, tokens, [1, 2, 3], n_samples=3000, seed=0, batch_size=None)
    valid = ~np.isnan(res.kl)
    # For a coherent joint the plug-in KL is pure sampling noise, of expected size kl_noise.
    assert np.all(res.kl[valid] <= 6 * res.kl_noise[valid] + 1e-5)
    model = TinyTransformer(vocab_size=5, seed=0, logit_scale=3.0)
    t = torch.tensor([[1] + [model.mask_id] * 7])
    mres = marginal_consistency(model, t, [1, 2, 3], n_samples=3000, seed=0, batch_size=None)
    assert np.nanmax(mres.kl - 6 * mres.kl_noise) > 0  # bias well above the noise


def test_cmi_matrix_symmetric_for_oracle():
    oracle = MixtureOracle(3, 5, seed=4, n_components=2)
    tokens = torch.tensor([[oracle.mask_id] * 5])
    m = cmi_matrix(oracle, tokens)[0]
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(m[off], m.T[off], atol=1e-10)


def test_distances_to_observed():
    obs = torch.tensor([[False, True, False, False, True, False]])
    dl, dr = distances_to_observed(obs)
    assert dl[0].tolist() == [math.inf, math.inf, 1, 2, 3, 1]
    assert dr[0].tolist() == [1, 3, 2, 1, math.inf, math.inf]
    for i in range(6):
        left = [i - j for j in range(i) if obs[0, j]]
        right = [j - i for j in range(i + 1, 6) if obs[0, j]]
        assert dl[0, i] == (min(left) if left else math.inf)
        assert dr[0, i] == (min(right) if right else math.inf)


def _markov_with_dominant_real_lambda2():
    for seed in range(50):
        o = MarkovChainOracle(4, 16, seed=seed, concentration=0.5)
        ev = torch.linalg.eigvals(o.transition).numpy()
        ev = ev[np.argsort(-np.abs(ev))]
        if abs(ev[1].imag) < 1e-9 and abs(ev[2]) < 0.5 * abs(ev[1]) and abs(ev[1]) > 0.4:
            return o, abs(ev[1].real)
    raise AssertionError("no suitable chain")


def test_markov_homogenization_decays_geometrically_while_adjacent_pairs_stay_dependent():
    oracle, lam2 = _markov_with_dominant_real_lambda2()
    M = oracle.mask_id
    tokens = torch.tensor([[a] + [M] * 15 for a in range(4)])
    prof = homogenization_profile(oracle, tokens, unigram=oracle.initial.numpy())
    byd = prof.by_distance
    assert byd["distance"].tolist() == list(range(1, 16))
    kl = byd["kl_unigram"]
    # p(x_d | x_0) − π ∝ λ2^d, and KL ≈ χ²/2 is quadratic in it: √(KL(d+1)/KL(d)) → |λ2|.
    rates = np.sqrt(kl[4:10] / kl[3:9])
    np.testing.assert_allclose(rates, lam2, rtol=0.05)
    # The model's own context-free marginal of a stationary oracle is π.
    np.testing.assert_allclose(prof.unigram, oracle.initial.numpy(), atol=1e-12)
    # Far from the context, adjacent masked positions keep the stationary MI of the chain...
    T, pi = oracle.transition.numpy(), oracle.initial.numpy()
    i_chain = float(np.sum(pi[:, None] * T * np.log(T / pi[None, :])))
    adj = pairwise_cmi(oracle, tokens[:1], 10, 11).cmi[0]
    assert adj == pytest.approx(i_chain, rel=1e-3)
    # ...while the dependence on the near-context position decays.
    row = pairwise_cmi(oracle, tokens[:1], 1).cmi[0]
    assert row[15] < 1e-3 * row[2]
    # Pairwise JS between masked predictions vanishes in the middle (the conjecture).
    assert np.nanmax(prof.js[0, 8:, 8:]) < 1e-3 * np.nanmax(prof.js[0, 1:3, 1:3])


def test_homogenization_against_reference_and_manual_values():
    oracle = StickyHMMOracle(5, 10, seed=0, stickiness=0.9)
    model = TinyTransformer(vocab_size=5, seed=1, logit_scale=2.0)
    M = oracle.mask_id
    base = torch.tensor([[1, M, M, M, 3, M, M, M, M, M]])
    self_ref = homogenization_profile(oracle, base, reference=oracle)
    np.testing.assert_allclose(self_ref.by_distance["ratio"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.nan_to_num(self_ref.kl_to_reference), 0.0, atol=1e-12)
    # The transformer's mask is its own logit column (mask_id = V - 1).
    mt = torch.where(base == M, torch.full_like(base, model.mask_id), base)
    bigger = TinyTransformer(vocab_size=7, seed=1)
    with pytest.raises(ValueError, match="vocab_size"):
        homogenization_profile(bigger, torch.where(base == M, 6, base), reference=oracle)
    prof = homogenization_profile(model, mt, attractor_ids=[0], unit="bits")
    lp = torch.log_softmax(model(mt).double(), -1)[0]
    p = lp.exp()
    j = 6
    h = float(-torch.where(p[j] > 0, p[j] * lp[j], 0.0).sum()) / math.log(2)  # mask column: p = 0
    assert prof.entropy[0, j] == pytest.approx(h, rel=1e-6)
    assert prof.attractor_mass[0, j] == pytest.approx(float(p[j, 0]), rel=1e-6)
    assert prof.d_left[0, j] == 2 and prof.d_right[0, j] == math.inf and prof.distance[0, j] == 2
    assert np.isnan(prof.entropy[0, 0]) and np.isnan(prof.entropy[0, 4])
    js = prof.js[0]
    masked = [1, 2, 3, 5, 6, 7, 8, 9]
    sub = js[np.ix_(masked, masked)]
    np.testing.assert_allclose(sub, sub.T, atol=1e-12)
    assert np.all(sub[~np.eye(len(masked), dtype=bool)] >= 0)
