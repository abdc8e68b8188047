"""T4, an explicit finite support ("New York / Mexico City", parity, k-of-n): exact by enumeration."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

from remask.models.oracles.base import ExactOracle, _as_int, _log_onehot, _safe_log

__all__ = ["FiniteSupportOracle"]

# (rows x support) comparisons done at once by _support_marginals: tens of MB at most.
_CHUNK_ELEMS = 20_000_000


def _support_marginals(
    tokens: torch.Tensor, mask_id: int, support: torch.Tensor, log_weights: torch.Tensor, V: int
) -> torch.Tensor:
    """Exact log-marginals of a distribution given as an explicit support.

    Parameters
    ----------
    tokens : (B, L) int64
        Canvas with ``mask_id`` at unobserved positions.
    support : (N, L) int64
        Distinct sequences of positive probability.
    log_weights : (N,) float64
        Unnormalised log-probabilities of ``support``.

    Returns
    -------
    (B, L, V) float64
    """
    B, L = tokens.shape
    N = support.shape[0]
    masked = tokens == mask_id
    out = torch.empty(B, L, V, dtype=torch.float64)
    chunk = max(1, _CHUNK_ELEMS // max(1, N * L))
    for s in range(0, B, chunk):
        tok, msk = tokens[s : s + chunk], masked[s : s + chunk]
        b = tok.shape[0]
        consistent = ((support.unsqueeze(0) == tok.unsqueeze(1)) | msk.unsqueeze(1)).all(
            -1
        )  # (b, N)
        logw = torch.where(
            consistent,
            log_weights.unsqueeze(0),
            torch.full_like(consistent, -math.inf, dtype=torch.float64),
        )
        empty = torch.isinf(logw.max(-1).values)  # (b,): evidence of probability zero
        post = torch.softmax(
            torch.where(empty.unsqueeze(-1), torch.zeros_like(logw), logw), dim=-1
        )  # (b, N)
        probs = torch.zeros(b, L, V, dtype=torch.float64)
        for pos in range(L):
            probs[:, pos].index_add_(1, support[:, pos], post)
        logits = _safe_log(probs)
        logits = torch.where(empty[:, None, None], torch.full_like(logits, -math.log(V)), logits)
        out[s : s + chunk] = torch.where(msk.unsqueeze(-1), logits, _log_onehot(tok, V))
    return out


class _SupportIndex:
    """Exact lookup of sequences in a support by base-V integer codes."""

    def __init__(self, support: torch.Tensor, log_weights: torch.Tensor, V: int):
        L = support.shape[1]
        if L * math.log2(V) > 62:
            raise ValueError(
                f"support of length {L} over {V} tokens is too long to index (V**L > 2**62)"
            )
        self.powers = V ** torch.arange(L - 1, -1, -1, dtype=torch.int64)
        codes = (support * self.powers).sum(-1)
        order = torch.argsort(codes)
        self.codes = codes[order]
        if bool((self.codes[1:] == self.codes[:-1]).any()):
            raise ValueError("support contains duplicate sequences")
        self.log_weights = log_weights[order]

    def lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        codes = (tokens * self.powers).sum(-1)
        pos = torch.searchsorted(self.codes, codes).clamp_max(len(self.codes) - 1)
        hit = self.codes[pos] == codes
        return torch.where(
            hit, self.log_weights[pos], torch.full_like(self.log_weights[pos], -math.inf)
        )


class FiniteSupportOracle(ExactOracle):
    """T4: an explicit finite support with probabilities, exact by enumeration.

    Parameters
    ----------
    support : (N, L) int-like
        Distinct sequences of positive probability.
    probs : (N,) float-like, optional
        Their probabilities (normalised here); uniform by default.
    vocab_size : int, optional
        V; defaults to ``support.max() + 1``.
    token_names : sequence of str, optional
        Names of the V tokens (for printing).

    Examples
    --------
    The canonical "New York / Mexico City" failure: independent per-position sampling
    produces "New City" or "Mexico York" half of the time.

    >>> oracle = FiniteSupportOracle.cities()
    >>> oracle.token_names
    ['New', 'Mexico', 'York', 'City']
    """

    def __init__(
        self,
        support,
        probs=None,
        *,
        vocab_size: int | None = None,
        token_names: Sequence[str] | None = None,
    ):
        support = torch.as_tensor(np.asarray(support), dtype=torch.int64)
        if support.dim() != 2 or support.shape[0] < 1 or support.shape[1] < 1:
            raise ValueError(
                f"support must be a non-empty (N, L) array, got shape {tuple(support.shape)}"
            )
        if bool((support < 0).any()):
            raise ValueError("support contains negative token ids")
        V = int(support.max()) + 1 if vocab_size is None else _as_int("vocab_size", vocab_size, 1)
        if int(support.max()) >= V:
            raise ValueError(f"support contains token id {int(support.max())} >= vocab_size={V}")
        if probs is None:
            p = torch.full((support.shape[0],), 1.0 / support.shape[0], dtype=torch.float64)
        else:
            p = torch.as_tensor(np.asarray(probs), dtype=torch.float64)
            if p.shape != (support.shape[0],) or bool((p <= 0).any()):
                raise ValueError(
                    f"probs must be {support.shape[0]} positive numbers, got shape {tuple(p.shape)}"
                )
            p = p / p.sum()
        if token_names is not None and len(token_names) != V:
            raise ValueError(f"token_names has {len(token_names)} names for vocab_size={V}")
        self.vocab_size = V
        self.seq_len = support.shape[1]
        self.support = support  # (N, L)
        self.probs = p  # (N,)
        self.token_names = list(token_names) if token_names is not None else None
        self._index = _SupportIndex(support, p.log(), V)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(support_size={self.support.shape[0]}, vocab_size={self.vocab_size}, "
            f"seq_len={self.seq_len})"
        )

    # --- T4 constructors
    @classmethod
    def cities(
        cls,
        names: Sequence[str] = ("New York", "Mexico City"),
        probs: Sequence[float] | None = None,
    ) -> FiniteSupportOracle:
        """Multi-word names of equal word count, e.g. {"New York", "Mexico City", "New Delhi"}.

        Each word position gets its own vocabulary entries (first words, then second words, …),
        so a product of the exact marginals can produce a name that does not exist.
        """
        words = [n.split() for n in names]
        if (
            not words
            or len({len(w) for w in words}) != 1
            or len(set(map(tuple, words))) != len(words)
        ):
            raise ValueError(
                f"names must be distinct and have the same number of words, got {list(names)!r}"
            )
        vocab: list[str] = []
        for col in range(len(words[0])):
            for w in words:
                if w[col] not in vocab:
                    vocab.append(w[col])
        support = [[vocab.index(w[c]) for c in range(len(w))] for w in words]
        return cls(support, probs, vocab_size=len(vocab), token_names=vocab)

    @classmethod
    def parity(cls, length: int) -> FiniteSupportOracle:
        """Uniform over binary strings of even parity (XOR constraint); TC = 1 bit."""
        length = _as_int("length", length, 2)
        seqs = [s for s in itertools.product((0, 1), repeat=length) if sum(s) % 2 == 0]
        return cls(seqs, vocab_size=2, token_names=["0", "1"])

    @classmethod
    def k_of_n(cls, length: int, k: int) -> FiniteSupportOracle:
        """Uniform over binary strings of ``length`` with exactly ``k`` ones."""
        length = _as_int("length", length, 1)
        k = _as_int("k", k, 0)
        if k > length:
            raise ValueError(f"k={k} exceeds length={length}")
        seqs = [s for s in itertools.product((0, 1), repeat=length) if sum(s) == k]
        return cls(seqs, vocab_size=2, token_names=["0", "1"])

    # --- oracle surface
    def _log_marginals(self, tokens):
        return _support_marginals(
            tokens, self.mask_id, self.support, self.probs.log(), self.vocab_size
        )

    def _log_prob(self, tokens):
        return self._index.lookup(tokens)

    def _sample(self, n, generator):
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.support[idx].clone()
