"""Slow, obviously-correct per-row loops for dream, threshold, factor, llada2 and ancestral.

Written from the papers / reference code (samplers.md §3.2, §3.3, §3.5, §3.8), one row at a
time with Python lists, in float64. They exist only to check the vectorised samplers token
for token (greedy) or, for ancestral sampling, to give the exact output law by enumeration.
"""

from __future__ import annotations

import itertools
import math

import torch


def _row_logits(model, x: list[int]) -> torch.Tensor:
    """(L, V) float64 logits of one row."""
    return model(torch.tensor([x]))[0].double()


def _order(candidates: list[tuple[float, int]]) -> list[int]:
    """Positions by descending confidence, ties to the lower position."""
    return [j for _, j in sorted(candidates, key=lambda c: (-c[0], c[1]))]


def _blocks(P: int, gen_length: int, block_length: int | None) -> list[tuple[int, int]]:
    size = block_length or gen_length
    return [(P + lo, min(P + lo + size, P + gen_length)) for lo in range(0, gen_length, size)]


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


# ------------------------------------------------------------------------------------ Dream
def _dream_filter(logits: torch.Tensor, top_p: float | None, top_k: int | None) -> torch.Tensor:
    """Dream's ``top_p_logits`` then ``top_k_logits`` on one (V,) row (T = 0: no division)."""
    logits = logits.clone()
    if top_p is not None and top_p < 1:
        order = sorted(range(len(logits)), key=lambda v: -float(logits[v]))
        probs = torch.softmax(logits, -1)
        mass = 0.0
        for rank, v in enumerate(order):
            if rank > 0 and mass > top_p:  # the mass before v already exceeds top_p
                logits[v] = float("-inf")
            mass += float(probs[v])
    if top_k is not None:
        kth = sorted(logits.tolist(), reverse=True)[min(top_k, len(logits)) - 1]
        logits[logits < kth] = float("-inf")
    return logits


def dream_generate(model, prompt: list[int], *, gen_length: int, steps: int, alg: str,
                   eps: float = 1e-3, block_length: int | None = None,
                   top_p: float | None = None, top_k: int | None = None):
    """Dream's ``_sample`` at temperature 0 with a confidence alg and alg_temp None.

    Every grid step is a forward pass, as in the reference, including those whose count
    ``floor(M (1 - s/t))`` is 0. Blocks (when given) each run the rule with their share of
    ``steps`` (even split, remainder first).

    Returns (tokens, reference_nfe, commits per step (zeros included)).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    blocks = _blocks(len(prompt), gen_length, block_length)
    nfe, commits = 0, []
    for b, (lo, hi) in enumerate(blocks):
        n = _split(steps, len(blocks), b)
        times = [1 - i * (1 - eps) / n for i in range(n + 1)]  # linspace(1, eps, n + 1)
        for i in range(n):
            logits = _row_logits(model, x)
            nfe += 1
            masked = [j for j in range(lo, hi) if x[j] == mask]
            t, s = times[i], times[i + 1]
            k = len(masked) if i == n - 1 else math.floor(len(masked) * (1 - s / t))
            candidates = []
            for j in masked:
                probs = torch.softmax(_dream_filter(logits[j], top_p, top_k), -1)
                top = torch.sort(probs, descending=True).values
                confidence = {"maskgit_plus": float(top[0]),
                              "topk_margin": float(top[0] - top[1]),
                              "entropy": float((probs * torch.log(probs.clamp_min(1e-300))).sum())}[alg]
                candidates.append((confidence, j))
            chosen = _order(candidates)[:k]
            for j in chosen:
                x[j] = int(torch.argmax(_dream_filter(logits[j], top_p, top_k)))
            commits.append(len(chosen))
    return x, nfe, commits


# -------------------------------------------------------------------------------- Fast-dLLM
def spacing_filter_list(order: list[int], min_gap: int) -> list[int]:
    """DUS ``apply_spacing_filter``: greedy acceptance in score order."""
    if min_gap <= 1:
        return list(order)
    accepted: list[int] = []
    for pos in order:
        if all(abs(pos - a) >= min_gap for a in accepted):
            accepted.append(pos)
    return accepted


def factor_count_defined(confidences: list[float], factor: float) -> int:
    """Our factor rule: the leading run of ranks n with c(n) >= 1 - f/(n+1), rank 1 forced."""
    ranked = sorted(confidences, reverse=True)
    count = 0
    for n, c in enumerate(ranked, start=1):
        if n > 1 and c < 1 - factor / (n + 1):
            break
        count = n
    return count


def factor_count_reference(confidences: list[float], factor: float) -> int:
    """Fast-dLLM's ``get_transfer_index_dynamic`` count, quirk included (samplers.md §7.3)."""
    ranked = sorted(confidences, reverse=True)
    thresholds = [1 - factor / (n + 1) for n in range(1, len(ranked) + 1)]
    thresholds[0] = -1
    top_i = 0
    for top_i in range(len(thresholds)):
        if ranked[top_i] < thresholds[top_i]:
            break
    if top_i == 0 or top_i == len(thresholds) - 1:
        top_i += 1
    return top_i


def fastdllm_generate(model, prompt: list[int], *, gen_length: int, block_length: int | None,
                      threshold: float | None = None, factor: float | None = None,
                      min_spacing: int | None = None):
    """Fast-dLLM ``generate`` (greedy) with the threshold or the factor rule, per row.

    Per block: forward, propose the argmax at every masked position of the block with its
    float64 softmax probability, commit {conf >= threshold} ∪ {best} (then DUS's greedy
    spacing filter), or the factor rule's prefix; repeat until the block has no mask.

    Returns (tokens, nfe).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    nfe = 0
    for lo, hi in _blocks(len(prompt), gen_length, block_length):
        while any(x[j] == mask for j in range(lo, hi)):
            logits = _row_logits(model, x)
            nfe += 1
            candidates = []
            for j in range(lo, hi):
                if x[j] == mask:
                    probs = torch.softmax(logits[j], -1)
                    candidates.append((float(probs.max()), j))
            order = _order(candidates)
            confidence = {j: c for c, j in candidates}
            if factor is not None:
                chosen = order[:factor_count_defined([c for c, _ in candidates], factor)]
            else:
                chosen = [j for r, j in enumerate(order) if r == 0 or confidence[j] >= threshold]
                chosen = spacing_filter_list(chosen, min_spacing or 1)
            for j in chosen:
                x[j] = int(torch.argmax(logits[j]))
    return x, nfe


# ------------------------------------------------------------------------------- LLaDA 2.0
def llada2_generate(model, prompt: list[int], *, gen_length: int, block_length: int | None,
                    steps: int, threshold: float, minimal_topk: int = 1):
    """LLaDA2MoeModelLM.generate (greedy) per row, blocks cut from the first generated token.

    Per block of ``size`` tokens: ``steps' = max(1, min(steps, size // minimal_topk))`` steps
    with the schedule ``size`` split evenly (remainder first); at step i commit all masked
    positions with confidence > threshold if there are at least k_i of them, else the k_i most
    confident; stop the block when it has no mask.

    Returns (tokens, nfe).
    """
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    nfe = 0
    for lo, hi in _blocks(len(prompt), gen_length, block_length):
        size = hi - lo
        n = max(1, min(steps, size // minimal_topk))
        for i in range(n):
            masked = [j for j in range(lo, hi) if x[j] == mask]
            if not masked:
                break
            logits = _row_logits(model, x)
            nfe += 1
            k = _split(size, n, i)
            candidates = [(float(torch.softmax(logits[j], -1).max()), j) for j in masked]
            high = [j for c, j in candidates if c > threshold]
            chosen = high if len(high) >= k else _order(candidates)[:k]
            for j in chosen:
                x[j] = int(torch.argmax(logits[j]))
    return x, nfe


# -------------------------------------------------------------------- exact ancestral law
def ancestral_law(oracle, length: int, *, steps: int, eps: float, last_step_all: bool = False,
                  noise_removal: bool = True) -> torch.Tensor:
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
        moves = torch.cat([flip * probs, torch.full((C, length, 1), 1 - flip,
                                                    dtype=torch.float64)], -1)  # (C, L, V+1)
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


# ------------------------------------------------------------------ handcrafted denoiser
class FixedConfidence:
    """A denoiser whose prediction at generated position j ignores the canvas: token
    ``tokens[j]`` with probability ``confidences[j]``, the rest spread evenly.

    Positions are counted from the end of the canvas, so any prompt (or none) works: the
    last ``len(confidences)`` positions get the table. ``mask_id = vocab_size`` (no logit
    column, as in MDLM and the Markov oracle).
    """

    def __init__(self, confidences, tokens=None, vocab_size: int = 4):
        self.confidences = torch.tensor(confidences, dtype=torch.float64)
        n = len(confidences)
        self.tokens = torch.zeros(n, dtype=torch.int64) if tokens is None else torch.tensor(tokens)
        self.vocab_size = vocab_size
        self.mask_id = vocab_size
        rest = (1 - self.confidences) / (vocab_size - 1)  # (n,)
        probs = rest.unsqueeze(-1).repeat(1, vocab_size)  # (n, V)
        probs.scatter_(-1, self.tokens.unsqueeze(-1), self.confidences.unsqueeze(-1))
        self.table = probs.log()  # (n, V)

    def __call__(self, tokens, attention_mask=None):
        B, L = tokens.shape
        n = self.table.shape[0]
        logits = torch.zeros(B, L, self.vocab_size, dtype=torch.float64)
        logits[:, L - n:] = self.table
        return logits
