"""The checkpoint adapters drop an attention mask that hides nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import remask.models.dream as dream_module
import remask.models.llada as llada_module
from remask.bench.gpu import build_denoiser


@pytest.mark.parametrize("name, module", [("llada-8b", llada_module), ("dream-7b", dream_module)])
def test_all_true_mask_runs_the_unmasked_attention(monkeypatch, name, module):
    # On a GPU an SDPA call with a boolean mask runs another kernel than one without (flash
    # attention), with different bf16 rounding: an H200 run showed remask's decoding drift from
    # the reference loops' (which pass no mask) from the first step. No padding = no mask.
    model = build_denoiser(name, quick=True, device=torch.device("cpu"), dtype=torch.float32)
    seen = []
    real_sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("attn_mask"))
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(module.F, "scaled_dot_product_attention", spy)
    tokens = torch.randint(0, 400, (2, 12))
    plain = model(tokens)
    ones = model(tokens, torch.ones(2, 12, dtype=torch.bool))
    assert torch.equal(plain, ones)
    cached, _ = model.forward_cached(tokens, torch.ones(2, 12, dtype=torch.long))
    assert torch.equal(plain, cached)
    padded = torch.ones(2, 12, dtype=torch.bool)
    padded[1, :3] = False
    model(tokens, padded)
    layers = len(seen) // 4
    assert all(m is None for m in seen[: 3 * layers])
    assert any(isinstance(m, torch.Tensor) and not m.all() for m in seen[3 * layers :])


def test_masks_are_still_checked_before_they_are_dropped():
    model = build_denoiser("llada-8b", quick=True, device=torch.device("cpu"), dtype=torch.float32)
    tokens = torch.randint(0, 400, (1, 6))
    with pytest.raises(ValueError, match="shape"):
        model(tokens, torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        model(tokens, torch.ones(1, 6))
    with pytest.raises(ValueError, match="outside the model's embedding"):
        model(torch.full((1, 6), 10**6), torch.ones(1, 6, dtype=torch.bool))
