"""bench/antiberty.py's converter on a synthetic sdist in AntiBERTy's layout (no download)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch

pytest.importorskip("transformers")

from transformers import BertConfig, BertForMaskedLM  # noqa: E402

from remask.bench.antiberty import convert  # noqa: E402
from remask.models import load_model  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"ACDEFGHIKLMNPQRSTVWY"]


def _sdist(path, *, with_weights: bool = True):
    """A .tar.gz holding a tiny BERT as AntiBERTy 0.1.3 ships its model (extra heads included)."""
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(config).eval()
    state = dict(model.state_dict())
    state["bert.pooler.dense.weight"] = torch.zeros(16, 16)  # AntiBERTy's pooler and species head
    state["cls.species.weight"] = torch.zeros(6, 16)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    files = {
        "antiberty/trained_models/AntiBERTy_md_smooth/config.json": json.dumps(
            {**config.to_dict(), "architectures": ["AntiBERTy"], "_name_or_path": "/x"}
        ).encode(),
        "antiberty/trained_models/vocab.txt": "\n".join(VOCAB).encode() + b"\n",
    }
    if with_weights:
        files["antiberty/trained_models/AntiBERTy_md_smooth/pytorch_model.bin"] = buffer.getvalue()
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo("antiberty-0.1.3/" + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return model


def test_convert_keeps_the_masked_lm_logits(tmp_path):
    source = _sdist(tmp_path / "antiberty-0.1.3.tar.gz")
    out = convert(tmp_path / "antiberty-0.1.3.tar.gz", tmp_path / "mlm")
    model = load_model(str(out))
    assert model.vocab_size == len(VOCAB) and model.mask_id == VOCAB.index("[MASK]")
    ids = model.tokenizer("E V Q L [MASK] E S")["input_ids"]
    # Upper-case residues must map to themselves, not to [UNK].
    assert VOCAB.index("[UNK]") not in ids
    tokens = torch.tensor([ids])
    with torch.no_grad():
        expected = source(input_ids=tokens).logits
    got = model(tokens, torch.ones_like(tokens, dtype=torch.bool))
    # The adapter sets special tokens' logits to -inf; compare the residues' columns.
    residues = torch.arange(5, len(VOCAB))
    torch.testing.assert_close(
        got[..., residues].float(), expected[..., residues], rtol=1e-5, atol=1e-5
    )


def test_convert_refuses_an_sdist_without_weights(tmp_path):
    _sdist(tmp_path / "antiberty-1.0.0.tar.gz", with_weights=False)
    with pytest.raises(ValueError, match="antiberty==0.1.3"):
        convert(tmp_path / "antiberty-1.0.0.tar.gz", tmp_path / "mlm")
