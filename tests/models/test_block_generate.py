"""``remask generate --model DIR`` on the four newer golden checkpoints with every registered
sampler (default configs). The golden folders ship no tokenizer, so the mask id travels in
the model spec (``DIR?mask_id=...``), as a user would pass it for such a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from click.testing import CliRunner

import remask
import remask.models
from remask.cli import main
from remask.samplers import available

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
SPECS = {
    "llada2": f"{GOLDEN / 'llada2_moe_tiny'}?mask_id=255",
    "llada_moe": f"{GOLDEN / 'llada_moe_tiny'}?mask_id=255",
    "sdar": f"{GOLDEN / 'sdar_tiny'}?mask_id=254",
    "fast_dllm_v2": f"{GOLDEN / 'fast_dllm_v2_tiny'}?mask_id=254",
}
PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9]]
GEN_LENGTH = 8

#: (sampler, family) pairs that cannot run with the sampler's default config, with the clear
#: usage error they must fail with.
EXPECTED_FAILURES: dict[tuple[str, str], str] = {}

_LOADED: dict = {}


@pytest.fixture(autouse=True)
def _torch_kernels():
    with remask.kernels.use_backend("torch"):
        yield


@pytest.fixture
def memo_loads(monkeypatch):
    """Load each spec once per module (the first load goes through the real path)."""
    real = remask.models.load_model

    def load(spec, **kwargs):
        key = (str(spec), tuple(sorted(kwargs.items())))
        if key not in _LOADED:
            _LOADED[key] = real(spec, **kwargs)
        return _LOADED[key]

    monkeypatch.setattr(remask.models, "load_model", load)


@pytest.mark.parametrize("family", sorted(SPECS))
@pytest.mark.parametrize("name", available())
def test_every_sampler_runs_through_the_cli(name, family, memo_loads):
    args = [
        "generate",
        "--model",
        SPECS[family],
        "--sampler",
        name,
        "--gen-length",
        str(GEN_LENGTH),
        "--seed",
        "0",
        "--json",
        "--no-progress",
    ]
    for prompt in PROMPTS:
        args += ["--prompt-ids", ",".join(map(str, prompt))]
    result = CliRunner().invoke(main, args)
    expected = EXPECTED_FAILURES.get((name, family))
    if expected is not None:
        assert result.exit_code == 2 and expected in result.output, result.output
        return
    assert result.exit_code == 0, f"{name} on {family}:\n{result.output}\n{result.exception!r}"
    data = json.loads(result.stdout)
    mask_id = remask.models.load_model(SPECS[family]).mask_id
    for row, prompt in zip(data["rows"], PROMPTS):
        assert row["tokens"][: len(prompt)] == prompt
        assert len(row["generated"]) == GEN_LENGTH and mask_id not in row["generated"]


def test_missing_mask_id_is_a_usage_error():
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            str(GOLDEN / "sdar_tiny"),
            "--gen-length",
            "4",
            "--prompt-ids",
            "1,2",
        ],
    )
    assert result.exit_code == 2 and "no mask token id" in result.output
    assert "Traceback" not in result.output


def test_block_length_the_model_cannot_serve_is_a_usage_error():
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            SPECS["sdar"],
            "--gen-length",
            "8",
            "--prompt-ids",
            "1,2",
            "--set",
            "block_length=6",
        ],
    )
    assert result.exit_code == 2 and "block_length=6 is not a multiple" in result.output
