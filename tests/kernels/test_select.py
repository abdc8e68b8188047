"""Selection ops vs per-row Python loop oracles; no host sync."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import remask.kernels as K
from remask.kernels._reference import entropy_budget_oracle, threshold_oracle, topk_oracle


@st.composite
def selection_case(draw):
    b = draw(st.integers(1, 4))
    seq = draw(st.integers(1, 12))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    # few distinct values so that ties are common; some NaN / -inf scores
    score = torch.randint(0, 4, (b, seq), generator=gen).float() / 4
    special = torch.rand(b, seq, generator=gen)
    score = torch.where(special < 0.1, math.nan, torch.where(special > 0.93, -math.inf, score))
    eligible = torch.rand(b, seq, generator=gen) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    k = torch.randint(-1, seq + 2, (b,), generator=gen)
    tau = torch.rand(b, generator=gen)
    entropy = torch.rand(b, seq, generator=gen) * draw(st.sampled_from([0.1, 1.0]))
    gamma = torch.rand(b, generator=gen) * draw(st.sampled_from([0.0, 0.5, 3.0]))
    return score, eligible, k, tau, entropy, gamma


@settings(max_examples=60, deadline=None)
@given(selection_case())
def test_selection_ops_match_oracles(case):
    score, eligible, k, tau, entropy, gamma = case
    s, e = score.numpy(), eligible.numpy()
    np.testing.assert_array_equal(
        K.topk_mask(score, k, eligible).numpy(), topk_oracle(s, k.numpy(), e)
    )
    np.testing.assert_array_equal(  # k as a (B, 1) column: the same selection
        K.topk_mask(score, k.unsqueeze(-1), eligible).numpy(), topk_oracle(s, k.numpy(), e)
    )
    np.testing.assert_array_equal(  # one k for every row, as a (1,) tensor (broadcast)
        K.topk_mask(score, k[:1], eligible).numpy(),
        topk_oracle(s, np.full(len(s), int(k[0]), np.int64), e),
    )
    np.testing.assert_array_equal(  # k = 1 as an int takes the argmax path
        K.topk_mask(score, 1, eligible).numpy(), topk_oracle(s, np.ones(len(s), np.int64), e)
    )
    np.testing.assert_array_equal(
        K.threshold_mask(score, tau, eligible).numpy(), threshold_oracle(s, tau.numpy(), e)
    )
    np.testing.assert_array_equal(
        K.entropy_budget_mask(score, entropy, gamma, eligible).numpy(),
        entropy_budget_oracle(s, entropy.numpy(), gamma.numpy(), e),
    )


def test_hand_made_examples():
    score = torch.tensor([[0.9, 0.2, 0.95, 0.2, 0.1]])
    eligible = torch.tensor([[True, True, False, True, True]])
    assert K.topk_mask(score, torch.tensor([2]), eligible).tolist() == [
        [True, True, False, False, False]
    ]  # tie 0.2 at 1 and 3 → lower index
    assert K.threshold_mask(score, 0.5, eligible).tolist() == [[True, False, False, False, False]]
    assert K.threshold_mask(score, 0.99, eligible).tolist() == [[True, False, False, False, False]]
    assert K.threshold_mask(score, 0.15, eligible).tolist() == [[True, True, False, True, False]]
    entropy = torch.tensor([[0.3, 0.2, 9.0, 0.4, 0.1]])
    # order 0,1,3,4: prefixes Σ-max = 0, 0.2, 0.5, 0.6 (0.55: away from float32 rounding)
    assert K.entropy_budget_mask(score, entropy, 0.55, eligible).tolist() == [
        [True, True, False, True, False]
    ]
    assert K.entropy_budget_mask(score, entropy, 0.0, eligible).tolist() == [
        [True, False, False, False, False]
    ]
    nothing = torch.zeros(1, 5, dtype=torch.bool)
    assert not K.threshold_mask(score, 0.0, nothing).any()
    assert not K.entropy_budget_mask(score, entropy, 1.0, nothing).any()


def test_monotone_in_threshold_and_budget():
    gen = torch.Generator().manual_seed(0)
    score = torch.rand(8, 64, generator=gen)
    entropy = torch.rand(8, 64, generator=gen)
    eligible = torch.rand(8, 64, generator=gen) < 0.7
    prev = None
    for tau in (0.9, 0.7, 0.5, 0.1):
        mask = K.threshold_mask(score, tau, eligible)
        assert prev is None or (mask >= prev).all()
        prev = mask
    prev = None
    for gamma in (0.0, 0.5, 2.0, 100.0):
        mask = K.entropy_budget_mask(score, entropy, gamma, eligible)
        assert prev is None or (mask >= prev).all()
        prev = mask
    assert torch.equal(prev, eligible)


class _NoSync(TorchDispatchMode):
    """Records ops that copy a tensor value to the host (what .item()/bool() dispatch to)."""

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.startswith(("_local_scalar_dense", "nonzero", "item")):
            self.syncs.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_selection_ops_do_not_sync_with_the_host():
    score = torch.rand(3, 10)
    eligible = torch.rand(3, 10) < 0.5
    with _NoSync() as mode:
        K.topk_mask(score, torch.tensor([1, 2, 3]), eligible)
        K.threshold_mask(score, torch.tensor([0.1, 0.5, 0.9]), eligible)
        K.entropy_budget_mask(score, torch.rand(3, 10), torch.tensor([0.1, 1.0, 9.0]), eligible)
    assert mode.syncs == []
    with _NoSync() as mode:  # the detector itself works
        bool(score.sum() > 0)
    assert mode.syncs


def test_validation():
    s = torch.rand(2, 3)
    e = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(TypeError, match="eligible"):
        K.topk_mask(s, torch.tensor([1, 1]), e.float())
    with pytest.raises(ValueError, match="shape"):
        K.threshold_mask(s, 0.5, torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="threshold"):
        K.threshold_mask(s, torch.ones(5), e)
    with pytest.raises(ValueError, match="NaN"):
        K.threshold_mask(s, math.nan, e)
    with pytest.raises(ValueError, match="gamma"):
        K.entropy_budget_mask(s, s, -1.0, e)
    with pytest.raises(TypeError, match="score"):
        K.topk_mask(torch.ones(2, 3, dtype=torch.long), 1, e)


def test_numbers_compare_in_the_scores_dtype_and_saturate():
    """threshold: compared in the score's dtype, as torch's ``score >= number`` (float64
    scores against 0.1 itself, not float32(0.1)); gamma: in float64, with the entropy sums;
    numbers beyond the dtype's range saturate instead of raising."""
    both = torch.ones(1, 2, dtype=torch.bool)
    assert K.threshold_mask(torch.tensor([[0.9, 0.1]], dtype=torch.float64), 0.1, both).all()
    f32 = torch.tensor([[0.5, 0.9]])  # float32(0.9) clears 0.9, as in the references
    assert K.threshold_mask(f32, 0.9, both).tolist() == [[False, True]]
    assert K.threshold_mask(f32, 1e300, both).tolist() == [[False, True]]  # the fallback alone
    assert K.threshold_mask(f32, -1e300, both).all()
    ent = torch.tensor([[1.0, 0.1000000001]], dtype=torch.float64)
    order = torch.tensor([[0.9, 0.8]])
    assert K.entropy_budget_mask(order, ent, 0.1, both).tolist() == [[True, False]]
    assert K.entropy_budget_mask(order, ent, 1e39, both).all()
    assert K.topk_mask(f32, 2**70, both).all() and not K.topk_mask(f32, -(2**70), both).any()


@pytest.mark.parametrize("k", [2.5, True, torch.tensor([1.5]), torch.tensor([True])])
def test_topk_mask_wants_an_integer_k(k):
    with pytest.raises(TypeError, match="k must be an int"):
        K.topk_mask(torch.rand(1, 4), k, torch.ones(1, 4, dtype=torch.bool))


def test_demoted_proposals_still_outrank_nan_and_minus_inf():
    """demote() ranks a proposal after every real score; NaN and -inf go after that (they
    tied with the demoted value, finfo.min, and the lower position won)."""
    from remask.kernels.score import demote

    score = torch.tensor([[math.nan, 0.7, -math.inf, 0.2]])
    demoted = demote(score, torch.tensor([[5, 9, 5, 5]]), (9,))  # position 1 proposes EOS 9
    everything = torch.ones(1, 4, dtype=torch.bool)
    assert K.topk_mask(demoted, 2, everything).tolist() == [[False, True, False, True]]
    assert K.topk_mask(demoted, torch.tensor([2]), everything).tolist() == [
        [False, True, False, True]
    ]


def test_spacing_filter_orders_as_the_selection_ops_and_validates():
    selected = torch.ones(1, 3, dtype=torch.bool)
    score = torch.tensor([[torch.finfo(torch.float32).max, 0.0, math.inf]])
    assert K.spacing_filter(selected, score, 3).tolist() == [[False, False, True]]  # +inf first
    with pytest.raises(TypeError, match="selected must be a bool tensor"):
        K.spacing_filter(selected.float(), score, 3)
    with pytest.raises(ValueError, match=r"same shape, got \(1, 3\) and \(1, 2\)"):
        K.spacing_filter(selected, score[:, :2], 3)
    with pytest.raises(TypeError, match="min_spacing must be an int"):
        K.spacing_filter(selected, score, 2.5)
    with pytest.raises(ValueError, match="max_candidates must be >= 1, got 0"):
        K.spacing_filter(selected, score, 3, max_candidates=0)


def test_selection_ops_on_rows_without_positions():
    """L = 0: every op returns an empty (B, 0) mask (the single-pick path raised IndexError)."""
    score, none = torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool)
    for mask in (
        K.topk_mask(score, 1, none),
        K.topk_mask(score, 2, none),
        K.threshold_mask(score, 0.5, none),
        K.entropy_budget_mask(score, score, 0.1, none),
    ):
        assert mask.shape == (2, 0) and mask.dtype == torch.bool
