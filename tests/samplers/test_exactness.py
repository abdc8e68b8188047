"""Statistical exactness on the Markov-chain oracle.

One token per step in an order that does not look at the sampled values samples each token
from its exact conditional given the tokens decoded so far — the chain rule, so the output
law is the exact joint. We test that with a chi-square goodness-of-fit test over all V**L
sequences, and check that the test does reject a sampler known to be wrong.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

import remask
from remask.samplers import build

N = 20_000
# Reject at p < 1e-4: the seed is fixed, so a pass is deterministic; under the null the
# chance that some future seed fails is 1e-4 per test.
ALPHA = 1e-4


def _chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson chi-square p-value, pooling cells with expected count < 5 (Cochran's rule)."""
    expected = probs * counts.sum()
    small = expected < 5
    observed = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    return float(
        stats.chisquare(
            observed.numpy(), expected.numpy() * observed.sum().item() / expected.sum().item()
        ).pvalue
    )


def _counts(oracle, tokens: torch.Tensor) -> torch.Tensor:
    powers = oracle.vocab_size ** torch.arange(tokens.shape[1] - 1, -1, -1)
    return torch.bincount(
        (tokens * powers).sum(-1), minlength=oracle.vocab_size ** tokens.shape[1]
    ).double()


@pytest.mark.statistical
@pytest.mark.parametrize("block_length", [None, 2])
def test_random_order_one_token_per_step_is_exact(markov, block_length):
    sampler = build(
        "low_confidence", remasking="random", temperature=1.0, block_length=block_length
    )
    out = remask.generate(markov, [[]] * N, sampler, gen_length=markov.seq_len, seed=1234)
    p = markov.log_prob(markov.all_sequences()).exp()
    assert _chi_square_pvalue(_counts(markov, out.tokens), p) > ALPHA


@pytest.mark.statistical
def test_conditional_generation_is_exact(markov):
    """With a prompt x0 = 2 the law of the rest is p(x_{1:} | x_0 = 2)."""
    sampler = build("low_confidence", remasking="random", temperature=1.0)
    out = remask.generate(markov, [[2]] * N, sampler, gen_length=markov.seq_len - 1, seed=99)
    sequences = markov.all_sequences()
    p = markov.log_prob(sequences).exp() * (sequences[:, 0] == 2)
    assert _chi_square_pvalue(_counts(markov, out.tokens), p / p.sum()) > ALPHA


@pytest.mark.statistical
def test_the_test_rejects_parallel_decoding(markov):
    """Committing every token at once samples the product of marginals: must be rejected."""
    sampler = build("low_confidence", remasking="random", temperature=1.0, steps=1)
    out = remask.generate(markov, [[]] * N, sampler, gen_length=markov.seq_len, seed=1234)
    p = markov.log_prob(markov.all_sequences()).exp()
    assert _chi_square_pvalue(_counts(markov, out.tokens), p) < ALPHA
