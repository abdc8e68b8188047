"""Brute-force references for the analysis tests: enumerate all V**L sequences.

Independent of remask.analysis: only the oracles' ``log_prob`` is used, never their
conditionals, so agreement checks both the oracles' marginals and the analysis code.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch


def all_sequences(V: int, L: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.int64)


def joint_table(oracle) -> tuple[np.ndarray, np.ndarray]:
    """(V**L, L) sequences and their probabilities (numpy float64)."""
    X = all_sequences(oracle.vocab_size, oracle.seq_len)
    p = oracle.log_prob(X).exp().numpy()
    return X.numpy(), p


def condition(X, p, tokens, mask_id):
    """Restrict the table to sequences consistent with the observed tokens; renormalise."""
    tokens = np.asarray(tokens)
    keep = np.all((X == tokens) | (tokens == mask_id), axis=1)
    q = np.where(keep, p, 0.0)
    return q / q.sum()


def marginal(X, p, cols):
    """dict value-tuple -> probability of the marginal on ``cols``."""
    out: dict = {}
    for row, w in zip(map(tuple, X[:, cols]), p):
        if w > 0:
            out[row] = out.get(row, 0.0) + w
    return out


def entropy(d) -> float:
    return -sum(w * math.log(w) for w in d.values() if w > 0)


def tc(X, p, cols) -> float:
    return sum(entropy(marginal(X, p, [c])) for c in cols) - entropy(marginal(X, p, cols))


def dtc(X, p, cols) -> float:
    h = entropy(marginal(X, p, cols))
    return h - sum(h - entropy(marginal(X, p, [c for c in cols if c != i])) for i in cols)


def mutual_information(X, p, i, j) -> float:
    return (
        entropy(marginal(X, p, [i]))
        + entropy(marginal(X, p, [j]))
        - entropy(marginal(X, p, [i, j]))
    )


def partition_law(X, p, partition, prompt_len):
    """Law q of parallel decoding with exact marginals, by brute force over the table.

    q(x) = Π_t Π_{i∈S_t} p(x_i | x_{prompt ∪ S_<t}); computed per sequence from the joint
    table (the conditioning is a group-by on the revealed columns).
    """
    n = len(X)
    logq = np.zeros(n)
    known = list(range(prompt_len))
    for S in partition:
        for i in S:
            num = marginal(X, p, known + [i])
            den = marginal(X, p, known) if known else {(): 1.0}
            for r in range(n):
                a = num.get(tuple(X[r, known + [i]]), 0.0)
                b = den.get(tuple(X[r, known]), 0.0)
                logq[r] += math.log(a / b) if a > 0 else -math.inf
        known = known + list(S)
    return np.exp(logq)
