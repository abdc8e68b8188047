"""MDLM clean-room DiT: key layout, save/load round trip and basic invariants.

No golden logits exist for MDLM, so these tests pin the checkpoint layout (parameter
names and shapes of ``kuleshov-group/mdlm-owt``) and properties the architecture implies.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from remask.models.checkpoints import load_checkpoint
from remask.models.mdlm import MDLM, MDLMConfig, MDLMDenoiser, timestep_embedding

V, D, H, C = 40, 32, 2, 16


def _config(**override) -> MDLMConfig:
    return MDLMConfig(
        vocab_size=V, hidden_dim=D, n_blocks=2, n_heads=H, cond_dim=C, model_length=64, **override
    )


def _random_model(seed: int = 0, **override) -> MDLM:
    """A tiny MDLM with every parameter random (upstream zero-inits adaLN and the head)."""
    model = MDLM(_config(**override)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return model


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mdlm_tiny")
    _random_model().save_pretrained(path)
    return path


def test_state_dict_layout_matches_the_released_checkpoint():
    shapes = {k: tuple(v.shape) for k, v in MDLM(_config()).state_dict().items()}
    expected = {
        "backbone.vocab_embed.embedding": (V, D),
        "backbone.sigma_map.mlp.0.weight": (C, 256),
        "backbone.sigma_map.mlp.0.bias": (C,),
        "backbone.sigma_map.mlp.2.weight": (C, C),
        "backbone.sigma_map.mlp.2.bias": (C,),
        "backbone.output_layer.norm_final.weight": (D,),
        "backbone.output_layer.linear.weight": (V, D),
        "backbone.output_layer.linear.bias": (V,),
        "backbone.output_layer.adaLN_modulation.weight": (2 * D, C),
        "backbone.output_layer.adaLN_modulation.bias": (2 * D,),
    }
    for i in range(2):
        p = f"backbone.blocks.{i}."
        expected.update(
            {
                p + "norm1.weight": (D,),
                p + "attn_qkv.weight": (3 * D, D),
                p + "attn_out.weight": (D, D),
                p + "norm2.weight": (D,),
                p + "mlp.0.weight": (4 * D, D),
                p + "mlp.0.bias": (4 * D,),
                p + "mlp.2.weight": (D, 4 * D),
                p + "mlp.2.bias": (D,),
                p + "adaLN_modulation.weight": (6 * D, C),
                p + "adaLN_modulation.bias": (6 * D,),
            }
        )
    assert shapes == expected


def test_fresh_model_predicts_uniformly():
    # Upstream zero-initialises the output layer and every adaLN projection.
    logits = MDLM(_config()).eval()(torch.randint(0, V, (2, 6)))
    assert torch.equal(logits, torch.zeros_like(logits))


def test_save_load_round_trip(saved_dir):
    config = json.loads((saved_dir / "config.json").read_text())
    assert config["model_type"] == "mdlm" and config["vocab_size"] == V
    reloaded = MDLM.from_pretrained(str(saved_dir)).eval()
    original = _random_model()
    tokens = torch.randint(0, V, (2, 11))
    with torch.no_grad():
        assert torch.equal(reloaded(tokens), original(tokens))


def test_auto_model_for_masked_lm(saved_dir):
    import transformers

    config = json.loads((saved_dir / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_mdlm.MDLMConfig",
        "AutoModelForMaskedLM": "modeling_mdlm.MDLM",
    }
    (saved_dir / "config.json").write_text(json.dumps(config))
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(saved_dir))
    assert isinstance(model, MDLM)


def test_return_types():
    model = _random_model()
    tokens = torch.randint(0, V, (1, 5))
    with torch.no_grad():
        plain = model(tokens)
        output = model(tokens, return_dict=True, output_hidden_states=True)
    assert isinstance(plain, torch.Tensor) and plain.shape == (1, 5, V)
    assert torch.equal(output.logits, plain) and len(output.hidden_states) == 3


def test_sigma_ignored_unless_time_conditioned():
    tokens = torch.randint(0, V, (2, 7))
    free = _random_model(seed=1)
    timed = _random_model(seed=1, time_conditioning=True)
    sigma = torch.tensor([0.3, 2.0])
    with torch.no_grad():
        assert torch.equal(free(tokens, sigma), free(tokens))
        assert not torch.allclose(timed(tokens, sigma), timed(tokens))
        assert torch.equal(timed(tokens, torch.zeros(2)), free(tokens))


def test_timestep_embedding():
    emb = timestep_embedding(torch.tensor([0.0, 1.0]))
    assert emb.shape == (2, 256)
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(
        emb[0, 128:], torch.zeros(128)
    )
    assert timestep_embedding(torch.tensor([0.5]), dim=7).shape == (1, 7)


def test_permuting_positions_is_not_a_bag_of_words():
    # Rotary embeddings make the model position-aware: a swap changes other rows' logits.
    model = _random_model()
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    swapped = torch.tensor([[2, 1, 3, 4, 5, 6]])
    with torch.no_grad():
        assert not torch.allclose(model(tokens)[0, 3], model(swapped)[0, 3])


def test_denoiser_from_directory(saved_dir):
    den = load_checkpoint(saved_dir)
    assert isinstance(den, MDLMDenoiser)
    # MDLM appends its mask after the tokenizer vocabulary: the last column.
    assert (den.mask_id, den.vocab_size, den.eos_id, den.tokenizer) == (V - 1, V, None, None)
    tokens = torch.randint(0, V - 1, (2, 9))
    tokens[:, 4:] = den.mask_id
    logits = den(tokens)
    assert logits.shape == (2, 9, V) and torch.isneginf(logits[..., V - 1]).all()
    assert torch.isfinite(logits[..., : V - 1]).all()


def test_padding_invariance(saved_dir):
    den = load_checkpoint(saved_dir)
    seq = torch.tensor([3, 7, 1, 39, 39, 39])
    alone = den(seq[None])[0]
    left = torch.cat([torch.zeros(3, dtype=torch.long), seq])[None]
    keep = torch.arange(9)[None] >= 3
    batch = torch.cat([left, torch.randint(0, V - 1, (1, 9))])
    batch_keep = torch.cat([keep, torch.ones(1, 9, dtype=torch.bool)])
    finite = torch.isfinite(alone)
    for logits in (den(left, keep)[0, 3:], den(batch, batch_keep)[0, 3:]):
        torch.testing.assert_close(logits[finite], alone[finite], atol=1e-4, rtol=0)


def test_time_conditioned_checkpoint_is_rejected(tmp_path):
    _random_model(time_conditioning=True).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="time_conditioning"):
        load_checkpoint(tmp_path)


def test_odd_head_size_rejected():
    with pytest.raises(ValueError, match="n_heads"):
        MDLM(MDLMConfig(vocab_size=8, hidden_dim=30, n_heads=2, n_blocks=1, cond_dim=4))
