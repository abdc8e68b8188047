"""Denoiser wrappers (Guided, Suppress) and the protocol's capability record and call."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import remask
from remask.cli import main
from remask.models import protocol
from remask.models.wrappers import Guided, Suppress
from remask.samplers import available, build, sampler_class

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
GUIDED_SAMPLERS = [
    name for name in available() if "cfg_scale" in sampler_class(name).__dataclass_fields__
]


@pytest.fixture(autouse=True)
def _torch_kernels():
    with remask.kernels.use_backend("torch"):
        yield


def _config(name, **extra):
    fields = sampler_class(name).__dataclass_fields__
    config = {"block_length": 4} if "block_length" in fields else {}
    return {**config, **extra}


# ---------------------------------------------------------------- capabilities
def test_capabilities_read_declarations_once(tiny64):
    assert protocol.capabilities(tiny64) == protocol.Capabilities()

    class Declared:
        mask_id, vocab_size = 4, 5
        accepts_active = True
        shift = 1
        eos_id = 2

    caps = protocol.capabilities(Declared())
    assert (
        caps.active,
        caps.editable,
        caps.attention_bias,
        caps.shift,
        caps.evaluations,
        caps.eos_id,
    ) == (True, False, False, 1, 1, 2)
    Declared.accepts_active = "yes"
    with pytest.raises(TypeError, match="accepts_active must be a bool"):
        protocol.capabilities(Declared())


def test_call_hands_over_only_what_is_declared(tiny64):
    seen = {}

    class Wants:
        mask_id, vocab_size = tiny64.mask_id, tiny64.vocab_size
        accepts_active = True

        def __call__(self, tokens, attention_mask=None, **extra):
            seen.update(extra)
            return tiny64(tokens, attention_mask)

    tokens = torch.tensor([[1, 2, tiny64.mask_id]])
    mask = torch.ones_like(tokens, dtype=torch.bool)
    logits, evaluations = protocol.call(Wants(), tokens, mask, active=mask, editable=mask)
    assert set(seen) == {"active"} and evaluations == 1
    assert torch.isneginf(logits[..., tiny64.mask_id]).all()
    with pytest.raises(TypeError, match="accepts_attention_bias"):
        protocol.call(
            Wants(), tokens, mask, attention_bias=mask.unsqueeze(1), position_ids=mask.long()
        )


# ---------------------------------------------------------------- Guided
@pytest.mark.parametrize("name", GUIDED_SAMPLERS)
def test_cfg_scale_is_sugar_for_guided(tiny64, name):
    sugar = remask.generate(
        tiny64, PROMPTS, build(name, **_config(name, cfg_scale=1.5)), gen_length=8, seed=0
    )
    wrapped = remask.generate(
        Guided(tiny64, 1.5), PROMPTS, build(name, **_config(name)), gen_length=8, seed=0
    )
    assert torch.equal(sugar.tokens, wrapped.tokens) and torch.equal(sugar.nfe, wrapped.nfe)


@pytest.mark.parametrize("name", available())
def test_guided_at_scale_zero_is_the_model_at_twice_the_cost(tiny64, name):
    """Guidance works for every sampler: at s = 0 it returns the conditional logits (float64:
    exact but for the last bit), so each sampler decodes what it decodes unguided, and every
    evaluation is charged twice."""
    sampler = build(name, **_config(name))
    plain = remask.generate(tiny64, PROMPTS, sampler, gen_length=8, seed=0)
    guided = remask.generate(Guided(tiny64, 0.0), PROMPTS, sampler, gen_length=8, seed=0)
    assert torch.equal(plain.tokens, guided.tokens)
    assert torch.equal(2 * plain.nfe, guided.nfe)


def test_guided_logits_follow_the_formula(tiny64):
    tokens = torch.tensor(
        [[0, 3, 7, 1, tiny64.mask_id, tiny64.mask_id], [0, 0, 5, 2, 6, tiny64.mask_id]]
    )
    mask = torch.tensor([[True] * 6, [False, True, True, True, True, True]])
    editable = torch.tensor(
        [[False, False, False, False, True, True], [False, False, False, True, True, True]]
    )
    got = Guided(tiny64, 2.0)(tokens, mask, editable=editable)
    unconditional = torch.where(mask & ~editable, tiny64.mask_id, tokens)
    cond, un = tiny64(tokens, mask), tiny64(unconditional, mask)
    want = un + 3.0 * (cond - un)
    finite = torch.isfinite(cond)
    torch.testing.assert_close(got[finite], want[finite])
    assert torch.isneginf(got[~finite]).all()  # -inf in both branches stays -inf, never NaN


def test_guided_keeps_the_first_token_of_a_shifted_model(tiny64):
    class Shifted:
        mask_id, vocab_size, shift = tiny64.mask_id, tiny64.vocab_size, 1

        def __init__(self):
            self.seen = []

        def __call__(self, tokens, attention_mask=None):
            self.seen.append(tokens.clone())
            return tiny64(tokens, attention_mask)

    model = Shifted()
    tokens = torch.tensor([[0, 4, 2, 3, tiny64.mask_id], [1, 4, 2, 3, tiny64.mask_id]])
    mask = torch.tensor([[False, True, True, True, True], [True] * 5])
    editable = tokens == tiny64.mask_id
    Guided(model, 1.0)(tokens, mask, editable=editable)
    un = model.seen[0][2:]  # (B, L): the unconditional half
    assert un[0].tolist()[1:] == [4, tiny64.mask_id, tiny64.mask_id, tiny64.mask_id]
    assert un[1].tolist() == [1, tiny64.mask_id, tiny64.mask_id, tiny64.mask_id, tiny64.mask_id]


def test_guided_wino_takes_the_attention_path_on_llada():
    pytest.importorskip("transformers")
    from remask.models.checkpoints import load_checkpoint

    llada = load_checkpoint(GOLDEN / "llada_tiny")
    model = Guided(llada, 1.0)
    assert protocol.capabilities(model) == protocol.Capabilities(
        active=False,
        editable=True,
        attention_bias=True,
        gathered=True,  # passed through: DPad over Guided prunes
        evaluations=2,
        eos_id=llada.eos_id,
        eot_id=llada.eot_id,
        pad_id=llada.pad_id,
    )
    out = remask.generate(model, PROMPTS, build("wino", block_length=4), gen_length=8, seed=0)
    assert out.nfe.tolist() == [2 * out.steps] * 3


def test_guided_bad_input(tiny64):
    for scale, error in (
        (-1.0, ValueError),
        (math.inf, ValueError),
        ("1", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(error, match="scale"):
            Guided(tiny64, scale)
    with pytest.raises(TypeError, match="wraps a Denoiser"):
        Guided(object(), 1.0)


# ---------------------------------------------------------------- Suppress
def test_logits_eos_inf_is_sugar_for_suppress(tiny64):
    sugar = remask.generate(
        tiny64,
        PROMPTS,
        build("low_confidence", eos_id=5, logits_eos_inf=True, cfg_scale=1.0),
        gen_length=8,
        seed=0,
    )
    wrapped = remask.generate(
        Suppress(Guided(tiny64, 1.0), [5]), PROMPTS, build("low_confidence"), gen_length=8, seed=0
    )
    assert torch.equal(sugar.tokens, wrapped.tokens) and torch.equal(sugar.nfe, wrapped.nfe)


@pytest.mark.parametrize("name", ["low_confidence", "wino", "remdm", "apd"])
def test_suppressed_tokens_are_never_proposed(tiny64, name):
    if name not in available():
        pytest.skip(f"{name} not registered")
    plain = remask.generate(tiny64, PROMPTS, build(name, **_config(name)), gen_length=8, seed=0)
    width = max(map(len, PROMPTS))
    common = torch.mode(plain.tokens[:, width:].flatten()).values.item()  # the model's favourite
    banned = [common, (common + 1) % tiny64.mask_id]
    out = remask.generate(
        Suppress(tiny64, banned), PROMPTS, build(name, **_config(name)), gen_length=8, seed=0
    )
    assert not torch.isin(out.tokens[:, width:], torch.tensor(banned)).any()


def test_suppress_bad_input(tiny64):
    with pytest.raises(ValueError, match="empty"):
        Suppress(tiny64, [])
    with pytest.raises(ValueError, match="token id 99 is outside"):
        Suppress(tiny64, [1, 99])
    with pytest.raises(TypeError, match="ints"):
        Suppress(tiny64, [1.0])
    with pytest.raises(TypeError, match="iterable"):
        Suppress(tiny64, 3)


# ---------------------------------------------------------------- the CLI
def test_cli_cfg_guides_any_sampler():
    args = [
        "generate",
        "--model",
        "oracle:markov?vocab=5&length=8",
        "--gen-length",
        "4",
        "--prompt-ids",
        "1,2",
        "--json",
        "--sampler",
        "wino",
    ]
    plain = CliRunner().invoke(main, args)
    guided = CliRunner().invoke(main, [*args, "--cfg", "1.0"])
    assert plain.exit_code == 0 and guided.exit_code == 0, guided.output
    assert (
        json.loads(guided.stdout)["rows"][0]["nfe"]
        == 2 * json.loads(plain.stdout)["rows"][0]["nfe"]
    )
    both = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            "oracle:markov?vocab=5&length=8",
            "--gen-length",
            "4",
            "--prompt-ids",
            "1,2",
            "--cfg",
            "1",
            "--set",
            "cfg_scale=1.0",
        ],
    )
    assert (
        both.exit_code == 2 and "give one of them" in both.output and "Traceback" not in both.output
    )


def test_readme_wrappers_example():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    code = (
        readme.split("<!-- readme-test: wrappers -->")[1]
        .split("```python\n", 1)[1]
        .split("```", 1)[0]
    )
    namespace: dict = {}
    exec(compile(code, "README:wrappers", "exec"), namespace)
    assert namespace["out"].tokens.shape == (1, 11)
