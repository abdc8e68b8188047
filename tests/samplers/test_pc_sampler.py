"""pc_sampler (PC-Sampler, arXiv 2508.13021): the calibrated score on handcrafted values, its
two effects (trivial-token demotion, position decay), a slow per-row loop, validation."""

from __future__ import annotations

import math

import pytest
import torch
from reference.pc_sampler import pc_generate

import remask
from remask.samplers import build
from remask.samplers.pc_sampler import pc_score

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]


def test_score_formula_on_handcrafted_values():
    prob = torch.tensor([[0.5, 0.9, 0.2, 1.0]])
    tokens = torch.tensor([[0, 1, 2, 0]])
    offset = torch.tensor([[0, 1, 2, 3]])
    background = torch.tensor([0.01, 0.5, 0.0])
    got = pc_score(prob, tokens, offset, lambd=0.25, alpha=10.0, background=background)
    expected = [
        -0.5 * math.log(0.01 + 1e-9),
        math.exp(-0.25) * -0.9 * math.log(0.5 + 1e-9),
        math.exp(-0.5) * -0.2 * math.log(0.0 + 1e-9),  # unseen token: 0.2 * 20.7 = 4.1 < α
        math.exp(-0.75) * -1.0 * math.log(0.01 + 1e-9),
    ]
    assert torch.allclose(got[0].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5)
    capped = pc_score(prob, tokens, offset, lambd=0.0, alpha=1.0, background=background)
    assert capped.max() <= 1.0 and capped[0, 0] == pytest.approx(1.0)  # 2.30 capped at α = 1
    plain = pc_score(prob, tokens, offset, lambd=0.0, alpha=10.0, background=None)
    assert torch.equal(plain, prob)  # no table: the confidence itself


class FixedLogits:
    """Position 2 proposes the frequent token 0 very confidently; position 4 proposes the rare
    token 1 less confidently; positions 1 and 3 are unsure (V = 3, mask id 3)."""

    vocab_size, mask_id = 3, 3

    def __call__(self, tokens, attention_mask=None):
        B, L = tokens.shape
        logits = torch.zeros(B, L, 3)
        logits[:, 2] = torch.tensor([4.0, 0.0, 0.0])  # token 0, p ≈ .96
        logits[:, 4] = torch.tensor([0.0, 1.5, 0.0])  # token 1, p ≈ .69
        logits[:, 1] = torch.tensor([0.3, 0.0, 0.2])  # token 0, p ≈ .37
        logits[:, 3] = torch.tensor([0.0, 0.0, 0.4])  # token 2, p ≈ .40
        return logits


def _order(**config):
    order = []
    remask.generate(
        FixedLogits(),
        [[0]],
        build("pc_sampler", **config),
        gen_length=4,
        seed=0,
        callbacks=[lambda s, i: order.extend(i.committed[0].nonzero().flatten().tolist())],
    )
    return order


def test_calibration_demotes_trivial_tokens():
    frequent = torch.tensor([0.9, 0.001, 0.099])
    # Without calibration (and no decay) the order is by confidence: 2, 4, 3, 1.
    assert _order(lambd=0.0) == [2, 4, 3, 1]
    # With it, token 0 is worth −log .9 ≈ .105 nats, token 1 6.9 nats, token 2 2.3 nats:
    # .69·6.9 = 4.8 (pos 4) > .40·2.3 = .93 (pos 3) > .96·.105 = .10 (pos 2) > .37·.105 (pos 1).
    assert _order(lambd=0.0, background=frequent) == [4, 3, 2, 1]


def test_position_decay_favours_early_positions():
    # λ = 3: each offset costs a factor e^-3 ≈ .05, which outweighs every confidence ratio here.
    assert _order(lambd=3.0) == [1, 2, 3, 4]
    assert _order(lambd=3.0, background=torch.tensor([0.9, 0.001, 0.099])) == [1, 2, 3, 4]


def test_without_decay_or_table_it_is_low_confidence(tiny64):
    for config in (dict(steps=4), dict(block_length=3)):
        a = remask.generate(
            tiny64, PROMPTS, build("pc_sampler", lambd=0.0, **config), gen_length=8, seed=0
        )
        b = remask.generate(
            tiny64, PROMPTS, build("low_confidence", **config), gen_length=8, seed=0
        )
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe)


@pytest.mark.parametrize(
    "gen_length,config",
    [
        (8, dict(block_length=None, steps=None, lambd=0.25, alpha=10.0)),
        (10, dict(block_length=4, steps=5, lambd=0.5, alpha=2.0)),
        (9, dict(block_length=None, steps=3, lambd=0.1, alpha=10.0, cfg_scale=1.0)),
    ],
)
@pytest.mark.parametrize("with_table", [False, True])
def test_greedy_equals_reference_loop(tiny64, gen_length, config, with_table):
    background = None
    if with_table:
        background = torch.rand(tiny64.vocab_size, generator=torch.Generator().manual_seed(1))
        background = background / background.sum()
    out = remask.generate(
        tiny64,
        PROMPTS,
        build("pc_sampler", background=background, **config),
        gen_length=gen_length,
        seed=0,
    )
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        expected, nfe = pc_generate(
            tiny64, prompt, gen_length=gen_length, background=background, **config
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe


# ----------------------------------------------------------------------------- validation
def test_background_is_validated_and_round_trips(tiny64):
    table = torch.full((tiny64.vocab_size,), 1.0 / tiny64.vocab_size)
    sampler = build("pc_sampler", background=table)
    assert isinstance(sampler.background, tuple) and len(sampler.background) == tiny64.vocab_size
    assert remask.samplers.from_config(sampler.to_config()) == sampler
    assert hash(sampler) == hash(build("pc_sampler", background=table.tolist()))
    with pytest.raises(
        ValueError, match="background has 5 entries but the denoiser's vocab_size is 24"
    ):
        remask.generate(
            tiny64, [[1]], build("pc_sampler", background=torch.ones(5) / 5), gen_length=4
        )
    with pytest.raises(ValueError, match=r"\(V,\) tensor, got shape \(2, 12\)"):
        build("pc_sampler", background=torch.ones(2, 12))
    with pytest.raises(ValueError, match="entry 1 is -0.5"):
        build("pc_sampler", background=[0.5, -0.5])
    with pytest.raises(ValueError, match="entry 0 is nan"):
        build("pc_sampler", background=[float("nan"), 0.5])
    with pytest.raises(TypeError, match="dtype torch.bool"):
        build("pc_sampler", background=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="background"):
        build("pc_sampler", background="corpus.json")


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(lambd=-0.1), ValueError),
        (dict(alpha=0.0), ValueError),
        (dict(alpha="10"), TypeError),
        (dict(steps=0), ValueError),
        (dict(temperature=-1.0), ValueError),
        (dict(cfg_scale=-1.0), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("pc_sampler", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)


def test_fewer_steps_than_blocks_raises(tiny64):
    with pytest.raises(ValueError, match="steps=2 is fewer than the 3 blocks"):
        remask.generate(tiny64, [[1]], build("pc_sampler", steps=2, block_length=2), gen_length=6)
