"""ancestral (MDLM ddpm_cache): exact law against a grid-walk enumeration, convergence to the
exact joint as steps grow (with a negative control), and the no-wasted-forward-pass contract."""

from __future__ import annotations

import itertools

import pytest
import torch
from reference._common import FixedConfidence
from reference.ancestral import ancestral_law
from test_exactness import ALPHA, N, _chi_square_pvalue, _counts

import remask
from remask.samplers import build
from remask.samplers.schedules import grid_time, next_unmask_index


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return float((p - q).abs().sum() / 2)


def test_next_unmask_index_inverts_the_stay_masked_probability():
    """P(still masked at grid j | masked at grid i) = t_j / t_i, checked on a fine u grid."""
    steps, i, eps = torch.tensor([10]), torch.tensor([3]), 1e-3
    u = ((torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000).unsqueeze(0)  # (1, n)
    j = next_unmask_index(u, i, steps, eps)[0]
    assert int(j.min()) == 4
    t_i = float(grid_time(i, steps, eps))
    for k in range(4, 11):
        still = float((j > k).double().mean())
        assert abs(still - float(grid_time(torch.tensor(k), steps, eps)) / t_i) < 1e-4


@pytest.mark.statistical
@pytest.mark.parametrize("steps", [2, 5])
def test_law_equals_the_step_by_step_grid_walk(markov, steps):
    """Jumping between changes is exact: the output law is the grid walk's, at few steps too."""
    out = remask.generate(
        markov,
        [[]] * N,
        build("ancestral", steps=steps),
        gen_length=markov.seq_len,
        seed=31 + steps,
    )
    law = ancestral_law(markov, markov.seq_len, steps=steps, eps=1e-5)
    assert _chi_square_pvalue(_counts(markov, out.tokens), law) > ALPHA


@pytest.mark.statistical
def test_output_law_approaches_the_exact_joint(markov):
    joint = markov.log_prob(markov.all_sequences()).exp()
    # Exact distances of the sampler's law to the joint: they shrink as the grid refines.
    tv = [
        _tv(ancestral_law(markov, markov.seq_len, steps=s, eps=1e-5), joint)
        for s in (1, 2, 4, 8, 16)
    ]
    assert all(a > b for a, b in itertools.pairwise(tv)), tv
    assert tv[0] > 0.1 and tv[-1] < tv[0] / 4
    # Sampled: steps >> L is exact-ish (ties have probability ~ L^2 / steps)...
    out = remask.generate(
        markov, [[]] * N, build("ancestral", steps=1_000_000), gen_length=markov.seq_len, seed=7
    )
    counts = _counts(markov, out.tokens)
    assert _chi_square_pvalue(counts, joint) > ALPHA
    # ...and the empirical TV is at the sampling-noise floor (E TV <= sum sqrt(p / N) / 2).
    floor = float(joint.sqrt().sum()) / (2 * N**0.5)
    assert _tv(counts / N, joint) < 2 * floor
    # Negative control: one grid step commits (almost) everything at once, i.e. samples the
    # product of marginals; the same test rejects it.
    out = remask.generate(
        markov, [[]] * N, build("ancestral", steps=1), gen_length=markov.seq_len, seed=7
    )
    assert _chi_square_pvalue(_counts(markov, out.tokens), joint) < ALPHA


def test_a_step_that_changes_nothing_costs_no_forward_pass(tiny64, counting):
    model = counting(tiny64)
    seen = []
    out = remask.generate(
        model,
        [[1, 2], [3]],
        build("ancestral", steps=1_000_000),
        gen_length=6,
        seed=0,
        callbacks=[lambda s, i: seen.append((i.committed.sum(-1), s.canvas.done))],
    )
    assert model.calls == out.steps <= 6 + 1  # a million grid steps, one pass per change
    before = torch.zeros(2, dtype=torch.bool)
    for committed, done in seen:  # every step changes every row that was still decoding
        assert bool((committed[~before] >= 1).all())
        before = done
    assert bool((out.nfe <= 7).all())


def test_noise_removal_takes_the_argmax_of_leftover_masks():
    # eps = 0.9 and one grid step: each position unmasks with probability 0.1, so almost every
    # row ends with the noise-removal pass.
    argmax = torch.tensor([1, 2, 3, 0, 1, 2])
    model = FixedConfidence([0.6, 0.7, 0.8, 0.9, 0.55, 0.65], tokens=argmax.tolist())
    infos = []
    out = remask.generate(
        model,
        [[]] * 64,
        build("ancestral", steps=1, eps=0.9),
        gen_length=6,
        seed=3,
        callbacks=[lambda s, i: infos.append((i, s.canvas.done))],
    )
    removed_rows = torch.zeros(64, dtype=torch.bool)
    for info, done in infos:
        rows = info.noise_removal  # (B,)
        removed_rows |= rows
        written = info.committed & rows.unsqueeze(-1)  # (B, L)
        assert bool((info.proposal[written] == argmax.expand(64, 6)[written]).all())
        assert bool(done[rows].all())  # the removal pass fills every leftover mask
    assert int(removed_rows.sum()) >= 60 and bool((out.nfe <= 2).all())


def test_blocks_each_run_their_own_grid(tiny64):
    seen = []
    remask.generate(
        tiny64,
        [[1, 2]],
        build("ancestral", steps=4, block_length=3),
        gen_length=9,
        seed=0,
        callbacks=[
            lambda s, i: seen.append(
                (i.committed[0].nonzero().flatten().tolist(), int(s.canvas.window[0]))
            )
        ],
    )
    block = 0
    for positions, _ in seen:
        while not all(2 + 3 * block <= p < 2 + 3 * (block + 1) for p in positions):
            block += 1
            assert block < 3, seen
    with pytest.raises(ValueError, match="steps=2 is fewer than the 3 blocks"):
        remask.generate(tiny64, [[1]], build("ancestral", steps=2, block_length=3), gen_length=9)


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(steps=0), ValueError),
        (dict(steps=1.5), TypeError),
        (dict(eps=0.0), ValueError),
        (dict(eps=1.0), ValueError),
        (dict(eps="small"), TypeError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("ancestral", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)


def test_defaults_are_mdlms():
    s = build("ancestral")
    assert (s.steps, s.eps, s.block_length) == (128, 1e-5, None) and s.stochastic
