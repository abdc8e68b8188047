"""The shared base of remask's exact oracles, and the helpers their families use.

An exact oracle is a Denoiser (docs/design.md §2) that additionally exposes

- ``seq_len`` : int, the length of the sequences it models;
- ``log_prob(tokens) -> (B,) float64`` : exact joint log-probability of complete sequences
  (``-inf`` off the support);
- ``sample(n, seed) -> (n, seq_len) int64`` : exact samples of the joint;

and whose ``__call__`` returns, in float64, the exact conditional log-marginals
``log p(x_i = v | observed tokens)`` at every masked position for *any* mask pattern, and the
log one-hot of the token at observed positions. The mask id is ``vocab_size`` (no logit
column), so every returned logit is a real token's.

Evidence of probability zero (an observed pattern no sequence of the support matches) has
no conditional; by convention such rows get uniform marginals at their masked positions, so
logits stay finite. Analysis code never queries such contexts: it only clamps tokens of
positive probability.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["ExactOracle"]

# Largest support (rows) a finite oracle will materialise; keeps memory in the tens of MB.
_MAX_SUPPORT = 2_000_000


def _as_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _as_prob(name: str, value: object, *, open_low: bool = False) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 < x <= 1.0 if open_low else 0.0 <= x <= 1.0):
        raise ValueError(f"{name} must be in {'(0, 1]' if open_low else '[0, 1]'}, got {value!r}")
    return x


def _as_positive(name: str, value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
    if not x > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return x


def _dirichlet(
    rng: np.random.Generator, concentration: float, shape: tuple[int, ...]
) -> torch.Tensor:
    """Rows of Dirichlet(concentration) draws; the floor keeps every entry positive."""
    g = rng.gamma(concentration, size=shape)
    g = np.maximum(g, 1e-12)
    return torch.from_numpy(g / g.sum(-1, keepdims=True)).to(torch.float64)


def _log_onehot(tokens: torch.Tensor, V: int) -> torch.Tensor:
    """(B, L) ids in [0, V) -> (B, L, V) float64 log one-hot (0 / -inf)."""
    out = torch.full((*tokens.shape, V), -math.inf, dtype=torch.float64, device=tokens.device)
    out.scatter_(-1, tokens.clamp(0, V - 1).unsqueeze(-1), 0.0)
    return out


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x.clamp_min(1e-300).log(), torch.full_like(x, -math.inf))


class ExactOracle:
    """Base class of every exact oracle: validation and the shared Denoiser surface.

    Subclasses set ``vocab_size``, ``seq_len`` and implement ``_log_marginals(tokens)``
    ((B, L) int64 with masks -> (B, L, V) float64 log-probs), ``_log_prob(tokens)`` and
    ``_sample(n, generator)``; a family that supports padding (``supports_padding = True``)
    also implements ``_log_marginals_padded(tokens, attention_mask)``. A family whose law is
    the same on every window (a stationary chain) sets ``fixed_length = False``: its calls
    and ``log_prob`` then accept any length, and it declares no ``max_length``.

    Attributes
    ----------
    vocab_size : int
        Number of logit columns V (real tokens only).
    mask_id : int
        ``vocab_size``: the mask has no logit column.
    seq_len : int
        Length of every sequence the oracle models.
    max_length : int or None
        ``seq_len``: the longest canvas accepted (the driver checks it before allocating);
        None when ``fixed_length`` is False.
    eos_id, pad_id : int or None
        Special tokens where the family has them.
    token_names : list of str or None
        Human-readable names of the V tokens, where meaningful.
    """

    vocab_size: int
    seq_len: int
    eos_id: int | None = None
    pad_id: int | None = None
    token_names: list[str] | None = None
    supports_padding = False
    fixed_length = True

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def max_length(self) -> int | None:
        return self.seq_len if self.fixed_length else None

    # -------------------------------------------------------------- validation
    def _check_tokens(self, tokens: object, *, allow_mask: bool) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise TypeError(f"tokens must be a (B, L) int64 tensor, got {tokens!r:.80}")
        if tokens.dtype != torch.int64:
            raise TypeError(f"tokens must be int64, got {tokens.dtype}")
        if self.fixed_length and tokens.shape[1] != self.seq_len:
            raise ValueError(
                f"{type(self).__name__} models sequences of length seq_len={self.seq_len}, "
                f"got tokens of length {tokens.shape[1]}"
            )
        upper = self.vocab_size + (1 if allow_mask else 0)
        bad = (tokens < 0) | (tokens >= upper)
        if bool(bad.any()):
            value = int(tokens[bad][0])
            what = "the mask id" if value == self.mask_id else "a token id"
            raise ValueError(f"tokens contain {what} {value} outside [0, {upper})")
        return tokens

    def _check_attention(self, tokens: torch.Tensor, attention_mask: object) -> torch.Tensor | None:
        if attention_mask is None:
            return None
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != tokens.shape:
            raise ValueError(
                f"attention_mask must be a (B, L) bool tensor of shape {tuple(tokens.shape)}, "
                f"got {getattr(attention_mask, 'shape', attention_mask)!r}"
            )
        attention_mask = attention_mask.bool()
        if bool(attention_mask.all()):
            return None
        if not self.supports_padding:
            raise ValueError(
                f"{type(self).__name__} models fixed-length sequences and does not accept padding "
                "(attention_mask has False entries); use prompts of equal length"
            )
        return attention_mask

    # -------------------------------------------------------------- public surface
    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Exact conditional log-marginals for any mask pattern.

        Parameters
        ----------
        tokens : (B, L) int64
            ``mask_id`` at unobserved positions; ``L == seq_len`` unless ``fixed_length``
            is False.
        attention_mask : (B, L) bool, optional
            Must be all True unless the oracle supports padding.

        Returns
        -------
        (B, L, V) float64
            ``log p(x_i = v | observed)``; log one-hot at observed positions (zeros at
            padding, where supported).
        """
        tokens = self._check_tokens(tokens, allow_mask=True)
        attention_mask = self._check_attention(tokens, attention_mask)
        if attention_mask is not None:
            return self._log_marginals_padded(tokens, attention_mask)
        return self._log_marginals(tokens)

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact joint log-probability of complete sequences.

        Parameters
        ----------
        tokens : (B, L) int64
            No mask tokens; ``L == seq_len`` unless ``fixed_length`` is False.

        Returns
        -------
        (B,) float64
            ``-inf`` for sequences outside the support.
        """
        tokens = self._check_tokens(tokens, allow_mask=False)
        return self._log_prob(tokens)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Exact samples of the joint.

        Parameters
        ----------
        n : int
            Number of sequences (>= 1).
        seed : int
            Seed of the sampling generator.

        Returns
        -------
        (n, seq_len) int64
        """
        n = _as_int("n", n, 1)
        generator = torch.Generator().manual_seed(int(seed))
        return self._sample(n, generator)

    # -------------------------------------------------------------- to implement
    def _log_marginals(self, tokens: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _log_marginals_padded(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def _log_prob(self, tokens: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError
