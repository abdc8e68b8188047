"""KV caches for semi-autoregressive block decoding (Fast-dLLM v1, arXiv 2505.22618).

Masked diffusion LMs attend bidirectionally, so strictly every committed token changes the
keys and values of every position. Fast-dLLM observes that, within one block of
semi-autoregressive decoding, the keys and values *outside* the block barely move, and
reuses them:

* **prefix cache**: at the start of each block one full forward pass runs and every layer's
  keys and values are kept; the following steps recompute the block *and everything right of
  it* against the cached keys and values of the prefix;
* **dual cache**: the following steps recompute *only the block*, against cached keys and
  values of both the prefix and the suffix.

:class:`Cached` wraps a denoiser that has a KV-cache path (remask's LLaDA and Dream
checkpoint adapters) and plugs these schemes into every blockwise sampler unchanged: it
declares the ``accepts_active`` capability (:mod:`remask.models.protocol`), so the samplers
hand it their active block with each call, and it refreshes the cache whenever that block
changes (and, optionally, every ``refresh_every`` calls). The cache of a run lives in a
:class:`CacheSession` that the driver opens for that run (``protocol.start_run``) and drops
after it: nothing one run computed is reused by the next.

Departures from the reference code (``NVlabs/Fast-dLLM`` ``generate_with_prefix_cache`` /
``generate_with_dual_cache``):

- The wrapper is a denoiser, not a generation loop: any sampler, selection rule or EOS
  policy gets the cache. The refresh pass is an ordinary step whose logits the sampler uses,
  as in the reference (its block-start pass also commits tokens).
- Rows of a batch may sit in different blocks: the recomputed window is the union of the
  rows' active blocks (a contiguous column range), so rows never need equal prompt lengths.
- The cache is also refreshed when a token outside the window changed since the last full
  pass (a sampler that revises committed tokens, or a new canvas of the same shape), so
  stale keys and values are only ever those of the window's own surroundings.
- Dream's one-position logit shift is handled inside the model's window pass (the layers run
  one position further left), so the first block position gets a real prediction.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["CACHE_MODES", "CacheSession", "Cached", "CachedDenoiser"]

#: Cache schemes: "prefix" recomputes the block and its right side, "dual" the block only.
CACHE_MODES = ("prefix", "dual")


class _OnInner:
    """The wrapped checkpoint denoiser's identity (protocol attributes, device, dtype), shared
    by the wrapper and its sessions."""

    def _take_identity(self, inner: Any) -> None:
        self.inner = inner
        self.mask_id, self.vocab_size = inner.mask_id, inner.vocab_size
        for name in ("eos_id", "eot_id", "pad_id", "bos_id", "tokenizer", "family"):
            setattr(self, name, getattr(inner, name, None))
        self.shift = getattr(inner, "shift", 0)

    @property
    def device(self) -> torch.device:
        """Device of the wrapped model."""
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the wrapped model's logits."""
        return self.inner.dtype


class Cached(_OnInner):
    """Fast-dLLM prefix / dual KV cache around a LLaDA or Dream checkpoint denoiser.

    Parameters
    ----------
    inner : CheckpointDenoiser
        A denoiser with a KV-cache path: ``supports_kv_cache = True`` and the methods
        ``forward_cached(tokens, attention_mask) -> (logits, cache)`` and
        ``forward_window(tokens, attention_mask, cache, start, stop) -> logits`` (remask's
        LLaDA and Dream adapters from :func:`remask.models.load_model`).
    mode : {"prefix", "dual"}
        "prefix": between refreshes, recompute the active block and every position right of
        it against the cached prefix. "dual": recompute only the active block, against the
        cached prefix and suffix (faster, more approximate).
    refresh_every : int, optional
        Also refresh (run a full forward pass) once this many calls have been served since
        the last refresh; None refreshes only when the active block changes (Fast-dLLM's
        setting). ``refresh_every=1`` makes every call a full pass: the outputs then equal
        the uncached ones exactly.

    Attributes
    ----------
    mask_id, vocab_size, eos_id, eot_id, pad_id, bos_id, tokenizer, family, shift
        Those of ``inner`` (the Denoiser protocol and its optional attributes).
    accepts_active : bool
        True: samplers call ``denoiser(tokens, attention_mask, active=active)``.
    stats : dict of str to int
        ``calls``, ``full_passes``, ``window_passes`` and ``query_positions`` (sum over calls
        of B times the number of positions run through the layers), summed over every
        session since construction or :meth:`reset`. Counters only: they never change what
        a call computes.

    Notes
    -----
    **Sessions.** The cache belongs to a run: :meth:`session` returns a
    :class:`CacheSession`, a denoiser that holds the cached keys and values of one run, and
    ``generate``/``infill`` open one per run (``remask.models.protocol.start_run``). Calling
    the wrapper itself serves each call from a fresh session, i.e. as a full pass.

    **When the cache is refreshed.** A session's call runs a full forward pass (and refills
    the cache) when there is no cache yet, when the canvas shape, the attention mask or the
    ``active`` mask differ from those of the last full pass (a new block started in some
    row), when a token outside the recomputed window differs from the canvas of the last
    full pass, when ``refresh_every`` calls have been served since, or when ``active`` is
    None or empty. Otherwise it runs a window pass over the columns ``[start, stop)``:
    ``start`` is the first column in any row's active block; ``stop`` is one past the last
    such column ("dual") or the canvas length ("prefix").

    **What samplers may read.** The returned logits are (B, L, V) like any denoiser's and
    are a fresh tensor each call (safe to edit in place). Rows inside the window are the
    model's predictions for the current canvas under the cache approximation. Rows outside
    it hold the most recent logits computed for those positions (by the last full pass or a
    later window pass): finite except the mask column, but stale, so a sampler must base its
    decisions only on the active block. Every sampler that commits inside the active block
    (the semi-autoregressive contract) qualifies; one that revises tokens outside it should
    run with ``refresh_every=1`` or without the cache.

    **NFE.** Samplers count one evaluation per call whether it was a full or a window pass,
    so NFE compares steps, not FLOPs; :attr:`stats` tells the two apart. The speed-up is a
    wall-clock matter: see ``python -m remask.bench.cache``.

    The host reads the window bounds once per call (a data-dependent slice); this is the
    wrapper's only synchronisation.

    Examples
    --------
    >>> import remask
    >>> from remask.models import load_model
    >>> from remask.models.cache import Cached
    >>> model = Cached(load_model("tests/data/golden/llada_tiny"), mode="dual")
    >>> sampler = remask.samplers.build("low_confidence", block_length=4)
    >>> out = remask.generate(model, [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> model.stats["full_passes"], model.stats["window_passes"]
    (2, 6)
    """

    accepts_active = True

    def __init__(self, inner: Any, mode: str = "prefix", refresh_every: int | None = None) -> None:
        if not getattr(inner, "supports_kv_cache", False) or not all(
            callable(getattr(inner, name, None)) for name in ("forward_cached", "forward_window")
        ):
            raise TypeError(
                f"Cached needs a denoiser with a KV-cache path (remask's LLaDA or Dream "
                f"checkpoint adapters), got {type(inner).__name__}"
            )
        if mode not in CACHE_MODES:
            raise ValueError(f"mode must be one of {CACHE_MODES}, got {mode!r}")
        if refresh_every is not None:
            if isinstance(refresh_every, bool) or not isinstance(refresh_every, int):
                raise TypeError(f"refresh_every must be an int or None, got {refresh_every!r}")
            if refresh_every < 1:
                raise ValueError(f"refresh_every must be >= 1, got {refresh_every}")
        self._take_identity(inner)
        self.mode = mode
        self.refresh_every = refresh_every
        self.reset()

    def __repr__(self) -> str:
        return f"Cached({self.inner!r}, mode={self.mode!r}, refresh_every={self.refresh_every!r})"

    def reset(self) -> None:
        """Zero :attr:`stats` (the caches live in sessions, not here)."""
        self.stats = {"calls": 0, "full_passes": 0, "window_passes": 0, "query_positions": 0}

    def session(self) -> CacheSession:
        """A fresh per-run cache: the denoiser one run talks to."""
        return CacheSession(self)

    @staticmethod
    def _check_active(active: object, tokens: torch.Tensor) -> torch.Tensor:
        """The ``active`` check every block-window denoiser shares (see ``block_diffusion``)."""
        return _check_active(active, tokens)

    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        active: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One call outside a run: a fresh session, hence a full pass (see the class notes)."""
        return self.session()(tokens, attention_mask, active=active)


#: The name this wrapper had before the wrappers module; kept because scripts and the
#: benchmarks use it.
CachedDenoiser = Cached


class CacheSession(_OnInner):
    """The per-run state of a :class:`Cached` wrapper, behind the Denoiser protocol.

    Holds the cached keys and values and the canvas they belong to; counts into the
    wrapper's :attr:`Cached.stats` and its own :attr:`stats`. Made by :meth:`Cached.session`.
    """

    accepts_active = True

    def __init__(self, owner: Cached) -> None:
        self.owner = owner
        self._take_identity(owner.inner)
        self._cache = None
        self._tokens: torch.Tensor | None = None  # (B, L) canvas of the last full pass
        self._attention_mask: torch.Tensor | None = None
        self._active: torch.Tensor | None = None  # (B, L) active mask of the last full pass
        self._logits: torch.Tensor | None = None  # (B, L, V) latest logits of every position
        self._served = 0  # calls served since the last full pass, that pass included
        self.stats = {"calls": 0, "full_passes": 0, "window_passes": 0, "query_positions": 0}

    def __repr__(self) -> str:
        return f"CacheSession({self.owner!r})"

    def _count(self, name: str, n: int = 1) -> None:
        self.stats[name] += n
        self.owner.stats[name] += n

    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        active: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict every position of a canvas, recomputing only a window when the cache allows.

        Parameters
        ----------
        tokens : (B, L) int64
            Canvas with ``mask_id`` at undecided positions.
        attention_mask : (B, L) bool, optional
            False on padding.
        active : (B, L) bool, optional
            The sampler's active block (``Canvas.active``). None runs a plain full pass.

        Returns
        -------
        (B, L, V) float logits, a fresh tensor; see :class:`Cached` for which rows are
        current.
        """
        self._count("calls")
        if active is None:
            # No block information: behave like the inner denoiser and forget the cache.
            self._cache = None
            logits = self.inner(tokens, attention_mask)
            self._count("full_passes")
            self._count("query_positions", tokens.numel())
            return logits
        active = _check_active(active, tokens)
        columns = active.any(dim=0).nonzero()  # (n, 1) columns in some row's active block
        if columns.numel() == 0:
            return self._full_pass(tokens, attention_mask, active)
        start = int(columns[0, 0])
        stop = tokens.shape[1] if self.owner.mode == "prefix" else int(columns[-1, 0]) + 1
        if self._needs_refresh(tokens, attention_mask, active, start, stop):
            return self._full_pass(tokens, attention_mask, active)
        window = self.inner.forward_window(tokens, attention_mask, self._cache, start, stop)
        self._logits[:, start:stop] = window  # (B, W, V)
        self._served += 1
        self._count("window_passes")
        self._count("query_positions", tokens.shape[0] * (stop - start))
        return self._logits.clone()

    # ------------------------------------------------------------------ internals
    def _full_pass(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None, active: torch.Tensor
    ) -> torch.Tensor:
        logits, cache = self.inner.forward_cached(tokens, attention_mask)
        self._cache = cache
        self._tokens = tokens.clone()
        self._attention_mask = None if attention_mask is None else attention_mask.clone()
        self._active = active.clone()
        self._logits = logits
        self._served = 1
        self._count("full_passes")
        self._count("query_positions", tokens.numel())
        return logits.clone()

    def _needs_refresh(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        active: torch.Tensor,
        start: int,
        stop: int,
    ) -> bool:
        if self._cache is None or self._tokens.shape != tokens.shape:
            return True
        every = self.owner.refresh_every
        if every is not None and self._served >= every:
            return True
        if (attention_mask is None) != (self._attention_mask is None):
            return True
        if attention_mask is not None and not torch.equal(attention_mask, self._attention_mask):
            return True
        if not torch.equal(active, self._active):
            return True  # some row moved to a new block
        # Keys and values outside the window are reused: they must belong to these tokens.
        old = self._tokens
        return not (
            torch.equal(tokens[:, :start], old[:, :start])
            and torch.equal(tokens[:, stop:], old[:, stop:])
        )


def _check_active(active: object, tokens: torch.Tensor) -> torch.Tensor:
    """``active`` as a (B, L) bool tensor of the tokens' shape, else ``TypeError``/``ValueError``."""
    if not isinstance(active, torch.Tensor):
        raise TypeError(f"active must be a (B, L) bool tensor, got {type(active).__name__}")
    if active.dtype != torch.bool:
        raise TypeError(f"active must be a bool tensor, got dtype {active.dtype}")
    if not isinstance(tokens, torch.Tensor) or tuple(active.shape) != tuple(tokens.shape):
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else None
        raise ValueError(
            f"active has shape {tuple(active.shape)}, expected the tokens' shape {shape}"
        )
    return active
