"""factor (Fast-dLLM factor rule) against a slow loop, its defined edge cases, metamorphic checks."""

from __future__ import annotations

import itertools

import pytest
import torch
from reference._common import FixedConfidence
from reference.factor import factor_count_defined, factor_count_reference
from reference.threshold import fastdllm_generate
from test_threshold import PROMPTS, _first_commits, _one_step, _random_states

import remask
from remask.samplers import build
from remask.samplers.factor import factor_count


@pytest.mark.parametrize(
    "factor,block_length",
    [
        (1.0, 32),
        (2.0, 4),
        (4.0, None),
        (0.5, 3),
        (8.0, 5),
        (0.0, None),
    ],
)
def test_greedy_equals_reference_loop(tiny64, factor, block_length):
    sampler = build("factor", factor=factor, block_length=block_length)
    out = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=0)
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        expected, nfe = fastdllm_generate(
            tiny64, prompt, gen_length=10, block_length=block_length, factor=factor
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        assert int(out.nfe[row]) == nfe


# (confidences, factor, our count, reference count); bars are 1 - f/(n+1), rank 1 forced.
EDGES = [
    ([0.99, 0.9, 0.2], 1.0, 2, 3),  # fails exactly at the last rank: we commit M-1
    ([0.99, 0.9, 0.8], 1.0, 3, 3),  # every rank passes (bars -inf, 2/3, 3/4): all M
    ([0.3], 1.0, 1, 1),  # M = 1
    ([0.4, 0.3, 0.2, 0.1], 1.0, 1, 1),  # rank 2 fails (bar 2/3): only the forced rank 1
    ([0.9, 0.8, 0.7, 0.55], 2.0, 3, 4),  # bars -inf, 1/3, 1/2, 3/5: fails at the last
    ([0.9, 0.8, 0.7, 0.65, 0.1], 2.0, 4, 5),  # passes rank 4 (3/5), fails rank 5 = last
    ([0.9, 0.8, 0.7, 0.1, 0.05], 2.0, 3, 3),  # fails before the last rank: both agree
    ([0.9, 0.75, 0.75], 1.0, 3, 3),  # equality passes (0.75 >= 1 - 1/4)
    ([1.0, 1.0, 0.99], 0.0, 2, 3),  # f = 0: only certain positions (and rank 1)
]


@pytest.mark.parametrize("confidences,factor,ours,reference", EDGES)
def test_edge_cases_as_defined(confidences, factor, ours, reference):
    assert factor_count_defined(confidences, factor) == ours
    assert factor_count_reference(confidences, factor) == reference
    score = torch.tensor([confidences], dtype=torch.float32)
    eligible = torch.ones_like(score, dtype=torch.bool)
    assert factor_count(score, eligible, factor).tolist() == [ours]


def test_the_reference_quirk_is_not_reproduced():
    """Fail-at-last: the reference commits the failing rank too; we do not."""
    confidences = [0.99, 0.9, 0.2]
    assert factor_count_reference(confidences, 1.0) == 3
    model = FixedConfidence(confidences)
    assert _first_commits(model, build("factor", factor=1.0), gen_length=3)[0] == [0, 1]


def test_commits_the_most_confident_prefix():
    model = FixedConfidence([0.6, 0.97, 0.1, 0.85, 0.9])
    # sorted: 0.97, 0.9, 0.85, 0.6, 0.1; f = 1 bars -inf, .667, .75, .8, .833 -> 3 pass
    assert _first_commits(model, build("factor", factor=1.0), gen_length=5)[0] == [1, 3, 4]
    # f = 0.1: rank 2 bar 0.967 fails -> only the best
    assert _first_commits(model, build("factor", factor=0.1), gen_length=5)[0] == [1]


def test_ineligible_and_finished_rows_commit_nothing():
    score = torch.tensor([[0.9, 0.8], [0.5, 0.4]])
    eligible = torch.tensor([[True, True], [False, False]])
    assert factor_count(score, eligible, 1.0).tolist() == [2, 0]


def test_larger_factor_never_commits_fewer(tiny64):
    """Metamorphic: on the same state, the set committed with f1 < f2 is a subset of f2's."""
    factors = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 100.0]
    for canvas in _random_states(tiny64, 6, seed=1):
        sets = [
            _one_step(build("factor", factor=f, block_length=None), canvas, tiny64) for f in factors
        ]
        for low, high in itertools.pairwise(sets):
            assert not bool((low & ~high).any())
        assert bool((sets[-1] == (canvas.tokens == tiny64.mask_id)).all())  # f large: all


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(factor=-1.0), ValueError),
        (dict(factor="1"), TypeError),
        (dict(factor=float("inf")), ValueError),
        (dict(temperature=-0.5), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("factor", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)
