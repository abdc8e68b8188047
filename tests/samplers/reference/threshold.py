"""Fast-dLLM (Wu et al., arXiv 2505.22618): confidence-threshold parallel decoding (and its factor
rule), one row, greedy; DUS's greedy spacing filter. The slow loop ``threshold`` and
``factor`` are checked against.
"""

from __future__ import annotations

import torch

from reference._common import block_bounds, by_confidence, row_logits
from reference.factor import factor_count_defined


def spacing_filter_list(order: list[int], min_gap: int) -> list[int]:
    """DUS ``apply_spacing_filter``: greedy acceptance in score order."""
    if min_gap <= 1:
        return list(order)
    accepted: list[int] = []
    for pos in order:
        if all(abs(pos - a) >= min_gap for a in accepted):
            accepted.append(pos)
    return accepted


def fastdllm_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    threshold: float | None = None,
    factor: float | None = None,
    min_spacing: int | None = None,
):
    """Fast-dLLM ``generate`` (greedy) with the threshold or the factor rule, per row.

    Per block: forward, propose the argmax at every masked position of the block with its
    float64 softmax probability, commit {conf >= threshold} ∪ {best} (then DUS's greedy
    spacing filter), or the factor rule's prefix; repeat until the block has no mask.

    Returns (tokens, nfe).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    nfe = 0
    for lo, hi in block_bounds(len(prompt), gen_length, block_length):
        while any(x[j] == mask for j in range(lo, hi)):
            logits = row_logits(model, x)
            nfe += 1
            candidates = []
            for j in range(lo, hi):
                if x[j] == mask:
                    probs = torch.softmax(logits[j], -1)
                    candidates.append((float(probs.max()), j))
            order = by_confidence(candidates)
            confidence = {j: c for c, j in candidates}
            if factor is not None:
                chosen = order[: factor_count_defined([c for c, _ in candidates], factor)]
            else:
                chosen = [j for r, j in enumerate(order) if r == 0 or confidence[j] >= threshold]
                chosen = spacing_filter_list(chosen, min_spacing or 1)
            for j in chosen:
                x[j] = int(torch.argmax(logits[j]))
    return x, nfe
