"""The step-floor benchmark: its compiled decode does the sampler's work (speed is never asserted)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

pytest.importorskip("numba")

from remask.bench import step_floor  # noqa: E402
from remask.bench.samplers import StubDenoiser, _greedy_sampler  # noqa: E402
from remask.samplers import generate  # noqa: E402


class ContextStub(StubDenoiser):
    """The stub with logits that depend on the canvas: every position's logits rolled by the
    number of tokens already committed, so the order of the commits shows in the tokens."""

    def __call__(self, tokens, attention_mask=None, **kwargs):
        out = super().__call__(tokens, attention_mask)  # (B, L, V), the mask column last
        shift = int((tokens != self.mask_id).sum())
        out[..., : self.mask_id] = out[..., : self.mask_id].roll(shift, -1)
        return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("batch", "prompt_length"), [(3, 0), (2, 5)])
def test_compiled_decode_gives_low_confidence_tokens(dtype, batch, prompt_length):
    """The floor is only a floor if it is the same decode: greedy low-confidence, one token
    per step, every masked position proposed, the most confident committed (ties low)."""
    model = ContextStub(97, prompt_length + 12, 0.0, dtype, seed=3)
    prompt = [[1 + i % 7 for i in range(prompt_length)] or [1]] * batch
    expected = generate(model, prompt, _greedy_sampler("low_confidence", 9), gen_length=9, seed=0)
    tokens, outside_s, kernel_s = step_floor.compiled_low_confidence(model, prompt_length, 9, batch)
    assert torch.equal(tokens, expected.tokens)
    assert len(outside_s) == len(kernel_s) == expected.steps == 9
    assert all(0.0 <= k <= t for k, t in zip(kernel_s, outside_s, strict=True))
    sampled, steps = step_floor.sampler_steps(
        model, prompt, _greedy_sampler("low_confidence", 9), 9
    )
    assert torch.equal(sampled, expected.tokens) and len(steps) == 8  # the first left out


def test_compiled_decode_breaks_ties_towards_the_lower_position():
    """Every position's logits a shift of one row (the same confidence, a different token):
    each step commits the leftmost mask, as topk_mask."""
    model = ContextStub(16, 8, 0.0)
    row = torch.arange(15.0)  # (V - 1,): the mask column stays -inf
    for i in range(8):
        model.bank[0, i, :15] = row.roll(i)
    tokens, _, _ = step_floor.compiled_low_confidence(model, 0, 4, 1)
    expected = generate(model, [[1]], _greedy_sampler("low_confidence", 4), gen_length=4, seed=0)
    assert torch.equal(tokens, expected.tokens)


def test_main_writes_one_row_per_variant(tmp_path, monkeypatch):
    monkeypatch.setattr(step_floor, "STUB_SHAPES", [(2, 0, 6, 64, torch.float32, 0.001)])
    threads = torch.get_num_threads()
    try:
        path = step_floor.main(threads=1, repeats=2, out=tmp_path / "f.csv", log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [
        "sampler",
        "compiled step",
        "kernel alone",
        "small torch op, cold",
        "small torch op, hot",
    ]
    assert {r["name"] for r in rows} == {"step_floor"}
    config = json.loads(rows[0]["config"])
    assert (config["B"], config["G"], config["V"], config["steps"]) == (2, 6, 64, 6)
    assert len(config["run_means_ms"]) == 2
    # every step of both runs but each run's first; the small op: 21 calls
    assert [r["repeats"] for r in rows] == ["10", "10", "10", "21", "21"]
    # derived: the median as a fraction of the 1 ms forward (rounded to 3 decimals)
    assert float(rows[0]["derived"]) == pytest.approx(float(rows[0]["median"]), abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"threads": 0}, "threads"), ({"repeats": 1.5}, "repeats")]
)
def test_main_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        step_floor.main(**kwargs, log=lambda *a: None)


def test_compiled_decode_refuses_other_dtypes():
    with pytest.raises(ValueError, match="float32 or bfloat16, got torch.float16"):
        step_floor.compiled_low_confidence(StubDenoiser(16, 8, 0.0, torch.float16), 0, 4, 1)
