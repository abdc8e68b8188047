"""The peer benchmark's denoiser: causal and exact, so two loops with different canvases agree.

diffusers itself is not needed here (it is an optional dependency of the benchmark only).
"""

from __future__ import annotations

import torch

from remask.bench.peer_diffusers import CausalRandomDenoiser


def test_logits_depend_only_on_the_real_prefix_bit_for_bit():
    model = CausalRandomDenoiser(vocab_size=64, bank_rows=32, seed=3)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 63, (2, 12), generator=gen)  # (B, L)
    full = model.logits(tokens, None)  # (B, L, V)
    # A shorter canvas (the pipeline's window) gives the same rows.
    assert torch.equal(model.logits(tokens[:, :7], None), full[:, :7])
    # Left padding (attention mask 0) shifts the rows and changes nothing else.
    padded = torch.cat([torch.zeros(2, 5, dtype=torch.long), tokens], 1)
    mask = torch.cat([torch.zeros(2, 5), torch.ones(2, 12)], 1).long()
    assert torch.equal(model.logits(padded, mask)[:, 5:], full)
    # Causal: changing a later token leaves earlier rows alone and changes its own row.
    edited = tokens.clone()
    edited[:, 8] = (edited[:, 8] + 1) % 63
    after = model.logits(edited, None)
    assert torch.equal(after[:, :8], full[:, :8])
    assert not torch.equal(after[:, 8], full[:, 8])
    assert bool((full[..., model.mask_id] == float("-inf")).all())
