"""Fast-dLLM KV caches: the models' window pass, the Cached wrapper and its sessions, exactness."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import remask
from remask.models import TinyTransformer
from remask.models._layers import KVCache
from remask.models.cache import Cached, CachedDenoiser
from remask.models.checkpoints import load_checkpoint
from remask.samplers import build

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
NAMES = ("llada_tiny", "dream_tiny")
PROMPTS = [[1, 2, 3], [5, 6, 7, 8, 9, 10], [11]]  # different lengths: left padding


@pytest.fixture(autouse=True)
def _torch_kernels():
    # The cache is under test, not the kernel backends (tests/kernels); the torch reference
    # spares these tests numba's one-off compilation.
    with remask.kernels.use_backend("torch"):
        yield


@pytest.fixture(scope="module", params=NAMES)
def denoiser(request):
    return load_checkpoint(GOLDEN / request.param)


@pytest.fixture(scope="module")
def llada():
    return load_checkpoint(GOLDEN / "llada_tiny")


def _canvas(den, batch=3, length=20, generated=10, pads=(0, 0, 4)):
    """A padded (B, L) canvas whose last ``generated`` positions are half masked."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 250, (batch, length), generator=g)
    tokens[:, length - generated :: 2] = den.mask_id
    mask = torch.ones(batch, length, dtype=torch.bool)
    for row, pad in enumerate(pads):
        mask[row, :pad] = False
        tokens[row, :pad] = den.pad_id
    return tokens, mask


# ---------------------------------------------------------------- the models' window pass
def test_cached_full_pass_equals_plain_call(denoiser):
    tokens, mask = _canvas(denoiser)
    logits, cache = denoiser.forward_cached(tokens, mask)
    assert torch.equal(logits, denoiser(tokens, mask))
    config = denoiser.model.config
    n_layers = config.n_layers if denoiser.family == "llada" else config.num_hidden_layers
    assert isinstance(cache, KVCache) and len(cache) == n_layers and cache.length == 20


def test_window_pass_with_a_fresh_cache_equals_the_full_pass(denoiser):
    tokens, mask = _canvas(denoiser)
    full = denoiser(tokens, mask)
    _, cache = denoiser.forward_cached(tokens, mask)
    # Dual-cache windows (a block), prefix-cache windows (to the end), the edges.
    for start, stop in [(10, 14), (14, 18), (16, 20), (10, 20), (1, 20), (0, 20), (0, 5)]:
        part = denoiser.forward_window(tokens, mask, cache, start, stop)
        assert part.shape == (3, stop - start, denoiser.vocab_size)
        real = mask[:, start:stop]  # rows at padding are meaningless
        torch.testing.assert_close(part[real], full[:, start:stop][real], atol=1e-5, rtol=0)


def test_window_pass_is_exact_when_only_window_tokens_changed_and_cache_is_refilled(denoiser):
    # The cache is rewritten in place by each window pass; a second window pass on the same
    # tokens must therefore still agree with the full pass.
    tokens, mask = _canvas(denoiser)
    _, cache = denoiser.forward_cached(tokens, mask)
    denoiser.forward_window(tokens, mask, cache, 12, 16)
    again = denoiser.forward_window(tokens, mask, cache, 12, 16)
    torch.testing.assert_close(again, denoiser(tokens, mask)[:, 12:16], atol=1e-5, rtol=0)


def test_window_pass_errors(denoiser):
    tokens, mask = _canvas(denoiser)
    _, cache = denoiser.forward_cached(tokens, mask)
    with pytest.raises(ValueError, match=r"window \[5, 25\)"):
        denoiser.forward_window(tokens, mask, cache, 5, 25)
    with pytest.raises(ValueError, match="covers a batch of 3"):
        denoiser.forward_window(tokens[:2], mask[:2], cache, 5, 10)
    with pytest.raises(ValueError, match="fill it with a full forward pass"):
        denoiser.forward_window(tokens, mask, KVCache(), 5, 10)
    with pytest.raises(TypeError, match="KVCache"):
        denoiser.forward_window(tokens, mask, {}, 5, 10)
    with pytest.raises(TypeError, match="start must be an int"):
        denoiser.forward_window(tokens, mask, cache, 5.0, 10)


# ---------------------------------------------------------------- the wrapper
_PLAIN: dict = {}


def _plain(denoiser, gen_length=12, **config):
    """Uncached greedy generation of PROMPTS (memoised: several tests compare against it)."""
    key = (denoiser.family, gen_length, tuple(sorted(config.items())))
    if key not in _PLAIN:
        sampler = build("low_confidence", **config)
        _PLAIN[key] = remask.generate(denoiser, PROMPTS, sampler, gen_length=gen_length, seed=0)
    return _PLAIN[key]


class _Spy:
    """Calls the cached denoiser and, for comparison, the uncached one on every step."""

    accepts_active = True

    def __init__(self, cached, plain):
        self.cached, self.plain = cached, plain
        self.mask_id, self.vocab_size = plain.mask_id, plain.vocab_size
        self.eos_id, self.pad_id = plain.eos_id, plain.pad_id
        self.device = plain.device
        self.worst = 0.0

    def __call__(self, tokens, attention_mask=None, active=None):
        got = self.cached(tokens, attention_mask, active=active)
        want = self.plain(tokens, attention_mask)
        rows = active & attention_mask  # (B, L): the active block's real positions
        finite = torch.isfinite(want[rows])
        assert torch.equal(finite, torch.isfinite(got[rows]))
        self.worst = max(self.worst, float((got[rows] - want[rows])[finite].abs().max()))
        return got


def test_refresh_every_step_equals_uncached_exactly(denoiser):
    # With refresh_every=1 every call is a full pass in either mode; "dual" stands for both.
    sampler = build("low_confidence", block_length=4)
    plain = _plain(denoiser, block_length=4)
    spy = _Spy(Cached(denoiser, mode="dual", refresh_every=1).session(), denoiser)
    cached = remask.generate(spy, PROMPTS, sampler, gen_length=12, seed=0)
    assert torch.equal(cached.tokens, plain.tokens)
    assert torch.equal(cached.nfe, plain.nfe)
    assert spy.worst <= 1e-5
    assert spy.cached.stats["window_passes"] == 0


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_approximate_modes_decode_validly_with_fewer_positions(denoiser, mode):
    sampler = build("low_confidence", block_length=4)
    plain = _plain(denoiser, block_length=4)
    model = CachedDenoiser(denoiser, mode=mode)
    cached = remask.generate(model, PROMPTS, sampler, gen_length=12, seed=0)
    assert torch.equal(cached.tokens[:, :6], plain.tokens[:, :6])  # prompts untouched
    assert not bool((cached.tokens == denoiser.mask_id).any())
    assert torch.equal(cached.nfe, plain.nfe)  # one evaluation per call, cached or not
    stats = model.stats
    # 3 blocks of 4 one-token steps: a full pass at each block start, window passes between.
    assert (stats["full_passes"], stats["window_passes"], stats["calls"]) == (3, 9, 12)
    full_cost = stats["calls"] * 3 * 18
    assert stats["query_positions"] < full_cost
    agreement = (cached.tokens[:, 6:] == plain.tokens[:, 6:]).float().mean()
    assert agreement > 0.5  # an approximation, not a different decoder


def test_refresh_every_n_and_block_changes(denoiser):
    sampler = build("low_confidence", block_length=4)
    model = CachedDenoiser(denoiser, mode="dual", refresh_every=2)
    remask.generate(model, PROMPTS, sampler, gen_length=12, seed=0)
    # Per block of 4 steps: full, window, full, window.
    assert (model.stats["full_passes"], model.stats["window_passes"]) == (6, 6)


def test_guidance_batch_goes_through_the_cache(llada):
    # LLaDA only: Dream's unconditional branch would mask its first real position.
    denoiser = llada
    sampler = build("low_confidence", block_length=4, cfg_scale=1.0)
    plain = _plain(denoiser, gen_length=8, block_length=4, cfg_scale=1.0)
    cached = remask.generate(
        CachedDenoiser(denoiser, refresh_every=1), PROMPTS, sampler, gen_length=8, seed=0
    )
    assert torch.equal(cached.tokens, plain.tokens) and torch.equal(cached.nfe, plain.nfe)
    approx = CachedDenoiser(denoiser, mode="dual")
    out = remask.generate(approx, PROMPTS, sampler, gen_length=8, seed=0)
    assert not bool((out.tokens == denoiser.mask_id).any()) and approx.stats["window_passes"] > 0


def test_reused_wrapper_refreshes_on_a_new_canvas(denoiser):
    sampler = build("low_confidence", block_length=4)
    model = CachedDenoiser(denoiser, mode="prefix")
    remask.generate(model, [[1, 2, 3]], sampler, gen_length=8, seed=0)
    second = remask.generate(model, [[4, 5, 6]], sampler, gen_length=8, seed=0)
    fresh = remask.generate(
        CachedDenoiser(denoiser, mode="prefix"), [[4, 5, 6]], sampler, gen_length=8, seed=0
    )
    assert torch.equal(second.tokens, fresh.tokens)


def test_changed_token_outside_the_window_forces_a_full_pass(denoiser):
    tokens, mask = _canvas(denoiser)
    active = torch.zeros_like(mask)
    active[:, 12:16] = True
    model = Cached(denoiser, mode="dual")
    session = model.session()
    session(tokens, mask, active=active)
    session(tokens, mask, active=active)
    assert (model.stats["full_passes"], model.stats["window_passes"]) == (1, 1)
    edited = tokens.clone()
    edited[0, 18] = 7  # right of the block: the cached suffix is stale
    out = session(edited, mask, active=active)
    assert model.stats["full_passes"] == 2
    assert torch.equal(out, denoiser(edited, mask))
    # Outside-window rows carry the latest logits computed for them, never -inf placeholders.
    session(edited, mask, active=active)
    later = session(edited, mask, active=active)
    assert torch.isfinite(later[..., : denoiser.mask_id]).all()
    assert session.stats == model.stats  # one session so far: its counters are the wrapper's


def test_state_lives_in_the_session_only(denoiser):
    """No cache outlives its session: calls on the wrapper itself, and a second session, start
    with a full pass; two sessions never see each other's keys and values."""
    tokens, mask = _canvas(denoiser)
    active = torch.zeros_like(mask)
    active[:, 12:16] = True
    model = Cached(denoiser, mode="dual")
    model(tokens, mask, active=active)
    model(tokens, mask, active=active)
    assert (model.stats["full_passes"], model.stats["window_passes"]) == (2, 0)
    first, second = model.session(), model.session()
    first(tokens, mask, active=active)
    edited = tokens.clone()
    edited[:, 13] = 9  # inside the window: the first session may reuse its cache
    first(edited, mask, active=active)
    second(edited, mask, active=active)
    assert (first.stats["full_passes"], first.stats["window_passes"]) == (1, 1)
    assert (second.stats["full_passes"], second.stats["window_passes"]) == (1, 0)
    assert model.stats["full_passes"] == 4 and model.stats["calls"] == 5


def test_each_run_opens_a_fresh_session(denoiser):
    sampler = build("low_confidence", block_length=4)
    model = Cached(denoiser, mode="dual")
    remask.generate(model, PROMPTS, sampler, gen_length=8, seed=0)
    once = dict(model.stats)
    remask.generate(model, PROMPTS, sampler, gen_length=8, seed=0)
    # The same run again costs the same passes: it started from nothing, not from the last cache.
    assert model.stats == {k: 2 * v for k, v in once.items()}
    assert CachedDenoiser is Cached


def test_no_active_block_means_plain_full_pass(denoiser):
    tokens, mask = _canvas(denoiser)
    model = CachedDenoiser(denoiser)
    assert torch.equal(model(tokens, mask), denoiser(tokens, mask))
    empty = torch.zeros_like(mask)
    assert torch.equal(model(tokens, mask, active=empty), denoiser(tokens, mask))
    assert model.stats["window_passes"] == 0


def test_wrapper_validation(llada):
    with pytest.raises(TypeError, match="KV-cache path.*TinyTransformer"):
        CachedDenoiser(TinyTransformer())
    den = llada
    with pytest.raises(ValueError, match="mode must be one of .* got 'full'"):
        CachedDenoiser(den, mode="full")
    with pytest.raises(ValueError, match="refresh_every must be >= 1, got 0"):
        CachedDenoiser(den, refresh_every=0)
    with pytest.raises(TypeError, match="refresh_every must be an int"):
        CachedDenoiser(den, refresh_every=2.0)
    model = CachedDenoiser(den)
    tokens, mask = _canvas(den)
    with pytest.raises(ValueError, match=r"active has shape \(3, 19\)"):
        model(tokens, mask, active=torch.ones(3, 19, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        model(tokens, mask, active=torch.ones(3, 20))
    assert (model.mask_id, model.vocab_size, model.eos_id) == (
        den.mask_id,
        den.vocab_size,
        den.eos_id,
    )
    assert model.accepts_active and "mode='prefix'" in repr(model)


@pytest.mark.parametrize("name", remask.samplers.available())
def test_every_registered_sampler_runs_on_the_cache(name, llada):
    # Any blockwise sampler can use the wrapper: exact with refresh_every=1, valid in "dual".
    denoiser = llada
    fields = {f.name for f in dataclasses.fields(remask.samplers.sampler_class(name))}
    config = {"block_length": 4} if "block_length" in fields else {}
    if name == "wino":  # the cache has no attention-bias path: compare like with like
        config["shadow"] = "emulate"
    sampler = build(name, **config)
    prompts = [[1, 2, 3], [4]]
    plain = remask.generate(denoiser, prompts, sampler, gen_length=8, seed=0)
    exact = remask.generate(
        CachedDenoiser(denoiser, refresh_every=1), prompts, sampler, gen_length=8, seed=0
    )
    assert torch.equal(exact.tokens, plain.tokens) and torch.equal(exact.nfe, plain.nfe)
    approx = remask.generate(
        CachedDenoiser(denoiser, mode="dual"), prompts, sampler, gen_length=8, seed=0
    )
    assert torch.equal(approx.tokens[:, :3], plain.tokens[:, :3])
    assert not bool((approx.tokens[approx.attention_mask] == denoiser.mask_id).any())
