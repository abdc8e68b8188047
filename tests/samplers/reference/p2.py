"""P2 path planning with the self-planner (Peng et al., arXiv 2502.03540), one row, greedy.

Written from the paper's Algorithm (plan, then denoise) and the authors'
``path_planning/p2.py::p2_sampling`` with ``planner=None``, ``score_fn=logP`` and the linear
κ(t) = t.
"""

from __future__ import annotations

import math

import torch

from reference._common import block_bounds, even_split, row_logits


def p2_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    steps: int | None = None,
    eta: float = 1.0,
    block_length: int | None = None,
):
    """p2_sampling at tau = 0 (argmax proposals), per block.

    Each block of N positions gets ``n`` steps (``steps`` split evenly over the blocks, or N
    when None). At step i = 1..n: propose the argmax x0 at every position of the block, score
    it by log p(x0) (times ``eta`` at decoded positions), keep the N - m best (m = floor(N (1 -
    i/n)), ties to the lower position) unmasked — masked ones take x0, decoded ones keep their
    token — and mask the rest. A step whose start already has m = 0 and no mask could change
    nothing and is not taken (the toolkit's sampler skips it too).

    Returns (tokens, nfe, remasks) — remasks counts decoded tokens set back to the mask.
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    blocks = block_bounds(len(prompt), gen_length, block_length)
    nfe = remasks = 0
    for b, (lo, hi) in enumerate(blocks):
        N = hi - lo
        n = N if steps is None else even_split(steps, len(blocks), b)
        for i in range(1, n + 1):
            if all(x[j] != mask for j in range(lo, hi)):
                break
            logits = row_logits(model, x)
            nfe += 1
            m = N * (n - i) // n  # floor(N (1 - i/n)), exact
            scored = []
            for j in range(lo, hi):
                probs = torch.softmax(logits[j], -1)
                x0 = int(torch.argmax(probs))
                logp = math.log(float(probs[x0]))
                scored.append((eta * logp if x[j] != mask else logp, j, x0))
            ranked = sorted(scored, key=lambda s: (-s[0], s[1]))
            keep = {j for _, j, _ in ranked[: N - m]}
            for _, j, x0 in scored:
                if j in keep and x[j] == mask:
                    x[j] = x0
                elif j not in keep and x[j] != mask:
                    x[j] = mask
                    remasks += 1
    return x, nfe, remasks
