"""LLaDA 2.1 (arXiv 2602.08676): joint threshold decoding, mask-to-token plus token-to-token
editing, one row, greedy. Written from the checkpoints' ``generate`` / ``_transfer_tokens``.
"""

from __future__ import annotations

import torch

from reference._common import row_logits


def llada21_blocks(P: int, gen_length: int, block_length: int | None, offset: int = 0):
    """Block bounds over the generated span, the first block shortened by ``offset`` (the
    prompt positions a block-diffusion model's grid puts in it)."""
    if block_length is None:
        return [(P, P + gen_length)]
    bounds, lo = [], P
    first = block_length - offset % block_length
    hi = min(P + first, P + gen_length)
    while lo < P + gen_length:
        bounds.append((lo, hi))
        lo, hi = hi, min(hi + block_length, P + gen_length)
    return bounds


def llada21_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    threshold: float,
    edit_threshold: float,
    max_post_steps: int,
    num_to_transfer: int = 1,
    offset: int = 0,
):
    """Per block: repeat { one forward; x0 = argmax, p = its probability at every block
    position; if the block has masks: M2T = masks with p > threshold if at least
    ``num_to_transfer`` of them, else the ``num_to_transfer`` most confident masks (ties to
    the lower position); else count a post-fill step. T2T = decoded block positions with
    x0 != token and p > edit_threshold. Write both. } The block ends after a post-fill step
    that wrote nothing, or once ``max_post_steps`` post-fill steps have been taken (the
    reference's extra, discarded forward at that point is not taken here or counted).

    Returns (tokens, nfe, edits) with ``edits`` the number of T2T writes.
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    nfe = edits = 0
    for lo, hi in llada21_blocks(len(prompt), gen_length, block_length, offset):
        post = 0
        while True:
            had_mask = any(x[j] == mask for j in range(lo, hi))
            if not had_mask and post >= max_post_steps:
                break
            logits = row_logits(model, x)
            nfe += 1
            probs = torch.softmax(logits, dim=-1)
            x0 = {j: int(torch.argmax(logits[j])) for j in range(lo, hi)}
            p = {j: float(probs[j, x0[j]]) for j in range(lo, hi)}
            write = {}
            if had_mask:
                masked = [j for j in range(lo, hi) if x[j] == mask]
                high = [j for j in masked if p[j] > threshold]
                if len(high) < num_to_transfer:
                    high = sorted(masked, key=lambda j: (-p[j], j))[:num_to_transfer]
                write.update({j: x0[j] for j in high})
            else:
                post += 1
            for j in range(lo, hi):
                if x[j] != mask and x0[j] != x[j] and p[j] > edit_threshold:
                    write[j] = x0[j]
                    edits += 1
            for j, token in write.items():
                x[j] = token
            if not had_mask and not write:
                break
    return x, nfe, edits
