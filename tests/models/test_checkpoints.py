"""load_checkpoint: family dispatch, special-token ids, tokenizers and clear load errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from safetensors.torch import load_file, save_file

from remask.models.checkpoints import FAMILIES, checkpoint_family, load_checkpoint
from remask.models.protocol import Denoiser

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(GOLDEN / name, target, ignore=shutil.ignore_patterns("golden_io.safetensors"))
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def _edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


def _save_tokenizer(path: Path, tokens: list[str], **special) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=tokens[0]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=tokens[0], **special
    ).save_pretrained(path)


def _vocab(size: int, extra: dict[int, str]) -> list[str]:
    tokens = [f"w{i}" for i in range(size)]
    tokens[0] = "<unk>"
    for index, tok in extra.items():
        tokens[index] = tok
    return tokens


def test_families():
    assert set(FAMILIES) == {"llada", "Dream", "mdlm", "llada2_moe", "sdar", "Fast_dLLM_Qwen"}
    assert checkpoint_family(GOLDEN / "llada_tiny") == "llada"
    assert checkpoint_family(GOLDEN / "dream_tiny") == "dream"


@pytest.mark.parametrize("name", ["llada_tiny", "dream_tiny"])
def test_loaded_denoisers_satisfy_the_protocol(name):
    den = load_checkpoint(str(GOLDEN / name))
    assert isinstance(den, Denoiser)
    tokens = torch.full((1, 4), den.mask_id)
    tokens[0, 0] = 1
    logits = den(tokens)
    assert logits.shape == (1, 4, den.vocab_size) and logits.is_floating_point()
    assert torch.isneginf(logits[..., den.mask_id]).all()


# ---------------------------------------------------------------- tokenizers and ids
def test_llada_tokenizer_supplies_eot(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    tokens = _vocab(384, {300: "<|endoftext|>", 301: "<|eot_id|>", 336: "<|mdm_mask|>"})
    _save_tokenizer(path, tokens, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    den = load_checkpoint(path)
    assert den.tokenizer is not None
    assert (den.mask_id, den.eos_id, den.eot_id, den.pad_id) == (336, 300, 301, 300)
    assert den.tokenizer.convert_tokens_to_ids("<|mdm_mask|>") == den.mask_id


def test_mask_id_from_tokenizer_when_config_has_none(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    _edit_config(path, mask_token_id=None)
    _save_tokenizer(path, _vocab(384, {336: "<|mdm_mask|>"}), mask_token="<|mdm_mask|>")
    assert load_checkpoint(path).mask_id == 336


def test_tokenizer_mask_contradicting_config_is_an_error(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    _save_tokenizer(path, _vocab(384, {5: "<mask>"}), mask_token="<mask>")
    with pytest.raises(ValueError, match=r"mask_token_id=336.*<mask>.*id 5"):
        load_checkpoint(path)


def test_no_mask_token_anywhere_is_an_error(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    _edit_config(path, mask_token_id=None)
    with pytest.raises(ValueError, match="no mask token id.*no tokenizer"):
        load_checkpoint(path)
    _save_tokenizer(path, _vocab(384, {}))
    with pytest.raises(ValueError, match="no mask token id.*no mask_token"):
        load_checkpoint(path)


def test_pad_equal_to_mask_is_an_error(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    _edit_config(path, pad_token_id=336)
    with pytest.raises(ValueError, match="pad_id equals mask_id"):
        load_checkpoint(path)


def test_eos_from_generation_config_and_lists(tmp_path):
    path = _copy("dream_tiny", tmp_path)
    _edit_config(path, eos_token_id=None)
    assert load_checkpoint(path).eos_id == 254  # from generation_config.json
    _edit_config(path, eos_token_id=[250, 254])
    assert load_checkpoint(path).eos_id == 250


def test_dream_remote_code_tokenizer_falls_back_without_running_code(tmp_path):
    path = _copy("dream_tiny", tmp_path)
    tokens = _vocab(
        256, {253: "<|beginoftext|>", 254: "<|endoftext|>", 250: "<|im_end|>", 255: "<|mask|>"}
    )
    _save_tokenizer(path, tokens, eos_token="<|endoftext|>", mask_token="<|mask|>")
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "DreamTokenizer"
    config["auto_map"] = {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    den = load_checkpoint(path)
    assert den.tokenizer is not None and den.eot_id == 250 and den.mask_id == 255


# ---------------------------------------------------------------- load errors
def test_missing_directory_and_config(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(ValueError, match="no config.json"):
        load_checkpoint(tmp_path)


def test_missing_weights(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="has no weights.*model.safetensors"):
        load_checkpoint(path)


def test_missing_shard(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    (path / "model.safetensors").unlink()
    index = {
        "metadata": {},
        "weight_map": {"model.transformer.wte.weight": "model-00001-of-00002.safetensors"},
    }
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="model-00001-of-00002.safetensors"):
        load_checkpoint(path)


@pytest.mark.parametrize("model_type", ["bert", None])
def test_wrong_model_type(tmp_path, model_type):
    path = _copy("llada_tiny", tmp_path)
    _edit_config(path, model_type=model_type)
    with pytest.raises(ValueError, match=f"model_type {model_type!r} is not a supported"):
        load_checkpoint(path)


def test_llada_moe_config_is_named(tmp_path):
    # MoE fields make a "llada" config a LLaDA-MoE one, which lacks the MoE shape fields.
    path = _copy("llada_tiny", tmp_path)
    _edit_config(path, num_experts=64, num_experts_per_tok=8)
    assert checkpoint_family(path) == "llada_moe"
    with pytest.raises(ValueError, match="llada_moe config must set .*hidden_size"):
        load_checkpoint(path, mask_id=336)


def test_mismatched_weight_shapes(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    _edit_config(path, mlp_hidden_size=96)  # weights were saved with 128
    with pytest.raises(ValueError, match="ff_proj"):
        load_checkpoint(path)


def test_missing_and_unexpected_weights(tmp_path):
    path = _copy("dream_tiny", tmp_path)
    weights = load_file(str(path / "model.safetensors"))
    weights["model.layers.0.self_attn.extra.weight"] = weights.pop(
        "model.layers.0.self_attn.o_proj.weight"
    )
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(
        ValueError,
        match=r"missing from the checkpoint: \['model\.layers\.0\.self_attn\.o_proj\.weight'\]",
    ):
        load_checkpoint(path)


def test_unsupported_option_and_bad_dtype(tmp_path):
    path = _copy("llada_tiny", tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        load_checkpoint(path, dtype="int8")
    _edit_config(path, alibi=True)
    with pytest.raises(ValueError, match="alibi"):
        load_checkpoint(path)


# ---------------------------------------------------------------- lazy registration
def test_registration_is_lazy_and_works_without_trust_remote_code():
    script = textwrap.dedent(
        f"""
        import sys
        import remask.models.checkpoints
        assert "transformers.modeling_utils" not in sys.modules, "import pulled in transformers"
        import transformers
        model = transformers.AutoModel.from_pretrained({str(GOLDEN / "llada_tiny")!r})
        assert type(model).__module__ == "remask.models.llada", type(model)
        config = transformers.AutoConfig.from_pretrained({str(GOLDEN / "dream_tiny")!r})
        assert type(config).__module__ == "remask.models._configs", type(config)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
