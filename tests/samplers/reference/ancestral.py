"""MDLM (Sahoo et al., arXiv 2406.07524) ancestral sampling: its exact output law by enumeration
(the law ``ancestral`` and ``dream``'s ``origin`` must sample).
"""

from __future__ import annotations

import itertools

import torch


def ancestral_law(
    oracle,
    length: int,
    *,
    steps: int,
    eps: float,
    last_step_all: bool = False,
    noise_removal: bool = True,
) -> torch.Tensor:
    """Exact output law of grid-walking ancestral sampling on an exact oracle (no prompt).

    MDLM's ``_ddpm_update`` on ``linspace(1, eps, steps + 1)``: from t to s each masked
    position independently unmasks with probability ``1 - s/t`` and takes a token from the
    oracle's conditional given the current canvas; Dream's "origin" forces probability 1 on
    the last step (``last_step_all``); MDLM's noise removal writes the argmax of the leftover
    masks. A Markov chain over every partial canvas ((V+1)**length states, symbol V = mask):
    the transition from canvas c to c' factorises over positions, so the (C, C) matrix of
    each grid step is a product of per-position factors. Only for tiny V and length.

    Returns
    -------
    (V**length,) float64
        Probability of each complete sequence, in ``oracle.all_sequences()`` order
        (lexicographic, first position most significant).
    """
    V = oracle.vocab_size
    canvases = torch.tensor(list(itertools.product(range(V + 1), repeat=length)))  # (C, L)
    masked = canvases == V  # (C, L)
    probs = oracle(canvases.masked_fill(masked, oracle.mask_id)).exp()  # (C, L, V) exact
    C = canvases.shape[0]
    observed = torch.nn.functional.one_hot(canvases, V + 1).double()  # (C, L, V+1)
    law = torch.zeros(C, dtype=torch.float64)
    law[-1] = 1.0  # the all-mask canvas is the last in lexicographic order
    for i in range(steps):
        t, s = 1 - i * (1 - eps) / steps, 1 - (i + 1) * (1 - eps) / steps
        flip = 1.0 if (last_step_all and i == steps - 1) else 1 - s / t
        # factor[c, j, x]: probability that position j of canvas c becomes symbol x.
        moves = torch.cat(
            [flip * probs, torch.full((C, length, 1), 1 - flip, dtype=torch.float64)], -1
        )  # (C, L, V+1)
        factor = torch.where(masked.unsqueeze(-1), moves, observed)  # (C, L, V+1)
        transition = torch.ones(C, C, dtype=torch.float64)
        for j in range(length):
            transition *= factor[:, j, canvases[:, j]]  # (C, C')
        law = law @ transition
    # Noise removal: leftover masks take the argmax of the oracle's conditional.
    filled = torch.where(masked, probs.argmax(-1), canvases)  # (C, L)
    assert noise_removal or float(law[masked.any(-1)].sum()) == 0.0, "masks left"
    powers = V ** torch.arange(length - 1, -1, -1)
    return torch.zeros(V**length, dtype=torch.float64).index_add_(0, (filled * powers).sum(-1), law)
