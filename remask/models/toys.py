"""Exact toy oracles T2-T7 (coherence.md §3.3): denoisers whose marginals are exactly right.

Every oracle here is a Denoiser (docs/design.md §2) that additionally exposes

- ``seq_len`` : int, the length of the sequences it models (calls must use exactly it);
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

Families (T1, the Markov chain, is :class:`remask.models.markov.MarkovChainOracle`):

======  ==========================  =====================================================
ID      class                       exact oracle
======  ==========================  =====================================================
T2      :class:`StickyHMMOracle`    forward-backward over hidden states, hard evidence
T3      :class:`MixtureOracle`      closed-form posterior over the mixture component
T4      :class:`FiniteSupportOracle` enumeration of an explicit support ("New York / Mexico
                                    City", parity, k-of-n)
T5      :class:`ListOpOracle`       enumeration of the answers of the given prompt
                                    (copy, replace_random, shuffle, reverse, sort)
T6      :class:`EOSPaddedOracle`    sum over the content length of prefix forward-backward
T7      :class:`BracketsOracle`     enumeration of the balanced-bracket words
======  ==========================  =====================================================

:func:`toy_spec` builds any of them from a ``load_model("oracle:<kind>?...")`` spec.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "TOY_KINDS",
    "BracketsOracle",
    "EOSPaddedOracle",
    "ExactOracle",
    "FiniteSupportOracle",
    "ListOpOracle",
    "MixtureOracle",
    "StickyHMMOracle",
    "toy_spec",
]

# Largest support (rows) a finite oracle will materialise, and the chunk of (rows x support)
# comparisons done at once; both keep memory in the tens of MB.
_MAX_SUPPORT = 2_000_000
_CHUNK_ELEMS = 20_000_000


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


def _dirichlet(rng: np.random.Generator, concentration: float, shape: tuple[int, ...]) -> torch.Tensor:
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
    """Base class of the exact toy oracles: validation and the shared Denoiser surface.

    Subclasses set ``vocab_size``, ``seq_len`` and implement ``_log_marginals(tokens)``
    ((B, L) int64 with masks -> (B, L, V) float64 log-probs), ``_log_prob(tokens)`` and
    ``_sample(n, generator)``.

    Attributes
    ----------
    vocab_size : int
        Number of logit columns V (real tokens only).
    mask_id : int
        ``vocab_size``: the mask has no logit column.
    seq_len : int
        Length of every sequence the oracle models.
    max_length : int
        ``seq_len``: the longest canvas accepted (the driver checks it before allocating).
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

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def max_length(self) -> int:
        return self.seq_len

    # -------------------------------------------------------------- validation
    def _check_tokens(self, tokens: object, *, allow_mask: bool) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise TypeError(f"tokens must be a (B, L) int64 tensor, got {tokens!r:.80}")
        if tokens.dtype != torch.int64:
            raise TypeError(f"tokens must be int64, got {tokens.dtype}")
        if tokens.shape[1] != self.seq_len:
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
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact conditional log-marginals for any mask pattern.

        Parameters
        ----------
        tokens : (B, seq_len) int64
            ``mask_id`` at unobserved positions.
        attention_mask : (B, seq_len) bool, optional
            Must be all True unless the oracle supports padding.

        Returns
        -------
        (B, seq_len, V) float64
            ``log p(x_i = v | observed)``; log one-hot at observed positions.
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
        tokens : (B, seq_len) int64
            No mask tokens.

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

    def _log_marginals_padded(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def _log_prob(self, tokens: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


# ====================================================================== T2: sticky HMM
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

    def __init__(self, vocab_size: int, seq_len: int, seed: int = 0, *, n_states: int = 3,
                 stickiness: float = 0.9, concentration: float = 0.3):
        self.vocab_size = _as_int("vocab_size", vocab_size, 2)
        self.seq_len = _as_int("seq_len", seq_len, 1)
        self.n_states = _as_int("n_states", n_states, 1)
        self.stickiness = _as_prob("stickiness", stickiness)
        if not float(concentration) > 0:
            raise ValueError(f"concentration must be > 0, got {concentration!r}")
        self.concentration = float(concentration)
        self.seed = int(seed)
        K = self.n_states
        rng = np.random.default_rng(self.seed)
        self.emission = _dirichlet(rng, self.concentration, (K, self.vocab_size))  # (K, V)
        self.transition = (self.stickiness * torch.eye(K, dtype=torch.float64)
                           + (1 - self.stickiness) / K)  # (K, K)
        self.initial = torch.full((K,), 1.0 / K, dtype=torch.float64)

    def __repr__(self) -> str:
        return (f"StickyHMMOracle(vocab_size={self.vocab_size}, seq_len={self.seq_len}, seed={self.seed}, "
                f"n_states={self.n_states}, stickiness={self.stickiness}, concentration={self.concentration})")

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


# ====================================================================== T3: mixture
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

    def __init__(self, vocab_size: int, seq_len: int, seed: int = 0, *, n_components: int = 2,
                 concentration: float = 0.3, weights: Sequence[float] | None = None):
        self.vocab_size = _as_int("vocab_size", vocab_size, 2)
        self.seq_len = _as_int("seq_len", seq_len, 1)
        self.n_components = _as_int("n_components", n_components, 1)
        if not float(concentration) > 0:
            raise ValueError(f"concentration must be > 0, got {concentration!r}")
        self.concentration = float(concentration)
        self.seed = int(seed)
        K = self.n_components
        if weights is None:
            w = torch.full((K,), 1.0 / K, dtype=torch.float64)
        else:
            w = torch.as_tensor(weights, dtype=torch.float64)
            if w.shape != (K,) or bool((w < 0).any()) or not float(w.sum()) > 0:
                raise ValueError(f"weights must be {K} non-negative numbers with a positive sum, got {weights!r}")
            w = w / w.sum()
        self.weights = w
        rng = np.random.default_rng(self.seed)
        self.components = _dirichlet(rng, self.concentration, (K, self.seq_len, self.vocab_size))

    def __repr__(self) -> str:
        return (f"MixtureOracle(vocab_size={self.vocab_size}, seq_len={self.seq_len}, seed={self.seed}, "
                f"n_components={self.n_components}, concentration={self.concentration})")

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
        return torch.multinomial(probs.reshape(-1, self.vocab_size), 1, generator=generator).reshape(n, self.seq_len)


# ====================================================================== finite supports
def _support_marginals(tokens: torch.Tensor, mask_id: int, support: torch.Tensor,
                       log_weights: torch.Tensor, V: int) -> torch.Tensor:
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
        tok, msk = tokens[s:s + chunk], masked[s:s + chunk]
        b = tok.shape[0]
        consistent = ((support.unsqueeze(0) == tok.unsqueeze(1)) | msk.unsqueeze(1)).all(-1)  # (b, N)
        logw = torch.where(consistent, log_weights.unsqueeze(0), torch.full_like(consistent, -math.inf, dtype=torch.float64))
        empty = torch.isinf(logw.max(-1).values)  # (b,): evidence of probability zero
        post = torch.softmax(torch.where(empty.unsqueeze(-1), torch.zeros_like(logw), logw), dim=-1)  # (b, N)
        probs = torch.zeros(b, L, V, dtype=torch.float64)
        for pos in range(L):
            probs[:, pos].index_add_(1, support[:, pos], post)
        logits = _safe_log(probs)
        logits = torch.where(empty[:, None, None], torch.full_like(logits, -math.log(V)), logits)
        out[s:s + chunk] = torch.where(msk.unsqueeze(-1), logits, _log_onehot(tok, V))
    return out


class _SupportIndex:
    """Exact lookup of sequences in a support by base-V integer codes."""

    def __init__(self, support: torch.Tensor, log_weights: torch.Tensor, V: int):
        L = support.shape[1]
        if L * math.log2(V) > 62:
            raise ValueError(f"support of length {L} over {V} tokens is too long to index (V**L > 2**62)")
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
        return torch.where(hit, self.log_weights[pos], torch.full_like(self.log_weights[pos], -math.inf))


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

    def __init__(self, support, probs=None, *, vocab_size: int | None = None,
                 token_names: Sequence[str] | None = None):
        support = torch.as_tensor(np.asarray(support), dtype=torch.int64)
        if support.dim() != 2 or support.shape[0] < 1 or support.shape[1] < 1:
            raise ValueError(f"support must be a non-empty (N, L) array, got shape {tuple(support.shape)}")
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
                raise ValueError(f"probs must be {support.shape[0]} positive numbers, got shape {tuple(p.shape)}")
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
        return (f"{type(self).__name__}(support_size={self.support.shape[0]}, vocab_size={self.vocab_size}, "
                f"seq_len={self.seq_len})")

    # --- T4 constructors
    @classmethod
    def cities(cls, names: Sequence[str] = ("New York", "Mexico City"),
               probs: Sequence[float] | None = None) -> FiniteSupportOracle:
        """Multi-word names of equal word count, e.g. {"New York", "Mexico City", "New Delhi"}.

        Each word position gets its own vocabulary entries (first words, then second words, …),
        so a product of the exact marginals can produce a name that does not exist.
        """
        words = [n.split() for n in names]
        if not words or len({len(w) for w in words}) != 1 or len(set(map(tuple, words))) != len(words):
            raise ValueError(f"names must be distinct and have the same number of words, got {list(names)!r}")
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
        return _support_marginals(tokens, self.mask_id, self.support, self.probs.log(), self.vocab_size)

    def _log_prob(self, tokens):
        return self._index.lookup(tokens)

    def _sample(self, n, generator):
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.support[idx].clone()


# ====================================================================== T5: list operations
class ListOpOracle(ExactOracle):
    """T5: ParallelBench "waiting line" list operations (Kang et al., arXiv 2510.04767).

    A sequence is ``[prompt | answer]``, ``seq_len = 2 n``. The prompt is a uniformly random
    list of ``n`` distinct items drawn from ``n_items`` (ids ``0 .. n_items-1``); the answer
    is a function of the prompt, random for some operations:

    - ``copy``: the prompt itself (C(Y|X) = 0);
    - ``reverse``: the prompt reversed (C = 0);
    - ``sort``: the prompt sorted by id (C = 0);
    - ``shuffle``: a uniformly random permutation of the prompt (C = n log n − log n!);
    - ``replace_random``: the prompt with one uniformly random position replaced by the token
      ``NEW`` (id ``n_items``) (C = (n−1) log(n/(n−1)));

    where C(Y|X) is the total correlation of the answer given the prompt. Exact marginals
    enumerate the answers of the observed prompt (n! at most); a partially masked prompt is
    handled by also enumerating the prompts consistent with it.

    Parameters
    ----------
    op : str
        One of ``copy``, ``reverse``, ``sort``, ``shuffle``, ``replace_random``.
    n : int
        List length (>= 1; shuffle needs n <= 8).
    n_items : int, optional
        Item vocabulary size (>= n); ``n`` by default.

    Attributes
    ----------
    vocab_size : int
        ``n_items + 1`` (the items and ``NEW``).
    new_id : int
        Id of the replacement token ``NEW``.
    """

    OPS = ("copy", "reverse", "sort", "shuffle", "replace_random")

    def __init__(self, op: str, n: int, n_items: int | None = None):
        if op not in self.OPS:
            raise ValueError(f"unknown list operation {op!r}; available: {list(self.OPS)}")
        self.op = op
        self.n = _as_int("n", n, 1)
        self.n_items = self.n if n_items is None else _as_int("n_items", n_items, 1)
        if self.n_items < self.n:
            raise ValueError(f"n_items={self.n_items} must be >= n={self.n} (prompt items are distinct)")
        if op == "shuffle" and self.n > 8:
            raise ValueError(f"shuffle enumerates n! answers; n={self.n} > 8 is too many")
        self.new_id = self.n_items
        self.vocab_size = self.n_items + 1
        self.seq_len = 2 * self.n
        self.token_names = [f"i{k}" for k in range(self.n_items)] + ["NEW"]
        if op == "shuffle":
            self._perms = torch.tensor(list(itertools.permutations(range(self.n))), dtype=torch.int64)
        # log of the number of prompts, n_items! / (n_items - n)!
        self._log_n_prompts = math.lgamma(self.n_items + 1) - math.lgamma(self.n_items - self.n + 1)

    def __repr__(self) -> str:
        return f"ListOpOracle(op={self.op!r}, n={self.n}, n_items={self.n_items})"

    @property
    def n_answers(self) -> int:
        """Number of equally likely answers per prompt."""
        return {"shuffle": math.factorial(self.n), "replace_random": self.n}.get(self.op, 1)

    def answers(self, prompts: torch.Tensor) -> torch.Tensor:
        """All answers of each prompt, each equally likely.

        Parameters
        ----------
        prompts : (G, n) int64

        Returns
        -------
        (G, A, n) int64, A = ``n_answers``.
        """
        if self.op == "copy":
            return prompts.unsqueeze(1).clone()
        if self.op == "reverse":
            return prompts.flip(-1).unsqueeze(1)
        if self.op == "sort":
            return prompts.sort(-1).values.unsqueeze(1)
        if self.op == "shuffle":
            return prompts[:, self._perms]  # (G, n!, n)
        out = prompts.unsqueeze(1).repeat(1, self.n, 1)  # replace_random: (G, n, n)
        idx = torch.arange(self.n)
        out[:, idx, idx] = self.new_id
        return out

    def _valid_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        in_range = (prompts < self.n_items).all(-1)
        distinct = (prompts.sort(-1).values.diff(dim=-1) != 0).all(-1) if self.n > 1 else in_range
        return in_range & distinct

    def _log_marginals(self, tokens):
        n, V = self.n, self.vocab_size
        out = _log_onehot(tokens, V)
        prompt, answer = tokens[:, :n], tokens[:, n:]
        full = (prompt != self.mask_id).all(-1)  # (B,)
        rows = torch.nonzero(full & self._valid_prompts(prompt.clamp_max(V - 1))).flatten()
        if len(rows):
            obs = answer[rows]  # (b, n)
            masked = obs == self.mask_id
            probs, empty = self._answer_probs(prompt[rows], obs)  # (b, n, V), (b,)
            logits = _safe_log(probs)
            logits = torch.where(empty[:, None, None], torch.full_like(logits, -math.log(V)), logits)
            out[rows, n:] = torch.where(masked.unsqueeze(-1), logits, out[rows, n:])
        # Rows whose prompt is partly masked (or invalid): enumerate consistent prompts.
        for b in torch.nonzero(~full).flatten().tolist():
            out[b] = self._slow_row(tokens[b])
        invalid_full = full & ~self._valid_prompts(prompt.clamp_max(V - 1))
        for b in torch.nonzero(invalid_full).flatten().tolist():
            masked = tokens[b] == self.mask_id
            out[b] = torch.where(masked.unsqueeze(-1), torch.full((self.seq_len, V), -math.log(V), dtype=torch.float64), out[b])
        return out

    def _answer_probs(self, prompt: torch.Tensor, obs: torch.Tensor):
        """Exact answer marginals given a full valid prompt and partly observed answer.

        Closed forms per operation (the answers of a prompt are equally likely), so the cost
        is O(b n²) instead of enumerating n! answers per row.

        Returns
        -------
        probs : (b, n, V) float64
        empty : (b,) bool
            The observed answer tokens are impossible for this prompt.
        """
        b, n = prompt.shape
        V = self.vocab_size
        masked = obs == self.mask_id
        onehot = lambda t: torch.nn.functional.one_hot(t.clamp_max(V - 1), V).double()
        if self.op in ("copy", "reverse", "sort"):
            ans = self.answers(prompt)[:, 0]  # (b, n): deterministic
            empty = ((ans != obs) & ~masked).any(-1)
            return onehot(ans), empty
        if self.op == "shuffle":
            # Masked positions are uniform over the prompt items not yet seen in the answer.
            in_prompt = (obs.unsqueeze(-1) == prompt.unsqueeze(1)).any(-1)  # (b, n)
            seen = onehot(torch.where(masked, prompt[:, :1], obs)) * (~masked).unsqueeze(-1).double()
            seen_count = seen.sum(1)  # (b, V)
            avail = onehot(prompt).sum(1) - seen_count  # (b, V): remaining items (0/1)
            empty = ((~masked) & ~in_prompt).any(-1) | (seen_count > 1).any(-1)
            k = avail.sum(-1, keepdim=True).clamp_min(1.0)  # (b, 1)
            probs = (avail.clamp_min(0.0) / k).unsqueeze(1).expand(b, n, V).clone()
            return probs, empty
        # replace_random: the replaced index r is uniform over the indices consistent with obs.
        idx = torch.arange(n)
        is_new = obs == self.new_id
        same = obs == prompt
        # r is consistent iff obs_r ∈ {NEW, mask} and every other observed j equals prompt_j.
        bad_other = (~masked) & ~same  # (b, n): observed positions that must be r
        ok_r = (masked | is_new)  # (b, n)
        n_bad = bad_other.sum(-1, keepdim=True)  # (b, 1)
        consistent = ok_r & ((n_bad == 0) | ((n_bad == 1) & bad_other))  # (b, n)
        consistent &= ~((~masked) & ~same & ~is_new)  # an observed wrong item is never r
        tot = consistent.double().sum(-1, keepdim=True)
        empty = tot.squeeze(-1) == 0
        pr = consistent.double() / tot.clamp_min(1.0)  # (b, n): posterior of r
        probs = onehot(prompt) * (1 - pr).unsqueeze(-1)
        probs[:, idx, self.new_id] += pr
        return probs, empty

    def _slow_row(self, row: torch.Tensor) -> torch.Tensor:
        n = self.n
        choices = [range(self.n_items) if int(t) == self.mask_id else [int(t)] for t in row[:n]]
        count = math.prod(len(c) for c in choices)
        if count * self.n_answers > _MAX_SUPPORT:
            raise ValueError(
                f"a prompt with {sum(int(t) == self.mask_id for t in row[:n])} masked items needs "
                f"{count * self.n_answers} support rows (limit {_MAX_SUPPORT})"
            )
        prompts = torch.tensor(list(itertools.product(*choices)), dtype=torch.int64).reshape(-1, n)
        prompts = prompts[self._valid_prompts(prompts)]
        if prompts.shape[0] == 0:
            masked = row == self.mask_id
            return torch.where(masked.unsqueeze(-1), torch.full((self.seq_len, self.vocab_size), -math.log(self.vocab_size), dtype=torch.float64), _log_onehot(row[None], self.vocab_size)[0])
        ans = self.answers(prompts)  # (G, A, n)
        G, A, _ = ans.shape
        support = torch.cat([prompts.unsqueeze(1).expand(G, A, n), ans], -1).reshape(G * A, 2 * n)
        logw = torch.zeros(G * A, dtype=torch.float64)
        return _support_marginals(row[None], self.mask_id, support, logw, self.vocab_size)[0]

    def _log_prob(self, tokens):
        n = self.n
        prompt, answer = tokens[:, :n], tokens[:, n:]
        valid = self._valid_prompts(prompt)
        ans = self.answers(prompt.clamp_max(self.n_items - 1))  # (B, A, n)
        hit = (ans == answer.unsqueeze(1)).all(-1).any(-1)  # (B,)
        lp = torch.full((tokens.shape[0],), -self._log_n_prompts - math.log(self.n_answers), dtype=torch.float64)
        return torch.where(valid & hit, lp, torch.full_like(lp, -math.inf))

    def _sample(self, n, generator):
        prompts = torch.stack([torch.randperm(self.n_items, generator=generator)[: self.n] for _ in range(n)])
        ans = self.answers(prompts)  # (n, A, n)
        pick = torch.randint(ans.shape[1], (n,), generator=generator)
        return torch.cat([prompts, ans[torch.arange(n), pick]], -1)

    def prompts(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` random prompts (uniform distinct-item lists), (n, self.n) int64."""
        return self.sample(n, seed)[:, : self.n]


# ====================================================================== T6: EOS padding
class EOSPaddedOracle(ExactOracle):
    """T6: variable-length sequences padded to a fixed canvas.

    A content length ℓ ∈ {0..seq_len} is drawn from ``length_probs``; positions ``< ℓ`` hold a
    stationary Markov chain over the ``n_content`` content tokens (Dirichlet(``concentration``)
    rows); positions ``>= ℓ`` hold padding:

    - ``padding="eos"``: every padding position is EOS (LLaDA-Instruct's SFT convention, the
      source of the EOS attractor);
    - ``padding="rainbow"``: EOS at position ℓ, then a cycle of ``n_pad`` distinct pad tokens
      (Rainbow Padding, arXiv 2510.03680).

    Exact marginals sum over ℓ of the prefix chain's forward-backward with hard evidence.

    Parameters
    ----------
    n_content : int
        Content tokens (ids ``0 .. n_content-1``; >= 1).
    seq_len : int
        Canvas length (>= 1).
    seed : int
        Seed of the content chain.
    length_probs : sequence of float, optional
        Probabilities of ℓ = 0..seq_len (``seq_len + 1`` numbers); uniform over
        ``1..seq_len`` by default.
    padding : {"eos", "rainbow"}
    n_pad : int
        Number of distinct pad tokens for rainbow padding (>= 1).
    concentration : float
        Dirichlet concentration of the content chain rows.

    Attributes
    ----------
    eos_id : int
        ``n_content``.
    pad_ids : list of int
        The rainbow pad tokens (empty for EOS padding).
    """

    def __init__(self, n_content: int, seq_len: int, seed: int = 0, *, length_probs=None,
                 padding: str = "eos", n_pad: int = 3, concentration: float = 0.5):
        self.n_content = _as_int("n_content", n_content, 1)
        self.seq_len = _as_int("seq_len", seq_len, 1)
        if padding not in ("eos", "rainbow"):
            raise ValueError(f"padding must be 'eos' or 'rainbow', got {padding!r}")
        self.padding = padding
        self.n_pad = _as_int("n_pad", n_pad, 1) if padding == "rainbow" else 0
        if not float(concentration) > 0:
            raise ValueError(f"concentration must be > 0, got {concentration!r}")
        self.concentration = float(concentration)
        self.seed = int(seed)
        L = self.seq_len
        if length_probs is None:
            lp = torch.cat([torch.zeros(1, dtype=torch.float64), torch.full((L,), 1.0 / L, dtype=torch.float64)])
        else:
            lp = torch.as_tensor(np.asarray(length_probs, dtype=np.float64))
            if lp.shape != (L + 1,) or bool((lp < 0).any()) or not float(lp.sum()) > 0:
                raise ValueError(f"length_probs must be {L + 1} non-negative numbers (lengths 0..{L}), got {length_probs!r}")
            lp = lp / lp.sum()
        self.length_probs = lp  # (L + 1,)
        self.eos_id = self.n_content
        self.pad_ids = list(range(self.n_content + 1, self.n_content + 1 + self.n_pad))
        self.pad_id = self.pad_ids[0] if self.pad_ids else self.eos_id
        self.vocab_size = self.n_content + 1 + self.n_pad
        self.token_names = [f"c{k}" for k in range(self.n_content)] + ["EOS"] + [f"PAD{k}" for k in range(self.n_pad)]
        rng = np.random.default_rng(self.seed)
        C = self.n_content
        self.transition = _dirichlet(rng, self.concentration, (C, C))  # (C, C)
        evals, evecs = np.linalg.eig(self.transition.numpy().T)
        pi = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
        self.initial = torch.from_numpy(pi / pi.sum()).double()  # (C,)
        # pad_tokens[l, i]: the token at position i when the content length is l (-1 inside content).
        pad = torch.full((L + 1, L), -1, dtype=torch.int64)
        for ell in range(L + 1):
            for i in range(ell, L):
                k = i - ell
                pad[ell, i] = self.eos_id if (padding == "eos" or k == 0) else self.pad_ids[(k - 1) % self.n_pad]
        self.pad_tokens = pad

    def __repr__(self) -> str:
        return (f"EOSPaddedOracle(n_content={self.n_content}, seq_len={self.seq_len}, seed={self.seed}, "
                f"padding={self.padding!r}, n_pad={self.n_pad})")

    def _log_marginals(self, tokens):
        B, L = tokens.shape
        C, V = self.n_content, self.vocab_size
        masked = tokens == self.mask_id
        content_obs = (~masked) & (tokens < C)
        # Content evidence: all ones where masked, one-hot for observed content, zero for an
        # observed special token (that position cannot be content).
        ev = torch.zeros(B, L, C, dtype=torch.float64)
        ev[masked] = 1.0
        ev[content_obs] = torch.nn.functional.one_hot(tokens[content_obs], C).double()
        logev = _safe_log(ev)  # (B, L, C)
        logT = self.transition.log()
        # Forward log-messages (prefix-independent): la[:, i, v] = log p(evidence 0..i, x_i = v).
        la = torch.empty(B, L, C, dtype=torch.float64)
        prev = self.initial.log().expand(B, C)
        for i in range(L):
            cur = prev if i == 0 else torch.logsumexp(prev.unsqueeze(-1) + logT, dim=1)
            cur = cur + logev[:, i]
            la[:, i] = cur
            prev = cur
        # Backward log-messages for every content length ℓ: lb[:, ℓ, i, v] = log p(evidence
        # i+1..ℓ-1 | x_i = v); zero at i = ℓ-1.
        lb = torch.zeros(B, L + 1, L, C, dtype=torch.float64)
        for ell in range(2, L + 1):
            nxt = torch.zeros(B, C, dtype=torch.float64)
            for i in range(ell - 2, -1, -1):
                nxt = torch.logsumexp(logT.unsqueeze(0) + (logev[:, i + 1] + nxt).unsqueeze(1), dim=-1)
                lb[:, ell, i] = nxt
        # Weight of each length: log p(ℓ) + log p(content evidence | ℓ) + padding consistency.
        logZ = torch.zeros(B, L + 1, dtype=torch.float64)
        logZ[:, 1:] = torch.logsumexp(la, dim=-1)  # (B, L): prefix normaliser for ℓ = i+1
        pad_ok = ((self.pad_tokens.unsqueeze(0) == tokens.unsqueeze(1)) | masked.unsqueeze(1)
                  | (self.pad_tokens.unsqueeze(0) < 0)).all(-1)  # (B, L+1)
        logw = self.length_probs.log().unsqueeze(0) + logZ
        logw = torch.where(pad_ok, logw, torch.full_like(logw, -math.inf))
        empty = torch.isinf(logw.max(-1).values)
        post = torch.softmax(torch.where(empty.unsqueeze(-1), torch.zeros_like(logw), logw), dim=-1)  # (B, L+1)
        # Content part: for ℓ > i, p(x_i = v | ℓ, evidence) ∝ alpha_i(v) beta^ℓ_i(v).
        lc = la.unsqueeze(1) + lb  # (B, L+1, L, C)
        within = torch.arange(L).unsqueeze(0) < torch.arange(L + 1).unsqueeze(1)  # (L+1, L): i < ℓ
        cond = torch.softmax(torch.where(within[None, :, :, None], lc, torch.zeros_like(lc)), dim=-1)
        cond = torch.nan_to_num(cond, nan=0.0)
        content_probs = torch.einsum("bl,bliv->biv", post * 1.0, cond * within[None, :, :, None])  # (B, L, C)
        probs = torch.zeros(B, L, V, dtype=torch.float64)
        probs[..., :C] = content_probs
        pad_tok = self.pad_tokens.clamp_min(0)  # (L+1, L)
        pad_onehot = torch.nn.functional.one_hot(pad_tok, V).double() * (~within).unsqueeze(-1)  # (L+1, L, V)
        probs = probs + torch.einsum("bl,liv->biv", post, pad_onehot)
        logits = _safe_log(probs)
        logits = torch.where(empty[:, None, None], torch.full_like(logits, -math.log(V)), logits)
        return torch.where(masked.unsqueeze(-1), logits, _log_onehot(tokens, V))

    def _log_prob(self, tokens):
        B, L = tokens.shape
        C = self.n_content
        is_content = tokens < C
        # ℓ = index of the first non-content token (L if none).
        first = torch.where(~is_content, torch.arange(L).expand(B, L), torch.full_like(tokens, L)).min(-1).values
        pad_ok = ((self.pad_tokens[first] == tokens) | (self.pad_tokens[first] < 0)).all(-1)
        logT = self.transition.log()
        tok = tokens.clamp_max(C - 1)
        steps = logT[tok[:, :-1], tok[:, 1:]]  # (B, L-1)
        use = torch.arange(1, L).unsqueeze(0) < first.unsqueeze(1)  # transitions inside content
        chain = torch.where(first > 0, self.initial.log()[tok[:, 0]], torch.zeros(B, dtype=torch.float64))
        chain = chain + torch.where(use, steps, torch.zeros_like(steps)).sum(-1)
        lp = self.length_probs.log()[first] + chain
        return torch.where(pad_ok, lp, torch.full_like(lp, -math.inf))

    def _sample(self, n, generator):
        L = self.seq_len
        ell = torch.multinomial(self.length_probs.expand(n, -1), 1, generator=generator)[:, 0]
        out = torch.empty(n, L, dtype=torch.int64)
        out[:, 0] = torch.multinomial(self.initial.expand(n, -1), 1, generator=generator)[:, 0]
        for t in range(1, L):
            out[:, t] = torch.multinomial(self.transition[out[:, t - 1]], 1, generator=generator)[:, 0]
        pad = self.pad_tokens[ell]  # (n, L)
        return torch.where(pad >= 0, pad, out)


# ====================================================================== T7: brackets
class BracketsOracle(FiniteSupportOracle):
    """T7: uniform distribution over balanced-bracket (Dyck) words of length ``seq_len``.

    A long-range hard constraint: every closing bracket must match the type of the opening
    bracket it closes, wherever that is. Exact by enumeration of the words.

    Parameters
    ----------
    seq_len : int
        Even length (>= 2).
    n_types : int
        Bracket types (1: ``()``, 2: ``()[]``, 3: ``()[]{}``).

    Notes
    -----
    Token ids: opening bracket of type t is ``2 t``, closing is ``2 t + 1``. The support has
    Catalan(seq_len/2) · n_types^(seq_len/2) words; at most 2·10^6 are allowed.
    """

    _NAMES = ("(", ")", "[", "]", "{", "}")

    def __init__(self, seq_len: int, n_types: int = 1):
        seq_len = _as_int("seq_len", seq_len, 2)
        if seq_len % 2:
            raise ValueError(f"seq_len must be even for balanced brackets, got {seq_len}")
        n_types = _as_int("n_types", n_types, 1)
        if n_types > 3:
            raise ValueError(f"n_types must be 1, 2 or 3, got {n_types}")
        half = seq_len // 2
        size = math.comb(seq_len, half) // (half + 1) * n_types**half
        if size > _MAX_SUPPORT:
            raise ValueError(f"{size} balanced words of length {seq_len} with {n_types} types exceed {_MAX_SUPPORT}")
        words: list[list[int]] = []

        def grow(word: list[int], stack: list[int]) -> None:
            left = seq_len - len(word)
            if left == 0:
                words.append(list(word))
                return
            if len(stack) < left:  # room to open and still close everything
                for t in range(n_types):
                    word.append(2 * t)
                    stack.append(t)
                    grow(word, stack)
                    stack.pop()
                    word.pop()
            if stack:
                t = stack.pop()
                word.append(2 * t + 1)
                grow(word, stack)
                word.pop()
                stack.append(t)

        grow([], [])
        super().__init__(words, vocab_size=2 * n_types, token_names=list(self._NAMES[: 2 * n_types]))
        self.n_types = n_types

    def __repr__(self) -> str:
        return f"BracketsOracle(seq_len={self.seq_len}, n_types={self.n_types})"


# ====================================================================== spec dispatch
def _spec_set(p: dict) -> ExactOracle:
    pattern = p.pop("pattern", "cities")
    if pattern == "cities":
        names = p.pop("names", "New York,Mexico City")
        return FiniteSupportOracle.cities([s.strip() for s in str(names).split(",")])
    if pattern == "parity":
        return FiniteSupportOracle.parity(p.pop("length", 4))
    if pattern == "k_of_n":
        return FiniteSupportOracle.k_of_n(p.pop("length", 4), p.pop("k", 2))
    raise ValueError(f"unknown set pattern {pattern!r}; available: ['cities', 'parity', 'k_of_n']")


TOY_KINDS: dict[str, tuple[str, dict[str, object]]] = {
    # kind: (description, {spec key: default})
    "hmm": ("T2 sticky HMM", {"vocab": 8, "length": 16, "seed": 0, "states": 3, "stickiness": 0.9,
                              "concentration": 0.3}),
    "mixture": ("T3 mixture of products", {"vocab": 8, "length": 8, "seed": 0, "components": 2,
                                           "concentration": 0.3}),
    "set": ("T4 finite support: pattern=cities (names=comma list) | parity (length) | k_of_n (length, k)",
            {"pattern": "cities", "names": "New York,Mexico City", "length": 4, "k": 2}),
    "listop": ("T5 list operation: op=copy|reverse|sort|shuffle|replace_random, n, items",
               {"op": "shuffle", "n": 4, "items": None}),
    "eos": ("T6 EOS/rainbow-padded variable length", {"vocab": 4, "length": 8, "seed": 0, "padding": "eos",
                                                      "pads": 3, "concentration": 0.5}),
    "brackets": ("T7 balanced brackets", {"length": 8, "types": 1}),
}


def toy_spec(kind: str, params: dict | None = None) -> ExactOracle:
    """Build a toy oracle from a ``load_model("oracle:<kind>?key=value&...")`` spec.

    Parameters
    ----------
    kind : str
        One of (spec keys and defaults):

        - ``hmm`` — :class:`StickyHMMOracle`: ``vocab=8, length=16, seed=0, states=3,
          stickiness=0.9, concentration=0.3``;
        - ``mixture`` — :class:`MixtureOracle`: ``vocab=8, length=8, seed=0, components=2,
          concentration=0.3``;
        - ``set`` — :class:`FiniteSupportOracle`: ``pattern=cities`` with
          ``names=New York,Mexico City`` (comma-separated names of equal word count), or
          ``pattern=parity`` with ``length=4``, or ``pattern=k_of_n`` with ``length=4, k=2``;
        - ``listop`` — :class:`ListOpOracle`: ``op=shuffle`` (copy, reverse, sort, shuffle,
          replace_random), ``n=4``, ``items=n``;
        - ``eos`` — :class:`EOSPaddedOracle`: ``vocab=4`` content tokens, ``length=8, seed=0,
          padding=eos`` (or ``rainbow``), ``pads=3, concentration=0.5``;
        - ``brackets`` — :class:`BracketsOracle`: ``length=8, types=1``.

        (``markov`` is :class:`remask.models.markov.MarkovChainOracle`, dispatched by
        ``load_model`` itself.)
    params : dict, optional
        Spec parameters; values may be numbers or strings (strings are converted).

    Returns
    -------
    ExactOracle

    Examples
    --------
    >>> toy_spec("listop", {"op": "replace_random", "n": 3})
    ListOpOracle(op='replace_random', n=3, n_items=3)
    """
    if kind not in TOY_KINDS:
        raise ValueError(f"unknown oracle kind {kind!r}; available: {['markov', *TOY_KINDS]}")
    params = dict(params or {})
    defaults = TOY_KINDS[kind][1]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for oracle kind {kind!r}; known: {sorted(defaults)}")
    p = {**defaults, **params}

    def num(key: str, cast=int):
        value = p[key]
        if isinstance(value, bool):
            raise ValueError(f"oracle:{kind} parameter {key}={value!r} is not a number")
        try:
            out = cast(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            raise ValueError(f"oracle:{kind} parameter {key}={value!r} is not a valid {cast.__name__}") from None
        if cast is int and float(value) != out:
            raise ValueError(f"oracle:{kind} parameter {key}={value!r} is not an integer")
        if cast is float and not math.isfinite(out):
            raise ValueError(f"oracle:{kind} parameter {key}={value!r} must be finite")
        if key == "seed" and not 0 <= out < 2**63:
            raise ValueError(f"oracle:{kind} parameter seed={value!r} must be in [0, 2**63)")
        return out

    if kind == "hmm":
        return StickyHMMOracle(num("vocab"), num("length"), num("seed"), n_states=num("states"),
                               stickiness=num("stickiness", float), concentration=num("concentration", float))
    if kind == "mixture":
        return MixtureOracle(num("vocab"), num("length"), num("seed"), n_components=num("components"),
                             concentration=num("concentration", float))
    if kind == "set":
        q = {"pattern": str(p["pattern"]), "names": p["names"], "length": num("length"), "k": num("k")}
        return _spec_set(q)
    if kind == "listop":
        items = None if p["items"] is None else num("items")
        return ListOpOracle(str(p["op"]), num("n"), items)
    if kind == "eos":
        return EOSPaddedOracle(num("vocab"), num("length"), num("seed"), padding=str(p["padding"]),
                               n_pad=num("pads"), concentration=num("concentration", float))
    return BracketsOracle(num("length"), num("types"))
