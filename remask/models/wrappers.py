"""Denoiser wrappers: model-side options that every sampler gets by wrapping the model.

Each wrapper is itself a Denoiser (:mod:`remask.models.protocol`), so wrappers nest and any
sampler runs on them unchanged:

* :class:`Guided` — LLaDA's classifier-free guidance (one batched call, 2 evaluations);
* :class:`Suppress` — never propose some tokens (their logits at -inf);
* :class:`Cached` — Fast-dLLM prefix / dual KV caches (defined in :mod:`remask.models.cache`).

A wrapper reports what it needs and what it costs through the protocol's capabilities
(``accepts_editable``, ``evaluations``) and passes its inner model's other capabilities
through, so ``Guided(Cached(model))`` still receives the active block and
``Suppress(model)`` still takes WINO's attention pattern.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from remask.models.cache import Cached
from remask.models.protocol import call, capabilities, start_run

__all__ = ["Cached", "Guided", "Suppress"]

# Attributes a wrapper reads through from its inner model (identity, limits, placement).
# Anything else — a KV-cache path, say — is deliberately *not* passed through: calling it
# would bypass the wrapper.
_PASSED_THROUGH = frozenset(
    {
        "eos_id",
        "eot_id",
        "pad_id",
        "bos_id",
        "tokenizer",
        "family",
        "shift",
        "device",
        "dtype",
        "max_length",
        "max_len",
        "block_size",
        "accepts_any_padding",
        "verifier",
    }
)


class _Wrapper:
    """Shared plumbing: identity and capabilities of the inner model, per-run sessions."""

    def __init__(self, inner: Any) -> None:
        for name in ("mask_id", "vocab_size"):
            value = getattr(inner, name, None)
            if isinstance(value, bool) or not isinstance(value, int) or not callable(inner):
                raise TypeError(
                    f"{type(self).__name__} wraps a Denoiser (callable, with int mask_id and "
                    f"vocab_size), got {type(inner).__name__}"
                )
        self.inner = inner
        self.mask_id = inner.mask_id
        self.vocab_size = inner.vocab_size
        caps = capabilities(inner)  # validated once, here
        self.accepts_active = caps.active
        self.accepts_attention_bias = caps.attention_bias
        self.accepts_editable = caps.editable
        # A gathered call (``columns=``) only shortens the sequence: a wrapper that acts per
        # column (Suppress) or per batch row (Guided) passes it through unchanged.
        self.accepts_gathered = caps.gathered
        self.evaluations = caps.evaluations

    def __getattr__(self, name: str) -> Any:
        if name in _PASSED_THROUGH:
            return getattr(self.__dict__["inner"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def session(self):
        """This wrapper around the inner model's per-run session (see ``protocol.start_run``)."""
        inner = start_run(self.inner)
        return self if inner is self.inner else self._rewrap(inner)

    def _rewrap(self, inner: Any):
        raise NotImplementedError


class Guided(_Wrapper):
    """Classifier-free guidance (LLaDA, arXiv 2502.09992, App. B) for any sampler.

    The unconditional branch replaces every fixed real token (prompt, infill context: the
    positions the sampler may not write) by the mask — except the first real token of a
    shifted model (``shift > 0``, Dream), which has nothing before it to be predicted from.
    Both branches go through the inner model in one batched call of 2B rows, and

        ``logits = un + (scale + 1) (cond - un)``

    (``scale = 0`` gives the conditional logits back, at twice the cost). A call costs twice
    the inner model's evaluations (``evaluations``), which is what samplers charge to ``nfe``.

    Parameters
    ----------
    model : Denoiser
    scale : float
        Guidance scale s >= 0 (finite).

    Attributes
    ----------
    accepts_editable : bool
        True: samplers pass ``editable=`` (B, L) bool, which marks the positions that are not
        fixed. Called without it, every real token that is not the mask counts as fixed.
    evaluations : int
        2 x the inner model's.

    Notes
    -----
    Logit columns that are -inf in both branches (the mask token, suppressed tokens) stay
    -inf rather than becoming ``-inf - -inf = NaN``.

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> from remask.models.wrappers import Guided
    >>> out = remask.generate(Guided(TinyTransformer(), 1.5), [[1, 2]], remask.samplers.build("wino"),
    ...                       gen_length=4, seed=0)
    >>> int(out.nfe[0]) % 2
    0
    """

    def __init__(self, model: Any, scale: float) -> None:
        super().__init__(model)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"scale must be a float, got {scale!r}")
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be finite and >= 0, got {scale!r}")
        self.scale = float(scale)
        self.accepts_editable = True
        self.evaluations = 2 * self.evaluations
        self._shift = capabilities(model).shift

    def _rewrap(self, inner: Any) -> Guided:
        return Guided(inner, self.scale)

    def __repr__(self) -> str:
        return f"Guided({self.inner!r}, scale={self.scale})"

    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        editable: torch.Tensor | None = None,
        **extra: torch.Tensor,
    ) -> torch.Tensor:
        """Guided logits (B, L, V) for a (B, L) canvas.

        ``editable`` (B, L) bool marks the positions the sampler may write; the other real
        tokens are masked in the unconditional branch. Other keywords (``active``,
        ``attention_bias``, ``position_ids``) go to the inner model, for both branches.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        if editable is None:  # no sampler context: every decided real token is context
            editable = tokens == self.mask_id
        fixed = attention_mask & ~editable  # (B, L)
        if self._shift > 0:
            # A shifted model (Dream) predicts position i from output i - 1: its first real token
            # (BOS) has no predecessor and must stay, so the unconditional branch keeps it.
            first = attention_mask & (attention_mask.long().cumsum(-1) == 1)  # (B, L)
            fixed = fixed & ~first
        unconditional = torch.where(fixed, self.mask_id, tokens)  # (B, L)
        both = torch.cat([tokens, unconditional])  # (2B, L)
        doubled = {k: torch.cat([v, v]) for k, v in extra.items() if v is not None}
        logits, _ = call(
            self.inner, both, attention_mask.repeat(2, 1), editable=editable.repeat(2, 1), **doubled
        )  # (2B, L, V)
        cond, un = logits.chunk(2)  # (B, L, V) each
        guided = un + (self.scale + 1) * (cond - un)  # (B, L, V)
        # Columns that are -inf in both branches (the mask token) would give -inf - -inf = NaN.
        return torch.where(cond == un, cond, guided)


class Suppress(_Wrapper):
    """Never propose the given tokens: their logit columns are set to -inf on every call.

    LowConfidence's ``logits_eos_inf`` is sugar for ``Suppress(model, [eos_id])`` (LLaDA's
    App. B.4 option, which bans EOS outright).

    Parameters
    ----------
    model : Denoiser
    token_ids : iterable of int
        Ids in [0, V); at least one.

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> from remask.models.wrappers import Suppress
    >>> out = remask.generate(Suppress(TinyTransformer(), [5, 6]), [[1]], remask.samplers.build("low_confidence"),
    ...                       gen_length=8, seed=0)
    >>> bool(((out.tokens == 5) | (out.tokens == 6))[:, 1:].any())
    False
    """

    def __init__(self, model: Any, token_ids: Iterable[int]) -> None:
        super().__init__(model)
        if isinstance(token_ids, (str, bytes)) or not isinstance(token_ids, Iterable):
            raise TypeError(f"token_ids must be an iterable of ints, got {token_ids!r}")
        ids = tuple(token_ids)
        if not ids:
            raise ValueError("token_ids is empty: name at least one token to suppress")
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"token_ids must hold ints, got {value!r}")
            if not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"token id {value} is outside the vocabulary [0, {self.vocab_size})"
                )
        self.token_ids = ids

    def _rewrap(self, inner: Any) -> Suppress:
        return Suppress(inner, self.token_ids)

    def __repr__(self) -> str:
        return f"Suppress({self.inner!r}, token_ids={list(self.token_ids)})"

    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **extra: torch.Tensor,
    ) -> torch.Tensor:
        """The inner model's logits (B, L, V) with the suppressed columns at -inf."""
        logits, _ = call(self.inner, tokens, attention_mask, **extra)  # (B, L, V)
        ids = torch.tensor(self.token_ids, device=logits.device)
        try:
            logits.index_fill_(-1, ids, float("-inf"))
        except RuntimeError:  # a tensor that cannot be written in place (inference mode)
            logits = logits.index_fill(-1, ids, float("-inf"))
        return logits
