"""No remote code ever runs: checkpoints whose config (or tokenizer config) points ``auto_map``
at a modeling file that would create a marker file on import are loaded with transformers'
own classes or refused, and the marker never appears. No prompt reaches the terminal: the
CLI case runs in a subprocess with stdin closed and would fail (EOF) if transformers asked
"Do you wish to run the custom code?"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from remask.models import HFMaskedLM, load_model
from remask.models.checkpoints import load_checkpoint

GOLDEN = Path(__file__).parent / "data" / "golden"

# Runs on import: creates the marker file. If remask (or transformers on its behalf) ever
# imports one of these modules, the marker exists and the test fails.
EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
raise SystemExit("remote code ran")
"""


def _plant(directory: Path, marker: Path) -> None:
    """Malicious modeling/config/tokenizer modules in ``directory``."""
    for module in ("modeling_evil", "configuration_evil", "tokenization_evil"):
        (directory / f"{module}.py").write_text(EVIL.format(marker=str(marker)))


AUTO_MAP = {
    "AutoConfig": "configuration_evil.EvilConfig",
    "AutoModel": "modeling_evil.EvilModel",
    "AutoModelForMaskedLM": "modeling_evil.EvilModel",
}


def _edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


@pytest.fixture()
def marker(tmp_path):
    path = tmp_path / "REMOTE_CODE_RAN"
    yield path
    assert not path.exists(), "code shipped inside a checkpoint was executed"


@pytest.fixture()
def evil_llada(tmp_path, marker):
    directory = tmp_path / "llada"
    shutil.copytree(GOLDEN / "llada_tiny", directory)
    _plant(directory, marker)
    _edit_config(directory, auto_map=AUTO_MAP)
    return directory


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert")
    config = transformers.BertConfig(
        vocab_size=16,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("model_type", ["evil_mlm", None])
def test_unknown_or_missing_model_type_with_auto_map_is_refused(evil_llada, marker, model_type):
    _edit_config(evil_llada, model_type=model_type)
    with pytest.raises(ValueError) as error:
        load_model(str(evil_llada))
    message = str(error.value)
    assert (repr(model_type) if model_type else "no model_type") in message
    assert "llada" in message and "Dream" in message, "the supported families must be listed"
    assert "config.json" in message


def test_unknown_model_type_refused_by_hf_adapter_too(evil_llada, marker):
    _edit_config(evil_llada, model_type="evil_mlm")
    with pytest.raises(ValueError, match="AutoModelForMaskedLM"):
        HFMaskedLM.from_pretrained(evil_llada)


def test_family_checkpoint_with_auto_map_loads_remask_classes(evil_llada, marker):
    model = load_checkpoint(evil_llada)
    assert type(model.model).__module__.startswith("remask.models")


def test_builtin_model_type_with_auto_map_uses_transformers_class(tiny_bert, tmp_path, marker):
    directory = tmp_path / "bert"
    shutil.copytree(tiny_bert, directory)
    _plant(directory, marker)
    _edit_config(directory, auto_map=AUTO_MAP)
    # A tokenizer config that asks for a shipped tokenizer class as well.
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}})
    )
    model = HFMaskedLM.from_pretrained(directory, mask_id=3)
    assert type(model.model).__module__.startswith("transformers.")


def test_cli_with_stdin_closed_refuses_without_prompt(evil_llada, marker):
    _edit_config(evil_llada, model_type="evil_mlm")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "remask.cli",
            "generate",
            "--model",
            str(evil_llada),
            "--gen-length",
            "2",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert "evil_mlm" in result.stderr
    assert "Traceback" not in result.stderr
    assert "custom code" not in result.stdout + result.stderr
