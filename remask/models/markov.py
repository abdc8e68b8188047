"""An exact oracle: a stationary Markov chain with exact conditional marginals.

The chain is the ground truth of every exactness test: for any mask pattern its
``__call__`` returns log p(x_i | all observed tokens) exactly (forward-backward with hard
evidence), and ``log_prob`` gives the exact joint of complete sequences.
"""

from __future__ import annotations

import torch

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


class MarkovChainOracle:
    """Stationary first-order Markov chain over ``vocab_size`` tokens, as a Denoiser.

    Parameters
    ----------
    vocab_size : int
        Number of tokens V (>= 2). The mask id is ``vocab_size`` (a mask with no logit
        column, as in MDLM), so logits have exactly V columns.
    seq_len : int
        Length of the sequences the chain models (>= 1); ``log_prob`` and ``sample`` use it.
        ``__call__`` accepts any length: the chain is stationary, so any window of it has
        the same law.
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

    Examples
    --------
    >>> oracle = MarkovChainOracle(vocab_size=4, seq_len=6, seed=0)
    >>> tokens = torch.full((1, 6), oracle.mask_id)
    >>> oracle(tokens).shape
    torch.Size([1, 6, 4])
    """

    def __init__(self, vocab_size: int, seq_len: int, seed: int = 0, concentration: float = 1.0):
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be an int >= 1, got {seq_len!r}")
        if not concentration > 0:
            raise ValueError(f"concentration must be > 0, got {concentration!r}")
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.mask_id = vocab_size
        self.seed = seed
        self.concentration = float(concentration)
        generator = torch.Generator().manual_seed(seed)
        alpha = torch.full((vocab_size, vocab_size), self.concentration, dtype=torch.float64)
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

    # ------------------------------------------------------------------ the Denoiser call
    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Exact conditional log-marginals for any mask pattern.

        Parameters
        ----------
        tokens : (B, L) int64
            ``mask_id`` at unobserved positions.
        attention_mask : (B, L) bool, optional
            False on padding; padding positions are not part of the chain.

        Returns
        -------
        (B, L, V) float64
            ``log p(x_i = v | observed)``; log one-hot at observed positions; zeros at padding.
        """
        tokens = self._check_tokens(tokens, allow_mask=True)
        B, L = tokens.shape
        V = self.vocab_size
        real = self._real_positions(tokens, attention_mask)  # (B, L)
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
    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact joint log-probability of complete sequences.

        Parameters
        ----------
        tokens : (B, L) int64
            No mask tokens; any L >= 1 (the chain is stationary).

        Returns
        -------
        (B,) float64
        """
        tokens = self._check_tokens(tokens, allow_mask=False)
        logT = self.transition.log().to(tokens.device)
        first = self.initial.log().to(tokens.device)[tokens[:, 0]]  # (B,)
        steps = logT[tokens[:, :-1], tokens[:, 1:]].sum(-1)  # (B,)
        return first + steps

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Exact ancestral samples of the chain.

        Parameters
        ----------
        n : int
            Number of sequences.
        seed : int
            Seed of the sampling generator.

        Returns
        -------
        (n, seq_len) int64
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        generator = torch.Generator().manual_seed(seed)
        out = torch.empty(n, self.seq_len, dtype=torch.int64)
        out[:, 0] = torch.multinomial(self.initial.expand(n, -1), 1, generator=generator)[:, 0]
        for t in range(1, self.seq_len):
            out[:, t] = torch.multinomial(self.transition[out[:, t - 1]], 1, generator=generator)[:, 0]
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

    # ------------------------------------------------------------------ validation
    def _check_tokens(self, tokens: torch.Tensor, *, allow_mask: bool) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise TypeError(f"tokens must be a (B, L) int64 tensor, got {tokens!r:.80}")
        if tokens.dtype != torch.int64:
            raise TypeError(f"tokens must be int64, got {tokens.dtype}")
        upper = self.vocab_size + (1 if allow_mask else 0)
        bad = (tokens < 0) | (tokens >= upper)
        if bool(bad.any()):
            value = int(tokens[bad][0])
            what = "a token id" if allow_mask or value != self.mask_id else "the mask id"
            raise ValueError(f"tokens contain {what} {value} outside [0, {upper})")
        return tokens

    def _real_positions(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            return torch.ones_like(tokens, dtype=torch.bool)
        if attention_mask.shape != tokens.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected {tuple(tokens.shape)}"
            )
        return attention_mask.bool()
