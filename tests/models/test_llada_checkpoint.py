"""LLaDA clean-room model: golden numerics, round trips, padding invariance, adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from safetensors.torch import load_file

from remask.models.checkpoints import load_checkpoint
from remask.models.llada import LLaDAConfig, LLaDADenoiser, LLaDAModelLM

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "llada_tiny"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDEN / "golden_io.safetensors"))


@pytest.fixture(scope="module")
def model():
    return LLaDAModelLM.from_pretrained(str(GOLDEN)).eval()


@pytest.fixture(scope="module")
def denoiser():
    return load_checkpoint(GOLDEN)


def test_golden_logits_without_mask(model, golden):
    with torch.no_grad():
        logits = model(golden["input_ids"]).logits
    assert logits.shape == golden["logits_no_mask"].shape
    torch.testing.assert_close(logits, golden["logits_no_mask"], atol=TOL, rtol=0)


def test_golden_logits_with_padding_mask(model, golden):
    keep = golden["attention_mask"].bool()
    with torch.no_grad():
        logits = model(golden["input_ids"], attention_mask=golden["attention_mask"]).logits
    # Rows at padding positions are meaningless; compare real positions only.
    torch.testing.assert_close(logits[keep], golden["logits_with_mask"][keep], atol=TOL, rtol=0)


def test_adapter_matches_golden_and_hides_mask(denoiser, golden):
    keep = golden["attention_mask"].bool()
    logits = denoiser(golden["input_ids"], keep)
    assert logits.shape == (3, 24, denoiser.vocab_size)
    assert torch.isneginf(logits[..., denoiser.mask_id]).all()
    expected = golden["logits_with_mask"].clone()
    expected[..., denoiser.mask_id] = float("-inf")
    torch.testing.assert_close(logits[keep], expected[keep], atol=TOL, rtol=0)


def test_adapter_attributes(denoiser):
    assert isinstance(denoiser, LLaDADenoiser)
    assert (denoiser.mask_id, denoiser.vocab_size) == (336, 384)
    assert (denoiser.eos_id, denoiser.pad_id) == (300, 300)
    assert denoiser.eot_id is None and denoiser.tokenizer is None  # golden dir has no tokenizer
    assert denoiser.family == "llada" and denoiser.shift == 0


def test_auto_model_ignores_auto_map():
    import transformers

    config = json.loads((GOLDEN / "config.json").read_text())
    assert "auto_map" in config  # the real checkpoints carry it; no modeling file is present
    model = transformers.AutoModel.from_pretrained(str(GOLDEN))
    assert isinstance(model, LLaDAModelLM)
    assert isinstance(transformers.AutoConfig.from_pretrained(str(GOLDEN)), LLaDAConfig)
    assert isinstance(transformers.AutoModelForMaskedLM.from_pretrained(str(GOLDEN)), LLaDAModelLM)


def test_save_load_round_trip(model, golden, tmp_path):
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "llada" and saved["mask_token_id"] == 336
    assert saved["rope_theta"] == 500000.0 and saved["architectures"] == ["LLaDAModelLM"]
    reloaded = LLaDAModelLM.from_pretrained(str(tmp_path)).eval()
    original = model.state_dict()
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    with torch.no_grad():
        assert torch.equal(reloaded(golden["input_ids"]).logits, model(golden["input_ids"]).logits)


def _padding_cases(denoiser, seq):
    """Logits of the real tokens of ``seq`` under no / left / right padding and batching."""
    pad = denoiser.pad_id
    n = seq.numel()
    out = {"alone": denoiser(seq[None])[0]}
    left = torch.cat([torch.full((5,), pad), seq])[None]
    left_mask = torch.arange(n + 5)[None] >= 5
    out["left"] = denoiser(left, left_mask)[0, 5:]
    right = torch.cat([seq, torch.full((3,), pad)])[None]
    right_mask = torch.arange(n + 3)[None] < n
    out["right"] = denoiser(right, right_mask)[0, :n]
    other = torch.randint(0, 300, (n + 5,), generator=torch.Generator().manual_seed(1))
    batch = torch.stack([left[0], other])
    batch_mask = torch.stack([left_mask[0], torch.ones(n + 5, dtype=torch.bool)])
    out["batched"] = denoiser(batch, batch_mask)[0, 5:]
    out["mask_all_true"] = denoiser(seq[None], torch.ones(1, n, dtype=torch.bool))[0]
    return out


def test_padding_invariance(denoiser, golden):
    seq = golden["input_ids"][0]  # prompt followed by mask tokens
    cases = _padding_cases(denoiser, seq)
    finite = torch.isfinite(cases["alone"])
    for name, logits in cases.items():
        assert torch.equal(torch.isfinite(logits), finite), name
        torch.testing.assert_close(
            logits[finite], cases["alone"][finite], atol=TOL, rtol=0, msg=name
        )


@pytest.mark.parametrize(
    "override",
    [
        {"n_kv_heads": 2},  # grouped-query attention
        {"weight_tying": True},  # head shares the embedding, no ff_out key
        {"include_qkv_bias": True, "scale_logits": True},
    ],
)
def test_variants_round_trip(override, tmp_path):
    config = LLaDAConfig(
        d_model=32,
        n_heads=4,
        n_layers=1,
        mlp_hidden_size=48,
        vocab_size=64,
        embedding_size=64,
        mask_token_id=63,
        eos_token_id=62,
        pad_token_id=62,
        max_sequence_length=64,
        **override,
    )
    torch.manual_seed(0)
    model = LLaDAModelLM(config).eval()
    keys = set(model.state_dict())
    assert ("model.transformer.ff_out.weight" in keys) == (not config.weight_tying)
    model.save_pretrained(tmp_path)
    reloaded = LLaDAModelLM.from_pretrained(str(tmp_path)).eval()
    tokens = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, reloaded(tokens).logits)


@pytest.mark.parametrize(
    "override, field",
    [
        ({"alibi": True}, "alibi"),
        ({"block_type": "sequential"}, "block_type"),
        ({"layer_norm_type": "default"}, "layer_norm_type"),
        ({"num_experts": 64}, "LLaDA-MoE"),
        ({"n_heads": 3}, "n_heads"),
    ],
)
def test_unsupported_config_raises(override, field):
    config = LLaDAConfig(
        d_model=40, n_heads=4, n_layers=1, mlp_hidden_size=16, vocab_size=16, embedding_size=16
    )
    for key, value in override.items():
        setattr(config, key, value)
    with pytest.raises(ValueError, match=field):
        LLaDAModelLM(config)


def test_bfloat16_load(golden):
    denoiser = load_checkpoint(GOLDEN, dtype=torch.bfloat16)
    assert denoiser.dtype == torch.bfloat16
    logits = denoiser(golden["input_ids"])
    assert logits.dtype == torch.bfloat16
    reference = golden["logits_no_mask"]
    finite = torch.isfinite(logits)
    # bf16 keeps ~3 significant digits; this only guards against gross errors.
    torch.testing.assert_close(logits[finite].float(), reference[finite], atol=0.1, rtol=0.05)


def test_adapter_rejects_bad_input(denoiser):
    tokens = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(TypeError, match="integer"):
        denoiser(tokens.float())
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        denoiser(tokens[0])
    with pytest.raises(ValueError, match="384"):
        denoiser(torch.full((1, 3), 384))
    with pytest.raises(ValueError, match="shape"):
        denoiser(tokens, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="attention_mask"):
        denoiser(tokens, torch.ones(2, 5))
    assert denoiser(tokens[:, :0]).shape == (2, 0, 384)


def test_model_forward_rejects_cache_and_unknown_arguments(model):
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="use_cache"):
        model(tokens, use_cache=True)
    with pytest.raises(TypeError, match="past_key_values"):
        model(tokens, past_key_values=object())
    assert model(tokens, use_cache=False).logits.shape == (1, 4, 384)


def test_directory_copy_without_generation_config(tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(GOLDEN, target)
    (target / "generation_config.json").unlink()
    (target / "golden_io.safetensors").unlink()
    denoiser = load_checkpoint(target)
    assert (denoiser.mask_id, denoiser.eos_id) == (336, 300)
