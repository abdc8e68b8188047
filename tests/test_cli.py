"""The remask command line (click's test runner; no subprocesses)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from remask.cli import main


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_list():
    result = _invoke("list")
    assert result.exit_code == 0
    assert (
        "low_confidence" in result.output
        and "oracle:markov" in result.output
        and "torch" in result.output
    )


def test_generate_json():
    result = _invoke(
        "generate",
        "--model",
        "oracle:markov?vocab=5&length=8",
        "--set",
        "temperature=1.0",
        "--set",
        "block_length=2",
        "--gen-length",
        "6",
        "--prompt-ids",
        "1,2",
        "--prompt-ids",
        "3",
        "--seed",
        "4",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [len(r["generated"]) for r in data["rows"]] == [6, 6]
    assert data["rows"][0]["tokens"][:2] == [1, 2] and data["rows"][1]["tokens"][0] == 3
    assert data["steps"] == 6 and all(r["nfe"] == 6 for r in data["rows"])


def test_infill():
    result = _invoke(
        "infill", "--model", "oracle:markov?vocab=4&length=6", "--tokens", "1,_,_,2", "--json"
    )
    assert result.exit_code == 0, result.output
    tokens = json.loads(result.stdout)["rows"][0]["tokens"]
    assert tokens[0] == 1 and tokens[3] == 2 and all(0 <= t < 4 for t in tokens)


def test_errors_are_usage_errors_naming_the_value():
    result = _invoke("generate", "--model", "tiny", "--gen-length", "3", "--set", "steps=0")
    assert result.exit_code == 2 and "steps must be >= 1, got 0" in result.output
    result = _invoke("generate", "--model", "tiny", "--gen-length", "3", "--sampler", "nope")
    assert result.exit_code == 2 and "unknown sampler 'nope'" in result.output
    result = _invoke("generate", "--model", "tiny", "--gen-length", "3", "--set", "stepz=3")
    assert result.exit_code == 2 and "stepz" in result.output
    result = _invoke("generate", "--model", "tiny", "--gen-length", "0")
    assert result.exit_code == 2 and "--gen-length" in result.output and "0" in result.output
    result = _invoke("generate", "--model", "tiny", "--gen-length", "2", "--prompt", "hi")
    assert result.exit_code == 2 and "no tokenizer" in result.output


def test_demo_small():
    result = _invoke("demo", "--samples", "500")
    assert result.exit_code == 0, result.output
    assert (
        "noise floor" in result.output
        and "LLaDA random order, 1 token/step" in result.output
        and "threshold" in result.output
    )
