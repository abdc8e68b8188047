"""Saber (Dong et al., arXiv 2510.18165): adaptive acceleration and backtracking remasking,
one row, greedy.

Written from the paper and the authors' ``decoding.py::generate_with_saber`` (B = 1).
"""

from __future__ import annotations

import math

import torch

from reference._common import block_bounds, by_confidence, row_logits


def saber_generate(
    model, prompt: list[int], *, gen_length: int, n: int = 2, block_length: int | None = None
):
    """generate_with_saber at temperature 0, per row.

    For each block ``[lo, hi)``, repeat: forward; at every generated position before ``hi``
    propose the argmax with its softmax probability c_t; the drop is c_t - c_{t-1} (c_{t-1} =
    0 before the first step, and a position with no finite previous value has no drop); the
    bar is the mean confidence the committed tokens had when last committed (1 if none);
    commit the masked positions (before ``hi``) above the bar, or the n most confident if
    fewer than n clear it (all of them if fewer than n are masked); stop the run when nothing
    is masked, the block when nothing before ``hi`` is masked; otherwise remask the
    ``min(max(n // 2, ceil(f / 8)), f - 1)`` decoded positions before ``hi`` with the smallest
    drop (f = max(n, committed)).

    Returns (tokens, nfe, remasks).
    """
    mask = model.mask_id
    P = len(prompt)
    x = list(prompt) + [mask] * gen_length
    last = {j: 0.0 for j in range(P, P + gen_length)}  # previous confidence (None: -inf)
    final: dict[int, float] = {}  # confidence at the last commit, kept through remasking
    nfe = remasks = 0
    for _, hi in block_bounds(P, gen_length, block_length):
        while True:
            logits = row_logits(model, x)
            nfe += 1
            region = range(P, hi)
            conf, guess = {}, {}
            for j in region:
                probs = torch.softmax(logits[j], -1)
                guess[j] = int(torch.argmax(probs))
                conf[j] = float(probs[guess[j]])
            drop = {j: (conf[j] - last[j]) if last.get(j) is not None else math.inf for j in region}
            last = {j: conf.get(j) for j in range(P, P + gen_length)}

            bar = sum(final.values()) / len(final) if final else 1.0
            masked = [j for j in region if x[j] == mask]
            chosen = [j for j in masked if conf[j] > bar]
            if len(chosen) < n:
                chosen = by_confidence([(conf[j], j) for j in masked])[:n]
            f = max(n, len(chosen))
            for j in chosen:
                x[j] = guess[j]
                final[j] = conf[j]
            if all(x[j] != mask for j in range(P, P + gen_length)):
                return x, nfe, remasks
            if all(x[j] != mask for j in region):
                break
            k = min(max(n // 2, (f + 7) // 8), f - 1)
            decoded = [j for j in region if x[j] != mask]
            worst = sorted(decoded, key=lambda j: (drop[j], j))[:k]
            for j in worst:
                x[j] = mask
            remasks += sum(1 for j in worst if j not in chosen)
    return x, nfe, remasks
