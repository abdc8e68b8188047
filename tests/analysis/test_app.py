"""The application layer: the demo measures with analysis.sampler_error's statistics."""

from __future__ import annotations

import pytest
import torch

from remask.analysis import empirical_error, sampler_error
from remask.app import demo
from remask.models import MarkovChainOracle
from remask.samplers import build

N = 600
SEED = 3


def _tv_by_enumeration(oracle, samples: torch.Tensor) -> float:
    """0.5 Σ_x |p(x) − q̂(x)| over all V**L sequences, written out here independently."""
    V, L = oracle.vocab_size, oracle.seq_len
    index = (samples * V ** torch.arange(L - 1, -1, -1)).sum(-1)  # lexicographic index
    q_hat = torch.bincount(index, minlength=V**L).double() / samples.shape[0]
    p = oracle.log_prob(oracle.all_sequences()).exp()
    return 0.5 * float((p - q_hat).abs().sum())


@pytest.fixture(scope="module")
def demo_run():
    return demo.run_demo(n_samples=N, seed=SEED)


@pytest.mark.parametrize("k", [0, 2, 10])  # random order, all at once, MDLM ancestral
def test_demo_tv_equals_sampler_error_on_the_same_samples(demo_run, k):
    oracle, rows, _ = demo_run
    label, name, config = demo.DEMO_CONFIGS[k]
    # One batch seeded like the demo's: the same samples.
    err = sampler_error(
        oracle,
        build(name, **config),
        gen_length=oracle.seq_len,
        n_samples=N,
        seed=SEED,
        batch_size=N,
    )
    assert rows[k].label == label
    assert rows[k].tv == err.tv and rows[k].nll == err.nll
    assert err.tv == pytest.approx(_tv_by_enumeration(oracle, err.samples), abs=1e-12)
    assert rows[k].nll == pytest.approx(float(-oracle.log_prob(err.samples).mean()), rel=1e-12)


def test_demo_floor_is_sampler_errors_floor(demo_run):
    oracle, rows, floor = demo_run
    label, name, config = demo.DEMO_CONFIGS[0]
    err = sampler_error(
        oracle,
        build(name, **config),
        gen_length=oracle.seq_len,
        n_samples=N,
        seed=SEED,
        batch_size=N,
    )
    assert floor.tv == err.tv_floor and floor.nll == err.nll_floor
    # The all-at-once row samples a product of marginals: far above the noise floor.
    assert rows[2].tv > 3 * floor.tv


def test_empirical_error_checks_its_samples():
    oracle = MarkovChainOracle(3, 4, seed=0)
    good = oracle.sample(10, seed=1)
    masked = good.clone()
    masked[0, 1] = oracle.mask_id
    with pytest.raises(ValueError, match="mask id"):
        empirical_error(oracle, masked)
    with pytest.raises(ValueError, match="seq_len=4"):
        empirical_error(oracle, good[:, :3])
    other = good.clone()
    other[:, 0] = (good[0, 0] + 1) % oracle.vocab_size
    with pytest.raises(ValueError, match="begin with the prompt"):
        empirical_error(oracle, other, good[0, :1])
