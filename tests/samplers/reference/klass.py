"""KLASS (Kim et al., arXiv 2511.05664): ``stable_confident_decode`` one row, greedy, in its naive
form with the full (L, V) history (the slow loop ``klass`` is checked against).
"""

from __future__ import annotations

import torch

from reference._common import guided_logits


def klass_generate(
    model,
    prompt,
    *,
    gen_length,
    block_length,
    steps,
    conf_threshold,
    kl_threshold,
    history,
    unmask_strategy="all",
    cfg_scale=0.0,
):
    """KLASS ``stable_confident_decode``, one row, greedy, in its naive form: the previous
    float64 log-probabilities of *every* position (L, V) and an (L, H) KL history, updated at
    every step; ready = block step >= H - 1, all H KLs < kl_threshold, confidence >
    conf_threshold, masked and in the block; else LLaDA's schedule top-k. Fixes kept in line
    with the sampler: the first KL is +inf, top-k never exceeds the masks, and the block's
    last allotted step commits every mask left. Returns (tokens, nfe, ready_steps)."""
    mask = model.mask_id
    P = len(prompt)
    L = P + gen_length
    x = list(prompt) + [mask] * gen_length
    block_length = block_length or gen_length
    n_blocks = -(-gen_length // block_length)
    log_prev = None  # (L, V) float64
    kl_hist = torch.full((L, history), float("inf"), dtype=torch.float64)
    nfe = ready_steps = 0
    for b in range(n_blocks):
        lo, hi = P + b * block_length, min(P + (b + 1) * block_length, L)
        size = hi - lo
        block_steps = (
            size if steps is None else steps // n_blocks + (1 if b < steps % n_blocks else 0)
        )
        for s in range(block_steps):
            if all(x[j] != mask for j in range(lo, hi)):
                break
            logits = guided_logits(model, x, P, cfg_scale)
            nfe += 2 if cfg_scale > 0 else 1
            log_p = torch.log_softmax(logits, -1)
            if log_prev is None:
                kl = torch.full((L,), float("inf"), dtype=torch.float64)
            else:
                p = log_p.exp()
                kl = torch.where(log_p == float("-inf"), 0.0, p * (log_p - log_prev)).sum(-1)
            kl_hist = torch.cat([kl_hist[:, 1:], kl.unsqueeze(-1)], dim=-1)
            log_prev = log_p
            masked = [j for j in range(lo, hi) if x[j] == mask]
            conf = {j: float(log_p[j].exp().max()) for j in masked}
            token = {j: int(log_p[j].argmax()) for j in masked}
            ready = [
                j
                for j in masked
                if s >= history - 1
                and bool((kl_hist[j] < kl_threshold).all())
                and conf[j] > conf_threshold
            ]
            last = s == block_steps - 1
            if ready and not last:
                ready_steps += 1
                if unmask_strategy == "max_conf":
                    ready = [min(ready, key=lambda j: (-conf[j], j))]
                elif unmask_strategy == "min_kl":
                    ready = [min(ready, key=lambda j: (float(kl[j]), j))]
                chosen = ready
            else:
                k = (
                    len(masked)
                    if last
                    else size // block_steps + (1 if s < size % block_steps else 0)
                )
                chosen = sorted(masked, key=lambda j: (-conf[j], j))[:k]
            for j in chosen:
                x[j] = token[j]
        assert all(x[j] != mask for j in range(lo, hi))
    return x, nfe, ready_steps
