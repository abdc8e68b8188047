"""Prophet (Li et al., arXiv 2508.19982): LLaDA's greedy low-confidence remasking with the
early-commit check, one row. Written from the paper and ``generate_earlyexit.py``.
"""

from __future__ import annotations

import math

import torch

from reference._common import even_split, row_logits


def prophet_phase_threshold(progress: float, early: float, mid: float, late: float) -> float:
    """``should_early_exit``'s phase threshold: < 0.33 early, < 0.67 mid, else late."""
    if progress < 0.33:
        return early
    if progress < 0.67:
        return mid
    return late


def prophet_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    steps: int | None,
    answer_start: int | None,
    answer_length: int = 5,
    early: float = 7.5,
    mid: float = 5.0,
    late: float = 2.5,
):
    """LLaDA blocks (``steps`` split over blocks, each block's tokens over its steps, steps
    that would commit nothing skipped). Before each step's transfer: the mean over the answer
    span (``answer_length`` generated positions from ``answer_start``, or the last
    ``answer_length`` when None) of top-1 minus top-2 logit (mask token excluded); with
    ``t`` the steps taken including this one and ``T = steps`` (``gen_length`` when None), if
    the mean reaches the phase threshold of ``t / T``, every mask takes its argmax and the
    row stops.

    Returns (tokens, nfe, exit_step or None).
    """
    mask = model.mask_id
    P = len(prompt)
    x = list(prompt) + [mask] * gen_length
    total = gen_length if steps is None else steps
    start = max(gen_length - answer_length, 0) if answer_start is None else answer_start
    span = [P + j for j in range(start, start + answer_length) if j < gen_length]
    block_length = block_length or gen_length
    n_blocks = math.ceil(gen_length / block_length)
    nfe = 0
    for b in range(n_blocks):
        lo, hi = P + b * block_length, min(P + (b + 1) * block_length, P + gen_length)
        size = hi - lo
        block_steps = size if steps is None else even_split(steps, n_blocks, b)
        for i in range(block_steps):
            k = even_split(size, block_steps, i)
            if k == 0:
                continue
            logits = row_logits(model, x)
            if mask < logits.shape[-1]:
                logits[:, mask] = float("-inf")
            nfe += 1
            if span:
                gaps = []
                for j in span:
                    top = sorted(logits[j].tolist(), reverse=True)
                    gaps.append(top[0] - top[1])
                gap = sum(gaps) / len(gaps)
                if gap >= prophet_phase_threshold(nfe / total, early, mid, late):
                    for j in range(P, P + gen_length):
                        if x[j] == mask:
                            x[j] = int(torch.argmax(logits[j]))
                    return x, nfe, nfe
            candidates = sorted(
                (-float(torch.softmax(logits[j], -1).max()), j)
                for j in range(lo, hi)
                if x[j] == mask
            )
            for _, j in candidates[:k]:
                x[j] = int(torch.argmax(logits[j]))
    return x, nfe, None
