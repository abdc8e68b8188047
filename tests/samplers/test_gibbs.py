"""gibbs: config round trip, the revision rule, and exact Gibbs sweeps on the Markov oracle."""

from __future__ import annotations

import pytest
import torch
from reference.gibbs import gibbs_generate
from test_exactness import ALPHA, _chi_square_pvalue, _counts

import remask
from remask.samplers import build, from_config

PROMPTS = [[3, 1, 4], [1], [5, 9, 2, 6]]


def test_config_is_frozen_and_round_trips():
    a = build("gibbs", base={"name": "low_confidence", "steps": 3})
    b = build("gibbs", base=build("low_confidence", steps=3))
    assert a == b and hash(a) == hash(b)
    assert from_config(a.to_config()) == a
    assert a.to_config()["base"]["steps"] == 3
    nested = build("gibbs", base=a.to_config(), threshold=float("inf"))
    assert from_config(nested.to_config()) == nested
    assert build("gibbs", block_length=4).base_sampler.block_length == 4
    with pytest.raises(ValueError, match="contradicts"):
        build("gibbs", base={"name": "low_confidence", "block_length": 3}, block_length=4)
    with pytest.raises(TypeError, match="unknown config key"):
        build("gibbs", base={"name": "low_confidence", "nope": 1})
    with pytest.raises(ValueError, match="unknown sampler"):
        build("gibbs", base="nope")


@pytest.mark.parametrize("extra", [{"threshold": 0.0}, {"max_revisions": 0}])
def test_without_revisions_the_base_output_is_unchanged(tiny64, extra):
    base = {"name": "low_confidence", "steps": 3}
    plain = remask.generate(tiny64, PROMPTS, build("low_confidence", steps=3), gen_length=6, seed=0)
    out = remask.generate(tiny64, PROMPTS, build("gibbs", base=base, **extra), gen_length=6, seed=0)
    assert torch.equal(out.tokens, plain.tokens)
    # every base step after the first carries a check, then 2 final sweeps: 3 + 2 + 2
    assert out.nfe.tolist() == [7, 7, 7] and out.steps == 5


def test_revises_exactly_the_implausible_checked_tokens(tiny64):
    sampler = build("gibbs", base={"name": "low_confidence", "steps": 2}, threshold=0.5, window=8)
    seen = []

    def record(state, info):
        if info.checked.any():
            p = info.verify_prob
            expected = info.checked & (p < 0.5)
            assert torch.equal(info.revised, expected)
            assert not (info.checked & ~state.canvas.editable).any()
            seen.append(int(info.revised.sum()))

    out = remask.generate(tiny64, PROMPTS, sampler, gen_length=8, seed=0, callbacks=[record])
    assert sum(seen) > 0  # the setting does revise
    assert not bool((out.tokens == tiny64.mask_id).any())


@pytest.mark.statistical
@pytest.mark.parametrize("sweeps,exact", [(10, True), (0, False)])
def test_checkerboard_sweeps_restore_the_exact_joint(markov, sweeps, exact):
    """One-step decoding samples the product of marginals; Gibbs sweeps (threshold = inf)
    with the oracle's conditionals converge to the exact joint. sweeps = 0 is the control."""
    n = 20_000 if exact else 5_000
    sampler = build(
        "gibbs",
        base={"name": "low_confidence", "steps": 1, "temperature": 1.0},
        threshold=float("inf"),
        window=100,
        every=100,
        sweeps=sweeps,
        max_revisions=10**6,
    )
    out = remask.generate(markov, [[]] * n, sampler, gen_length=markov.seq_len, seed=77)
    p = markov.log_prob(markov.all_sequences()).exp()
    pvalue = _chi_square_pvalue(_counts(markov, out.tokens), p)
    assert (pvalue > ALPHA) if exact else (pvalue < ALPHA)


@pytest.mark.parametrize(
    "config",
    [
        dict(steps=3, threshold=0.5, window=4, every=1, sweeps=2, max_revisions=32),
        dict(steps=4, threshold=0.3, window=2, every=2, sweeps=3, max_revisions=2),
        dict(steps=8, threshold=float("inf"), window=8, every=3, sweeps=1, max_revisions=5),
    ],
)
def test_greedy_equals_the_reference_loop(tiny64, config):
    config = dict(config)
    steps = config.pop("steps")
    sampler = build("gibbs", base={"name": "low_confidence", "steps": steps}, **config)
    revised = []
    out = remask.generate(
        tiny64,
        PROMPTS,
        sampler,
        gen_length=8,
        seed=0,
        callbacks=[lambda s, i: revised.append(int(i.revised.sum()))],
    )
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        expected, nfe = gibbs_generate(tiny64, prompt, gen_length=8, steps=steps, **config)
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe
    assert sum(revised) > 0, "setting meant to revise tokens never did"
