"""LLaDA 2.x, LLaDA-MoE, SDAR and Fast-dLLM v2: golden logits of the official code, Auto
classes without remote code, special ids supplied by the caller, MoE routing against a slow
per-token loop, and clear errors for bad configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from safetensors.torch import load_file

from remask.models import load_model
from remask.models._decoder import MoESpec, SparseMoE
from remask.models.block_diffusion import BlockDiffusionDenoiser
from remask.models.checkpoints import checkpoint_family, load_checkpoint
from remask.models.fast_dllm_v2 import Fast_dLLM_QwenForCausalLM
from remask.models.llada2 import LLaDA2MoeModelLM
from remask.models.llada_moe import LLaDAMoEDenoiser, LLaDAMoEModelLM
from remask.models.sdar import SDARForCausalLM

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
TOL = 1e-4  # float32 rounding of two implementations (observed max differences ~1e-6)

#: folder -> (LM class, family, mask id from golden_io metadata, whether the official code
#: honours a padding mask, logit shift).
CASES = {
    "llada2_moe_tiny": (LLaDA2MoeModelLM, "llada2", 255, True, 0),
    "llada_moe_tiny": (LLaDAMoEModelLM, "llada_moe", 255, False, 0),
    "sdar_tiny": (SDARForCausalLM, "sdar", 254, True, 0),
    "fast_dllm_v2_tiny": (Fast_dLLM_QwenForCausalLM, "fast_dllm_v2", 254, False, 1),
}


def _golden(name):
    return load_file(str(GOLDEN / name / "golden_io.safetensors"))


@pytest.fixture(scope="module")
def models():
    return {
        name: cls.from_pretrained(str(GOLDEN / name)).eval()
        for name, (cls, *_rest) in CASES.items()
    }


def _close(actual, expected, rows=None):
    if rows is not None:
        actual, expected = actual[rows], expected[rows]
    torch.testing.assert_close(actual, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_logits(name, models):
    model, g = models[name], _golden(name)
    ids, attention = g["input_ids"], g["attention_mask"]
    keep = attention.bool()
    with torch.no_grad():
        _close(model(ids).logits, g["logits_no_mask"])
        padded = model(ids, attention_mask=attention).logits
        honours = CASES[name][3]
        if honours:
            _close(padded, g["logits_with_mask"], keep)  # real positions only
        else:
            # The official code drops the mask: only the unpadded rows can agree.
            assert torch.equal(g["logits_with_mask"], g["logits_no_mask"])
            _close(padded[:2], g["logits_with_mask"][:2])
        if "logits_block_causal" in g:
            if name == "fast_dllm_v2_tiny":
                blocked = model(ids, block_size=8).logits  # the family's own forward argument
            else:
                keep4 = g["block_causal_keep"][None, None].expand(3, 1, 24, 24)
                blocked = model(ids, attention_mask=keep4).logits
            _close(blocked, g["logits_block_causal"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_adapter_matches_golden(name):
    cls, family, mask_id, _, shift = CASES[name]
    g = _golden(name)
    assert checkpoint_family(GOLDEN / name) == family
    den = load_model(
        GOLDEN / name, mask_id=mask_id, **({} if family == "llada_moe" else {"block_size": 8})
    )
    assert den.family == family and den.shift == shift and den.mask_id == mask_id
    # The golden block-causal run counts blocks from column 0 on every row (no padding mask).
    expected = g["logits_block_causal" if "logits_block_causal" in g else "logits_no_mask"].clone()
    if shift:
        expected = torch.cat([expected[:, :1], expected[:, :-1]], dim=1)  # row i predicts i
    expected[..., mask_id] = float("-inf")
    logits = den(g["input_ids"])
    assert logits.shape == (3, 24, den.vocab_size)
    assert torch.isneginf(logits[..., mask_id]).all()
    finite = torch.isfinite(expected)
    torch.testing.assert_close(logits[finite], expected[finite], atol=TOL, rtol=0)
    if family == "llada_moe":
        assert isinstance(den, LLaDAMoEDenoiser)
    else:
        assert isinstance(den, BlockDiffusionDenoiser) and den.block_size == 8


@pytest.mark.parametrize("name", sorted(CASES))
def test_padding_leaves_real_rows_unchanged(name):
    cls, family, mask_id, _, _ = CASES[name]
    den = load_model(
        GOLDEN / name, mask_id=mask_id, **({} if family == "llada_moe" else {"block_size": 8})
    )
    seq = _golden(name)["input_ids"][0]
    alone = den(seq[None])[0]
    left = torch.cat([torch.full((5,), den.pad_id), seq])[None]
    mask = torch.arange(29)[None] >= 5
    padded = den(left, mask)[0, 5:]
    finite = torch.isfinite(alone)
    assert torch.equal(torch.isfinite(padded), finite)
    torch.testing.assert_close(padded[finite], alone[finite], atol=TOL, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_auto_classes_resolve_without_remote_code(name):
    cls = CASES[name][0]
    config = json.loads((GOLDEN / name / "config.json").read_text())
    assert "auto_map" in config and not list((GOLDEN / name).glob("*.py"))
    assert isinstance(transformers.AutoModelForCausalLM.from_pretrained(str(GOLDEN / name)), cls)
    assert isinstance(transformers.AutoModel.from_pretrained(str(GOLDEN / name)), cls)
    assert type(transformers.AutoConfig.from_pretrained(str(GOLDEN / name))) is cls.config_class


def test_dense_llada_still_resolves_to_the_dense_class():
    from remask.models.llada import LLaDAModelLM

    model = transformers.AutoModelForCausalLM.from_pretrained(str(GOLDEN / "llada_tiny"))
    assert type(model) is LLaDAModelLM


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_load_round_trip(name, models, tmp_path):
    model = models[name]
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    original = json.loads((GOLDEN / name / "config.json").read_text())
    assert saved["model_type"] == original["model_type"]
    assert saved["architectures"] == original["architectures"]
    reloaded = type(model).from_pretrained(str(tmp_path)).eval()
    state = model.state_dict()
    assert set(reloaded.state_dict()) == set(state)
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    ids = _golden(name)["input_ids"]
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_mask_id_is_required_and_checked(tmp_path):
    with pytest.raises(ValueError, match="no mask token id.*mask_id="):
        load_model(GOLDEN / "sdar_tiny")
    with pytest.raises(ValueError, match="mask_id=999 is outside"):
        load_model(GOLDEN / "sdar_tiny", mask_id=999)
    with pytest.raises(TypeError, match="mask_id must be an int"):
        load_model(GOLDEN / "sdar_tiny", mask_id="254")
    with pytest.raises(ValueError, match="eos_id=7 contradicts the checkpoint's eos_id=240"):
        load_model(GOLDEN / "sdar_tiny", mask_id=254, eos_id=7)
    with pytest.raises(TypeError, match="unknown arguments"):
        load_checkpoint(GOLDEN / "sdar_tiny", mask_token=254)
    with pytest.raises(ValueError, match="block_size=8 applies to block-diffusion"):
        load_model(GOLDEN / "llada_moe_tiny", mask_id=255, block_size=8)
    # Ids the checkpoint lacks are taken; the spec string carries them too.
    den = load_model(f"{GOLDEN / 'llada2_moe_tiny'}?mask_id=255&eos_id=252&block_size=8")
    assert (den.mask_id, den.eos_id, den.pad_id, den.block_size) == (255, 252, 252, 8)
    assert load_model(f"{GOLDEN / 'sdar_tiny'}?mask_id=254&cache=0").cache is False
    with pytest.raises(TypeError, match="cache must be a bool"):
        load_model(f"{GOLDEN / 'sdar_tiny'}?mask_id=254&cache=no")
    with pytest.raises(TypeError, match="checkpoint directories only"):
        load_model("oracle:markov?vocab=4&length=6", mask_id=3)


def test_default_block_sizes():
    assert load_model(GOLDEN / "fast_dllm_v2_tiny", mask_id=254).block_size == 8  # bd_size
    assert load_model(GOLDEN / "sdar_tiny", mask_id=254).block_size == 4
    assert load_model(GOLDEN / "llada2_moe_tiny", mask_id=255).block_size == 32


def _edited(tmp_path, name, **changes):
    target = tmp_path / name
    shutil.copytree(GOLDEN / name, target)
    for path in target.iterdir():
        path.chmod(0o644)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize(
    "name, changes, message",
    [
        (
            "llada2_moe_tiny",
            {"num_experts_per_tok": 9},
            "num_experts_per_tok=9 exceeds num_experts=8",
        ),
        ("llada2_moe_tiny", {"n_group": 3}, "num_experts=8 is not divisible by n_group=3"),
        ("llada2_moe_tiny", {"topk_group": 5}, "topk_group=5 exceeds n_group=4"),
        (
            "llada2_moe_tiny",
            {"topk_group": 1, "num_experts_per_tok": 3},
            "num_experts_per_tok=3 exceeds the 2 experts",
        ),
        ("llada2_moe_tiny", {"num_experts": 16, "n_group": 4}, "mlp.experts"),  # weights hold 8
        ("llada2_moe_tiny", {"rotary_dim": 16}, "rotary_dim=16 contradicts"),
        ("llada2_moe_tiny", {"first_k_dense_replace": 3}, "first_k_dense_replace=3"),
        ("llada_moe_tiny", {"moe_layer_freq": [1]}, "moe_layer_freq"),
        ("llada_moe_tiny", {"num_experts": 0}, "num_experts must be a positive int"),
        ("llada_moe_tiny", {"hidden_size": None}, "must set .*hidden_size"),
        ("sdar_tiny", {"num_key_value_heads": 3}, "not a multiple of num_key_value_heads=3"),
        ("sdar_tiny", {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
        ("fast_dllm_v2_tiny", {"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ],
)
def test_bad_configs_are_named(tmp_path, name, changes, message):
    path = _edited(tmp_path, name, **changes)
    with pytest.raises(ValueError, match=message):
        load_model(path, mask_id=CASES[name][2])


def test_forward_rejects_ambiguous_masks_and_cache(models):
    model = models["sdar_tiny"]
    ids = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(TypeError, match="additive float masks"):
        model(ids, attention_mask=torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="use_cache"):
        model(ids, use_cache=True)
    with pytest.raises(TypeError, match="past_key_values"):
        model(ids, past_key_values=object())
    with pytest.raises(ValueError, match="block_size"):
        model(ids, block_size=0)


def _slow_moe(moe: SparseMoE, x: torch.Tensor) -> torch.Tensor:
    """Per-token reference written from the routing description (no batching tricks)."""
    spec = moe.spec
    out = torch.zeros_like(x)
    for n in range(x.shape[0]):
        logits = moe.gate.weight.float() @ x[n].float()  # (E,)
        scores = logits.sigmoid() if spec.score == "sigmoid" else logits.softmax(-1)
        bias = getattr(moe.gate, "expert_bias", None)
        biased = scores + (0 if bias is None else bias)
        size = spec.num_experts // spec.n_group
        groups = sorted(
            range(spec.n_group),
            key=lambda g: (
                -float(biased[g * size : (g + 1) * size].topk(2).values.sum())
                if spec.n_group > 1
                else 0
            ),
        )[: spec.topk_group]
        allowed = [e for g in groups for e in range(g * size, (g + 1) * size)]
        chosen = sorted(allowed, key=lambda e: -float(biased[e]))[: spec.top_k]
        weights = [float(biased[e] if spec.bias_in_weights else scores[e]) for e in chosen]
        if spec.normalize and spec.top_k > 1:
            total = sum(weights) + 1e-20
            weights = [w / total for w in weights]
        for e, w in zip(chosen, weights):
            out[n] += w * spec.scaling * moe.experts[e](x[n])
        if spec.shared_intermediate_size is not None:
            out[n] += moe.shared_experts(x[n])
    return out


@pytest.mark.parametrize(
    "spec",
    [
        MoESpec(
            num_experts=8,
            top_k=2,
            intermediate_size=6,
            score="sigmoid",
            n_group=4,
            topk_group=2,
            expert_bias=True,
            normalize=True,
            scaling=2.5,
            shared_intermediate_size=6,
        ),
        MoESpec(
            num_experts=6,
            top_k=3,
            intermediate_size=5,
            score="softmax",
            expert_bias=True,
            bias_in_weights=True,
        ),
    ],
)
def test_moe_dispatch_equals_a_per_token_loop(spec):
    torch.manual_seed(0)
    moe = SparseMoE(12, spec)
    for p in moe.parameters():
        torch.nn.init.uniform_(p, -0.5, 0.5)
    if spec.expert_bias:
        moe.gate.expert_bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, 7, 12)
    with torch.no_grad():
        fast = moe(x).reshape(-1, 12)
        slow = _slow_moe(moe, x.reshape(-1, 12))
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)


def test_tied_head_round_trip(tmp_path):
    from remask.models.sdar import SDARConfig

    config = SDARConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = SDARForCausalLM(config).eval()
    assert not any(key.startswith("lm_head") for key in model.state_dict())
    model.save_pretrained(tmp_path)
    reloaded = SDARForCausalLM.from_pretrained(str(tmp_path)).eval()
    tokens = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        expected = model.model(tokens, torch.arange(7), None)[0] @ model.model.embedding.weight.T
        assert torch.equal(reloaded(tokens).logits, model(tokens).logits)
        torch.testing.assert_close(model(tokens).logits, expected)
