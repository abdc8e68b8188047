"""saber (adaptive acceleration + backtracking remasking) against a slow loop from the paper's
code, and handcrafted runs of each rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference._common import FixedConfidence, check_remasks_against_reference
from reference.saber import saber_generate

import remask
from remask.samplers import build

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _check_against_reference(model, config, prompts, gen_length):
    sampler = build("saber", **config)
    return check_remasks_against_reference(
        model, sampler, saber_generate, config, prompts, gen_length
    )


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"n": 1},
        {"n": 3},
        {"n": 4},
        {"block_length": 4},
        {"block_length": 3, "n": 1},
        {"block_length": 5, "n": 3},
    ],
)
def test_greedy_equals_reference_loop(tiny64, config):
    remasks = _check_against_reference(tiny64, config, PROMPTS, gen_length=16)
    if config.get("n", 2) > 1:
        assert remasks > 0  # the backtracking rule was exercised


@pytest.mark.parametrize("family", ["llada_tiny", "dream_tiny"])
def test_greedy_equals_reference_loop_on_golden_checkpoints(family):
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / family)
    prompts = [[5, 17, 2, 9], [11, 3, 8, 4]]
    _check_against_reference(model, {}, prompts, gen_length=8)
    _check_against_reference(model, {"n": 3, "block_length": 4}, prompts, gen_length=8)


def _moves(model, sampler, gen_length):
    moves = []

    def record(state, info):
        moves.append(
            (
                info.unmasked[0].nonzero().flatten().tolist(),
                info.remasked[0].nonzero().flatten().tolist(),
                float(info.threshold[0]),
            )
        )

    out = remask.generate(model, [[]], sampler, gen_length=gen_length, seed=0, callbacks=[record])
    return moves, out


def test_bar_is_the_mean_committed_confidence_and_the_largest_drop_is_remasked():
    model = FixedConfidence([0.9, 0.8, 0.7, 0.6, 0.95, 0.5])
    moves, out = _moves(model, build("saber", n=2), gen_length=6)
    # Step 1: bar 1, so the top-2 {4, 0} commit; drops are c - 0, so 0 (.9 < .95) is remasked
    # at once (one remask: max(n // 2, ceil(2 / 8)) = 1, at most f - 1 = 1). Later steps: the
    # bar is the mean of the confidences at commit (.925, .883, .8375, .79, position 0 counted
    # each time it was committed, last value kept); at most one masked position clears it, so
    # the top-2 commit; every drop is 0 (fixed confidences), the tie goes to position 0.
    assert [(u, r) for u, r, _ in moves] == [
        ([4], []),
        ([1], []),
        ([2], []),
        ([3], []),
        ([0, 5], []),
    ]
    expected = [
        1.0,
        (0.9 + 0.95) / 2,
        (0.9 + 0.95 + 0.8) / 3,
        (0.9 + 0.95 + 0.8 + 0.7) / 4,
        (0.9 + 0.95 + 0.8 + 0.7 + 0.6) / 5,
    ]
    assert [t for _, _, t in moves] == pytest.approx(expected, abs=1e-6)
    assert out.nfe.tolist() == [5]


class RisingConfidence:
    """Token 0 everywhere, with a confidence that grows with the number of decoded tokens of
    the row: c = min(0.97, 0.3 + 0.1 · decoded) (the rest spread evenly over 3 tokens)."""

    vocab_size = 4
    mask_id = 4

    def __call__(self, tokens, attention_mask=None):
        decoded = (tokens != self.mask_id).sum(-1, keepdim=True).double()  # (B, 1)
        c = (0.3 + 0.1 * decoded).clamp(max=0.97).unsqueeze(-1)  # (B, 1, 1)
        probs = torch.cat([c, ((1 - c) / 3).expand(-1, -1, 3)], -1).expand(*tokens.shape, 4)
        return probs.log()


def test_commits_per_step_grow_as_the_confidence_rises():
    moves, out = _moves(RisingConfidence(), build("saber", n=2), gen_length=12)
    # Step 1: bar 1, the top-2 {0, 1} commit at c = .3 and 0 is remasked (equal drops, lower
    # position). Step 2: one token decoded, c = .4 > bar .3 everywhere: all 11 masks commit.
    assert moves == [([1], [], 1.0), ([0, *range(2, 12)], [], pytest.approx(0.3))]
    assert out.nfe.tolist() == [2]


def test_backtracking_reaches_earlier_blocks(tiny64):
    reopened = []

    def record(state, info):
        canvas = state.canvas
        earlier = canvas.editable & (canvas.block < canvas.window.unsqueeze(-1))  # (B, L)
        reopened.append(int((info.remasked & earlier).sum()))

    out = remask.generate(
        tiny64, PROMPTS, build("saber", block_length=4), gen_length=16, seed=0, callbacks=[record]
    )
    assert sum(reopened) > 0
    assert not bool((out.tokens == tiny64.mask_id).any())


def test_bad_config_raises_naming_the_field():
    with pytest.raises(ValueError, match="n must be >= 1"):
        build("saber", n=0)
    with pytest.raises(TypeError, match="n must be an int"):
        build("saber", n=2.0)
