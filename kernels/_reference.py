"""Slow, obviously-correct float64 loop oracles for the kernel tests.

Everything here is plain Python/NumPy, one row at a time, written from the definitions in
:mod:`remask.kernels.propose` and :mod:`remask.kernels.select` rather than from the torch
reference, so that the reference itself can be checked. Not for production use.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "entropy_budget_oracle",
    "kept_oracle",
    "philox4x32_py",
    "propose_oracle",
    "threshold_oracle",
    "topk_oracle",
]

_MASK = 0xFFFFFFFF


def philox4x32_py(
    counter: tuple[int, int, int, int], key: tuple[int, int], rounds: int = 10
) -> tuple[int, int, int, int]:
    """Philox4x32 on Python ints, straight from the SC'11 paper's round function."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(rounds):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (
            ((p1 >> 32) ^ c1 ^ k0) & _MASK,
            p1 & _MASK,
            ((p0 >> 32) ^ c3 ^ k1) & _MASK,
            p0 & _MASK,
        )
        k0 = (k0 + 0x9E3779B9) & _MASK
        k1 = (k1 + 0xBB67AE85) & _MASK
    return c0, c1, c2, c3


def _unit53(lo: int, hi: int) -> float:
    return ((((hi << 32) | lo) >> 11) + 0.5) / 2.0**53


def _pick(weights: list[float], u: float) -> int:
    """First i with cumsum(w)[i] > u * sum(w), clamped to the last positive weight."""
    total = 0.0
    cum = []
    for w in weights:
        total += w
        cum.append(total)
    target = u * total
    last = max(i for i, w in enumerate(weights) if w > 0)
    for i, c in enumerate(cum):
        if c > target:
            return min(i, last)
    return last


def kept_oracle(
    x: list[float],
    temperature: float,
    top_p: float = 1.0,
    top_k: int = 0,
    strict: bool = False,
    min_p: float = 0.0,
) -> list[bool]:
    """The filter's kept set of one row, walking the tokens in sorted order (ties all kept).

    ``top_p = 1`` / ``top_k = 0`` / ``min_p = 0`` are off; ``strict`` is ReMDM's nucleus
    convention; min-p keeps ``p_i >= min_p * max_j p_j``.
    """
    vocab = len(x)
    m = max(x)
    tf = temperature if temperature > 0 else 1.0
    e = [math.exp((v - m) / tf) for v in x]
    keep = [True] * vocab
    order = sorted(range(vocab), key=lambda i: -e[i])
    if top_p < 1.0:
        total = sum(e)
        before = 0.0  # mass of the tokens before the current one, ties counted as a group
        cut = [False] * vocab
        i = 0
        while i < vocab:
            group = [j for j in order[i:] if e[j] == e[order[i]]]
            mass = sum(e[j] for j in group)
            inside = before + mass <= top_p * total if strict else before <= top_p * total
            for j in group:
                cut[j] = not inside
            before += mass
            i += len(group)
        if strict:  # ReMDM always keeps the top-1
            for j in range(vocab):
                if x[j] == m:
                    cut[j] = False
        keep = [k and not c for k, c in zip(keep, cut, strict=True)]
    if 0 < top_k < vocab:
        kth = sorted(x, reverse=True)[top_k - 1]
        keep = [k and v >= kth for k, v in zip(keep, x, strict=True)]
    if min_p > 0.0:
        total = sum(e)
        p_max = max(e) / total
        keep = [k and w / total >= min_p * p_max for k, w in zip(keep, e, strict=True)]
    return keep


def propose_oracle(
    logits: np.ndarray,
    temperature: float = 0.0,
    keys=None,
    rows: np.ndarray | None = None,
    tile: int = 4096,
    top_p: float = 1.0,
    top_k: int = 0,
    strict: bool = False,
    sampled: bool = False,
    min_p: float = 0.0,
):
    """Per-row float64 oracle of ``propose`` on (N, V) logits (already rounded to float32).

    ``top_p``/``top_k``/``strict``/``sampled``/``min_p`` as in the backends' ``propose_rows``.
    Returns four (N,) arrays: tokens int64, prob, margin, entropy float64.
    """
    x_all = np.asarray(logits, dtype=np.float64)
    n_rows, vocab = x_all.shape
    tokens = np.full(n_rows, -1, dtype=np.int64)
    prob = np.zeros(n_rows)
    margin = np.zeros(n_rows)
    entropy = np.zeros(n_rows)
    for r in range(n_rows):
        if rows is not None and not rows[r]:
            continue
        x = [float(v) for v in x_all[r]]
        m = max(x)
        s = sum(math.exp(v - m) for v in x)
        h = 0.0
        for v in x:
            if v != -math.inf:
                p = math.exp(v - m) / s
                h -= p * math.log(p) if p > 0 else 0.0
        ordered = sorted(x, reverse=True)
        runner_up = math.exp(ordered[1] - m) / s if vocab > 1 else 0.0
        keep = kept_oracle(x, temperature, top_p, top_k, strict, min_p)
        if temperature == 0:
            tok = x.index(m)
        else:
            key = int(keys[r]) % 2**64  # the row's key (int64 bits -> unsigned)
            w0, w1, w2, w3 = philox4x32_py((0, 0, 0, 0), (key & _MASK, key >> 32))
            weights = [
                math.exp((v - m) / temperature) if k else 0.0 for v, k in zip(x, keep, strict=True)
            ]
            tiles = [weights[i : i + tile] for i in range(0, vocab, tile)]
            j = _pick([sum(t) for t in tiles], _unit53(w0, w1))
            tok = j * tile + _pick(tiles[j], _unit53(w2, w3))
        tokens[r] = tok
        prob[r] = math.exp(x[tok] - m) / s
        margin[r] = 1.0 / s - runner_up
        entropy[r] = h
        if sampled:  # statistics of the tempered, filtered distribution q on K
            tf = temperature if temperature > 0 else 1.0
            q = [math.exp((v - m) / tf) if k else 0.0 for v, k in zip(x, keep, strict=True)]
            total = sum(q)
            q = [w / total for w in q]
            top = sorted(q, reverse=True)
            prob[r] = q[tok]
            margin[r] = top[0] - (top[1] if vocab > 1 else 0.0)
            entropy[r] = -sum(w * math.log(w) for w in q if w > 0)
    return tokens, prob, margin, entropy


def _order(score: np.ndarray, eligible: np.ndarray) -> list[int]:
    """Eligible positions by descending score, ties to the lower index, NaN/-inf last."""

    def key(i: int) -> tuple[float, int]:
        v = float(score[i])
        return (-(v if not math.isnan(v) and v != -math.inf else -math.inf), i)

    return sorted((i for i in range(len(score)) if eligible[i]), key=key)


def topk_oracle(score: np.ndarray, k: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    out = np.zeros(score.shape, dtype=bool)
    for b in range(score.shape[0]):
        for i in _order(score[b], eligible[b])[: max(int(k[b]), 0)]:
            out[b, i] = True
    return out


def threshold_oracle(score: np.ndarray, threshold: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    out = np.zeros(score.shape, dtype=bool)
    for b in range(score.shape[0]):
        order = _order(score[b], eligible[b])
        for i in order:
            if score[b, i] >= threshold[b]:
                out[b, i] = True
        if order:
            out[b, order[0]] = True
    return out


def entropy_budget_oracle(
    score: np.ndarray, entropy: np.ndarray, gamma: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    out = np.zeros(score.shape, dtype=bool)
    for b in range(score.shape[0]):
        order = _order(score[b], eligible[b])
        chosen = order[:1]
        for size in range(2, len(order) + 1):
            prefix = [float(entropy[b, i]) for i in order[:size]]
            if sum(prefix) - max(prefix) <= gamma[b]:
                chosen = order[:size]
            else:
                break
        for i in chosen:
            out[b, i] = True
    return out
