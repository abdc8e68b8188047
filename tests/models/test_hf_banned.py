"""HFMaskedLM never proposes special tokens a masked LM is not trained to write (unless asked)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from _tiny_bert import write_tiny_bert  # noqa: E402

from remask.models import HFMaskedLM  # noqa: E402


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    path = write_tiny_bert(tmp_path_factory.mktemp("tiny_bert_banned"))
    return (
        transformers.BertForMaskedLM.from_pretrained(path),
        transformers.BertTokenizer.from_pretrained(path),
    )


def test_default_bans_pad_unk_cls_sep(bert):
    model, tokenizer = bert
    denoiser = HFMaskedLM(model, tokenizer)
    assert denoiser.banned_ids == (0, 1, 2, 3)  # [PAD] [UNK] [CLS] [SEP]; [MASK] (4) is always out
    logits = denoiser(torch.tensor([[2, 5, 4, 4, 3]]))
    assert torch.isneginf(logits[..., :5]).all() and torch.isfinite(logits[..., 5:]).all()


def test_eos_stays_allowed_and_banned_can_be_changed(bert):
    model, tokenizer = bert
    tokenizer = transformers.BertTokenizer.from_pretrained(
        tokenizer.name_or_path, eos_token="[SEP]"
    )
    denoiser = HFMaskedLM(model, tokenizer)
    assert denoiser.eos_id == 3 and 3 not in denoiser.banned_ids
    everything = HFMaskedLM(model, tokenizer, banned=())
    assert everything.banned_ids == ()
    logits = everything(torch.tensor([[2, 4, 3]]))
    assert torch.isfinite(logits[..., [0, 1, 2, 3]]).all() and torch.isneginf(logits[..., 4]).all()
    assert HFMaskedLM(model, tokenizer, banned=[7]).banned_ids == (7,)


def test_bad_banned_values(bert):
    model, tokenizer = bert
    with pytest.raises(ValueError, match="banned id 99"):
        HFMaskedLM(model, tokenizer, banned=[99])
    with pytest.raises(TypeError, match="banned"):
        HFMaskedLM(model, tokenizer, banned="[PAD]")
    with pytest.raises(TypeError, match="'x'"):
        HFMaskedLM(model, tokenizer, banned=["x"])
