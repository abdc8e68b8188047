"""FreeDave (Wu & Zhang, arXiv 2510.00294) around LLaDA's greedy low-confidence decoding, one row
at a time.

The slow loop that ``freedave`` (with a ``low_confidence`` base) is checked against token for
token and call for call. Written from the paper's draft-and-verify rule and the authors'
``generate_with_prefix_cache_FreeDave`` (top-k drafts from one prediction, targets from the
drafts' own predictions, longest matching prefix accepted), without their cache.
"""

from __future__ import annotations

import torch

from reference._common import block_bounds, even_split, row_logits


def llada_schedule(P: int, gen_length: int, block_length: int | None, steps: int | None):
    """LLaDA's steps as a flat list of (block start, block end, tokens to commit); steps that
    would commit nothing are left out (as the vectorised sampler never takes them)."""
    bounds = block_bounds(P, gen_length, block_length)
    schedule = []
    for b, (lo, hi) in enumerate(bounds):
        block_steps = hi - lo if steps is None else even_split(steps, len(bounds), b)
        for i in range(block_steps):
            k = even_split(hi - lo, block_steps, i)
            if k:
                schedule.append((lo, hi, k))
    return schedule


def _llada_step(x: list[int], logits: torch.Tensor, entry, mask: int) -> list[int]:
    """One LLaDA step: the k most probable argmax proposals of the block's masks commit."""
    lo, hi, k = entry
    candidates = []
    for j in range(lo, hi):
        if x[j] == mask:
            probs = torch.softmax(logits[j], dim=-1)
            token = int(torch.argmax(logits[j]))
            candidates.append((-float(probs[token]), j, token))
    y = list(x)
    for _, j, token in sorted(candidates)[:k]:
        y[j] = token
    return y


def freedave_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    steps: int | None,
    draft_steps: int,
):
    """FreeDave around greedy LLaDA decoding.

    Each round evaluates the exact state and ``draft_steps - 1`` drafts made by applying the
    next LLaDA steps to the previous round's prediction, within the block that prediction was
    made for (a draft that would leave it repeats the state); the target of draft k is one LLaDA
    step from it on its own prediction; drafts are accepted while each target equals the next
    draft, and the state becomes the target of the last accepted one.

    Returns (tokens list, model calls, sequence evaluations).
    """
    mask = model.mask_id
    P = len(prompt)
    schedule = llada_schedule(P, gen_length, block_length, steps)

    def step(x, logits, s):
        return x if s >= len(schedule) else _llada_step(x, logits, schedule[s], mask)

    size = block_length or gen_length

    def block(x):  # the active block: the one holding the first mask
        return next((j - P) // size for j in range(P, P + gen_length) if x[j] == mask)

    x = list(prompt) + [mask] * gen_length
    s, calls, evaluations, stale, stale_block = 0, 0, 0, None, None
    while s < len(schedule):
        chain = [x]
        if stale is not None:
            for k in range(1, draft_steps):
                previous = chain[-1]
                # Drafts stay in the block of the prediction they are made from; otherwise
                # the state repeats (and is evaluated anyway, failing verification).
                going = mask in previous[P:] and block(previous) == stale_block
                chain.append(step(previous, stale, s + k - 1) if going else previous)
        logits = [row_logits(model, c) for c in chain]  # one batched call in the sampler
        calls += 1
        evaluations += len(chain)
        targets = [step(c, lg, s + k) for k, (c, lg) in enumerate(zip(chain, logits))]
        m = 0
        while m + 1 < len(chain) and targets[m] == chain[m + 1]:
            m += 1
        x, stale, s = targets[m], logits[m], s + m + 1
        stale_block = block(chain[m]) if mask in chain[m][P:] else None
    return x, calls, evaluations
