"""HFMaskedLM on a tiny randomly initialised BERT saved to a temporary directory (no download)."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from _tiny_bert import TINY_BERT_WORDS as WORDS  # noqa: E402
from _tiny_bert import write_tiny_bert

import remask
from remask.models import HFMaskedLM, load_model
from remask.samplers import build


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def test_load_model_reads_ids_from_tokenizer(bert_dir):
    model = load_model(str(bert_dir))
    assert isinstance(model, HFMaskedLM)
    assert model.mask_id == 4 and model.pad_id == 0 and model.vocab_size == 5 + len(WORDS)
    logits = model(torch.tensor([[2, 5, 4, 3]]))
    assert logits.shape == (1, 4, model.vocab_size)
    assert bool(torch.isinf(logits[..., 4]).all()), "the mask token must never be proposable"


def test_generate_and_padding_invariance(bert_dir):
    model = load_model(str(bert_dir))
    sampler = build("low_confidence", block_length=2)
    prompts = [[2, 5, 6], [2, 9]]
    batch = remask.generate(model, prompts, sampler, gen_length=4, seed=0)
    assert not bool((batch.tokens == model.mask_id).any())
    for row, prompt in enumerate(prompts):
        alone = remask.generate(model, [prompt], sampler, gen_length=4, seed=0)
        assert batch.tokens[row, 3 - len(prompt) :].tolist() == alone.tokens[0].tolist()


def test_missing_mask_token_raises(tmp_path):
    config = transformers.BertConfig(
        vocab_size=20,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path)  # weights only: no tokenizer
    with pytest.raises(ValueError, match="no mask token"):
        load_model(str(tmp_path))
    assert HFMaskedLM.from_pretrained(tmp_path, mask_id=3).mask_id == 3


def test_directory_without_config_raises(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="no config.json"):
        load_model(str(tmp_path))


def test_cli_generates_text(bert_dir):
    from click.testing import CliRunner

    from remask.cli import main

    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--model",
            str(bert_dir),
            "--prompt",
            "the cat",
            "--gen-length",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    assert len(row["generated"]) == 3 and isinstance(row["text"], str) and row["nfe"] == 3
