"""slowfast (SlowFast sampling) against a slow loop structured like the authors' code, and a
handcrafted run through both phases."""

from __future__ import annotations

from pathlib import Path

import pytest
from reference._common import FixedConfidence
from reference.slowfast import slowfast_generate

import remask
from remask.samplers import build

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _check_against_reference(model, config, prompts, gen_length):
    sampler = build("slowfast", **config)
    fast_steps = []
    out = remask.generate(
        model,
        prompts,
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[lambda s, i: fast_steps.append(int((~i.slow & ~s.canvas.done).sum()))],
    )
    width = max(map(len, prompts))
    cost = 2 if config.get("cfg_scale", 0) > 0 else 1  # a guided step is two evaluations
    for row, prompt in enumerate(prompts):
        expected, _, useful = slowfast_generate(model, prompt, gen_length=gen_length, **config)
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        assert int(out.nfe[row]) == cost * useful
    return sum(fast_steps)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"explore_steps": 2},
        {"explore_steps": 1, "stability_window": 3, "span_threshold": 0.05},
        {"high_threshold": 0.1, "block_length": 5},
        {"stability_std": 3.0, "explore_steps": 3},
        {"block_length": 8, "explore_steps": 2, "span_threshold": 0.1},
        {"high_threshold": 0.2, "explore_steps": 2, "span_threshold": 0.15},
        {"cfg_scale": 1.0, "explore_steps": 2},
    ],
)
def test_greedy_equals_reference_loop(tiny64, config):
    _check_against_reference(tiny64, config, PROMPTS, gen_length=24)


def test_reference_loop_exercises_the_fast_phase(tiny64):
    assert _check_against_reference(tiny64, {"explore_steps": 2}, PROMPTS, gen_length=24) > 0


@pytest.mark.parametrize("family", ["llada_tiny", "dream_tiny"])
def test_greedy_equals_reference_loop_on_golden_checkpoints(family):
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / family)
    prompts = [[5, 17, 2, 9], [11, 3, 8, 4]]
    _check_against_reference(model, {"explore_steps": 2}, prompts, gen_length=10)
    _check_against_reference(
        model, {"block_length": 5, "span_threshold": 0.05}, prompts, gen_length=10
    )


def test_slow_then_fast_through_two_sub_cycles():
    # (Confidences above 0.25 keep the table token the argmax: the other 3 share 1 - c.)
    model = FixedConfidence([0.95, 0.5, 0.4, 0.26, 0.92, 0.27, 0.29, 0.28])
    sampler = build("slowfast", explore_steps=2)
    steps = []

    def record(state, info):
        steps.append(
            (
                info.committed[0].nonzero().flatten().tolist(),
                bool(info.slow[0]),
                int(state.start[0]),
                int(state.end[0]),
            )
        )

    out = remask.generate(model, [[]], sampler, gen_length=8, seed=0, callbacks=[record])
    assert [s[:2] for s in steps] == [
        # slow: span estimate 5 (farthest c >= .3 is position 4); {0, 4} clear .9 together
        ([0, 4], True),
        # slow: estimate 3 (position 2); std of [5, 3] is 1, not < 1: end = mean 4, settled
        # at the phase's last step; nothing clears .9, so the most confident (1) alone
        ([1], True),
        # fast: fill the span [0, 4) one at a time
        ([2], False),
        ([3], False),
        # second sub-cycle from 4: no mask reaches .3, so both estimates are start + 1 = 5
        # (std 0): the span [4, 5) holds only position 4, decoded at step 1 — already full,
        # so no fast step; a third sub-cycle starts at 5 and its slow phase ends the block
        ([6], True),
        ([7], True),
        ([5], True),
    ]
    assert steps[3][2:] == (4, 4)  # the span [0, 4) is full: the next sub-cycle starts at 4
    assert steps[5][2:] == (5, 5)
    assert out.nfe.tolist() == [7]
    expected, _, useful = slowfast_generate(model, [], gen_length=8, explore_steps=2)
    assert out.tokens[0].tolist() == expected and useful == 7


def test_a_finished_block_ends_the_slow_phase():
    # Everything clears 0.9 at once: the block is done after one step, where the reference
    # would spend explore_steps - 1 more forward passes committing nothing.
    model = FixedConfidence([0.99] * 6)
    out = remask.generate(model, [[]], build("slowfast"), gen_length=6, seed=0)
    assert out.nfe.tolist() == [1]
    _, reference_nfe, useful = slowfast_generate(model, [], gen_length=6)
    assert (reference_nfe, useful) == (6, 1)


def test_bad_config_raises_naming_the_field():
    with pytest.raises(ValueError, match="stability_std must be > 0"):
        build("slowfast", stability_std=0.0)
    with pytest.raises(ValueError, match="explore_steps must be >= 1"):
        build("slowfast", explore_steps=0)
    with pytest.raises(ValueError, match="high_threshold"):
        build("slowfast", high_threshold=1.5)
