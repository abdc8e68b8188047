"""MarkovChainOracle: exact conditionals against brute-force enumeration of the joint."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from remask.models import MarkovChainOracle


def _brute_force_marginals(oracle, tokens: torch.Tensor) -> torch.Tensor:
    """(L, V) p(x_i | observed) by summing the exact joint over all consistent sequences."""
    sequences = oracle.all_sequences()
    joint = oracle.log_prob(sequences).exp()
    observed = tokens != oracle.mask_id
    consistent = (sequences[:, observed] == tokens[observed]).all(-1)
    weights = joint * consistent
    out = torch.zeros(tokens.shape[0], oracle.vocab_size, dtype=torch.float64)
    for i in range(tokens.shape[0]):
        out[i].index_add_(0, sequences[:, i], weights)
    return out / out.sum(-1, keepdim=True)


@pytest.mark.parametrize("seed", range(6))
def test_conditionals_equal_brute_force(seed):
    oracle = MarkovChainOracle(vocab_size=3, seq_len=6, seed=seed, concentration=0.4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(5):
        tokens = torch.randint(0, 3, (6,), generator=generator)
        tokens[torch.rand(6, generator=generator) < 0.6] = oracle.mask_id
        got = oracle(tokens.unsqueeze(0))[0].exp()
        torch.testing.assert_close(
            got, _brute_force_marginals(oracle, tokens), rtol=1e-10, atol=1e-12
        )


def test_joint_sums_to_one_and_initial_is_stationary():
    oracle = MarkovChainOracle(vocab_size=4, seq_len=5, seed=1)
    assert abs(float(oracle.log_prob(oracle.all_sequences()).exp().sum()) - 1) < 1e-12
    torch.testing.assert_close(oracle.initial @ oracle.transition, oracle.initial)


def test_padding_is_invisible():
    oracle = MarkovChainOracle(vocab_size=4, seq_len=5, seed=2, concentration=0.5)
    m = oracle.mask_id
    real = torch.tensor([[1, m, m, 3, m]])
    padded = torch.tensor([[0, 2, 1, m, m, 3, m]])
    keep = torch.tensor([[False, False, True, True, True, True, True]])
    torch.testing.assert_close(oracle(padded, keep)[:, 2:], oracle(real))
    # Padding in the middle is skipped too (the chain steps over it).
    gap = torch.tensor([[1, m, 0, m, 3, m]])
    keep_gap = torch.tensor([[True, True, False, True, True, True]])
    got = oracle(gap, keep_gap)[0, [0, 1, 3, 4, 5]]
    torch.testing.assert_close(got, oracle(torch.tensor([[1, m, m, 3, m]]))[0])


def test_observed_positions_are_one_hot():
    oracle = MarkovChainOracle(vocab_size=3, seq_len=4, seed=0)
    tokens = torch.tensor([[2, oracle.mask_id, 0, oracle.mask_id]])
    probs = oracle(tokens).exp()[0]
    assert probs[0].tolist() == [0.0, 0.0, 1.0] and probs[2].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.statistical
def test_ancestral_samples_follow_the_joint():
    oracle = MarkovChainOracle(vocab_size=2, seq_len=4, seed=3, concentration=2.0)
    n = 20_000
    samples = oracle.sample(n, seed=0)
    index = (samples * 2 ** torch.arange(3, -1, -1)).sum(-1)
    counts = torch.bincount(index, minlength=16).numpy()
    expected = oracle.log_prob(oracle.all_sequences()).exp().numpy() * n
    assert stats.chisquare(counts, expected).pvalue > 1e-4


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(vocab_size=1, seq_len=4), ValueError),
        (dict(vocab_size=3, seq_len=0), ValueError),
        (dict(vocab_size=3, seq_len=4, concentration=0.0), ValueError),
    ],
)
def test_bad_construction(kwargs, error):
    with pytest.raises(error):
        MarkovChainOracle(**kwargs)


def test_bad_tokens():
    oracle = MarkovChainOracle(vocab_size=3, seq_len=4, seed=0)
    with pytest.raises(ValueError, match="7"):
        oracle(torch.tensor([[0, 7, 1, 2]]))
    with pytest.raises(ValueError, match="mask id 3"):
        oracle.log_prob(torch.tensor([[0, 3, 1, 2]]))
    with pytest.raises(TypeError):
        oracle(torch.tensor([[0.0, 1.0]]))
