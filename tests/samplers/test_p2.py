"""p2 (P2 self-planning) against a slow loop from the paper, and handcrafted plans."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference._common import FixedConfidence, check_remasks_against_reference
from reference.p2 import p2_generate

import remask
from remask.samplers import build

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _check_against_reference(model, sampler_config, prompts, gen_length):
    sampler = build("p2", temperature=0.0, **sampler_config)
    return check_remasks_against_reference(
        model, sampler, p2_generate, sampler_config, prompts, gen_length
    )


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"steps": 4},
        {"steps": 20},
        {"eta": 3.0},
        {"eta": 0.0},
        {"block_length": 4, "steps": 6},
        {"block_length": 3},
    ],
)
def test_greedy_equals_reference_loop(tiny64, config):
    _check_against_reference(tiny64, config, PROMPTS, gen_length=10)


def test_reference_loop_exercises_remasking(tiny64):
    # The equivalence above would be vacuous for the remasking rule if nothing were remasked.
    assert _check_against_reference(tiny64, {"eta": 3.0}, PROMPTS, gen_length=10) > 0


@pytest.mark.parametrize("family", ["llada_tiny", "dream_tiny"])
def test_greedy_equals_reference_loop_on_golden_checkpoints(family):
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / family)
    prompts = [[5, 17, 2, 9], [11, 3, 8, 4]]
    _check_against_reference(model, {"eta": 2.0}, prompts, gen_length=8)
    _check_against_reference(model, {"steps": 3, "block_length": 4}, prompts, gen_length=8)


def _moves(model, sampler, gen_length):
    moves = []

    def record(state, info):
        moves.append(
            (
                info.unmasked[0].nonzero().flatten().tolist(),
                info.remasked[0].nonzero().flatten().tolist(),
            )
        )

    out = remask.generate(model, [[]], sampler, gen_length=gen_length, seed=0, callbacks=[record])
    return moves, out


def test_plan_keeps_the_best_scores_and_remasks_decoded_tokens_that_fall_behind():
    # Fixed confidences (the prediction ignores the canvas) and N = 4, n = 4: after step i,
    # 4 - i positions stay masked. With eta = 10 a decoded token's score 10·log c drops below
    # the masked positions' log c, so the planner remasks it.
    model = FixedConfidence([0.9, 0.8, 0.5, 0.3])
    moves, out = _moves(model, build("p2", steps=4, eta=10.0, temperature=0.0), gen_length=4)
    # step 2: scores 10·log .9 = -1.05 (decoded 0), log .8 = -.22, log .5 = -.69 -> keep {1, 2}
    # step 3: log .9 = -.11 (masked 0), log .3 = -1.2, 10·log .8 = -2.2, 10·log .5 = -6.9
    assert moves == [([0], []), ([1, 2], [0]), ([0, 3], [2]), ([2], [])]
    assert out.nfe.tolist() == [4]
    # eta = 1: decoded tokens score as they did when decoded, so nothing is ever remasked.
    moves, _ = _moves(model, build("p2", steps=4, eta=1.0, temperature=0.0), gen_length=4)
    assert moves == [([0], []), ([1], []), ([2], []), ([3], [])]


def test_schedule_counts_and_step_budget():
    model = FixedConfidence([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    # N = 7, n = 3: m = floor(7 (1 - i/3)) = 4, 2, 0 stay masked -> 3, 2, 2 unmasked.
    moves, out = _moves(model, build("p2", steps=3, temperature=0.0), gen_length=7)
    assert [len(u) for u, _ in moves] == [3, 2, 2]
    assert out.nfe.tolist() == [3]
    # n = 20 > N: m reaches 0 at i = 18 (floor(7·2/20) = 0); the last two steps would change
    # nothing and are not taken.
    _, out = _moves(model, build("p2", steps=20, temperature=0.0), gen_length=7)
    assert out.nfe.tolist() == [18]


def test_ties_keep_the_lower_position():
    model = FixedConfidence([0.5, 0.5, 0.5, 0.5])
    moves, _ = _moves(model, build("p2", steps=2, temperature=0.0), gen_length=4)
    assert moves == [([0, 1], []), ([2, 3], [])]


def test_bad_config_raises_naming_the_field():
    with pytest.raises(ValueError, match="eta"):
        build("p2", eta=-1.0)
    with pytest.raises(TypeError, match="steps"):
        build("p2", steps=2.0)
    with pytest.raises(ValueError, match="steps=1 is fewer than the 2 blocks"):
        remask.generate(
            FixedConfidence([0.5] * 4),
            [[]],
            build("p2", steps=1, block_length=2),
            gen_length=4,
            seed=0,
        )


def test_sampled_run_fills_every_position_and_is_seeded(tiny64):
    sampler = build("p2", eta=2.0)  # temperature 1, the reference default
    a = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=5)
    b = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=5)
    assert torch.equal(a.tokens, b.tokens)
    assert not bool((a.tokens == tiny64.mask_id).any())
    assert a.nfe.tolist() == [10, 10, 10]
