"""SlowFast sampling (Wei et al., arXiv 2506.10848), one row, greedy.

Written from the paper's three principles and the authors'
``sampling_utils/generate_slow_fast_sampling.py::generate_slow_fast_sampling`` (without the
fast phase's suffix truncation), structured as the reference is: blocks, sub-cycles, a slow
phase of exactly ``explore_steps`` forward passes, then a fast phase until the span is full.
"""

from __future__ import annotations

import statistics

import torch

from reference._common import block_bounds, guided_logits


def _commit(x, mask, conf, guess, positions, high):
    """All masked positions in ``positions`` with conf >= high if at least two, else the most
    confident one (ties to the lower position)."""
    masked = [j for j in positions if x[j] == mask]
    if not masked:
        return 0
    chosen = [j for j in masked if conf[j] >= high]
    if len(chosen) <= 1:
        chosen = [min(masked, key=lambda j: (-conf[j], j))]
    for j in chosen:
        x[j] = guess[j]
    return len(chosen)


def slowfast_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None = None,
    explore_steps: int = 6,
    span_threshold: float = 0.3,
    stability_window: int = 2,
    stability_std: float = 1.0,
    high_threshold: float = 0.9,
    cfg_scale: float = 0.0,
):
    """generate_slow_fast_sampling at temperature 0, per row.

    Returns (tokens, reference_nfe, useful_nfe): the reference's forward passes, and those
    taken while the block still had a mask (the toolkit skips the others, which commit nothing).
    """
    mask = model.mask_id
    P = len(prompt)
    x = list(prompt) + [mask] * gen_length
    nfe = useful = 0

    def forward():
        nonlocal nfe
        logits = guided_logits(model, x, P, cfg_scale)
        nfe += 1
        conf, guess = {}, {}
        for j in range(P, P + gen_length):
            if x[j] == mask:
                probs = torch.softmax(logits[j], -1)
                guess[j] = int(torch.argmax(probs))
                conf[j] = float(probs[guess[j]])
            else:
                conf[j] = float("-inf")
        return conf, guess

    for lo, hi in block_bounds(P, gen_length, block_length):
        size = hi - lo
        previous = 0  # the last sub-cycle's span end, relative to the block's start
        end = size
        while any(x[j] == mask for j in range(lo, hi)):
            # Slow phase: exactly explore_steps forward passes.
            history: list[int] = []
            settled = False
            for k in range(explore_steps):
                useful += any(x[j] == mask for j in range(lo, hi))
                conf, guess = forward()
                if not settled:
                    scope = range(lo + previous, hi)
                    if len(scope) > 0:
                        far = [j for j in scope if conf[j] >= span_threshold]
                        increment = (max(far) - (lo + previous) + 1) if far else 1
                    else:
                        increment = 0
                    estimate = min(max(1, previous + increment), size)
                    history = (history + [estimate])[-stability_window:]
                    if len(history) >= stability_window:
                        if statistics.pstdev(history) < stability_std:
                            end, settled = estimate, True
                        else:
                            end = max(1, min(int(statistics.mean(history)), size))
                            settled = k == explore_steps - 1
                _commit(x, mask, conf, guess, range(lo + previous, hi), high_threshold)
            if not settled:
                end = max(1, min(int(statistics.mean(history)), size)) if history else size // 2
            # Fast phase: fill the span.
            span = range(lo + previous, lo + end)
            while any(x[j] == mask for j in span):
                useful += 1
                conf, guess = forward()
                _commit(x, mask, conf, guess, span, high_threshold)
            previous = end
    return x, nfe, useful
