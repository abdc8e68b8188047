"""Position-matched control, unigram zeros, streamed/batched estimators (issue 16)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from remask.analysis import (
    _util,
    cmi_matrix,
    homogenization_profile,
    marginal_consistency,
    pairwise_cmi,
)
from remask.models import MarkovChainOracle, MixtureOracle
from remask.models.tiny import TinyTransformer


def _islands(M: int, L: int) -> torch.Tensor:
    """Canvases with observed islands at different places, so distance and position vary apart."""
    rows = []
    for start in range(0, L - 2, 3):
        row = [M] * L
        row[start] = 0
        row[start + 1] = 1
        rows.append(row)
    return torch.tensor(rows)


def test_a_pure_position_effect_leaves_zero_excess():
    # One mixture component = independent positions with position-dependent marginals:
    # the context says nothing, yet D_uni is large where a position is conserved.
    oracle = MixtureOracle(4, 12, seed=3, n_components=1, concentration=0.2)
    prof = homogenization_profile(oracle, _islands(oracle.mask_id, 12))
    byd = prof.by_distance
    assert np.all(byd["kl_unigram"] > 0.05)  # the confound: "homogenization" curve not flat at 0
    np.testing.assert_allclose(byd["excess_kl_unigram"], 0.0, atol=1e-12)
    np.testing.assert_allclose(byd["excess_entropy"], 0.0, atol=1e-12)
    np.testing.assert_allclose(np.nan_to_num(prof.kl_to_control), 0.0, atol=1e-12)


def test_a_pure_distance_effect_is_kept():
    # A stationary chain: every ablated prediction is the stationary law (= the unigram),
    # so all of D_uni is excess, and it decays with distance.
    oracle = MarkovChainOracle(3, 12, seed=1, concentration=0.3)
    prof = homogenization_profile(oracle, _islands(oracle.mask_id, 12))
    byd = prof.by_distance
    np.testing.assert_allclose(byd["control_kl_unigram"], 0.0, atol=1e-12)
    np.testing.assert_allclose(byd["excess_kl_unigram"], byd["kl_unigram"], atol=1e-12)
    assert byd["excess_kl_unigram"][0] > 0.05
    assert np.all(np.diff(byd["excess_kl_unigram"]) < 0)
    # KL(p(x_i | c) ‖ π) is exactly the context information when the control is π.
    np.testing.assert_allclose(byd["kl_to_control"], byd["kl_unigram"], atol=1e-12)


def test_special_tokens_are_kept_in_the_control_and_are_not_context():
    oracle = MarkovChainOracle(3, 6, seed=1, concentration=0.3)
    M = oracle.mask_id
    tokens = torch.tensor([[2, M, M, 0, M, M]])
    special = torch.tensor([[True, False, False, False, False, False]])
    prof = homogenization_profile(oracle, tokens, special=special, pairwise=False)
    assert prof.distance[0].tolist()[1:3] == [2.0, 1.0]  # position 0 does not count as context
    # Control = the canvas with only the special token: the chain's prediction given x_0 = 2.
    ctrl = torch.log_softmax(oracle(torch.tensor([[2, M, M, M, M, M]])), -1).exp()[0]
    H = -(ctrl * ctrl.log()).sum(-1)
    np.testing.assert_allclose(
        prof.control_entropy[0, [1, 2, 4, 5]], H[[1, 2, 4, 5]].numpy(), atol=1e-12
    )


def test_unigram_zeros_are_handled_on_the_support_with_a_warning():
    model = TinyTransformer(vocab_size=6, seed=1, logit_scale=2.0)
    M = model.mask_id
    tokens = torch.tensor([[0, M, M, M, 2, M]])
    u = np.array([0.5, 0.0, 0.25, 0.25, 0.0, 0.0])
    with pytest.warns(UserWarning, match="3 zero entries"):
        prof = homogenization_profile(model, tokens, unigram=u, pairwise=False)
    p = torch.softmax(model(tokens).double(), -1)[0]
    on = torch.tensor([True, False, True, True, False, False])
    for j in (1, 2, 3, 5):
        q = p[j, on] / p[j, on].sum()
        expect = float((q * (q / torch.tensor(u[on.numpy()])).log()).sum())
        assert prof.kl_unigram[0, j] == pytest.approx(expect, rel=1e-9)
        assert prof.unigram_missed_mass[0, j] == pytest.approx(float(p[j, ~on].sum()), rel=1e-9)
    assert np.all(np.isfinite(prof.by_distance["kl_unigram"]))
    assert np.all(np.isfinite(prof.by_distance["excess_kl_unigram"]))
    # The model's own context-free marginal is 0 on its mask column (a -inf logit): still finite.
    own = homogenization_profile(model, tokens, pairwise=False)
    assert own.unigram[M] == 0 and np.all(np.isfinite(own.kl_unigram[own.masked]))
    assert np.all(np.isfinite(own.control_kl_unigram[own.masked])) and np.all(
        own.kl_unigram[own.masked] > 0
    )
    with warnings.catch_warnings():  # a strictly positive unigram: no warning, no missed mass
        warnings.simplefilter("error")
        plain = homogenization_profile(model, tokens, unigram=np.full(6, 1 / 6), pairwise=False)
    assert plain.unigram_missed_mass is None
    with pytest.raises(ValueError, match="finite non-negative"):
        homogenization_profile(model, tokens, unigram=np.array([1, -1, 0, 0, 0, 1.0]))


def test_streamed_chunks_match_one_chunk(monkeypatch):
    model = TinyTransformer(vocab_size=7, seed=2, logit_scale=2.0)
    M = model.mask_id
    tokens = torch.tensor([[0, M, M, M, 3, M, M, M], [M, 1, M, M, M, M, 2, M]])
    # Same batches on both sides (the float32 model's logits depend on the batch shape at
    # 1e-8); only the position chunks differ.
    ref_prof = homogenization_profile(model, tokens, batch_size=1)
    ref_row = pairwise_cmi(model, tokens, 2, top_k=3, batch_size=3)
    ref_mc = marginal_consistency(model, tokens, 2, n_samples=5, seed=1, batch_size=5)
    ref_exact = pairwise_cmi(model, tokens, 3)  # 6 candidates per row
    monkeypatch.setattr(_util, "CHUNK_ELEMENTS", 13)  # a few positions per chunk
    prof = homogenization_profile(model, tokens, batch_size=1)
    for name in ("entropy", "kl_unigram", "control_kl_unigram", "kl_to_control", "js"):
        np.testing.assert_allclose(
            getattr(prof, name), getattr(ref_prof, name), atol=1e-12, equal_nan=True
        )
        if name != "js":  # (B, L, L), NaN on its diagonal
            assert np.all(np.isfinite(getattr(prof, name)[prof.masked]))
    row = pairwise_cmi(model, tokens, 2, top_k=3, batch_size=3)  # one row of 3 candidates per pass
    np.testing.assert_allclose(row.cmi, ref_row.cmi, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(row.demask, ref_row.demask, atol=1e-12, equal_nan=True)
    mc = marginal_consistency(model, tokens, 2, n_samples=5, seed=1, batch_size=5)
    np.testing.assert_allclose(mc.kl, ref_mc.kl, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mc.kl_noise, ref_mc.kl_noise, atol=1e-12, equal_nan=True)
    # Candidates spanning several passes accumulate p̄ (float32 once L·V exceeds the budget):
    # equal to one pass per row up to float32 rounding.
    exact = pairwise_cmi(model, tokens, 3, batch_size=4)
    np.testing.assert_allclose(exact.cmi, ref_exact.cmi, atol=1e-6, equal_nan=True)
    assert np.nanmax(ref_exact.cmi) > 1e-4  # not a comparison of zeros


def test_cmi_matrix_shares_one_one_shot_pass():
    model = TinyTransformer(vocab_size=5, seed=0)
    calls = []

    class Counting:
        mask_id, vocab_size = model.mask_id, model.vocab_size

        def __call__(self, tokens, attention_mask=None):
            calls.append(tokens.shape[0])
            return model(tokens, attention_mask)

    M = model.mask_id
    tokens = torch.tensor([[0, M, M, M, M]])
    cmi_matrix(Counting(), tokens, positions=[1, 2, 3], top_k=2, batch_size=8)
    assert calls == [1, 2, 2, 2]  # one one-shot pass, then one batch of 2 clamped canvases per row


def test_float32_working_chunks_of_large_vocabularies_track_float64(monkeypatch):
    # Large vocabularies are reduced in float32 (FLOAT64_VOCAB); force that path on a small one.
    model = TinyTransformer(vocab_size=7, seed=2, logit_scale=3.0)
    M = model.mask_id
    tokens = torch.tensor([[0, M, M, M, 3, M, M, M]])
    ref_prof = homogenization_profile(model, tokens)
    ref_cmi = pairwise_cmi(model, tokens, 2, top_k=4)
    monkeypatch.setattr(_util, "FLOAT64_VOCAB", 0)
    prof = homogenization_profile(model, tokens)
    for name in ("entropy", "kl_unigram", "excess_kl_unigram"):
        np.testing.assert_allclose(prof.by_distance[name], ref_prof.by_distance[name], atol=2e-6)
    cmi = pairwise_cmi(model, tokens, 2, top_k=4)
    assert np.nanmax(ref_cmi.cmi) > 1e-3
    np.testing.assert_allclose(cmi.cmi, ref_cmi.cmi, atol=2e-6, equal_nan=True)
