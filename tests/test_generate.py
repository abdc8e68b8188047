"""remask.generate / remask.infill: inputs, batching, callbacks, bad input."""

from __future__ import annotations

import pytest
import torch

import remask
from remask.models import MarkovChainOracle, TinyTransformer
from remask.samplers import build

SAMPLER = build("low_confidence", block_length=4)


def test_list_prompts_are_left_padded_and_hidden(tiny64):
    out = remask.generate(tiny64, [[1, 2, 3], [4]], SAMPLER, gen_length=5, seed=0)
    assert out.tokens.shape == (2, 8)
    assert out.attention_mask[1].tolist() == [False, False] + [True] * 6
    assert out.tokens[0, :3].tolist() == [1, 2, 3] and out.tokens[1, 2].item() == 4


def test_tensor_prompt_with_attention_mask_equals_list(tiny64):
    prompt = torch.tensor([[0, 0, 4], [1, 2, 3]])
    keep = torch.tensor([[False, False, True], [True, True, True]])
    a = remask.generate(tiny64, prompt, SAMPLER, gen_length=5, seed=0, attention_mask=keep)
    b = remask.generate(tiny64, [[4], [1, 2, 3]], SAMPLER, gen_length=5, seed=0)
    assert torch.equal(a.tokens[:, 3:], b.tokens[:, 3:])


@pytest.mark.parametrize("prompt", [None, [], [[]], torch.zeros(2, 0, dtype=torch.long)])
def test_empty_prompts(tiny64, prompt):
    out = remask.generate(tiny64, prompt, SAMPLER, gen_length=6, seed=0)
    assert out.tokens.shape[1] == 6 and not bool((out.tokens == tiny64.mask_id).any())


def test_callbacks_see_every_step_and_committed_covers_the_canvas(tiny64):
    seen = []
    out = remask.generate(
        tiny64,
        [[1, 2]],
        SAMPLER,
        gen_length=8,
        seed=0,
        callbacks=[lambda state, info: seen.append(info.committed.clone())],
    )
    assert len(seen) == out.steps == 8
    total = torch.stack(seen).sum(0)
    assert (
        total.shape == (1, 10)
        and total[0, :2].tolist() == [0, 0]
        and total[0, 2:].tolist() == [1] * 8
    )


def test_progress_bar_runs(tiny64, capsys):
    remask.generate(tiny64, [[1]], SAMPLER, gen_length=4, seed=0, progress=True)
    assert "low_confidence" in capsys.readouterr().err


def test_infill_keeps_fixed_tokens_and_blocks_follow_masks():
    oracle = MarkovChainOracle(vocab_size=4, seq_len=8, seed=0)
    m = oracle.mask_id
    seen = []
    out = remask.infill(
        oracle,
        [[m, 1, m, m, 2, m]],
        build("low_confidence", block_length=2),
        seed=0,
        callbacks=[lambda s, i: seen.append(i.committed[0].nonzero().flatten().tolist())],
    )
    assert out.tokens[0, [1, 4]].tolist() == [1, 2]
    assert sorted(seen[0] + seen[1]) == [0, 2] and sorted(seen[2] + seen[3]) == [3, 5]


def test_infill_row_without_masks_is_returned_unchanged(tiny64):
    m = tiny64.mask_id
    out = remask.infill(tiny64, [[1, 2, 3], [m, 2, m]], SAMPLER, seed=0)
    assert out.tokens[0].tolist() == [1, 2, 3] and out.nfe[0].item() == 0


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(prompt=[[1, 23]]), ValueError, "mask_id=23"),
        (dict(prompt=[[1, 24]]), ValueError, "token id 24"),
        (dict(prompt=[[-1]]), ValueError, "token id -1"),
        (dict(prompt=[[1.5]]), TypeError, "lists of ints"),
        (dict(prompt="hello"), TypeError, "str"),
        (dict(prompt=torch.tensor([[0.5]])), TypeError, "dtype"),
        (dict(gen_length=0), ValueError, "gen_length must be >= 1, got 0"),
        (dict(gen_length=-4), ValueError, "-4"),
        (dict(gen_length=2.0), TypeError, "gen_length"),
        (dict(seed="x"), TypeError, "seed"),
        (
            dict(prompt=torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3, dtype=torch.bool)),
            ValueError,
            "attention_mask has shape",
        ),
    ],
)
def test_bad_input_names_the_value(tiny64, kwargs, error, match):
    args = dict(prompt=[[1, 2]], gen_length=4, seed=0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        remask.generate(tiny64, args.pop("prompt"), SAMPLER, **args)


def test_sampler_must_be_a_sampler(tiny64):
    with pytest.raises(TypeError, match="sampler must be a remask Sampler"):
        remask.generate(tiny64, [[1]], "low_confidence", gen_length=4)


class _Broken:
    mask_id, vocab_size = 5, 5

    def __init__(self, result):
        self.result = result

    def __call__(self, tokens, attention_mask=None):
        return self.result(tokens)


@pytest.mark.parametrize(
    "result,error,match",
    [
        (
            lambda t: torch.zeros(*t.shape, 4),
            ValueError,
            r"shape \(1, 4, 4\), expected .*\(1, 4, 5\)",
        ),
        (lambda t: torch.zeros(t.shape[0], 5), ValueError, "shape"),
        (lambda t: torch.full((*t.shape, 5), float("nan")), ValueError, "NaN"),
        (lambda t: torch.zeros(*t.shape, 5, dtype=torch.long), TypeError, "floating"),
        (lambda t: t.tolist(), TypeError, "torch.Tensor"),
    ],
)
def test_bad_model_output_raises(result, error, match):
    with pytest.raises(error, match=match):
        remask.generate(_Broken(result), [[1]], SAMPLER, gen_length=3, seed=0)


def test_model_without_protocol_attributes():
    with pytest.raises(TypeError, match="mask_id"):
        remask.generate(lambda t, a=None: t, [[1]], SAMPLER, gen_length=3)


def test_stalled_sampler_raises_instead_of_hanging(tiny64):
    class Stalled(type(SAMPLER)):
        def step(self, state, denoiser, generator):
            new_state, info = super().step(state, denoiser, generator)
            return state, info._replace(committed=torch.zeros_like(info.committed))

    with pytest.raises(RuntimeError, match="did not finish within"):
        remask.generate(tiny64, [[1]], Stalled(), gen_length=3, seed=0)


def test_top_level_api():
    assert remask.generate is remask.samplers.generate and remask.infill is remask.samplers.infill
    assert isinstance(remask.load_model("tiny"), TinyTransformer)
