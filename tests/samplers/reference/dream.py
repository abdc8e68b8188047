"""Dream 7B (Ye et al., arXiv 2508.15487): ``diffusion_generate`` with its ``alg`` choices, one row,
greedy, in float64 (the slow loop ``dream`` is checked against).
"""

from __future__ import annotations

import math

import torch

from reference._common import block_bounds, by_confidence, even_split, row_logits


def _dream_filter(logits: torch.Tensor, top_p: float | None, top_k: int | None) -> torch.Tensor:
    """Dream's ``top_p_logits`` then ``top_k_logits`` on one (V,) row (T = 0: no division)."""
    logits = logits.clone()
    if top_p is not None and top_p < 1:
        order = sorted(range(len(logits)), key=lambda v: -float(logits[v]))
        probs = torch.softmax(logits, -1)
        mass = 0.0
        for rank, v in enumerate(order):
            if rank > 0 and mass > top_p:  # the mass before v already exceeds top_p
                logits[v] = float("-inf")
            mass += float(probs[v])
    if top_k is not None:
        kth = sorted(logits.tolist(), reverse=True)[min(top_k, len(logits)) - 1]
        logits[logits < kth] = float("-inf")
    return logits


def dream_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    steps: int,
    alg: str,
    eps: float = 1e-3,
    block_length: int | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
):
    """Dream's ``_sample`` at temperature 0 with a confidence alg and alg_temp None.

    Every grid step is a forward pass, as in the reference, including those whose count
    ``floor(M (1 - s/t))`` is 0. Blocks (when given) each run the rule with their share of
    ``steps`` (even split, remainder first).

    Returns (tokens, reference_nfe, commits per step (zeros included)).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    blocks = block_bounds(len(prompt), gen_length, block_length)
    nfe, commits = 0, []
    for b, (lo, hi) in enumerate(blocks):
        n = even_split(steps, len(blocks), b)
        times = [1 - i * (1 - eps) / n for i in range(n + 1)]  # linspace(1, eps, n + 1)
        for i in range(n):
            logits = row_logits(model, x)
            nfe += 1
            masked = [j for j in range(lo, hi) if x[j] == mask]
            t, s = times[i], times[i + 1]
            k = len(masked) if i == n - 1 else math.floor(len(masked) * (1 - s / t))
            candidates = []
            for j in masked:
                probs = torch.softmax(_dream_filter(logits[j], top_p, top_k), -1)
                top = torch.sort(probs, descending=True).values
                confidence = {
                    "maskgit_plus": float(top[0]),
                    "topk_margin": float(top[0] - top[1]),
                    "entropy": float((probs * torch.log(probs.clamp_min(1e-300))).sum()),
                }[alg]
                candidates.append((confidence, j))
            chosen = by_confidence(candidates)[:k]
            for j in chosen:
                x[j] = int(torch.argmax(_dream_filter(logits[j], top_p, top_k)))
            commits.append(len(chosen))
    return x, nfe, commits
