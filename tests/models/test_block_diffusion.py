"""Block-diffusion decoding: the exact block cache equals the uncached block-causal run for
every registered sampler, each step's forward covers the active block plus the cached prefix,
and blocks follow the model's grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import remask
from remask.models import load_model
from remask.models.block_diffusion import BlockDiffusionDenoiser
from remask.samplers import available, build, sampler_class

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
#: (folder, mask id recorded in its golden_io metadata): the folders ship no tokenizer.
BLOCK_FAMILIES = {
    "llada2": ("llada2_moe_tiny", 255),
    "sdar": ("sdar_tiny", 254),
    "fast_dllm_v2": ("fast_dllm_v2_tiny", 254),
}
BLOCK = 4
PROMPTS = [[1, 2, 3, 4, 5], [6, 7]]  # ragged: left padding, different block offsets per row
GEN = 12


@pytest.fixture(autouse=True)
def _torch_kernels():
    with remask.kernels.use_backend("torch"):
        yield


@pytest.fixture(scope="module", params=sorted(BLOCK_FAMILIES))
def pair(request):
    folder, mask_id = BLOCK_FAMILIES[request.param]
    cached = load_model(GOLDEN / folder, mask_id=mask_id, block_size=BLOCK)
    plain = load_model(GOLDEN / folder, mask_id=mask_id, block_size=BLOCK, cache=False)
    return cached, plain


def _configs(name):
    """The sampler's default config and its first example config, at block length BLOCK·k."""
    cls = sampler_class(name)
    configs = [{}]
    for example in cls.example_configs[:1]:
        example = dict(example)
        if example.get("block_length") is not None:
            example["block_length"] = BLOCK * max(1, example["block_length"] // BLOCK)
        for part in (example, example.get("base")):
            if isinstance(part, dict) and part.get("steps") is not None:
                # Every model block needs a step (GEN // BLOCK blocks, one more when cut short).
                part["steps"] = max(part["steps"], GEN // BLOCK + 1)
        configs.append(example)
    return configs


@pytest.mark.parametrize("name", available())
def test_cache_equals_uncached_block_causal_run(name, pair):
    cached, plain = pair
    for config in _configs(name):
        sampler = build(name, **config)
        cached.reset()
        fast = remask.generate(cached, PROMPTS, sampler, gen_length=GEN, seed=3)
        slow = remask.generate(plain, PROMPTS, sampler, gen_length=GEN, seed=3)
        assert torch.equal(fast.tokens, slow.tokens), (name, config)
        assert torch.equal(fast.nfe, slow.nfe), (name, config)
        assert not bool((fast.tokens == cached.mask_id).any())


def test_each_step_runs_only_the_active_block_plus_one_shift_row(pair):
    cached, _ = pair
    calls = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner
            for attr in (
                "mask_id",
                "vocab_size",
                "eos_id",
                "pad_id",
                "block_size",
                "accepts_active",
                "shift",
                "device",
            ):
                setattr(self, attr, getattr(inner, attr))

        def __call__(self, tokens, attention_mask=None, active=None):
            before = self.inner.stats["query_positions"]
            out = self.inner(tokens, attention_mask, active=active)
            calls.append(self.inner.stats["query_positions"] - before)
            return out

    cached.reset()
    prompt = [[1, 2, 3, 4, 5, 6, 7, 8]]  # two whole blocks: generation starts on the grid
    remask.generate(
        Spy(cached), prompt, build("low_confidence", steps=GEN // 2), gen_length=GEN, seed=0
    )
    # 2 steps per block. First call: the prompt's blocks + the first generated block. Then the
    # active block only, except at a block's first step, which also refreshes the block just
    # finished (its keys and values were computed while it still held masks). A shifted model
    # also reruns the last position before the window.
    s = cached.shift
    assert calls == [
        len(prompt[0]) + BLOCK,
        BLOCK + s,
        2 * BLOCK + s,
        BLOCK + s,
        2 * BLOCK + s,
        BLOCK + s,
    ], calls


def test_first_block_is_cut_to_the_model_grid(pair):
    cached, _ = pair
    blocks = []
    remask.generate(
        cached,
        [[1, 2, 3, 4, 5, 6], [7, 8, 9]],
        build("low_confidence"),
        gen_length=6,
        seed=0,
        callbacks=[lambda state, info: blocks.append(state.canvas.block)],
    )
    # Blocks of 4 counted from each row's first real token: row 0 (prompt 6) finishes its
    # second block with 2 generated tokens, row 1 (prompt 3, left-padded by 3) its first with 1.
    assert blocks[0][0, 6:].tolist() == [0, 0, 1, 1, 1, 1]
    assert blocks[0][1, 6:].tolist() == [0, 1, 1, 1, 1, 2]
    # With a multiple of the model block (8 = 2 x 4) the grid is the sampler's block length.
    blocks.clear()
    remask.generate(
        cached,
        [[1, 2, 3, 4, 5, 6]],
        build("low_confidence", block_length=8),
        gen_length=6,
        seed=0,
        callbacks=[lambda state, info: blocks.append(state.canvas.block)],
    )
    assert blocks[0][0, 6:].tolist() == [0, 0, 1, 1, 1, 1]


def test_revised_tokens_invalidate_the_cache(pair):
    cached, plain = pair
    torch.manual_seed(0)
    tokens = torch.randint(0, 200, (2, 16))
    tokens[:, 12:] = cached.mask_id
    active = torch.zeros(2, 16, dtype=torch.bool)
    active[:, 12:] = True
    cached.reset()
    cached(tokens, active=active)
    tokens[1, 2] = 7  # a sampler revised a committed token far left of the active block
    out = cached(tokens, active=active)
    ref = plain(tokens)
    finite = torch.isfinite(ref[:, 12:])
    torch.testing.assert_close(out[:, 12:][finite], ref[:, 12:][finite], atol=1e-5, rtol=0)


def test_block_length_the_cache_cannot_serve_is_refused(pair):
    cached, _ = pair
    with pytest.raises(ValueError, match=r"block_length=6 .*block size 4"):
        remask.generate(
            cached, [[1, 2]], build("low_confidence", block_length=6), gen_length=8, seed=0
        )
    folder, mask_id = BLOCK_FAMILIES["sdar"]
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="block_size"):
            load_model(GOLDEN / folder, mask_id=mask_id, block_size=bad)
    with pytest.raises(ValueError, match="block_size=100000 exceeds"):
        load_model(GOLDEN / folder, mask_id=mask_id, block_size=100000)


def test_active_mask_is_validated(pair):
    cached, _ = pair
    tokens = torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(TypeError, match="bool"):
        cached(tokens, active=torch.ones(1, 8))
    with pytest.raises(ValueError, match="shape"):
        cached(tokens, active=torch.ones(1, 7, dtype=torch.bool))
    assert isinstance(cached, BlockDiffusionDenoiser) and cached.accepts_active


def test_guidance_doubles_the_batch_and_stays_exact(pair):
    cached, plain = pair
    sampler = build("low_confidence", cfg_scale=1.0, steps=6)
    cached.reset()
    fast = remask.generate(cached, PROMPTS, sampler, gen_length=GEN, seed=1)
    slow = remask.generate(plain, PROMPTS, sampler, gen_length=GEN, seed=1)
    assert torch.equal(fast.tokens, slow.tokens)
    assert cached.stats["window_passes"] > 0


def test_bfloat16_moe_model_runs_close_to_float32():
    folder, mask_id = BLOCK_FAMILIES["llada2"]
    fp32 = load_model(GOLDEN / folder, mask_id=mask_id, block_size=BLOCK, cache=False)
    bf16 = load_model(GOLDEN / folder, mask_id=mask_id, block_size=BLOCK, dtype=torch.bfloat16)
    tokens = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    active = torch.zeros(2, 12, dtype=torch.bool)
    active[:, 8:] = True
    low = bf16(tokens, active=active)[:, 8:]
    assert low.dtype == torch.bfloat16
    ref = fp32(tokens)[:, 8:]
    finite = torch.isfinite(ref)
    # bf16 keeps ~3 significant digits; this guards against gross errors (routing, dtypes).
    torch.testing.assert_close(low[finite].float(), ref[finite], atol=0.1, rtol=0.05)
