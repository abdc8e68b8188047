"""Samplers whose moves are model-free (ancestral, remdm) draw tokens only where they write.

The reference implementations draw a token at every mask and keep the draws of the positions
that move; remask decides the moves first and draws only there. Each position's draw depends
on its own key alone, so the written tokens must be exactly those of drawing everywhere with
the same step key: checked step by step against a full draw.
"""

from __future__ import annotations

import pytest
import torch

from remask import kernels
from remask.samplers import build
from remask.samplers.canvas import make_canvas
from remask.samplers.predict import denoise, proposal_keys

B, L = 6, 20


def _full_draw(name: str, sampler, logits, canvas, key, masked):
    """The reference's draw: a token at every mask of the active block, same step key."""
    if name == "ancestral":
        return kernels.propose(
            logits, temperature=1.0, rows=masked, key=proposal_keys(key, canvas, 1.0)
        ).tokens
    return kernels.propose(
        logits,
        temperature=sampler.temperature,
        rows=masked,
        key=proposal_keys(key, canvas, sampler.temperature),
        top_p=sampler.top_p,
        nucleus="strict",
        stats="sampled",
    ).tokens


@pytest.mark.parametrize(
    "name,config",
    [("ancestral", {"steps": 6, "block_length": 10}), ("remdm", {"steps": 6, "top_p": 0.9})],
)
def test_written_tokens_are_those_of_drawing_at_every_mask(tiny64, name, config):
    sampler = build(name, **config)
    mask_id = tiny64.mask_id
    tokens = torch.full((B, L), mask_id, dtype=torch.int64)  # (B, L)
    editable = torch.ones(B, L, dtype=torch.bool)
    state = sampler.init(
        make_canvas(tokens, editable, editable, config.get("block_length")), tiny64
    )
    gen = torch.Generator().manual_seed(5)
    checked = 0
    for _ in range(12):
        canvas = state.canvas
        if bool(canvas.done.all()):
            break
        key = torch.randint(-(2**63), 2**63 - 1, (B,), generator=gen)  # (B,) step keys
        masked = canvas.editable & canvas.active & (canvas.tokens == mask_id)  # (B, L)
        logits, _ = denoise(tiny64, canvas)  # (B, L, V): the step's own forward (deterministic)
        full = _full_draw(name, sampler, logits, canvas, key, masked)  # (B, L)
        state, info = sampler.step(state, tiny64, key)
        removal = info.unmasked if name == "remdm" else info.noise_removal.unsqueeze(-1)
        drawn = info.unmasked if name == "remdm" else info.committed & ~removal
        assert torch.equal(info.proposal[drawn], full[drawn]), f"{name}: written draws differ"
        if name == "remdm":
            assert bool((info.proposal[~info.unmasked] == -1).all()), "a draw nobody writes"
        else:
            assert bool((info.proposal[~info.committed] == -1).all()), "a draw nobody writes"
        checked += int(drawn.sum())
    assert checked >= B * 4, checked  # the check saw real draws, not an empty set
