"""T1, a stationary Markov chain: exact conditional marginals by forward-backward.

The chain is the ground truth of every exactness test: for any mask pattern its
``__call__`` returns log p(x_i | all observed tokens) exactly (forward-backward with hard
evidence), and ``log_prob`` gives the exact joint of complete sequences.
"""

from __future__ import annotations

import torch

from remask.models.oracles.base import ExactOracle, _as_int, _as_positive

__all__ = ["MarkovChainOracle", "stationary_distribution"]


def stationary_distribution(transition: torch.Tensor) -> torch.Tensor:
    """Stationary distribution pi of a row-stochastic matrix (pi T = pi).

    Parameters
    ----------
    transition : (V, V) float64
        Strictly positive row-stochastic matrix (so pi is unique).

    Returns
    -------
    (V,) float64
    """
    eigvals, eigvecs = torch.linalg.eig(transition.T)
    pi = eigvecs[:, torch.argmin((eigvals - 1).abs())].real  # (V,)
    return pi / pi.sum()


class MarkovChainOracle(ExactOracle):
    """Stationary first-order Markov chain over ``vocab_size`` tokens, as a Denoiser.

    Parameters
    ----------
    vocab_size : int
        Number of tokens V (>= 2). The mask id is ``vocab_size`` (a mask with no logit
        column, as in MDLM), so logits have exactly V columns.
    seq_len : int
        Length of the sequences the chain models (>= 1); ``sample`` and ``all_sequences``
        use it. ``__call__`` and ``log_prob`` accept any length (``fixed_length`` is False):
        the chain is stationary, so any window of it has the same law.
    seed : int
        Seed of the random transition matrix.
    concentration : float
        Dirichlet concentration of each transition row. Small values (0.1-0.5) give
        peaked, strongly dependent chains; large values give nearly independent tokens.

    Attributes
    ----------
    transition : (V, V) float64
        ``transition[a, b] = p(x_{t+1} = b | x_t = a)``.
    initial : (V,) float64
        The stationary distribution, also the law of x_0.

    Notes
    -----
    Padding (``attention_mask`` False, anywhere in the row) is supported: padded positions
    are not part of the chain (it steps over them) and get zero logits.

    Examples
    --------
    >>> oracle = MarkovChainOracle(vocab_size=4, seq_len=6, seed=0)
    >>> tokens = torch.full((1, 6), oracle.mask_id)
    >>> oracle(tokens).shape
    torch.Size([1, 6, 4])
    """

    supports_padding = True
    fixed_length = False

    def __init__(self, vocab_size: int, seq_len: int, seed: int = 0, concentration: float = 1.0):
        self.vocab_size = _as_int("vocab_size", vocab_size, 2)
        self.seq_len = _as_int("seq_len", seq_len, 1)
        self.concentration = _as_positive("concentration", concentration)
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        alpha = torch.full(
            (self.vocab_size, self.vocab_size), self.concentration, dtype=torch.float64
        )
        # Dirichlet rows via normalised Gamma draws; the floor keeps every entry positive so
        # the chain is ergodic and every sequence has finite log-probability.
        gamma = torch._standard_gamma(alpha, generator=generator).clamp_min(1e-12)
        self.transition = gamma / gamma.sum(-1, keepdim=True)  # (V, V)
        self.initial = stationary_distribution(self.transition)  # (V,)

    def __repr__(self) -> str:
        return (
            f"MarkovChainOracle(vocab_size={self.vocab_size}, seq_len={self.seq_len}, "
            f"seed={self.seed}, concentration={self.concentration})"
        )

    # ------------------------------------------------------------------ exact marginals
    def _log_marginals(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._marginals(tokens, torch.ones_like(tokens, dtype=torch.bool))

    def _log_marginals_padded(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self._marginals(tokens, attention_mask)

    def _marginals(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float64 log-marginals; ``real`` (B, L) bool is False on padding."""
        B, L = tokens.shape
        V = self.vocab_size
        observed = tokens != self.mask_id  # (B, L)
        # Evidence e_t(v): one-hot for observed tokens, all ones for masked ones.
        evidence = torch.ones(B, L, V, dtype=torch.float64, device=tokens.device)
        evidence = torch.where(
            observed.unsqueeze(-1),
            torch.nn.functional.one_hot(tokens.clamp_max(V - 1), V).double(),
            evidence,
        )  # (B, L, V)
        T = self.transition.to(tokens.device)
        pi = self.initial.to(tokens.device)

        # Forward messages, normalised at every step to avoid underflow. A padding position
        # carries the message through unchanged (identity transition), so padding is invisible;
        # starting from pi is exact because pi T = pi.
        alpha = torch.empty(B, L, V, dtype=torch.float64, device=tokens.device)
        prev = pi.expand(B, V)  # (B, V): law of the state "before" the first real token
        started = torch.zeros(B, dtype=torch.bool, device=tokens.device)
        for t in range(L):
            stepped = torch.where(started.unsqueeze(-1), prev @ T, prev) * evidence[:, t]  # (B, V)
            cur = torch.where(real[:, t].unsqueeze(-1), stepped, prev)
            cur = cur / cur.sum(-1, keepdim=True)
            alpha[:, t] = cur
            started = started | real[:, t]
            prev = cur
        # Backward messages beta_t(v) = p(evidence after t | x_t = v), likewise normalised.
        beta = torch.empty(B, L, V, dtype=torch.float64, device=tokens.device)
        nxt = torch.ones(B, V, dtype=torch.float64, device=tokens.device)
        for t in range(L - 1, -1, -1):
            beta[:, t] = nxt
            if t > 0:
                stepped = (evidence[:, t] * nxt) @ T.T  # (B, V)
                nxt = torch.where(real[:, t].unsqueeze(-1), stepped, nxt)
                nxt = nxt / nxt.sum(-1, keepdim=True)
        posterior = alpha * beta  # (B, L, V)
        posterior = posterior / posterior.sum(-1, keepdim=True)
        logits = posterior.log()
        return torch.where(real.unsqueeze(-1), logits, torch.zeros_like(logits))

    # ------------------------------------------------------------------ exact joint
    def _log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        logT = self.transition.log().to(tokens.device)
        first = self.initial.log().to(tokens.device)[tokens[:, 0]]  # (B,)
        steps = logT[tokens[:, :-1], tokens[:, 1:]].sum(-1)  # (B,)
        return first + steps

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # Ancestral: x_0 from the stationary law, then one transition per position.
        out = torch.empty(n, self.seq_len, dtype=torch.int64)
        out[:, 0] = torch.multinomial(self.initial.expand(n, -1), 1, generator=generator)[:, 0]
        for t in range(1, self.seq_len):
            out[:, t] = torch.multinomial(self.transition[out[:, t - 1]], 1, generator=generator)[
                :, 0
            ]
        return out

    def all_sequences(self) -> torch.Tensor:
        """Every sequence of length ``seq_len`` in lexicographic order, (V**seq_len, seq_len) int64."""
        count = self.vocab_size**self.seq_len
        if count > 2**22:
            raise ValueError(
                f"vocab_size**seq_len = {count} sequences is too many to enumerate (limit 2**22)"
            )
        index = torch.arange(count)
        powers = self.vocab_size ** torch.arange(self.seq_len - 1, -1, -1)
        return (index.unsqueeze(-1) // powers) % self.vocab_size  # (V**L, L)
