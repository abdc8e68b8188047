"""Your own model in one line: :func:`as_denoiser` turns a plain function into a Denoiser."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from remask.models.protocol import check_logits

__all__ = ["FunctionDenoiser", "as_denoiser"]


def _check_id(name: str, value, vocab_size: int, *, allow_vocab: bool = False) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    high = vocab_size if allow_vocab else vocab_size - 1
    if not 0 <= value <= high:
        raise ValueError(f"{name}={value} is outside [0, {high}] for vocab_size={vocab_size}")
    return value


class FunctionDenoiser:
    """A plain function behind the Denoiser protocol (made by :func:`as_denoiser`).

    Calls ``fn(tokens, attention_mask)`` — or ``fn(tokens)`` when ``fn`` takes one argument —
    checks the result's shape and dtype, and sets the mask token's logit to -inf (on a copy,
    so the function's own tensors are never changed) so that no sampler proposes it.
    """

    def __init__(
        self,
        fn: Callable,
        *,
        mask_id: int,
        vocab_size: int,
        eos_id: int | None = None,
        pad_id: int | None = None,
        eot_id: int | None = None,
        tokenizer=None,
        max_length: int | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"as_denoiser needs a callable, got {type(fn).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if mask_id is None:
            raise TypeError("mask_id is required: the id that marks an undecided position")
        # mask_id == vocab_size: a mask with no logit column (MDLM-style).
        self.mask_id = _check_id("mask_id", mask_id, vocab_size, allow_vocab=True)
        self.vocab_size = vocab_size
        self.eos_id = _check_id("eos_id", eos_id, vocab_size)
        self.pad_id = _check_id("pad_id", pad_id, vocab_size)
        self.eot_id = _check_id("eot_id", eot_id, vocab_size)
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be an int >= 1 or None, got {max_length!r}")
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.fn = fn
        self._takes_mask = _takes_two_arguments(fn)

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, L, V) float for a (B, L) int64 canvas; the mask column at -inf."""
        raw = self.fn(tokens, attention_mask) if self._takes_mask else self.fn(tokens)
        logits = check_logits(raw, tokens, self.vocab_size)
        if self.mask_id < self.vocab_size:
            # A copy: the function may hand back a tensor it keeps (a table, an expanded view).
            logits = logits.clone()
            logits[..., self.mask_id] = float("-inf")
        return logits

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"FunctionDenoiser({name}, mask_id={self.mask_id}, vocab_size={self.vocab_size})"


def _takes_two_arguments(fn: Callable) -> bool:
    """Whether ``fn`` accepts (tokens, attention_mask); an unreadable signature counts as yes."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values()):
        return True
    return len(positional) >= 2


def as_denoiser(
    fn: Callable,
    *,
    mask_id: int,
    vocab_size: int,
    eos_id: int | None = None,
    pad_id: int | None = None,
    eot_id: int | None = None,
    tokenizer=None,
    max_length: int | None = None,
) -> FunctionDenoiser:
    """Wrap a function that maps token ids to logits into a Denoiser every sampler accepts.

    Parameters
    ----------
    fn : callable
        ``fn(tokens)`` or ``fn(tokens, attention_mask)``: ``tokens`` (B, L) int64 with
        ``mask_id`` at undecided positions, ``attention_mask`` (B, L) bool (False on padding,
        may be None); returns float logits (B, L, V) whose row i predicts position i. The
        mask token may have any logit: it is never proposed.
    mask_id : int
        Id of the mask token, in [0, V) — or V for a mask with no logit column.
    vocab_size : int
        V, the number of logit columns.
    eos_id, pad_id, eot_id : int, optional
        Special ids the samplers read when present (end of sequence, padding, end of turn).
    tokenizer : optional
        A transformers tokenizer, for text in and out (``remask.decode``).
    max_length : int, optional
        The longest canvas the function handles; ``generate`` checks it before any compute.

    Returns
    -------
    FunctionDenoiser

    Examples
    --------
    >>> import torch, remask
    >>> from remask.models import as_denoiser
    >>> table = torch.randn(5)  # a "model": every position gets the same logits
    >>> model = as_denoiser(lambda tokens: table.expand(*tokens.shape, 5), mask_id=4, vocab_size=5)
    >>> out = remask.generate(model, [0, 1], remask.samplers.build("low_confidence"), gen_length=6, seed=0)
    >>> bool((out.tokens == 4).any())
    False
    """
    return FunctionDenoiser(
        fn,
        mask_id=mask_id,
        vocab_size=vocab_size,
        eos_id=eos_id,
        pad_id=pad_id,
        eot_id=eot_id,
        tokenizer=tokenizer,
        max_length=max_length,
    )
