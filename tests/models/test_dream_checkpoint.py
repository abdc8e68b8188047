"""Dream clean-room model: golden raw logits, the adapter's shift, padding, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from safetensors.torch import load_file

from remask.models.checkpoints import load_checkpoint
from remask.models.dream import (
    DreamConfig,
    DreamDenoiser,
    DreamModel,
    dream_position_ids,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "dream_tiny"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDEN / "golden_io.safetensors"))


@pytest.fixture(scope="module")
def model():
    return DreamModel.from_pretrained(str(GOLDEN)).eval()


@pytest.fixture(scope="module")
def denoiser():
    return load_checkpoint(GOLDEN)


# ---------------------------------------------------------------- raw model vs golden
def test_golden_raw_logits_full_attention(model, golden):
    with torch.no_grad():
        logits = model(golden["input_ids"], "full").logits
    torch.testing.assert_close(logits, golden["logits_no_mask"], atol=TOL, rtol=0)
    with torch.no_grad():
        assert torch.equal(model(golden["input_ids"]).logits, logits)


def test_golden_raw_logits_upstream_4d_mask(model, golden):
    keep = golden["attention_mask"].bool()
    mask4d = keep[:, None, :, None] & keep[:, None, None, :]  # upstream's query-and-key mask
    with torch.no_grad():
        logits = model(golden["input_ids"], mask4d, golden["position_ids"]).logits
    assert torch.isfinite(logits).all()  # fully masked pad rows must not produce NaN
    torch.testing.assert_close(logits[keep], golden["logits_with_mask"][keep], atol=TOL, rtol=0)


def test_golden_raw_logits_2d_mask_and_our_position_ids(model, golden):
    keep = golden["attention_mask"].bool()
    positions = dream_position_ids(keep)
    assert torch.equal(positions[keep], golden["position_ids"][keep])
    with torch.no_grad():
        logits = model(golden["input_ids"], attention_mask=keep, position_ids=positions).logits
    torch.testing.assert_close(logits[keep], golden["logits_with_mask"][keep], atol=TOL, rtol=0)


# ---------------------------------------------------------------- the adapter's shift
class _PositionEcho(nn.Module):
    """Stub Dream whose raw logits at row i encode that row's index and position id."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.vocab_size = vocab_size

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        b, length = input_ids.shape
        rows = torch.arange(length).expand(b, length)
        pos = rows if position_ids is None else position_ids.expand(b, length)
        logits = torch.zeros(b, length, self.vocab_size)
        logits[..., 0] = rows.float()  # which raw row this came from
        logits[..., 1] = pos.float()  # which position id the model was given there
        return SimpleNamespace(logits=logits)


def _echo_denoiser():
    return DreamDenoiser(_PositionEcho(64), mask_id=63, vocab_size=64, embedding_rows=64, pad_id=62)


def test_shift_row_i_comes_from_raw_row_i_minus_1():
    den = _echo_denoiser()
    tokens = torch.tensor([[5, 6, 63, 63, 63, 63]])
    out = den(tokens)
    # Row i must hold raw row i-1 (the prediction for position i); row 0 keeps its own.
    assert out[0, :, 0].tolist() == [0, 0, 1, 2, 3, 4]
    assert torch.isneginf(out[..., 63]).all()


def test_shift_with_left_padding_uses_position_ids_from_mask():
    den = _echo_denoiser()
    tokens = torch.tensor([[62, 62, 5, 6, 63, 63]])
    keep = torch.tensor([[False, False, True, True, True, True]])
    out = den(tokens, keep)
    assert out[0, :, 0].tolist() == [0, 0, 1, 2, 3, 4]
    # Position ids start at 0 on the first real token; row 3 (second real token) is
    # predicted from row 2, which sat at position 0.
    assert out[0, 2:, 1].tolist() == [0, 0, 1, 2]


def test_first_real_position_must_not_be_masked():
    den = _echo_denoiser()
    with pytest.raises(ValueError, match="first real position"):
        den(torch.tensor([[63, 63, 63]]))
    with pytest.raises(ValueError, match="first real position"):
        den(torch.tensor([[62, 63, 63]]), torch.tensor([[False, True, True]]))


def test_adapter_equals_shifted_golden(denoiser, golden):
    keep = golden["attention_mask"].bool()
    logits = denoiser(golden["input_ids"], keep)
    raw = golden["logits_with_mask"]
    expected = torch.cat([raw[:, :1], raw[:, :-1]], dim=1)
    expected[..., denoiser.mask_id] = float("-inf")
    # Each real position whose predecessor is also real (row 2's first real token's
    # predecessor is padding, whose raw output is meaningless).
    prev_real = torch.cat([torch.zeros(3, 1, dtype=torch.bool), keep[:, :-1]], dim=1) & keep
    torch.testing.assert_close(logits[prev_real], expected[prev_real], atol=TOL, rtol=0)


def test_adapter_attributes(denoiser):
    assert isinstance(denoiser, DreamDenoiser)
    assert (denoiser.mask_id, denoiser.vocab_size, denoiser.eos_id, denoiser.pad_id) == (
        255,
        256,
        254,
        254,
    )
    assert denoiser.bos_id == 253 and denoiser.shift == 1 and denoiser.family == "dream"


# ---------------------------------------------------------------- padding, round trip
def test_padding_invariance(denoiser, golden):
    seq = golden["input_ids"][0]
    n = seq.numel()
    alone = denoiser(seq[None])[0]
    left = torch.cat([torch.full((4,), 254), seq])[None]
    left_mask = torch.arange(n + 4)[None] >= 4
    other = torch.randint(0, 250, (n + 4,), generator=torch.Generator().manual_seed(3))
    cases = {
        "left": denoiser(left, left_mask)[0, 4:],
        "batched": denoiser(
            torch.stack([other, left[0]]),
            torch.stack([torch.ones(n + 4, dtype=torch.bool), left_mask[0]]),
        )[1, 4:],
        "right": denoiser(
            torch.cat([seq, torch.full((3,), 254)])[None], torch.arange(n + 3)[None] < n
        )[0, :n],
    }
    finite = torch.isfinite(alone)
    for name, logits in cases.items():
        # Row 0 is the adapter's placeholder (nothing precedes the first token) in every case.
        torch.testing.assert_close(
            logits[1:][finite[1:]], alone[1:][finite[1:]], atol=TOL, rtol=0, msg=name
        )


def test_save_load_round_trip(model, golden, tmp_path):
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "Dream" and saved["mask_token_id"] == 255
    assert saved["architectures"] == ["DreamModel"] and saved["num_key_value_heads"] == 2
    reloaded = DreamModel.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(golden["input_ids"]).logits, model(golden["input_ids"]).logits)


def test_auto_model_ignores_auto_map():
    import transformers

    assert "auto_map" in json.loads((GOLDEN / "config.json").read_text())
    assert isinstance(transformers.AutoModel.from_pretrained(str(GOLDEN)), DreamModel)
    assert isinstance(transformers.AutoConfig.from_pretrained(str(GOLDEN)), DreamConfig)


def test_tied_embeddings_round_trip(tmp_path):
    config = DreamConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=1,
        tie_word_embeddings=True,
        mask_token_id=31,
        pad_token_id=30,
        eos_token_id=30,
    )
    torch.manual_seed(0)
    model = DreamModel(config).eval()
    assert "lm_head.weight" not in model.state_dict()
    model.save_pretrained(tmp_path)
    reloaded = DreamModel.from_pretrained(str(tmp_path)).eval()
    tokens = torch.randint(0, 32, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, reloaded(tokens).logits)


@pytest.mark.filterwarnings("ignore:.*rope_scaling.*:FutureWarning")
@pytest.mark.parametrize(
    "override, field",
    [
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ({"use_sliding_window": True}, "use_sliding_window"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ],
)
def test_unsupported_config_raises(override, field):
    config = DreamConfig(
        vocab_size=16,
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    for key, value in override.items():
        setattr(config, key, value)
    with pytest.raises(ValueError, match=field):
        DreamModel(config)


def test_bad_masks_raise(model):
    tokens = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="2-D attention_mask"):
        model(tokens, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="float"):
        model(tokens, torch.zeros(2, 1, 4, 4))
    with pytest.raises(TypeError, match="attention_mask"):
        model(tokens, "causal")
    with pytest.raises(ValueError, match="position_ids"):
        model(tokens, position_ids=torch.zeros(3, 4, dtype=torch.long))
