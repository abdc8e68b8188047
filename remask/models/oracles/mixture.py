"""T3, a mixture of product distributions: exact marginals from the closed-form component posterior."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from remask.models.oracles.base import (
    ExactOracle,
    _as_int,
    _as_positive,
    _dirichlet,
    _log_onehot,
    _safe_log,
)

__all__ = ["MixtureOracle"]


class MixtureOracle(ExactOracle):
    """T3: mixture of product distributions, ``p(x) = Σ_k π_k Π_i p_k(x_i)``.

    Every position is coupled to every other only through the component k, independently of
    distance: the first committed token "chooses the topic".

    Parameters
    ----------
    vocab_size : int
        Number of tokens V (>= 2).
    seq_len : int
        Sequence length (>= 1).
    seed : int
        Seed of the random component tables.
    n_components : int
        Number of components K (>= 1).
    concentration : float
        Dirichlet concentration of each ``p_k(x_i)`` (> 0); small values separate components.
    weights : sequence of float, optional
        Mixture weights π (K,), normalised; uniform by default.

    Attributes
    ----------
    weights : (K,) float64
    components : (K, seq_len, V) float64
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        seed: int = 0,
        *,
        n_components: int = 2,
        concentration: float = 0.3,
        weights: Sequence[float] | None = None,
    ):
        self.vocab_size = _as_int("vocab_size", vocab_size, 2)
        self.seq_len = _as_int("seq_len", seq_len, 1)
        self.n_components = _as_int("n_components", n_components, 1)
        self.concentration = _as_positive("concentration", concentration)
        self.seed = int(seed)
        K = self.n_components
        if weights is None:
            w = torch.full((K,), 1.0 / K, dtype=torch.float64)
        else:
            w = torch.as_tensor(weights, dtype=torch.float64)
            if w.shape != (K,) or bool((w < 0).any()) or not float(w.sum()) > 0:
                raise ValueError(
                    f"weights must be {K} non-negative numbers with a positive sum, got {weights!r}"
                )
            w = w / w.sum()
        self.weights = w
        rng = np.random.default_rng(self.seed)
        self.components = _dirichlet(rng, self.concentration, (K, self.seq_len, self.vocab_size))

    def __repr__(self) -> str:
        return (
            f"MixtureOracle(vocab_size={self.vocab_size}, seq_len={self.seq_len}, seed={self.seed}, "
            f"n_components={self.n_components}, concentration={self.concentration})"
        )

    def _log_marginals(self, tokens):
        observed = tokens != self.mask_id  # (B, L)
        logc = self.components.log()  # (K, L, V)
        L = self.seq_len
        # log p_k(x_i) at observed positions, 0 at masked ones.
        idx = tokens.clamp_max(self.vocab_size - 1)  # (B, L)
        per = logc[:, torch.arange(L), idx]  # (K, B, L) gathered per component
        per = torch.where(observed.unsqueeze(0), per, torch.zeros_like(per))
        log_post = self.weights.log().unsqueeze(-1) + per.sum(-1)  # (K, B)
        post = torch.softmax(log_post, dim=0)  # (K, B): exact posterior over the component
        probs = torch.einsum("kb,klv->blv", post, self.components)  # (B, L, V)
        logits = _safe_log(probs)
        return torch.where(observed.unsqueeze(-1), _log_onehot(tokens, self.vocab_size), logits)

    def _log_prob(self, tokens):
        L = self.seq_len
        per = self.components.log()[:, torch.arange(L), tokens]  # (K, B, L)
        return torch.logsumexp(self.weights.log().unsqueeze(-1) + per.sum(-1), dim=0)

    def _sample(self, n, generator):
        k = torch.multinomial(self.weights.expand(n, -1), 1, generator=generator)[:, 0]  # (n,)
        probs = self.components[k]  # (n, L, V)
        return torch.multinomial(
            probs.reshape(-1, self.vocab_size), 1, generator=generator
        ).reshape(n, self.seq_len)
