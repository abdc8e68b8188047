"""CreditDecoding (Wang et al., arXiv 2510.06133): threshold decoding on logits fused with
trace credit, one row, greedy. Written from the paper and dInfer's
``CreditThresholdParallelDecoder``.
"""

from __future__ import annotations

import math

import torch

from reference._common import block_bounds, by_confidence, row_logits


def credit_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    threshold: float,
    credit_alpha: float = 0.7,
    boost_gamma: float = 0.2,
    decay_beta: float = 0.8,
):
    """Per block, credits start at zero; each step: one forward (float64 logits z); for each
    position of the block C <- beta * C, and if it is masked C[argmax z] += max softmax(z) **
    gamma; fused z' = z + alpha * log(1 + C); masked positions propose argmax z' with
    confidence softmax(z')[argmax]; commit {conf >= threshold} and the best (ties to the
    lower position). Repeat until the block has no mask.

    Returns (tokens, nfe, boosted) where ``boosted`` counts positions whose fused argmax
    differs from the raw one, or whose commit came from the credit (raw confidence below
    the threshold, fused at or above it), over the run.
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    nfe = boosted = 0
    for lo, hi in block_bounds(len(prompt), gen_length, block_length):
        credit = {j: [0.0] * model.vocab_size for j in range(lo, hi)}
        while any(x[j] == mask for j in range(lo, hi)):
            z = row_logits(model, x)
            nfe += 1
            candidates, token = [], {}
            for j in range(lo, hi):
                c = credit[j]
                for v in range(len(c)):
                    c[v] *= decay_beta
                if x[j] != mask:
                    continue
                probs = torch.softmax(z[j], -1)
                top = int(torch.argmax(z[j]))
                c[top] += float(probs[top]) ** boost_gamma
                fused = z[j] + credit_alpha * torch.tensor(
                    [math.log1p(v) for v in c], dtype=torch.float64
                )
                fused_probs = torch.softmax(fused, -1)
                token[j] = int(torch.argmax(fused))
                conf = float(fused_probs[token[j]])
                candidates.append((conf, j))
                if token[j] != top or (float(probs[top]) < threshold <= conf):
                    boosted += 1
            order = by_confidence(candidates)
            confidence = {j: c for c, j in candidates}
            for r, j in enumerate(order):
                if r == 0 or confidence[j] >= threshold:
                    x[j] = token[j]
    return x, nfe, boosted
