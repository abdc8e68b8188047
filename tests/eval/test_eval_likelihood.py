"""The ELBO and the exact log-likelihood (remask.eval.likelihood) against exact oracles."""

from __future__ import annotations

import math

import pytest
import torch

from remask.eval.likelihood import (
    elbo_loglikelihood,
    exact_loglikelihood,
    greedy_match,
    supports_loglikelihood,
)
from remask.models import MarkovChainOracle, load_model

CONTEXT, TARGET = [0, 1, 2], [3, 1, 0, 2]


@pytest.fixture(scope="module")
def chain():
    return MarkovChainOracle(vocab_size=4, seq_len=8, seed=0, concentration=0.5)


def _truth(chain, context, target):
    """log p(target | context) from the chain's exact joint (a different route than the code's)."""
    whole = chain.log_prob(torch.tensor([context + target]))
    head = (
        chain.log_prob(torch.tensor([context])) if context else torch.zeros(1, dtype=torch.float64)
    )
    return float(whole - head)


def test_exact_loglikelihood_is_the_joint_ratio(chain):
    assert exact_loglikelihood(chain, CONTEXT, TARGET) == pytest.approx(
        _truth(chain, CONTEXT, TARGET), abs=1e-10
    )
    assert exact_loglikelihood(chain, [], TARGET) == pytest.approx(
        _truth(chain, [], TARGET), abs=1e-10
    )


def test_exact_loglikelihood_on_a_toy_oracle():
    hmm = load_model("oracle:hmm?vocab=4&length=6&seed=1")
    x = hmm.sample(3, seed=0)
    for row in x.tolist():
        assert exact_loglikelihood(hmm, [], row) == pytest.approx(
            float(hmm.log_prob(torch.tensor([row]))), abs=1e-9
        )


@pytest.mark.statistical
@pytest.mark.parametrize("variant", ["llada", "dream"])
def test_elbo_converges_to_the_exact_log_probability(chain, variant):
    """Unbiased for exact conditionals: the error stays within 4 standard errors (estimated
    from the mc_num terms) and the standard error shrinks like 1/sqrt(mc_num)."""
    truth = _truth(chain, CONTEXT, TARGET)
    small = elbo_loglikelihood(
        chain, CONTEXT, TARGET, mc_num=64, batch_size=64, seed=1, variant=variant, sampling_eps=0.0
    )
    big = elbo_loglikelihood(
        chain,
        CONTEXT,
        TARGET,
        mc_num=4096,
        batch_size=1024,
        seed=2,
        variant=variant,
        sampling_eps=0.0,
    )
    assert big.nfe == 4096
    assert abs(big.value - truth) <= 4 * big.stderr
    assert abs(small.value - truth) <= 4 * small.stderr
    # 64x the samples: the standard error falls by about 8 (allow 4..16 for the noise of the spread).
    assert 4 < small.stderr / big.stderr < 16


def test_elbo_is_seeded(chain):
    a = elbo_loglikelihood(chain, CONTEXT, TARGET, mc_num=32, seed=5)
    b = elbo_loglikelihood(chain, CONTEXT, TARGET, mc_num=32, batch_size=7, seed=5)
    assert a.value == elbo_loglikelihood(chain, CONTEXT, TARGET, mc_num=32, seed=5).value
    assert math.isfinite(b.value)


def test_greedy_match_one_token(chain):
    best = int(chain.transition[2].argmax())
    worst = int(chain.transition[2].argmin())
    assert greedy_match(chain, [0, 1, 2], [best]) is True
    assert greedy_match(chain, [0, 1, 2], [worst]) is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mc_num": 0}, "mc_num must be >= 1"),
        ({"batch_size": 1.5}, "batch_size must be an int"),
        ({"variant": "mdlm"}, "variant must be one of"),
        ({"sampling_eps": 1.0}, "sampling_eps"),
    ],
)
def test_elbo_bad_options(chain, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        elbo_loglikelihood(chain, CONTEXT, TARGET, **kwargs)


def test_bad_ids(chain):
    with pytest.raises(ValueError, match="target token id 4"):
        exact_loglikelihood(chain, CONTEXT, [4])  # the mask id
    with pytest.raises(ValueError, match="target is empty"):
        elbo_loglikelihood(chain, CONTEXT, [])


def test_block_diffusion_models_cannot_score(chain):
    class Blocky:
        mask_id, vocab_size, block_size = 4, 4, 2

    why = supports_loglikelihood(Blocky())
    assert why is not None and "block_size=2" in why
    assert supports_loglikelihood(chain) is None
