"""EB-Sampler (Ben-Hamu et al., arXiv 2505.24857): one row, greedy, with blocks and DUS's greedy
spacing filter (the slow loop ``entropy_bound`` is checked against).
"""

from __future__ import annotations

import torch

from reference._common import guided_logits


def dus_spacing(positions, min_gap):
    """DUS ``apply_spacing_filter``: greedy over positions sorted best first."""
    accepted = []
    for pos in positions:
        if all(abs(pos - a) >= min_gap for a in accepted):
            accepted.append(pos)
    return accepted


def eb_generate(
    model,
    prompt,
    *,
    gen_length,
    gamma,
    score="entropy",
    block_length=None,
    min_spacing=None,
    cfg_scale=0.0,
):
    """EB-Sampler, one row, greedy (PC-Sampler ``generate_with_eb_sampler`` / DUS
    ``generate_eb_sampler(_spaced)`` with blocks): per step sort the block's masked positions
    by the error proxy, commit the largest prefix with Σ H − max H ≤ γ (at least one), then
    DUS's greedy spacing filter. Returns (tokens, nfe)."""
    mask = model.mask_id
    P = len(prompt)
    x = list(prompt) + [mask] * gen_length
    block_length = block_length or gen_length
    nfe = 0
    for lo in range(P, P + gen_length, block_length):
        hi = min(lo + block_length, P + gen_length)
        while any(x[j] == mask for j in range(lo, hi)):
            logits = guided_logits(model, x, P, cfg_scale)
            nfe += 2 if cfg_scale > 0 else 1
            rows = []
            for j in range(lo, hi):
                if x[j] != mask:
                    continue
                p = torch.softmax(logits[j], -1)
                entropy = float(-(p * torch.log(p.clamp_min(1e-300))).sum())
                top = torch.topk(p, 2).values
                key = {
                    "entropy": entropy,
                    "prob": -float(top[0]),
                    "margin": -float(top[0] - top[1]),
                }[score]
                rows.append((key, j, int(p.argmax()), entropy))
            rows.sort()
            k = 0
            for n in range(1, len(rows) + 1):
                spent = sum(r[3] for r in rows[:n]) - max(r[3] for r in rows[:n])
                if spent <= gamma:
                    k = n
            chosen = [r[1] for r in rows[: max(k, 1)]]
            if min_spacing:
                chosen = dus_spacing(chosen, min_spacing)
            for _key, j, token, _ in rows:
                if j in chosen:
                    x[j] = token
    return x, nfe
