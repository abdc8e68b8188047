"""T2, the sticky hidden Markov model: exact marginals by forward-backward with hard evidence."""

from __future__ import annotations

import numpy as np
import torch

from remask.models.oracles.base import (
    ExactOracle,
    _as_int,
    _as_positive,
    _as_prob,
    _dirichlet,
    _log_onehot,
    _safe_log,
)

__all__ = ["StickyHMMOracle"]


class StickyHMMOracle(ExactOracle):
    """T2: hidden Markov model whose hidden "topic" persists with probability ``stickiness``.

    z_0 ~ uniform over ``n_states``; z_{t+1} = z_t with probability ρ + (1-ρ)/K, otherwise a
    uniformly drawn other state (transition ``A = ρ I + (1-ρ)/K 11ᵀ``, doubly stochastic, so
    the uniform law is stationary); x_t ~ ``emission[z_t]`` with Dirichlet(``concentration``)
    rows. Large ρ gives long-range dependence between far-apart tokens through the latent
    without any direct local dependence: the case where spacing-based samplers (DUS) fail.

    Parameters
    ----------
    vocab_size : int
        Number of tokens V (>= 2).
    seq_len : int
        Sequence length (>= 1).
    seed : int
        Seed of the random emission matrix.
    n_states : int
        Number of hidden states K (>= 1).
    stickiness : float
        ρ in [0, 1]; 0 gives i.i.d. hidden states, 1 a single topic per sequence.
    concentration : float
        Dirichlet concentration of the emission rows (> 0); small values separate topics.

    Attributes
    ----------
    transition : (K, K) float64
    emission : (K, V) float64
    initial : (K,) float64
        Uniform (stationary for ``transition``).

    Notes
    -----
    Padding (``attention_mask`` False) is supported: padded positions are skipped by the
    chain (their hidden state carries over unchanged) and get zero logits.
    """

    supports_padding = True

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        seed: int = 0,
        *,
        n_states: int = 3,
        stickiness: float = 0.9,
        concentration: float = 0.3,
    ):
        self.vocab_size = _as_int("vocab_size", vocab_size, 2)
        self.seq_len = _as_int("seq_len", seq_len, 1)
        self.n_states = _as_int("n_states", n_states, 1)
        self.stickiness = _as_prob("stickiness", stickiness)
        self.concentration = _as_positive("concentration", concentration)
        self.seed = int(seed)
        K = self.n_states
        rng = np.random.default_rng(self.seed)
        self.emission = _dirichlet(rng, self.concentration, (K, self.vocab_size))  # (K, V)
        self.transition = (
            self.stickiness * torch.eye(K, dtype=torch.float64) + (1 - self.stickiness) / K
        )  # (K, K)
        self.initial = torch.full((K,), 1.0 / K, dtype=torch.float64)

    def __repr__(self) -> str:
        return (
            f"StickyHMMOracle(vocab_size={self.vocab_size}, seq_len={self.seq_len}, seed={self.seed}, "
            f"n_states={self.n_states}, stickiness={self.stickiness}, concentration={self.concentration})"
        )

    def _posterior_states(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Posterior of the hidden state at every position with all evidence, (B, L, K)."""
        B, L = tokens.shape
        K = self.n_states
        observed = (tokens != self.mask_id) & real
        # Evidence e_t(k) = p(x_t | z_t = k): emission column for observed tokens, 1 otherwise.
        em = self.emission.T[tokens.clamp_max(self.vocab_size - 1)]  # (B, L, K)
        evidence = torch.where(observed.unsqueeze(-1), em, torch.ones_like(em))
        A = self.transition
        # Normalised forward messages. Starting "before" position 0 from the stationary law and
        # stepping through A is exact because initial A = initial; a padded position keeps the
        # message unchanged (no transition, no evidence), so padding is invisible.
        alpha = torch.empty(B, L, K, dtype=torch.float64)
        prev = self.initial.expand(B, K)
        for t in range(L):
            cur = torch.where(real[:, t, None], (prev @ A) * evidence[:, t], prev)
            cur = cur / cur.sum(-1, keepdim=True)
            alpha[:, t] = cur
            prev = cur
        beta = torch.empty(B, L, K, dtype=torch.float64)
        nxt = torch.ones(B, K, dtype=torch.float64)
        for t in range(L - 1, -1, -1):
            beta[:, t] = nxt
            stepped = (evidence[:, t] * nxt) @ A.T
            nxt = torch.where(real[:, t, None], stepped, nxt)
            nxt = nxt / nxt.sum(-1, keepdim=True)
        post = alpha * beta  # (B, L, K)
        return post / post.sum(-1, keepdim=True)

    def _marginals(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        post = self._posterior_states(tokens, real)  # (B, L, K)
        probs = post @ self.emission  # (B, L, V): at a masked t the posterior excludes x_t
        logits = _safe_log(probs)
        observed = tokens != self.mask_id
        logits = torch.where(observed.unsqueeze(-1), _log_onehot(tokens, self.vocab_size), logits)
        return torch.where(real.unsqueeze(-1), logits, torch.zeros_like(logits))

    def _log_marginals(self, tokens):
        return self._marginals(tokens, torch.ones_like(tokens, dtype=torch.bool))

    def _log_marginals_padded(self, tokens, attention_mask):
        return self._marginals(tokens, attention_mask)

    def _log_prob(self, tokens):
        B, L = tokens.shape
        em = self.emission.T[tokens]  # (B, L, K)
        log_norm = torch.zeros(B, dtype=torch.float64)
        prev = self.initial.expand(B, -1)
        for t in range(L):
            cur = (prev @ self.transition if t > 0 else prev) * em[:, t]
            s = cur.sum(-1)
            log_norm = log_norm + _safe_log(s)
            prev = cur / s.clamp_min(1e-300).unsqueeze(-1)
        return log_norm

    def _sample(self, n, generator):
        z = torch.multinomial(self.initial.expand(n, -1), 1, generator=generator)[:, 0]
        out = torch.empty(n, self.seq_len, dtype=torch.int64)
        for t in range(self.seq_len):
            if t > 0:
                z = torch.multinomial(self.transition[z], 1, generator=generator)[:, 0]
            out[:, t] = torch.multinomial(self.emission[z], 1, generator=generator)[:, 0]
        return out
