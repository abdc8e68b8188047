"""DAEDAL (Li et al., arXiv 2508.00819): variable-length denoising, one row, greedy, written
from the paper's two phases with a Python list that grows. The slow loop ``daedal`` is
checked against.
"""

from __future__ import annotations

import torch

from reference._common import row_logits


def eos_confidence(logits, x: list[int], start: int, eos_id, count: int) -> float:
    """Sum of p(EOS) over the last ``count`` answer positions whose argmax is EOS, / count."""
    if eos_id is None:
        return 0.0
    found = []
    for j in range(len(x) - 1, start - 1, -1):
        if len(found) == count:
            break
        if int(torch.argmax(logits[j])) == eos_id:
            found.append(float(torch.softmax(logits[j], -1)[eos_id]))
    return sum(found) / count


def daedal_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    initial_length: int = 64,
    block_length: int | None = 32,
    threshold: float = 0.9,
    low_threshold: float = 0.1,
    eos_threshold: float = 0.5,
    expand_eos_threshold: float = 0.9,
    expansion_factor: int = 8,
    eos_check_tokens: int = 32,
):
    """One row of DAEDAL. ``gen_length`` is the maximum answer length.

    Returns (tokens, nfe, inserts): the row (prompt + answer, as long as the answer grew),
    its forward passes, and the number of expansion points of phase 2.
    """
    mask = model.mask_id
    eos = getattr(model, "eos_id", None)
    P = len(prompt)
    x = list(prompt) + [mask] * min(initial_length, gen_length)
    nfe = 0
    # Phase 1: initial length adjustment.
    while True:
        logits = row_logits(model, x)
        nfe += 1
        length = len(x) - P
        if eos_confidence(logits, x, P, eos, eos_check_tokens) < eos_threshold and (
            length < gen_length
        ):
            x += [mask] * min(expansion_factor, gen_length - length)
        else:
            break
    if eos is not None:
        length = len(x) - P
        x += [eos] * (min(length + eos_check_tokens // 2, gen_length) - length)
    # Phase 2: iterative denoising and mask insertion; the block is a window of positions
    # starting at `current`, which moves a whole block on while its window holds no mask.
    size = block_length or gen_length
    current = P
    inserts = 0
    while True:
        while current < len(x) and mask not in x[current : current + size]:
            current += size
        if current >= len(x):
            return x, nfe, inserts
        logits = row_logits(model, x)
        nfe += 1
        confidence_eos = eos_confidence(logits, x, P, eos, eos_check_tokens)
        window = [j for j in range(current, min(current + size, len(x))) if x[j] == mask]
        token, conf = {}, {}
        for j in window:
            probs = torch.softmax(logits[j], -1)
            token[j] = int(torch.argmax(probs))
            conf[j] = float(probs[token[j]])
        chosen = [j for j in window if conf[j] > threshold]
        if not chosen:
            chosen = [min(window, key=lambda j: (-conf[j], j))]
        low = [j for j in window if j not in chosen and conf[j] < low_threshold]
        point = None
        if confidence_eos < expand_eos_threshold and len(x) - P < gen_length and low:
            point = min(low, key=lambda j: (conf[j], j))
        for j in chosen:
            x[j] = token[j]
        if point is not None:
            inserts += 1
            x = x[: point + 1] + [mask] * (expansion_factor - 1) + x[point + 1 :]
            x = x[: P + gen_length]  # what passes the maximum length is dropped
