"""PC-Sampler (Huang et al., arXiv 2508.13021): ``generate_with_pc_sampler`` one row, greedy."""

from __future__ import annotations

import math

import torch

from reference._common import guided_logits


def pc_generate(
    model, prompt, *, gen_length, block_length, steps, lambd, alpha, background, cfg_scale=0.0
):
    """``generate_with_pc_sampler``, one row, greedy: LLaDA's schedule, top-k of
    exp(−λ i) · min(−p log(f_bg + 1e-9), α), i = offset from the block start."""
    mask = model.mask_id
    P = len(prompt)
    x = list(prompt) + [mask] * gen_length
    block_length = block_length or gen_length
    n_blocks = -(-gen_length // block_length)
    nfe = 0
    for b in range(n_blocks):
        lo, hi = P + b * block_length, min(P + (b + 1) * block_length, P + gen_length)
        size = hi - lo
        block_steps = (
            size if steps is None else steps // n_blocks + (1 if b < steps % n_blocks else 0)
        )
        for s in range(block_steps):
            k = size // block_steps + (1 if s < size % block_steps else 0)
            if k == 0:
                continue
            logits = guided_logits(model, x, P, cfg_scale)
            nfe += 2 if cfg_scale > 0 else 1
            rows = []
            for j in range(lo, hi):
                if x[j] != mask:
                    continue
                p = torch.softmax(logits[j], -1)
                token = int(p.argmax())
                calibrated = (
                    float(p[token])
                    if background is None
                    else -float(p[token]) * math.log(float(background[token]) + 1e-9)
                )
                rows.append((-math.exp(-lambd * (j - lo)) * min(calibrated, alpha), j, token))
            for _, j, token in sorted(rows)[:k]:
                x[j] = token
    return x, nfe
