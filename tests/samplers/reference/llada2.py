"""LLaDA 2.0 (inclusionAI, technical report 2025): threshold decoding with a per-block step
budget, one row, greedy.
"""

from __future__ import annotations

import torch

from reference._common import block_bounds, by_confidence, even_split, row_logits


def llada2_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    steps: int,
    threshold: float,
    minimal_topk: int = 1,
):
    """LLaDA2MoeModelLM.generate (greedy) per row, blocks cut from the first generated token.

    Per block of ``size`` tokens: ``steps' = max(1, min(steps, size // minimal_topk))`` steps
    with the schedule ``size`` split evenly (remainder first); at step i commit all masked
    positions with confidence > threshold if there are at least k_i of them, else the k_i most
    confident; stop the block when it has no mask.

    Returns (tokens, nfe).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    nfe = 0
    for lo, hi in block_bounds(len(prompt), gen_length, block_length):
        size = hi - lo
        n = max(1, min(steps, size // minimal_topk))
        for i in range(n):
            masked = [j for j in range(lo, hi) if x[j] == mask]
            if not masked:
                break
            logits = row_logits(model, x)
            nfe += 1
            k = even_split(size, n, i)
            candidates = [(float(torch.softmax(logits[j], -1).max()), j) for j in masked]
            high = [j for c, j in candidates if c > threshold]
            chosen = high if len(high) >= k else by_confidence(candidates)[:k]
            for j in chosen:
                x[j] = int(torch.argmax(logits[j]))
    return x, nfe
