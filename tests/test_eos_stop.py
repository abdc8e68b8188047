"""EOS early stop (``generate(..., stop_at_eos=True)``), for every sampler, on the EOS toy.

The toy (``oracle:eos``) pads variable-length content with EOS, so decoding reaches EOS
before the end of the canvas: the stop must cut each row at its first EOS, stop charging it,
keep the tokens before the EOS those of the run without the stop (samplers that never rewrite
a committed token), and leave every row what it is alone.
"""

from __future__ import annotations

import pytest
import torch

import remask
from remask.models import as_denoiser, load_model
from remask.samplers import build
from remask.samplers.canvas import eos_cut, make_canvas
from remask.samplers.registry import available, sampler_class

SPEC = "oracle:eos?vocab=3&length=12&seed=0"
PROMPTS = [[0, 1], [1, 2], [2, 2], [0, 0]]
SEEDS = [11, 12, 13, 14]
G = 10


@pytest.fixture(scope="module")
def model():
    return load_model(SPEC)


def _first_eos(row: torch.Tensor, eos: int, start: int) -> int:
    hits = (row[start:] == eos).nonzero()
    return start + int(hits[0]) if hits.numel() else row.numel()


def _check_cut(tokens: torch.Tensor, eos: int, start: int) -> None:
    """Every generated position from a row's first EOS on is EOS."""
    for r, row in enumerate(tokens):
        first = _first_eos(row, eos, start)
        assert bool((row[first:] == eos).all()), (
            f"row {r} has non-EOS after its first EOS: {row.tolist()}"
        )


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stop_keeps_the_prefix_cuts_and_saves_forward_passes(model, temperature):
    sampler = build("low_confidence", block_length=2, temperature=temperature)
    full = remask.generate(model, PROMPTS, sampler, gen_length=G, seed=SEEDS)
    stop = remask.generate(model, PROMPTS, sampler, gen_length=G, seed=SEEDS, stop_at_eos=True)
    eos, P = model.eos_id, len(PROMPTS[0])
    _check_cut(stop.tokens, eos, P)
    for r in range(len(PROMPTS)):
        first = _first_eos(full.tokens[r], eos, P)
        # low_confidence never rewrites a committed token: up to and including the first EOS,
        # the stopped run is the full run.
        assert _first_eos(stop.tokens[r], eos, P) == first
        assert stop.tokens[r, :first].tolist() == full.tokens[r, :first].tolist()
    assert bool((stop.nfe <= full.nfe).all())
    assert int(stop.nfe.sum()) < int(full.nfe.sum()), "no row saved a forward pass"
    # A row's first EOS in block b (of two positions) leaves it b + 1 blocks of steps at most.
    first_block = torch.tensor(
        [(_first_eos(full.tokens[r], eos, P) - P) // 2 for r in range(len(PROMPTS))]
    )
    assert bool((stop.nfe <= 2 * (first_block + 1)).all()), (stop.nfe, first_block)


def test_rows_stop_independently(model):
    """Rows whose EOS comes at different places: each row in the batch is the row alone
    (tokens and nfe) — a stop that leaked to a neighbour (stopping it, or freezing its nfe)
    or a neighbour that kept a stopped row going would differ."""
    sampler = build("low_confidence", block_length=2, temperature=1.0)
    batch = remask.generate(model, PROMPTS, sampler, gen_length=G, seed=SEEDS, stop_at_eos=True)
    eos, P = model.eos_id, len(PROMPTS[0])
    firsts = {_first_eos(row, eos, P) for row in batch.tokens}
    assert len(firsts) > 1, (
        f"the rows' EOS positions coincide ({firsts}): the test needs different ones"
    )
    assert len(set(batch.nfe.tolist())) > 1
    for r, prompt in enumerate(PROMPTS):
        alone = remask.generate(
            model, [prompt], sampler, gen_length=G, seed=[SEEDS[r]], stop_at_eos=True
        )
        assert alone.tokens[0].tolist() == batch.tokens[r].tolist(), f"row {r}"
        assert int(alone.nfe[0]) == int(batch.nfe[r]), f"row {r}"


def test_a_row_without_eos_runs_to_the_end(model):
    """A row that never decodes EOS is charged its full run while its neighbour stops early."""
    never = as_denoiser(
        lambda tokens, mask=None: _no_eos_logits(tokens, model),
        mask_id=model.mask_id,
        vocab_size=model.vocab_size,
    )
    never.eos_id = model.eos_id

    class Mixed:
        mask_id, vocab_size, eos_id = model.mask_id, model.vocab_size, model.eos_id

        def __call__(self, tokens, attention_mask=None):
            logits = model(tokens, attention_mask)  # (B, L, V)
            logits[1:] = never(tokens[1:])
            return logits

    sampler = build("low_confidence", block_length=2)
    full = remask.generate(Mixed(), PROMPTS[:2], sampler, gen_length=G, seed=0)
    stop = remask.generate(Mixed(), PROMPTS[:2], sampler, gen_length=G, seed=0, stop_at_eos=True)
    assert not bool((stop.tokens[1] == model.eos_id).any())
    assert int(stop.nfe[1]) == int(full.nfe[1])
    assert int(stop.nfe[0]) < int(full.nfe[0])


def _no_eos_logits(tokens, model):
    logits = model(tokens).clone()  # (B, L, V)
    logits[..., model.eos_id] = float("-inf")
    return logits


@pytest.mark.parametrize("name", available())
def test_every_sampler(model, name):
    """Each registered sampler at its first example config: the output is cut at the first
    EOS, no mask is left, no row costs more than without the stop, each row is itself alone,
    and (samplers that never rewrite a committed token) the prefix is the full run's."""
    sampler = build(name, **sampler_class(name).example_configs[0])
    eos, P = model.eos_id, len(PROMPTS[0])
    full = remask.generate(model, PROMPTS, sampler, gen_length=G, seed=SEEDS)
    stop = remask.generate(model, PROMPTS, sampler, gen_length=G, seed=SEEDS, stop_at_eos=True)
    _check_cut(stop.tokens, eos, P)
    assert not bool((stop.tokens == model.mask_id).any())
    assert bool((stop.nfe <= full.nfe).all()), (stop.nfe, full.nfe)
    if not sampler.edits_committed:
        for r in range(len(PROMPTS)):
            first = _first_eos(full.tokens[r], eos, P)
            assert stop.tokens[r, :first].tolist() == full.tokens[r, :first].tolist(), f"row {r}"
    alone = remask.generate(
        model, [PROMPTS[2]], sampler, gen_length=G, seed=[SEEDS[2]], stop_at_eos=True
    )
    assert alone.tokens[0].tolist() == stop.tokens[2].tolist()
    assert int(alone.nfe[0]) == int(stop.nfe[2])


def test_infill_writes_eos_only_where_it_fills(model):
    mask = model.mask_id
    canvas = [[0, mask, mask, mask, mask, mask, mask, mask, mask, mask, mask, 1]]
    out = remask.infill(
        model, canvas, build("low_confidence", block_length=2), seed=0, stop_at_eos=True
    )
    assert int(out.tokens[0, 0]) == 0 and int(out.tokens[0, -1]) == 1  # fixed tokens stay


def test_eos_cut_rule():
    """Handcrafted canvas: the stop needs everything before the EOS decided; settled_only
    also needs the EOS's block to be past the active one."""
    M, E = 9, 5
    tokens = torch.tensor(
        [
            [1, E, M, M, M, M],  # EOS with everything before decided
            [M, E, M, M, M, M],  # a mask before the EOS: no stop
            [1, 2, 3, E, 4, M],
        ]
    )  # EOS in block 1, a later token overwritten
    editable = torch.ones_like(tokens, dtype=torch.bool)
    canvas = make_canvas(tokens, editable, editable, block_length=2)
    canvas = canvas._replace(window=torch.tensor([0, 0, 2]))
    stop, cut = eos_cut(canvas, E, M)
    assert stop.tolist() == [True, False, True]
    assert cut.tolist() == [[1, E, E, E, E, E], tokens[1].tolist(), [1, 2, 3, E, E, E]]
    stop, _ = eos_cut(canvas, E, M, settled_only=True)
    assert stop.tolist() == [False, False, True]  # row 0's EOS sits in its active block 0


def test_bad_input(model):
    sampler = build("low_confidence")
    with pytest.raises(TypeError, match="stop_at_eos"):
        remask.generate(model, PROMPTS, sampler, gen_length=G, stop_at_eos=1)
    plain = as_denoiser(
        lambda tokens, mask=None: torch.zeros(*tokens.shape, 4), mask_id=3, vocab_size=4
    )
    with pytest.raises(ValueError, match="FunctionDenoiser.*eos_id"):
        remask.generate(plain, [[0]], sampler, gen_length=3, stop_at_eos=True)
    with pytest.raises(ValueError, match="eos_id"):
        remask.infill(plain, [[0, 3]], sampler, stop_at_eos=True)


def test_cli_flags():
    """--stop-at-eos reaches the driver; its errors and DPad's are one-line usage errors."""
    import json

    from click.testing import CliRunner

    from remask.cli import main

    def run(*args):
        return CliRunner().invoke(
            main,
            [
                "generate",
                "--model",
                SPEC,
                "--gen-length",
                str(G),
                "--prompt-ids",
                "0,1",
                "--prompt-ids",
                "1,2",
                "--seed",
                "1",
                "--set",
                "block_length=2",
                "--set",
                "temperature=1.0",
                "--json",
                *args,
            ],
        )

    full, stop = run(), run("--stop-at-eos")
    assert full.exit_code == 0 and stop.exit_code == 0, stop.output
    nfe_full = [row["nfe"] for row in json.loads(full.output)["rows"]]
    nfe_stop = [row["nfe"] for row in json.loads(stop.output)["rows"]]
    # Seed 1 is one whose second row decodes EOS early (most seeds on this toy end late).
    assert len(nfe_stop) == 2 and sum(nfe_stop) < sum(nfe_full)
    markov = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            "oracle:markov?vocab=3&length=8",
            "--gen-length",
            "4",
            "--prompt-ids",
            "0",
            "--stop-at-eos",
        ],
    )
    assert markov.exit_code == 2 and "eos_id" in markov.output and "Traceback" not in markov.output
    dpad = run("--dpad-window", "3")
    assert dpad.exit_code == 2 and "accepts_attention_bias" in dpad.output
    knob = run("--dpad-scale", "1.5")
    assert knob.exit_code == 2 and "--dpad-window" in knob.output


@pytest.mark.parametrize(
    "name, config",
    [
        ("remdm", {"schedule": "loop", "steps": 10, "block_length": 2}),
        ("wino", {"block_length": 2}),
        ("gibbs", {"base": {"name": "low_confidence", "block_length": 2}, "threshold": 0.5}),
    ],
)
def test_editing_samplers_stop_after_the_block(model, name, config):
    """Samplers that rewrite committed tokens, with blocks: the stop waits for the EOS's block
    to be left, still saves forward passes, and each row is itself alone."""
    sampler = build(name, **config)
    assert sampler.edits_committed
    eos, P = model.eos_id, len(PROMPTS[0])
    full = remask.generate(model, PROMPTS, sampler, gen_length=G, seed=SEEDS)
    stop = remask.generate(model, PROMPTS, sampler, gen_length=G, seed=SEEDS, stop_at_eos=True)
    _check_cut(stop.tokens, eos, P)
    assert not bool((stop.tokens == model.mask_id).any())
    assert bool((stop.nfe <= full.nfe).all()) and int(stop.nfe.sum()) < int(full.nfe.sum())
    for r in range(len(PROMPTS)):
        alone = remask.generate(
            model, [PROMPTS[r]], sampler, gen_length=G, seed=[SEEDS[r]], stop_at_eos=True
        )
        assert alone.tokens[0].tolist() == stop.tokens[r].tolist() and int(alone.nfe[0]) == int(
            stop.nfe[r]
        )
