"""The attention-bias capability of remask's LLaDA and Dream adapters, and WINO on them.

The capability (remask.models.protocol) extends a canvas by extra tokens that stand in for
canvas columns, under a custom attention pattern. Checked here against plain calls the
adapters already match the official code on (tests/models/test_*_checkpoint.py), on a
left-padded batch, and WINO's one-forward shadow block against the reference loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import remask
from remask.models import protocol
from remask.models.checkpoints import load_checkpoint
from remask.samplers import build

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
TOL = 1e-5

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samplers"))
from reference.wino import wino_reference  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_kernels():
    with remask.kernels.use_backend("torch"):
        yield


@pytest.fixture(scope="module", params=["llada_tiny", "dream_tiny"])
def denoiser(request):
    return load_checkpoint(GOLDEN / request.param)


@pytest.fixture(scope="module")
def llada():
    return load_checkpoint(GOLDEN / "llada_tiny")


def _padded_canvas(den):
    """(3, 10) left-padded canvas: prompts of 3, 6 and 1 tokens, then masks and a token."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, den.mask_id, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[0, :3] = False
    mask[2, :5] = False
    tokens[:, 6:9] = den.mask_id
    return tokens, mask


def test_declared_through_the_protocol(denoiser):
    caps = protocol.capabilities(denoiser)
    assert (
        caps.attention_bias and caps.evaluations == 1 and caps.shift == (denoiser.family == "dream")
    )


def test_plain_pattern_is_the_plain_call(denoiser):
    tokens, mask = _padded_canvas(denoiser)
    B, L = tokens.shape
    bias = mask.unsqueeze(1).expand(B, L, L).clone()
    columns = torch.arange(L).expand(B, L)
    got = denoiser(tokens, mask, attention_bias=bias, position_ids=columns)
    want = denoiser(tokens, mask)
    torch.testing.assert_close(got[mask], want[mask], atol=TOL, rtol=0)


def test_extra_tokens_see_only_their_own_copy(denoiser):
    """Canvas and a copy with column 7 re-masked and column 6 decided, in one call: the copy's
    rows equal a plain call on the copy. (Dream: but for columns 7 and 8, whose predictions its
    adapter reads at columns 6 and 7 from the *canvas* tokens there — the shadow block's rule,
    where an extra token stands in for one column only — and these differ from the copy's.)"""
    tokens, mask = _padded_canvas(denoiser)
    B, L = tokens.shape
    copy = tokens.clone()
    copy[:, 6] = 3
    copy[:, 7] = denoiser.mask_id
    tokens[:, 7] = 4
    ext = torch.cat([tokens, copy], dim=1)  # (B, 2L)
    ext_mask = torch.cat([mask, mask], dim=1)
    bias = torch.zeros(B, 2 * L, 2 * L, dtype=torch.bool)
    bias[:, :L, :L] = mask.unsqueeze(1)
    bias[:, L:, L:] = mask.unsqueeze(1)
    columns = torch.arange(L).repeat(2).expand(B, 2 * L)
    got = denoiser(ext, ext_mask, attention_bias=bias, position_ids=columns)
    rows = mask.clone()
    torch.testing.assert_close(got[:, :L][rows], denoiser(tokens, mask)[rows], atol=TOL, rtol=0)
    if denoiser.shift:
        rows[:, 7:9] = False
    torch.testing.assert_close(got[:, L:][rows], denoiser(copy, mask)[rows], atol=TOL, rtol=0)


def test_bad_pattern_is_rejected(llada):
    tokens, mask = _padded_canvas(llada)
    with pytest.raises(ValueError, match="attention_bias has shape"):
        llada(
            tokens,
            mask,
            attention_bias=torch.ones(3, 9, 9, dtype=torch.bool),
            position_ids=torch.zeros(3, 10, dtype=torch.int64),
        )
    with pytest.raises(ValueError, match="canvas columns"):
        llada(
            tokens,
            mask,
            attention_bias=torch.ones(3, 10, 10, dtype=torch.bool),
            position_ids=torch.full((3, 10), 10),
        )


PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]


@pytest.mark.parametrize("config", [dict(block_length=4), dict(block_length=8, threshold_in=0.0)])
def test_wino_shadow_block_equals_the_reference_loop_on_llada(llada, config):
    """One padded batch through the capability vs. decoding_wino per unpadded row (the
    second setting accepts 5 tokens a step, so narrow-out reads the shadow block)."""
    gen_length = 8
    sampler = build("wino", shadow="attention", **config)
    remasked = []
    out = remask.generate(
        llada,
        PROMPTS,
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[lambda s, i: remasked.append(int(i.remasked.sum()))],
    )
    if config.get("threshold_in") == 0.0:
        assert sum(remasked) > 0
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        expected, steps = wino_reference(
            llada,
            prompt,
            gen_length=gen_length,
            block_length=config["block_length"],
            threshold=config.get("threshold_in", 0.6),
            threshold_back=config.get("threshold_out", 0.9),
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        assert int(out.nfe[row]) == steps  # one evaluation per step


def test_wino_shadow_block_costs_one_evaluation_per_step(denoiser):
    """Default settings: the shadow path decodes what the emulation decodes (padded batch), at
    1 evaluation per step instead of 1 + W. (Where narrow-out fires the two may differ: on a
    multi-layer model the shadow block is WINO's approximation of the leave-one-out
    conditional, which the emulation computes exactly.)"""
    assert build("wino").uses_attention(denoiser)
    scores: dict[str, list] = {"attention": [], "emulate": []}
    runs = {
        mode: remask.generate(
            denoiser,
            PROMPTS,
            build("wino", block_length=4, shadow=mode),
            gen_length=8,
            seed=0,
            callbacks=[lambda s, i, m=mode: scores[m].append(i.score)],
        )
        for mode in scores
    }
    out, emulated = runs["attention"], runs["emulate"]
    assert torch.equal(out.tokens, emulated.tokens)
    # The draft confidences come from the canvas rows of the shadow pass: the plain call's
    # numbers, so positions under left padding are the plain call's too.
    for got, want in zip(scores["attention"], scores["emulate"], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert out.nfe.tolist() == [out.steps] * 3
    assert emulated.nfe.tolist() == [5 * emulated.steps] * 3  # 1 + W per step, W = 4
