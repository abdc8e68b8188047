"""prophet (early commit) against a slow loop, a golden checkpoint, its base, and scripted gaps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference.prophet import prophet_generate

import remask
from remask.samplers import build, from_config

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _check_rows(
    model,
    prompts,
    gen_length,
    *,
    block_length,
    steps,
    answer_start,
    answer_length,
    early,
    mid,
    late,
):
    base = {"name": "low_confidence", "block_length": block_length, "steps": steps}
    sampler = build(
        "prophet",
        base=base,
        answer_start=answer_start,
        answer_length=answer_length,
        early_threshold=early,
        mid_threshold=mid,
        late_threshold=late,
    )
    out = remask.generate(model, prompts, sampler, gen_length=gen_length, seed=0)
    width = max(map(len, prompts))
    exits = []
    for row, prompt in enumerate(prompts):
        expected, nfe, exit_step = prophet_generate(
            model,
            prompt,
            gen_length=gen_length,
            block_length=block_length,
            steps=steps,
            answer_start=answer_start,
            answer_length=answer_length,
            early=early,
            mid=mid,
            late=late,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe, f"row {row}"
        exits.append(exit_step)
    return exits


CASES = [  # block_length, steps, answer_start, answer_length, early, mid, late
    (None, None, None, 5, 7.5, 5.0, 2.5),  # the reference's thresholds
    (4, 10, 2, 3, 1.5, 0.8, 0.4),
    (3, 6, None, 2, 3.0, 1.0, 0.6),
    (5, None, 0, 5, 2.0, 1.2, 0.9),
]


@pytest.mark.parametrize("case", CASES)
def test_greedy_equals_reference_loop(tiny64, case):
    block_length, steps, answer_start, answer_length, early, mid, late = case
    _check_rows(
        tiny64,
        PROMPTS,
        10,
        block_length=block_length,
        steps=steps,
        answer_start=answer_start,
        answer_length=answer_length,
        early=early,
        mid=mid,
        late=late,
    )


def test_the_cases_exit_at_different_steps(tiny64):
    """Not vacuous: across the cases some rows exit early (at different steps) and some not."""
    exits = []
    for block_length, steps, answer_start, answer_length, early, mid, late in CASES:
        for prompt in PROMPTS:
            exits.append(
                prophet_generate(
                    tiny64,
                    prompt,
                    gen_length=10,
                    block_length=block_length,
                    steps=steps,
                    answer_start=answer_start,
                    answer_length=answer_length,
                    early=early,
                    mid=mid,
                    late=late,
                )[2]
            )
    assert None in exits and len({e for e in exits if e is not None}) >= 2


def test_golden_llada_equals_reference_loop():
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / "llada_tiny")
    with torch.no_grad():
        _check_rows(
            model,
            [[5, 17, 42], [7]],
            8,
            block_length=4,
            steps=8,
            answer_start=3,
            answer_length=3,
            early=3.0,
            mid=1.0,
            late=0.5,
        )


@pytest.mark.parametrize(
    "base",
    [
        {"name": "low_confidence", "steps": 5, "block_length": 4},
        {"name": "threshold", "threshold": 0.4, "block_length": 3},
        {"name": "llada21", "block_length": 4, "threshold": 0.5, "edit_threshold": 0.1},
    ],
)
def test_infinite_thresholds_are_the_base(tiny64, base):
    inf = float("inf")
    a = remask.generate(
        tiny64,
        PROMPTS,
        build("prophet", base=base, early_threshold=inf, mid_threshold=inf, late_threshold=inf),
        gen_length=9,
        seed=0,
    )
    b = remask.generate(tiny64, PROMPTS, from_config(base), gen_length=9, seed=0)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe) and a.steps == b.steps


def test_zero_thresholds_fill_everything_from_the_first_pass(tiny64):
    out = remask.generate(
        tiny64, PROMPTS, build("prophet", early_threshold=0.0), gen_length=9, seed=0
    )
    assert out.nfe.tolist() == [1, 1, 1] and out.steps == 1
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        x = torch.tensor([prompt + [tiny64.mask_id] * 9])
        first = tiny64(x)[0].argmax(-1)[len(prompt) :].tolist()
        assert out.tokens[row, width + 0 :].tolist() == first


class GapScript:
    """Logits with a chosen top-1 minus top-2 gap per call and generated position: token 1
    at ``gap``, token 2 at 0, tokens 0 and 3 at -50 (``gaps[c][j]``; the last call repeats)."""

    vocab_size, mask_id = 4, 4

    def __init__(self, gaps):
        self.gaps = gaps
        self.calls = 0

    def __call__(self, tokens, attention_mask=None):
        g = torch.tensor(self.gaps[min(self.calls, len(self.gaps) - 1)], dtype=torch.float64)
        self.calls += 1
        B, L = tokens.shape
        logits = torch.full((B, L, 4), -50.0, dtype=torch.float64)
        logits[..., 2] = 0.0
        logits[..., 1] = 1.0  # prompt positions: any gap
        logits[:, L - len(g) :, 1] = g
        return logits


def _trace(model, sampler, gen_length):
    seen = []
    out = remask.generate(
        model,
        [[0]],
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[
            lambda s, i: seen.append((float(i.gap[0]), float(i.threshold[0]), bool(i.exit[0])))
        ],
    )
    return out, seen


def test_phase_thresholds_follow_the_progress():
    # Gap 4 everywhere for four calls, then 3. T = 6 steps, one token per step:
    # progress 1/6 (early 7.5), 2/6 = 0.333 (mid: not < 0.33), 3/6, 4/6 = 0.667 (< 0.67: mid),
    # then 5/6 (late 2.5): 3 >= 2.5 exits at step 5 and fills the two masks left.
    model = GapScript([[4.0] * 6] * 4 + [[3.0] * 6])
    out, seen = _trace(model, build("prophet", base={"name": "low_confidence"}), 6)
    assert [t for _, t, _ in seen] == [7.5, 5.0, 5.0, 5.0, 2.5]
    assert [e for _, _, e in seen] == [False] * 4 + [True]
    assert seen[0][0] == pytest.approx(4.0) and seen[4][0] == pytest.approx(3.0)
    assert out.nfe.tolist() == [5]
    assert out.tokens[0, 1:].tolist() == [1] * 6  # top-1 everywhere, filled or committed
    # total_steps rescales the progress: T = 30 keeps step 5 in the early phase.
    out, seen = _trace(
        GapScript([[4.0] * 6] * 4 + [[3.0] * 6]),
        build("prophet", base={"name": "low_confidence"}, total_steps=30),
        6,
    )
    assert not any(e for _, _, e in seen) and out.nfe.tolist() == [6]


def test_the_gap_is_averaged_over_the_answer_span_only():
    # Positions 0-2 carry gap 9, positions 3-5 gap 1: the span decides.
    model_gaps = [[9.0, 9.0, 9.0, 1.0, 1.0, 1.0]]
    _, seen = _trace(GapScript(model_gaps), build("prophet", answer_start=0, answer_length=3), 6)
    assert seen[0] == (pytest.approx(9.0), 7.5, True)
    _, seen = _trace(GapScript(model_gaps), build("prophet", answer_length=3), 6)  # the last 3
    assert seen[0][0] == pytest.approx(1.0) and not seen[0][2]
    _, seen = _trace(GapScript(model_gaps), build("prophet", answer_start=1, answer_length=4), 6)
    assert seen[0][0] == pytest.approx((9 + 9 + 1 + 1) / 4)
    # A span past the end of the row is clipped; an empty one never exits.
    _, seen = _trace(GapScript(model_gaps), build("prophet", answer_start=4, answer_length=5), 6)
    assert seen[0][0] == pytest.approx(1.0)
    _, seen = _trace(
        GapScript(model_gaps), build("prophet", answer_start=6, early_threshold=0.0), 6
    )
    assert all(g != g and not e for g, _, e in seen)  # NaN gap, no exit


def test_a_guided_base_is_read_on_its_own_guided_pass(tiny64, counting):
    # Guidance is the base's model wrapper (Sampler.wrap), so Prophet reads the base's one
    # guided pass: same tokens and NFE as the base alone, one model call per step.
    base = {"name": "low_confidence", "steps": 4, "cfg_scale": 1.0}
    model = counting(tiny64)
    inf = float("inf")
    a = remask.generate(
        model,
        PROMPTS,
        build("prophet", base=base, early_threshold=inf, mid_threshold=inf, late_threshold=inf),
        gen_length=8,
        seed=0,
    )
    b = remask.generate(tiny64, PROMPTS, from_config(base), gen_length=8, seed=0)
    unguided = remask.generate(
        tiny64, PROMPTS, from_config({**base, "cfg_scale": 0.0}), gen_length=8, seed=0
    )
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(b.tokens, unguided.tokens)
    assert torch.equal(a.nfe, b.nfe) and b.nfe.tolist() == [8, 8, 8]  # guided: 2 per step
    assert model.calls == a.steps


def test_config_round_trip_and_base_checks():
    s = build("prophet", base={"name": "threshold", "threshold": 0.5}, answer_start=3)
    config = s.to_config()
    assert config["base"]["name"] == "threshold" and config["base"]["threshold"] == 0.5
    assert from_config(config) == s and s.block_length == 32
    assert build("prophet", base=build("llada21")).edits_committed
    assert not build("prophet").edits_committed
    with pytest.raises(ValueError, match="block_length"):
        build("prophet", base={"name": "threshold", "block_length": 4}, block_length=8)
    with pytest.raises(ValueError, match="base 'threshold'.*threshold"):
        build("prophet", base={"name": "threshold", "threshold": 2.0})
    with pytest.raises(TypeError, match="base"):
        build("prophet", base=3)


def test_defaults_are_the_references():
    s = build("prophet")
    assert (s.early_threshold, s.mid_threshold, s.late_threshold, s.answer_length) == (
        7.5,
        5.0,
        2.5,
        5,
    )
    # LLaDA one token per step over one block, as the reference generate()'s defaults.
    assert dict(s.base)["name"] == "low_confidence" and dict(s.base)["steps"] is None
    assert s.block_length is None
    # A block length given to prophet goes to the base (the driver cuts blocks from it).
    assert dict(build("prophet", block_length=4).base)["block_length"] == 4


def test_a_sampled_exit_at_the_first_step_draws_the_one_shot_marginals(markov):
    """Exact law: exiting at step 1 (threshold 0) fills every position from the first forward
    pass at the base's temperature 1, independently, so each position's token follows the
    oracle's marginal given the empty canvas. Fixed seed; tolerance 5 binomial standard errors
    per cell for N rows."""
    N, G = 4000, 4
    sampler = build(
        "prophet", base={"name": "low_confidence", "temperature": 1.0}, early_threshold=0.0
    )
    out = remask.generate(markov, [[]] * N, sampler, gen_length=G, seed=11)
    assert out.nfe.tolist() == [1] * N
    probs = torch.softmax(markov(torch.full((1, G), markov.mask_id))[0].double(), -1)  # (G, V)
    freq = (
        torch.stack(
            [torch.bincount(out.tokens[:, j], minlength=markov.vocab_size) for j in range(G)]
        ).double()
        / N
    )  # (G, V)
    tolerance = 5 * (probs * (1 - probs) / N).sqrt()
    assert bool(((freq - probs).abs() <= tolerance).all()), (freq, probs)
    # Not the product law of a greedy fill: every cell with mass is visited.
    assert bool((freq[probs > 0.05] > 0).all())
