"""llada2 (LLaDA 2.0 threshold-else-top-k) against a slow loop, handcrafted and metamorphic checks."""

from __future__ import annotations

import pytest
from reference._common import FixedConfidence
from reference.llada2 import llada2_generate
from test_threshold import PROMPTS, _first_commits

import remask
from remask.samplers import build


@pytest.mark.parametrize(
    "block_length,steps,threshold,minimal_topk",
    [
        (32, 32, 0.95, 1),  # the defaults: one token per step unless confident
        (4, 2, 0.5, 1),
        (5, 3, 0.3, 1),
        (None, 4, 0.4, 1),
        (4, 4, 0.2, 2),  # minimal_topk caps the steps of a 4-block at 2
        (3, 8, 0.5, 1),  # more steps than block tokens
    ],
)
def test_greedy_equals_reference_loop(tiny64, block_length, steps, threshold, minimal_topk):
    sampler = build(
        "llada2",
        block_length=block_length,
        steps=steps,
        threshold=threshold,
        minimal_topk=minimal_topk,
    )
    out = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=0)
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        expected, nfe = llada2_generate(
            tiny64,
            prompt,
            gen_length=10,
            block_length=block_length,
            steps=steps,
            threshold=threshold,
            minimal_topk=minimal_topk,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        assert int(out.nfe[row]) == nfe


def test_threshold_when_enough_pass_else_scheduled_topk():
    model = FixedConfidence([0.99, 0.97, 0.5, 0.96, 0.2, 0.3])
    # block of 6 over 3 steps: k = 2 per step. Step 1: three positions > 0.95 (>= 2) -> all;
    # step 2: none pass -> top-2 of the rest; step 3: the last one.
    steps = _first_commits(
        model, build("llada2", block_length=None, steps=3, threshold=0.95), gen_length=6
    )
    assert steps == [[0, 1, 3], [2, 5], [4]]
    # threshold 0.98: one passes (< k = 2) -> top-2 by confidence.
    steps = _first_commits(
        model, build("llada2", block_length=None, steps=3, threshold=0.98), gen_length=6
    )
    assert steps == [[0, 1], [2, 3], [4, 5]]
    # strict ">": a confidence equal to the threshold does not pass (the tie is set at the
    # confidence the kernel computes on this backend: its exp is exact only to a few ulp).
    model = FixedConfidence([0.75, 0.75, 0.5, 0.25])
    tie = float(remask.kernels.propose(model.table).prob[0])
    assert tie == pytest.approx(0.75, abs=1e-6)
    steps = _first_commits(
        model, build("llada2", block_length=None, steps=4, threshold=tie), gen_length=4
    )
    assert steps[0] == [0]


def test_minimal_topk_lower_bounds_the_count():
    # threshold=1.0 disables early commits: the test is strict (>) and probabilities are <= 1.
    model = FixedConfidence([0.5] * 8)
    steps = _first_commits(
        model, build("llada2", block_length=8, steps=8, threshold=1.0, minimal_topk=3), gen_length=8
    )
    # steps capped at 8 // 3 = 2, so the schedule is [4, 4]: every count >= minimal_topk.
    assert [len(s) for s in steps] == [4, 4]
    steps = _first_commits(
        model, build("llada2", block_length=8, steps=8, threshold=1.0), gen_length=8
    )
    assert [len(s) for s in steps] == [1] * 8


def test_more_steps_never_raise_tokens_per_step():
    """Metamorphic (pure schedule, threshold 1: nothing passes the strict test): NFE per block = min(steps, block size)."""
    model = FixedConfidence([0.3, 0.5, 0.2, 0.9, 0.4, 0.6, 0.1, 0.7, 0.8, 0.35, 0.45, 0.55, 0.65])
    previous = None
    for steps in (1, 3, 8, 16):
        out = remask.generate(
            model,
            [[], [1], [2, 3]],
            build("llada2", block_length=8, steps=steps, threshold=1.0),
            gen_length=13,
            seed=0,
        )
        assert out.nfe.tolist() == [min(steps, 8) + min(steps, 5)] * 3
        if previous is not None:
            assert bool((out.nfe >= previous).all())
        previous = out.nfe


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(steps=0), ValueError),
        (dict(minimal_topk=0), ValueError),
        (dict(minimal_topk=1.5), TypeError),
        (dict(threshold="x"), TypeError),
        (dict(threshold=float("nan")), ValueError),
        (dict(temperature=-1.0), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("llada2", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)


def test_defaults_are_the_references():
    s = build("llada2")
    assert (s.block_length, s.steps, s.threshold, s.minimal_topk, s.temperature) == (
        32,
        32,
        0.95,
        1,
        0.0,
    )
