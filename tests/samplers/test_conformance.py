"""The sampler contract, checked for every registered sampler automatically (docs/design.md §3)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import remask
from remask.samplers import available, build, from_config, sampler_class


def _configs(name: str) -> list[dict]:
    """The default config plus the sampler's declared ``example_configs``."""
    return [{}, *sampler_class(name).example_configs]


CASES = [(name, config) for name in available() for config in _configs(name)]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in c.items()) or 'default'}" for name, c in CASES]
PROMPTS = [[3, 1, 4], [1], [5, 9, 2, 6]]
GEN = 9


def _run(model, sampler, seed=0, prompts=PROMPTS, callbacks=()):
    return remask.generate(model, prompts, sampler, gen_length=GEN, seed=seed, callbacks=callbacks)


@pytest.mark.parametrize("name,config", CASES, ids=IDS)
def test_step_contract(tiny64, counting, name, config):
    sampler = build(name, **config)
    before = dataclasses.asdict(sampler)
    model = counting(tiny64)
    history = []

    def record(state, info):
        assert isinstance(state.canvas, remask.samplers.Canvas), (
            "state's first field must be a Canvas"
        )
        assert state[0] is state.canvas
        B, L = state.canvas.tokens.shape
        assert info.committed.shape == (B, L) and info.committed.dtype == torch.bool
        assert info.proposal.shape == (B, L) and info.proposal.dtype == torch.int64
        assert info.score.shape == (B, L) and info.score.is_floating_point()
        # A sampler that moves positions (daedal's insertions) says where each came from.
        source = getattr(info, "source", None)
        real = state.canvas.attention_mask.clone()
        history.append((state.canvas.tokens.clone(), info.committed.clone(), source, real))

    out = _run(model, sampler, callbacks=[record])
    assert dataclasses.asdict(sampler) == before, "step must not mutate the sampler"

    width = max(map(len, PROMPTS))
    prompt_part = out.tokens[:, :width]
    for row, prompt in enumerate(PROMPTS):
        assert prompt_part[row, width - len(prompt) :].tolist() == prompt, "prompt changed"
    assert not bool((out.tokens == tiny64.mask_id).any()), "a mask survived"
    assert len(history) == out.steps

    previous = torch.full_like(out.tokens, tiny64.mask_id)
    previous[:, :width] = prompt_part
    previous_masks = None
    for tokens, committed, source, real in history:
        # Padding holds meaningless filler: compare real positions (a variable-length sampler
        # turns unused columns into padding in init and grows back into them).
        if source is not None:  # align the previous canvas with this one; inserted: as now
            previous = torch.where(source >= 0, previous.gather(1, source.clamp(min=0)), tokens)
            previous_masks = int(((previous == tiny64.mask_id) & real).sum())
        masks = int(((tokens == tiny64.mask_id) & real).sum())
        if not sampler.edits_committed:
            decided = (previous != tiny64.mask_id) & real
            assert torch.equal(tokens[decided], previous[decided]), "a committed token changed"
            assert previous_masks is None or masks <= previous_masks, "masked count grew"
        changed = (tokens != previous) & real
        assert not bool((changed & ~committed).any()), "a token changed without a commit"
        assert not bool((committed & ~real).any()), "a commit on padding"
        previous, previous_masks = tokens, masks

    # NFE counted exactly: every row that was still decoding took part in every call. WINO's
    # emulated shadow block (this plain denoiser has no attention-bias path) is the one
    # sampler that evaluates rows it does not charge: each row pays for its own active block's
    # leave-one-out canvases, not for the unused slots that a shorter block leaves in the
    # batch (batching waste, like padding), so it may charge less than the model computed.
    if name == "wino":
        assert 0 < int(out.nfe.max()) <= model.rows // len(PROMPTS)
    else:
        assert int(out.nfe.max()) == model.rows // len(PROMPTS)
    assert model.calls == out.steps


@pytest.mark.parametrize("name,config", CASES, ids=IDS)
def test_same_seed_same_output(tiny64, name, config):
    sampler = build(name, **config)
    assert torch.equal(_run(tiny64, sampler, seed=3).tokens, _run(tiny64, sampler, seed=3).tokens)


GREEDY = [(i, c) for i, c in zip(IDS, CASES) if not build(c[0], **c[1]).stochastic]


@pytest.mark.parametrize("name,config", [c for _, c in GREEDY], ids=[i for i, _ in GREEDY])
def test_greedy_batch_equals_rows_one_by_one(tiny64, name, config):
    sampler = build(name, **config)
    batch = _run(tiny64, sampler)
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        alone = _run(tiny64, sampler, prompts=[prompt])
        assert batch.tokens[row, width - len(prompt) :].tolist() == alone.tokens[0].tolist()
        assert int(batch.nfe[row]) == int(alone.nfe[0])


STOCHASTIC = [(i, c) for i, c in zip(IDS, CASES) if build(c[0], **c[1]).stochastic]
SEEDS = [101, 7, 2**62 + 3]  # one seed per row of PROMPTS


def test_every_sampler_has_a_stochastic_example():
    """The sampled batch-invariance test below must cover every registered sampler."""
    assert {c[0] for _, c in STOCHASTIC} == set(available())


def _strip(out, row: int, length: int) -> list[int]:
    """Row ``row`` of a left-padded output without its padding (its last ``length`` tokens)."""
    return out.tokens[row, out.tokens.shape[1] - length :].tolist()


@pytest.mark.parametrize("name,config", [c for _, c in STOCHASTIC], ids=[i for i, _ in STOCHASTIC])
def test_sampled_row_depends_only_on_its_seed(tiny64, name, config):
    """Per-row seeds: each row of a ragged, left-padded batch equals that row decoded alone with
    its seed (tokens and NFE), and reordering the batch permutes the outputs."""
    sampler = build(name, **config)
    batch = _run(tiny64, sampler, seed=SEEDS)
    for row, prompt in enumerate(PROMPTS):
        alone = _run(tiny64, sampler, seed=[SEEDS[row]], prompts=[prompt])
        assert _strip(batch, row, len(prompt) + GEN) == alone.tokens[0].tolist(), f"row {row}"
        assert int(batch.nfe[row]) == int(alone.nfe[0]), f"row {row}"
    order = [2, 0, 1]
    shuffled = _run(
        tiny64, sampler, seed=[SEEDS[i] for i in order], prompts=[PROMPTS[i] for i in order]
    )
    for new, old in enumerate(order):
        length = len(PROMPTS[old]) + GEN
        assert _strip(shuffled, new, length) == _strip(batch, old, length)
        assert int(shuffled.nfe[new]) == int(batch.nfe[old])


@pytest.mark.parametrize("name,config", [c for _, c in STOCHASTIC], ids=[i for i, _ in STOCHASTIC])
def test_sampled_infill_row_depends_only_on_its_seed(tiny64, name, config):
    """Rows with different numbers of masks (so they finish at different steps) decode alone
    as in the batch."""
    m = tiny64.mask_id
    canvases = [[2, m, m, 7, m, 1, m], [m, 3, m], [m, m, m, m, m]]
    sampler = build(name, **config)
    batch = remask.infill(tiny64, canvases, sampler, seed=SEEDS)
    for row, canvas in enumerate(canvases):
        alone = remask.infill(tiny64, [canvas], sampler, seed=[SEEDS[row]])
        assert _strip(batch, row, len(canvas)) == alone.tokens[0].tolist(), f"row {row}"
        if name == "wino" and sampler.shadow == "emulate":
            # Known, not random: WINO's emulated shadow charges 1 + W evaluations per step with
            # W capped at the batch's longest editable region (fixed at init), so a row's NFE
            # depends on its neighbours' mask counts (its tokens do not).
            continue
        assert int(batch.nfe[row]) == int(alone.nfe[0]), f"row {row}"


def test_the_seed_changes_sampled_rows(tiny64):
    """The invariance tests above are not vacuous: a row's seed does change its tokens."""
    sampler = build("low_confidence", temperature=1.0)
    outs = {tuple(_run(tiny64, sampler, seed=[s, 0, 0]).tokens[0].tolist()) for s in range(8)}
    assert len(outs) > 1
    # One int seed: row r gets the key fold(seed, r), so identical prompts give different rows.
    same = _run(tiny64, sampler, seed=0, prompts=[[1]] * 8)
    assert len({tuple(row) for row in same.tokens.tolist()}) > 1
    # ... which is seeding row r with the 64-bit key fold(0, r); a (B,) tensor of seeds works too.
    assert torch.equal(
        _run(tiny64, sampler, seed=torch.tensor(SEEDS)).tokens,
        _run(tiny64, sampler, seed=SEEDS).tokens,
    )


@pytest.mark.parametrize("name,config", CASES, ids=IDS)
def test_config_round_trip(name, config):
    sampler = build(name, **config)
    config_dict = sampler.to_config()
    assert config_dict["name"] == name
    assert from_config(config_dict) == sampler


@pytest.mark.parametrize("name", available())
def test_infill_fills_only_masks(tiny64, name):
    m = tiny64.mask_id
    canvases = [[2, m, m, 7, m, 1], [m, 3, m]]
    out = remask.infill(tiny64, canvases, build(name), seed=0)
    assert not bool((out.tokens == m).any())
    for row, canvas in enumerate(canvases):
        got = out.tokens[row, out.tokens.shape[1] - len(canvas) :].tolist()
        assert all(c == g for c, g in zip(canvas, got) if c != m)


def test_unknown_sampler_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown sampler 'nope'.*low_confidence"):
        build("nope")
