"""PUNT (Azangulov et al., arXiv 2510.21961) as implemented in ``samplers/punt.py``, one row at a
time in float64: predict, rank, dyadic reveal-and-test levels, commit the kept candidates.

The slow loop that ``punt`` is checked against token for token and call for call (greedy).
"""

from __future__ import annotations

import torch

from reference._common import block_bounds, by_confidence, row_logits


def _predictive(model, x: list[int]) -> torch.Tensor:
    """(L, V) float64 log-probabilities of one row; the mask token is never proposed."""
    logits = row_logits(model, x)
    if 0 <= model.mask_id < logits.shape[-1]:
        logits[:, model.mask_id] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return float(terms.sum())


def _score(log_p: torch.Tensor, token: int, kind: str) -> float:
    p = log_p.exp()
    if kind == "prob":
        return float(p[token])
    if kind == "margin":
        top2 = torch.topk(p, 2).values
        return float(top2[0] - top2[1])
    if kind == "entropy":
        return float(torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum())
    raise ValueError(kind)


def punt_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    epsilon: float,
    score: str = "prob",
):
    """Greedy PUNT. Each round: one call predicts every masked position of the block (argmax
    proposals, ranked by ``score``, ties to the lower position); then, for levels
    ``l = 1..ceil(log2 K)``, one call with the kept candidates whose rank has bit ``n - l``
    clear written in, dropping the kept candidates with that bit set whose predictive moved by
    more than ``epsilon`` nats (KL(new ‖ round's)); the kept candidates commit.

    Returns (tokens list, model calls).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    calls = 0
    for lo, hi in block_bounds(len(prompt), gen_length, block_length):
        while any(x[j] == mask for j in range(lo, hi)):
            base = _predictive(model, x)
            calls += 1
            proposal = {j: int(torch.argmax(base[j])) for j in range(lo, hi) if x[j] == mask}
            order = by_confidence([(_score(base[j], t, score), j) for j, t in proposal.items()])
            n = (len(order) - 1).bit_length() if epsilon != float("inf") else 0
            kept = set(order)
            for level in range(1, n + 1):
                bit = n - level
                revealed = [j for r, j in enumerate(order) if j in kept and not (r >> bit) & 1]
                tested = [j for r, j in enumerate(order) if j in kept and (r >> bit) & 1]
                y = list(x)
                for j in revealed:
                    y[j] = proposal[j]
                moved = _predictive(model, y)
                calls += 1
                for j in tested:
                    if _kl(moved[j], base[j]) > epsilon:
                        kept.discard(j)
            for j in kept:
                x[j] = proposal[j]
    return x, calls
