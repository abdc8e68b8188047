"""The Denoiser protocol (docs/design.md §2): what every sampler talks to."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Denoiser", "check_logits"]


@runtime_checkable
class Denoiser(Protocol):
    """Anything that predicts every position of a partially masked canvas.

    Attributes
    ----------
    mask_id : int
        Token id of the mask. Either a logit column whose logit the denoiser keeps at -inf
        (LLaDA, BERT), or ``vocab_size`` itself (a mask with no column, as in MDLM).
    vocab_size : int
        Number of logit columns V.

    Optional attributes read when present: ``eos_id``, ``eot_id``, ``pad_id`` (int or None),
    ``tokenizer`` (for text in and out), and ``accepts_active = True`` for denoisers (such as
    KV-caching wrappers) that want the sampler's active block: they are then called as
    ``denoiser(tokens, attention_mask, active=active)`` with ``active`` (B, L) bool.

    ``__call__(tokens, attention_mask=None) -> logits``: ``tokens`` (B, L) int64 holds
    ``mask_id`` at undecided positions; ``attention_mask`` (B, L) bool is False on padding;
    the result is float logits (B, L, V) whose row i is the prediction for position i.
    The mask token is never proposed whatever its logit: the samplers' shared call
    (``remask.samplers.predict.denoise``) sets its column to -inf on the returned tensor (in
    place: the tensor belongs to the caller once returned). Adapters set it too, which only
    saves that fill. Wrap a plain function with :func:`remask.models.as_denoiser`.
    """

    mask_id: int
    vocab_size: int

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


def check_logits(logits: object, tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Validate a denoiser's output against the canvas it was given.

    Parameters
    ----------
    logits : object
        What the denoiser returned; must be a floating tensor of shape (B, L, V).
    tokens : (B, L) int64
        The canvas that was passed in.
    vocab_size : int
        The denoiser's declared V.

    Returns
    -------
    (B, L, V) float tensor, unchanged.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"denoiser must return a torch.Tensor of logits, got {type(logits).__name__}")
    expected = (*tokens.shape, vocab_size)
    if tuple(logits.shape) != expected:
        raise ValueError(
            f"denoiser returned logits of shape {tuple(logits.shape)}, expected (B, L, V) = {expected}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"denoiser must return floating-point logits, got dtype {logits.dtype}")
    return logits
