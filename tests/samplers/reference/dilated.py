"""DUS (Luxembourg, Permuter, Nachmani, arXiv 2506.19037): the reference's level sets and
``generate_scheduled``, one row, greedy (the slow loop ``dilated`` is checked against).
"""

from __future__ import annotations

import torch

from reference._common import guided_logits


def dus_dilated_unmask_levels(start, end, base=2, skip_exp=1):
    """``omerlux/DUS/generate.py::dilated_unmask_levels``: lists of absolute positions."""
    if base == 1:
        return [list(range(start, end + 1))]
    length = end - start + 1
    stride = length // (base**skip_exp)
    levels, revealed = [], set()
    while stride >= 1:
        this_round = [
            i for i in range(start, end + 1) if (i - start) % stride == 0 and i not in revealed
        ]
        if this_round:
            levels.append(this_round)
            revealed.update(this_round)
        stride //= base
    remainder = [i for i in range(start, end + 1) if i not in revealed]
    if remainder:
        levels.append(remainder)
    return levels


def dus_binary_search_levels(start, end, level=0, out=None):
    """``binary_search_levels``: midpoint first, recursively."""
    if out is None:
        out = []
    if start > end:
        return out
    if len(out) <= level:
        out.append([])
    mid = (start + end) // 2
    out[level].append(mid)
    dus_binary_search_levels(start, mid - 1, level + 1, out)
    dus_binary_search_levels(mid + 1, end, level + 1, out)
    return out


def dus_merge_last_level(levels):
    if len(levels) >= 2 and len(levels[-1]) < len(levels[-2]):
        levels[-2].extend(levels[-1])
        levels.pop()
    return levels


def dus_generate(
    model,
    prompt,
    *,
    gen_length,
    block_length,
    confidence_threshold,
    schedule="dilated",
    base=2,
    skip_exp=1,
    cfg_scale=0.0,
):
    """DUS ``generate_scheduled``, one row, greedy, with the rescheduling fix: at level k commit
    the argmax at every still-masked position of levels <= k whose probability is at least the
    floor (every one on the block's last level). Returns (tokens, nfe)."""
    mask = model.mask_id
    P = len(prompt)
    x = list(prompt) + [mask] * gen_length
    block_length = block_length or gen_length
    nfe = 0
    for lo in range(P, P + gen_length, block_length):
        hi = min(lo + block_length, P + gen_length)
        if schedule == "dilated":
            levels = dus_dilated_unmask_levels(lo, hi - 1, base, skip_exp)
        else:
            levels = dus_binary_search_levels(lo, hi - 1)
        levels = dus_merge_last_level(levels)
        pending = []
        for k, level in enumerate(levels):
            pending = [j for j in pending if x[j] == mask] + list(level)
            logits = guided_logits(model, x, P, cfg_scale)
            nfe += 2 if cfg_scale > 0 else 1
            updates = {}
            for j in pending:
                p = torch.softmax(logits[j], -1)
                floor = confidence_threshold or 0.0
                if k == len(levels) - 1 or float(p.max()) >= floor:
                    updates[j] = int(p.argmax())
            for j, token in updates.items():
                x[j] = token
        assert all(x[j] != mask for j in range(lo, hi))
    return x, nfe
