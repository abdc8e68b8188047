"""threshold (Fast-dLLM v1) against a slow loop, handcrafted selections and metamorphic checks."""

from __future__ import annotations

import itertools

import pytest
import torch
from reference._common import FixedConfidence
from reference.threshold import fastdllm_generate

import remask
from remask.samplers import build
from remask.samplers.canvas import make_canvas

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]


def _first_commits(model, sampler, gen_length):
    seen = []
    remask.generate(
        model,
        [[]],
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[lambda s, i: seen.append(i.committed[0].nonzero().flatten().tolist())],
    )
    return seen


@pytest.mark.parametrize(
    "threshold,block_length,min_spacing",
    [
        (0.9, 32, None),
        (0.3, 4, None),
        (0.5, None, None),
        (0.2, 3, None),
        (0.2, None, 2),
        (0.1, 5, 3),
        (0.0, None, 2),
    ],
)
def test_greedy_equals_reference_loop(tiny64, threshold, block_length, min_spacing):
    sampler = build(
        "threshold", threshold=threshold, block_length=block_length, min_spacing=min_spacing
    )
    out = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=0)
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        expected, nfe = fastdllm_generate(
            tiny64,
            prompt,
            gen_length=10,
            block_length=block_length,
            threshold=threshold,
            min_spacing=min_spacing,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        assert int(out.nfe[row]) == nfe


def test_commits_exactly_the_confident_set_plus_the_argmax():
    model = FixedConfidence([0.95, 0.5, 0.91, 0.3, 0.99, 0.899])
    steps = _first_commits(model, build("threshold", threshold=0.9), gen_length=6)
    assert steps[0] == [0, 2, 4]  # {c >= 0.9}; 0.899 stays masked
    # Nothing clears the bar: only the single most confident position commits, one per step.
    steps = _first_commits(model, build("threshold", threshold=1.0), gen_length=6)
    assert steps == [[4], [0], [2], [5], [1], [3]]
    # Equality commits (>=).
    model = FixedConfidence([0.5, 0.75, 0.25])
    assert _first_commits(model, build("threshold", threshold=0.75), gen_length=3)[0] == [1]
    assert _first_commits(model, build("threshold", threshold=0.5), gen_length=3)[0] == [0, 1]


def test_spacing_filter_is_greedy_in_confidence_order():
    model = FixedConfidence([0.95, 0.93, 0.99, 0.2, 0.92])
    # candidates {0,1,2,4} in order 2, 0, 1, 4: gap 2 keeps 2, 0, 4 (1 is next to 2).
    assert _first_commits(model, build("threshold", threshold=0.9, min_spacing=2), gen_length=5)[
        0
    ] == [0, 2, 4]
    # gap 3 keeps only 2 (0 and 4 are 2 away from it).
    assert _first_commits(model, build("threshold", threshold=0.9, min_spacing=3), gen_length=5)[
        0
    ] == [2]
    # greedy, not "local maximum": 1 is blocked by 2, so 0 (dist 2 from 2) is kept with gap 2
    model = FixedConfidence([0.91, 0.95, 0.99])
    assert _first_commits(model, build("threshold", threshold=0.9, min_spacing=2), gen_length=3)[
        0
    ] == [0, 2]
    # min_spacing=1 is the plain rule
    assert _first_commits(model, build("threshold", threshold=0.9, min_spacing=1), gen_length=3)[
        0
    ] == [0, 1, 2]


def test_commits_stay_in_the_active_block():
    model = FixedConfidence([0.99] * 7)
    steps = _first_commits(model, build("threshold", threshold=0.9, block_length=3), gen_length=7)
    assert steps == [[0, 1, 2], [3, 4, 5], [6]]


def _random_states(model, count, seed=0):
    """Canvases with a random subset of the generated positions already decoded."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        B, P, G = 4, 3, 12
        tokens = torch.randint(0, model.vocab_size - 1, (B, P + G), generator=g)
        masked = torch.rand(B, P + G, generator=g) < 0.7
        masked[:, :P] = False
        tokens[masked] = model.mask_id
        editable = torch.zeros(B, P + G, dtype=torch.bool)
        editable[:, P:] = True
        yield make_canvas(tokens, editable, torch.ones_like(editable), None)


def _one_step(sampler, canvas, model):
    state = sampler.init(canvas, model)
    key = remask.kernels.split(0, canvas.tokens.shape[0])  # (B,) step keys
    return sampler.step(state, model, key)[1].committed


@pytest.mark.parametrize("min_spacing", [None, 2])
def test_larger_threshold_never_commits_more(tiny64, min_spacing):
    """Metamorphic: on the same state, the set committed at τ2 > τ1 is a subset of τ1's."""
    taus = [0.0, 0.2, 0.3, 0.4, 0.6, 0.9, 1.0]
    for canvas in _random_states(tiny64, 6):
        sets = [
            _one_step(
                build("threshold", threshold=t, block_length=None, min_spacing=min_spacing),
                canvas,
                tiny64,
            )
            for t in taus
        ]
        if min_spacing is None:
            for low, high in itertools.pairwise(sets):
                assert not bool((high & ~low).any())
        counts = torch.stack([s.sum(-1) for s in sets])  # (taus, B)
        assert bool((counts[1:] <= counts[:-1]).all())
        assert bool((counts[-1] == 1).all())  # τ = 1: the argmax only


def test_larger_threshold_never_takes_fewer_steps(tiny64):
    nfe = [
        remask.generate(
            tiny64, PROMPTS, build("threshold", threshold=t, block_length=4), gen_length=12, seed=0
        ).nfe
        for t in (0.0, 0.3, 0.5, 1.0)
    ]
    assert nfe[0].tolist() == [3, 3, 3] and nfe[-1].tolist() == [12, 12, 12]
    for low, high in itertools.pairwise(nfe):
        assert bool((high >= low).all())


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(threshold=1.5), ValueError),
        (dict(threshold=-0.1), ValueError),
        (dict(threshold="high"), TypeError),
        (dict(threshold=float("nan")), ValueError),
        (dict(min_spacing=0), ValueError),
        (dict(min_spacing=2.0), TypeError),
        (dict(temperature=-1.0), ValueError),
        (dict(block_length=0), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("threshold", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)


def test_defaults_are_the_papers():
    sampler = build("threshold")
    assert (sampler.threshold, sampler.block_length, sampler.min_spacing) == (0.9, 32, None)
