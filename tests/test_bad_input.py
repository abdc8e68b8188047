"""Nothing wrong passes silently: bad inputs across the Python API, model specs, checkpoint
directories and the CLI each raise the documented exception type with a message that names the
offending value (the cases of a bad-input campaign, one test each).

Sampler config fields are covered exhaustively by the property test in
``tests/samplers/test_config_validation.py``; the config cases here are the ones the campaign
found accepted silently.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import remask
from remask.cli import main
from remask.models import TinyTransformer, load_model
from remask.samplers import build

GOLDEN = Path(__file__).parent / "data" / "golden"
INF, NAN = float("inf"), float("nan")


@pytest.fixture(scope="module")
def tiny():
    return TinyTransformer(vocab_size=16, width=16, depth=1, heads=2, max_len=32, seed=0)


class MaskProposer:
    """A denoiser that breaks the protocol: the mask token gets the top (finite) logit."""

    def __init__(self, inner):
        self.inner, self.mask_id, self.vocab_size = inner, inner.mask_id, inner.vocab_size

    def __call__(self, tokens, attention_mask=None):
        logits = self.inner(tokens, attention_mask).clone()  # (B, L, V)
        logits[..., self.mask_id] = 100.0
        return logits


LC = build("low_confidence")

# ---------------------------------------------------------------------------- Python API
# (id, call(tiny), exception type, substring the message must contain)
API_CASES = [
    (
        "prompt-id-negative",
        lambda t: remask.generate(t, [[1, -1]], LC, gen_length=2, seed=0),
        ValueError,
        "token id -1 at row 0, position 1",
    ),
    (
        "prompt-id-2**63",
        lambda t: remask.generate(t, [[2**63]], LC, gen_length=2, seed=0),
        ValueError,
        str(2**63),
    ),
    (
        "prompt-id-2**64",
        lambda t: remask.generate(t, [[1], [2**64]], LC, gen_length=2, seed=0),
        ValueError,
        f"token id {2**64} at row 1",
    ),
    (
        "prompt-id-equals-vocab",
        lambda t: remask.generate(t, [[16]], LC, gen_length=2, seed=0),
        ValueError,
        "token id 16",
    ),
    (
        "prompt-holds-mask",
        lambda t: remask.generate(t, [[1, 15]], LC, gen_length=2, seed=0),
        ValueError,
        "mask_id=15",
    ),
    (
        "tensor-prompt-id-out-of-vocab",
        lambda t: remask.generate(t, torch.tensor([[1, 99]]), LC, gen_length=2, seed=0),
        ValueError,
        "99",
    ),
    (
        "float-tensor-prompt",
        lambda t: remask.generate(t, torch.ones(1, 2), LC, gen_length=2, seed=0),
        TypeError,
        "torch.float32",
    ),
    (
        "3d-prompt",
        lambda t: remask.generate(t, torch.ones(1, 2, 2, dtype=torch.long), LC, gen_length=2),
        ValueError,
        "(1, 2, 2)",
    ),
    (
        "empty-batch",
        lambda t: remask.generate(t, torch.zeros(0, 3, dtype=torch.long), LC, gen_length=2),
        ValueError,
        "B = 0",
    ),
    ("row-not-ints", lambda t: remask.generate(t, [[1, "a"]], LC, gen_length=2), TypeError, "'a'"),
    ("row-of-bools", lambda t: remask.generate(t, [[True]], LC, gen_length=2), TypeError, "True"),
    ("prompt-a-string", lambda t: remask.generate(t, "1 2", LC, gen_length=2), TypeError, "str"),
    (
        "attention-mask-0.5",
        lambda t: remask.generate(
            t, torch.tensor([[1, 2]]), LC, gen_length=2, attention_mask=torch.tensor([[0.5, 1.0]])
        ),
        ValueError,
        "0.5",
    ),
    (
        "attention-mask-nan",
        lambda t: remask.generate(
            t, torch.tensor([[1, 2]]), LC, gen_length=2, attention_mask=torch.tensor([[1.0, NAN]])
        ),
        ValueError,
        "nan",
    ),
    (
        "attention-mask-2",
        lambda t: remask.generate(
            t, torch.tensor([[1, 2]]), LC, gen_length=2, attention_mask=torch.tensor([[2, 1]])
        ),
        ValueError,
        "got 2",
    ),
    (
        "right-padding",
        lambda t: remask.generate(
            t,
            torch.tensor([[1, 2, 3], [4, 5, 0]]),
            LC,
            gen_length=2,
            attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]).bool(),
        ),
        ValueError,
        "row 1 is not left-padded",
    ),
    (
        "attention-mask-hole",
        lambda t: remask.generate(
            t,
            torch.tensor([[1, 2, 3]]),
            LC,
            gen_length=2,
            attention_mask=torch.tensor([[True, False, True]]),
        ),
        ValueError,
        "row 0 is not left-padded",
    ),
    (
        "attention-mask-shape",
        lambda t: remask.generate(
            t,
            torch.tensor([[1, 2, 3]]),
            LC,
            gen_length=2,
            attention_mask=torch.tensor([[True, True]]),
        ),
        ValueError,
        "(1, 2)",
    ),
    (
        "attention-mask-with-lists",
        lambda t: remask.generate(
            t, [[1, 2]], LC, gen_length=2, attention_mask=torch.ones(1, 2).bool()
        ),
        ValueError,
        "attention_mask",
    ),
    (
        "seed-negative",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed=-1),
        ValueError,
        "-1",
    ),
    (
        "seed-2**64",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed=2**64),
        ValueError,
        str(2**64),
    ),
    (
        "seed-2**63",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed=2**63),
        ValueError,
        str(2**63),
    ),
    (
        "seed-string",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed="1"),
        TypeError,
        "'1'",
    ),
    (
        "seed-bool",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed=True),
        TypeError,
        "True",
    ),
    (
        "seeds-too-few",
        lambda t: remask.generate(t, [[1], [2]], LC, gen_length=2, seed=[3]),
        ValueError,
        "seed has 1 values but the batch has 2 rows",
    ),
    (
        "seeds-too-many",
        lambda t: remask.infill(t, [[1, 15]], LC, seed=[3, 4]),
        ValueError,
        "2 values",
    ),
    (
        "seeds-float",
        lambda t: remask.generate(t, [[1], [2]], LC, gen_length=2, seed=[3, 1.5]),
        TypeError,
        "seed[1] must be an int, got 1.5",
    ),
    (
        "seeds-negative",
        lambda t: remask.generate(t, [[1], [2]], LC, gen_length=2, seed=[3, -2]),
        ValueError,
        "seed[1] must be in [0, 2**63), got -2",
    ),
    (
        "seeds-2**63",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed=[2**63]),
        ValueError,
        str(2**63),
    ),
    (
        "seeds-float-tensor",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed=torch.tensor([1.0])),
        TypeError,
        "integers",
    ),
    (
        "seeds-2d-tensor",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, seed=torch.tensor([[1]])),
        ValueError,
        "1-D",
    ),
    ("gen-length-0", lambda t: remask.generate(t, [[1]], LC, gen_length=0), ValueError, "got 0"),
    ("gen-length-float", lambda t: remask.generate(t, [[1]], LC, gen_length=2.0), TypeError, "2.0"),
    (
        "gen-length-1e9",
        lambda t: remask.generate(t, [[1]], LC, gen_length=10**9),
        ValueError,
        "1000000000",
    ),
    (
        "gen-length-beyond-oracle",
        lambda t: remask.generate(
            load_model("oracle:hmm?vocab=3&length=4"), [[1]], LC, gen_length=4
        ),
        ValueError,
        "gen_length=4",
    ),
    (
        "callbacks-a-function",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, callbacks=print),
        TypeError,
        "callbacks must be a sequence",
    ),
    (
        "callbacks-item-not-callable",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, callbacks=[print, 3]),
        TypeError,
        "callbacks[1]",
    ),
    (
        "progress-not-bool",
        lambda t: remask.generate(t, [[1]], LC, gen_length=2, progress="yes"),
        TypeError,
        "'yes'",
    ),
    (
        "sampler-a-name",
        lambda t: remask.generate(t, [[1]], "low_confidence", gen_length=2),
        TypeError,
        "str",
    ),
    (
        "model-without-mask-id",
        lambda t: remask.generate(object(), [[1]], LC, gen_length=2),
        TypeError,
        "mask_id",
    ),
    ("infill-empty", lambda t: remask.infill(t, [[]], LC), ValueError, "L = 0"),
    ("infill-id-out-of-vocab", lambda t: remask.infill(t, [[15, 40]], LC), ValueError, "40"),
    ("infill-too-long", lambda t: remask.infill(t, [[15] * 40], LC), ValueError, "40"),
    (
        "eos-id-outside-vocab",
        lambda t: remask.generate(
            t, [[1]], build("low_confidence", eos_id=99, logits_eos_inf=True), gen_length=2, seed=0
        ),
        ValueError,
        "eos_id=99",
    ),
]

# Sampler configs the campaign found accepted at build time.
CONFIG_CASES = [
    ("dream", {"temperature": INF}, ValueError, "temperature must be finite"),
    ("remdm", {"temperature": INF}, ValueError, "temperature must be finite"),
    ("llada2", {"temperature": INF}, ValueError, "temperature must be finite"),
    ("apd", {"temperature": INF}, ValueError, "temperature must be finite"),
    ("low_confidence", {"temperature": 1e-40}, ValueError, "temperature must be 0 or at least"),
    ("gibbs", {"temperature": 1e-39}, ValueError, "got 1e-39"),
    ("low_confidence", {"cfg_scale": INF}, ValueError, "cfg_scale must be finite"),
    ("klass", {"cfg_scale": NAN}, ValueError, "cfg_scale must not be NaN"),
    ("llada2", {"threshold": 1.5}, ValueError, "threshold must be in [0, 1], got 1.5"),
    ("llada2", {"threshold": -0.1}, ValueError, "got -0.1"),
    ("wino", {"threshold_in": 1.5}, ValueError, "threshold_in must be in [0, 1]"),
    ("wino", {"threshold_out": 2}, ValueError, "threshold_out must be in [0, 1], got 2"),
    ("wino", {"accept_ratio": 1.5}, ValueError, "accept_ratio must be in [0, 1], got 1.5"),
    ("low_confidence", {"steps": "8"}, TypeError, "'8'"),
    ("low_confidence", {"logits_eos_inf": 1}, TypeError, "logits_eos_inf"),
    ("dream", {"alg": 3}, TypeError, "alg"),
    ("gibbs", {"base": "nope"}, ValueError, "'nope'"),
    ("nope", {}, ValueError, "'nope'"),
    ("low_confidence", {"stepz": 3}, TypeError, "stepz"),
]


@pytest.mark.parametrize(
    "call,error,text", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_api(tiny, call, error, text):
    with pytest.raises(error) as raised:
        call(tiny)
    assert text in str(raised.value)


@pytest.mark.parametrize(
    "name, config",
    [("remdm", {}), ("low_confidence", {}), ("wino", {"shadow": "emulate"}), ("gibbs", {})],
)
def test_a_finite_mask_logit_is_never_proposed(tiny, name, config):
    """The mask token is excluded wherever samplers call the denoiser (``denoise``, and WINO's
    and Gibbs's own calls), whatever logit the denoiser gives it: a protocol-breaking denoiser
    still decodes."""
    out = remask.generate(MaskProposer(tiny), [[1]], build(name, **config), gen_length=4, seed=0)
    assert not bool((out.tokens == tiny.mask_id).any())


def test_mask_error_names_sampler_step_and_cause(tiny):
    # No registered sampler commits the mask any more: an unregistered one that writes it
    # (as a buggy sampler would) must still be caught and explained by the driver.
    from dataclasses import dataclass

    from remask.samplers.low_confidence import LowConfidence

    @dataclass(frozen=True, kw_only=True)
    class CommitsMask(LowConfidence):
        def step(self, state, denoiser, generator):
            new, info = super().step(state, denoiser, generator)
            tokens = torch.where(info.committed, denoiser.mask_id, new.canvas.tokens)
            proposal = torch.where(info.committed, denoiser.mask_id, info.proposal)
            return new._replace(canvas=new.canvas._replace(tokens=tokens)), info._replace(
                proposal=proposal
            )

    with pytest.raises(RuntimeError) as raised:
        remask.generate(tiny, [[1]], CommitsMask(), gen_length=4, seed=0)
    message = str(raised.value)
    assert (
        "'low_confidence'" in message
        and "at step" in message
        and "proposed the mask token" in message
    )


def _stops_after_one_step(base):
    """An unregistered sampler that declares itself finished after its first step, masks or not."""
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Stopping(base):
        def finished(self, state):
            return state.canvas.nfe > 0  # (B,) every row has taken a step

    return Stopping


def test_a_sampler_whose_contract_allows_masks_is_not_stopped(tiny):
    """The postcondition follows the sampler's contract: ``may_leave_masks = True`` lifts it."""
    from dataclasses import dataclass

    from remask.samplers.remdm import ReMDM

    Stopping = _stops_after_one_step(ReMDM)
    with pytest.raises(RuntimeError, match="masks left"):
        remask.generate(tiny, [[1]], Stopping(steps=4), gen_length=4, seed=0)

    @dataclass(frozen=True, kw_only=True)
    class Lenient(Stopping):  # not registered: the registry's conformance suite never sees it
        may_leave_masks = True

    out = remask.generate(tiny, [[1]], Lenient(steps=4), gen_length=4, seed=0)
    assert bool((out.tokens == tiny.mask_id).any())


def test_left_padding_and_01_masks_are_accepted(tiny):
    """The checks reject only what they should: 0/1 masks of any dtype and left padding pass."""
    prompt = torch.tensor([[0, 1, 2], [3, 4, 5]])
    for mask in (
        torch.tensor([[0, 1, 1], [1, 1, 1]]),
        torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]),
    ):
        out = remask.generate(tiny, prompt, LC, gen_length=2, seed=0, attention_mask=mask)
        assert out.attention_mask[0].tolist() == [False, True, True, True, True]


@pytest.mark.parametrize(
    "name,config,error,text",
    CONFIG_CASES,
    ids=[f"{n}-{'-'.join(map(str, c))}" for n, c, _, _ in CONFIG_CASES],
)
def test_config(name, config, error, text):
    with pytest.raises(error) as raised:
        build(name, **config)
    assert text in str(raised.value)


# ---------------------------------------------------------------------------- model specs
SPEC_CASES = [
    ("oracle:markov?concentration=abc", "concentration='abc'"),
    ("oracle:markov?seed=abc", "seed='abc'"),
    ("oracle:markov?concentration=inf", "concentration=inf must be finite"),
    ("oracle:markov?concentration=-1", "concentration must be > 0"),
    ("tiny:transformer?logit_scale=nan", "logit_scale=nan must be finite"),
    ("oracle:markov?vocab=8&vocab=4", "duplicate key 'vocab'"),
    ("oracle:markov?vocab=8.5", "vocab=8.5 is not an integer"),
    ("oracle:markov?seed=-1", "seed=-1"),
    ("oracle:markov?vocab", "malformed parameters 'vocab'"),
    ("oracle:markov?vocab=4&bogus=1", "'bogus'"),
    ("oracle:hmm?stickiness=nan", "stickiness=nan must be finite"),
    ("oracle:hmm?concentration=inf", "concentration=inf must be finite"),
    ("oracle:mixture?vocab=inf", "vocab=inf"),
    ("oracle:eos?seed=-3", "seed=-3"),
    ("oracle:nope", "'nope'"),
    ("tiny?heads=3", "heads=3"),
    ("tiny?width=0", "width"),
]


@pytest.mark.parametrize("spec,text", SPEC_CASES, ids=[s for s, _ in SPEC_CASES])
def test_spec(spec, text):
    with pytest.raises(ValueError) as raised:
        load_model(spec)
    assert text in str(raised.value)


def test_spec_of_wrong_type():
    with pytest.raises(TypeError, match="int"):
        load_model(3)


# ---------------------------------------------------------------------------- checkpoints
def _write(path: Path, data) -> None:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def _config_edit(**changes):
    def edit(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        config.update(changes)
        (directory / "config.json").write_text(json.dumps(config))

    return edit


def _sharded(directory: Path) -> None:
    (directory / "model.safetensors").unlink()
    _write(
        directory / "model.safetensors.index.json",
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}),
    )


CHECKPOINT_CASES = [
    (
        "truncated-safetensors",
        lambda d: _write(d / "model.safetensors", (d / "model.safetensors").read_bytes()[:1000]),
        "SafetensorError",
    ),
    ("empty-safetensors", lambda d: _write(d / "model.safetensors", b""), "SafetensorError"),
    (
        "garbage-safetensors",
        lambda d: _write(d / "model.safetensors", bytes(range(256)) * 8),
        "SafetensorError",
    ),
    (
        "config-not-json",
        lambda d: _write(d / "config.json", "{nope"),
        "config.json is not valid JSON",
    ),
    (
        "config-a-list",
        lambda d: _write(d / "config.json", "[1, 2]"),
        "config.json must hold a JSON object",
    ),
    (
        "config-binary",
        lambda d: _write(d / "config.json", b"\xff\xfe\x00"),
        "config.json is not valid JSON",
    ),
    ("config-field-wrong-type", _config_edit(d_model="abc"), "TypeError"),
    (
        "generation-config-not-json",
        lambda d: _write(d / "generation_config.json", "{x"),
        "generation_config.json is not valid JSON",
    ),
    ("no-weights", lambda d: (d / "model.safetensors").unlink(), "has no weights"),
    ("no-config", lambda d: (d / "config.json").unlink(), "has no config.json"),
    ("missing-shard", _sharded, "model-00001-of-00002.safetensors"),
    ("unknown-model-type", _config_edit(model_type="evil"), "model_type 'evil'"),
    ("llada-moe-incomplete", _config_edit(num_experts=4), "a llada_moe config must set"),
]


@pytest.mark.parametrize(
    "mutate,text", [c[1:] for c in CHECKPOINT_CASES], ids=[c[0] for c in CHECKPOINT_CASES]
)
def test_checkpoint(tmp_path, mutate, text):
    directory = tmp_path / "ck"
    shutil.copytree(GOLDEN / "llada_tiny", directory)
    mutate(directory)
    with pytest.raises(ValueError) as raised:
        load_model(str(directory))
    message = str(raised.value)
    assert text in message
    assert str(directory) in message, "the message must name the checkpoint path"


# ---------------------------------------------------------------------------- CLI
@pytest.fixture()
def blocked(tmp_path):
    """A path no directory can be created at (a file is in the way), even for root."""
    (tmp_path / "afile").write_text("")
    return str(tmp_path / "afile" / "out")


GEN = ["generate", "--model", "tiny", "--gen-length", "3"]
CLI_CASES = [
    ("generate-temperature-inf", [*GEN, "--set", "temperature=inf"], "temperature must be finite"),
    ("generate-seed-negative", [*GEN, "--seed", "-1"], "got -1"),
    (
        "generate-gen-length-too-long",
        ["generate", "--model", "tiny", "--gen-length", "1000"],
        "1000",
    ),
    (
        "generate-duplicate-spec-key",
        ["generate", "--model", "oracle:markov?vocab=8&vocab=4", "--gen-length", "3"],
        "duplicate key 'vocab'",
    ),
    (
        "generate-spec-nan",
        ["generate", "--model", "tiny?logit_scale=nan", "--gen-length", "3"],
        "logit_scale=nan",
    ),
    ("generate-bad-prompt-id", [*GEN, "--prompt-ids", "1,x"], "'x'"),
    ("generate-prompt-id-out-of-vocab", [*GEN, "--prompt-ids", "1,99"], "99"),
    ("generate-set-without-equals", [*GEN, "--set", "steps"], "'steps'"),
    (
        "generate-missing-model-dir",
        ["generate", "--model", "./no/such/dir", "--gen-length", "3"],
        "./no/such/dir",
    ),
    ("infill-empty-tokens", ["infill", "--model", "tiny", "--tokens", ""], "empty canvas"),
    ("infill-nothing-to-fill", ["infill", "--model", "tiny", "--tokens", "1,2"], "nothing to fill"),
    ("infill-bad-token", ["infill", "--model", "tiny", "--tokens", "1,_,y"], "'y'"),
    ("demo-too-few-samples", ["demo", "--samples", "5"], "5"),
    ("list-unknown-option", ["list", "--bogus"], "--bogus"),
    (
        "analyze-unknown-sampler",
        ["analyze", "order", "--model", "tiny", "--sampler", "nope", "--out", "OUT"],
        "'nope'",
    ),
]
OUT_CASES = [
    ["analyze", "homogenization", "--model", "tiny", "--no-plots", "--out"],
    ["analyze", "cmi", "--model", "tiny", "--no-plots", "--out"],
    ["analyze", "coherence", "--model", "oracle:markov?vocab=3&length=4", "--no-plots", "--out"],
    ["analyze", "order", "--model", "tiny", "--no-plots", "--out"],
    ["bench", "kernels", "--quick", "--out"],
    ["bench", "samplers", "--quick", "--out"],
    ["bench", "models", "--quick", "--out"],
]


def _check_usage_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert text in errors[0], result.output


@pytest.mark.parametrize("args,text", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli(tmp_path, args, text):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    _check_usage_error(CliRunner().invoke(main, args), text)


@pytest.mark.parametrize("args", OUT_CASES, ids=[" ".join(a[:2]) for a in OUT_CASES])
def test_cli_output_path_checked_before_computing(blocked, args):
    target = blocked + (".csv" if args[0] == "bench" else "")
    _check_usage_error(CliRunner().invoke(main, [*args, target]), "afile")


@pytest.mark.parametrize(
    "config", [None, "[1]", "{"], ids=["empty-safetensors", "config-list", "config-not-json"]
)
def test_cli_broken_checkpoint(tmp_path, config):
    directory = tmp_path / "broken"
    shutil.copytree(GOLDEN / "llada_tiny", directory)
    (directory / "model.safetensors").write_bytes(b"")
    if config is not None:
        (directory / "config.json").write_text(config)
    result = CliRunner().invoke(main, ["generate", "--model", str(directory), "--gen-length", "2"])
    _check_usage_error(result, str(directory))
