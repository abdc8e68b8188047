"""LLaDA (Nie et al., arXiv 2502.09992): greedy low-confidence remasking, one row at a time.

The slow loop that ``low_confidence`` is checked against token for token.
"""

from __future__ import annotations

import math

import torch

from reference._common import guided_logits


def llada_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    steps: int | None,
    cfg_scale: float = 0.0,
    eos_id: int | None = None,
    logits_eos_inf: bool = False,
    confidence_eos_eot_inf: bool = False,
    score: str = "prob",
):
    """LLaDA's greedy low-confidence remasking (arXiv 2502.09992, Alg. "semi-AR remasking").

    Blocks of ``block_length`` left to right; ``steps`` split evenly over the blocks and each
    block's tokens split evenly over its steps, remainders first; at each step every masked
    position of the block proposes its argmax and the k most probable proposals are kept.
    Steps that would keep nothing are skipped. EOS ranked last when confidence_eos_eot_inf.
    ``score`` orders proposals by probability, top-1 minus top-2 margin or negative entropy.

    Returns (tokens list, nfe).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    P = len(prompt)
    block_length = block_length or gen_length
    n_blocks = math.ceil(gen_length / block_length)
    nfe = 0
    for b in range(n_blocks):
        lo, hi = P + b * block_length, min(P + (b + 1) * block_length, P + gen_length)
        size = hi - lo
        block_steps = (
            size if steps is None else steps // n_blocks + (1 if b < steps % n_blocks else 0)
        )
        for i in range(block_steps):
            k = size // block_steps + (1 if i < size % block_steps else 0)
            if k == 0:
                continue
            logits = guided_logits(model, x, P, cfg_scale)
            nfe += 2 if cfg_scale > 0 else 1
            if logits_eos_inf:
                logits[:, eos_id] = float("-inf")
            candidates = []
            for j in range(lo, hi):
                if x[j] != mask:
                    continue
                probs = torch.softmax(logits[j], dim=-1)
                token = int(torch.argmax(logits[j]))
                demoted = confidence_eos_eot_inf and token == eos_id
                # sort key: non-demoted first by higher score; demoted ones last, among
                # themselves left to right; ties by lower position
                top2 = torch.topk(probs, 2).values
                value = {
                    "prob": float(probs[token]),
                    "margin": float(top2[0] - top2[1]),
                    "entropy": float((probs * torch.log(probs.clamp_min(1e-300))).sum()),
                }[score]
                confidence = float("-inf") if demoted else value
                candidates.append(((1 if demoted else 0), -confidence, j, token))
            for _, _, j, token in sorted(candidates)[:k]:
                x[j] = token
    return x, nfe
