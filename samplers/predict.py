"""The model call of a step: one denoiser evaluation and the proposals it yields.

:func:`denoise` is the one path from a sampler to its denoiser; :func:`predict` is the first
half of every confidence-style step (which positions may commit, one forward pass, a proposal
and its statistics per eligible position).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from remask import kernels
from remask.models import protocol
from remask.models.protocol import exclude_mask
from remask.samplers.canvas import Canvas, eligible

__all__ = ["Prediction", "denoise", "exclude_mask", "predict", "proposal_keys"]


def denoise(denoiser, canvas: Canvas) -> tuple[torch.Tensor, int]:
    """Call the denoiser on the canvas: :func:`remask.models.protocol.call` with the canvas's
    active block and writable positions (each handed over only to a denoiser that declares it
    wants it).

    Model-side options are denoiser wrappers (:mod:`remask.models.wrappers`), not arguments
    here: classifier-free guidance is ``Guided(model, scale)``, which reads ``editable`` and
    reports its doubled cost through the protocol's ``evaluations``.

    The mask token is never proposed, whatever the denoiser returns: its logit column (when
    it has one, ``mask_id < V``) is set to -inf, in place on the returned tensor — so a plain
    function that gives the mask an ordinary logit still works.

    Returns
    -------
    logits : (B, L, V) float
        The mask column at -inf.
    evaluations : int
        Sequence evaluations per row (1, or 2 through ``Guided``) — what ``nfe`` counts.
    """
    # ``canvas.active`` is computed (two tensor ops) only for a denoiser that wants it.
    wants_active = protocol.capabilities(denoiser).active
    return protocol.call(
        denoiser,
        canvas.tokens,
        canvas.attention_mask,
        active=canvas.active if wants_active else None,
        editable=canvas.editable,
    )


class Prediction(NamedTuple):
    """One forward pass and the proposals at the eligible positions (see :func:`predict`).

    Attributes
    ----------
    eligible : (B, L) bool
        Masked positions of the active block.
    logits : (B, L, V) float
        The denoiser's logits.
    proposal : kernels.Proposal
        Token, prob, margin and entropy per eligible position.
    evaluations : int
        Denoiser evaluations per row (what ``commit`` charges).
    """

    eligible: torch.Tensor
    logits: torch.Tensor
    proposal: kernels.Proposal
    evaluations: int


def predict(canvas: Canvas, denoiser, key: torch.Tensor, *, temperature: float) -> Prediction:
    """The first half of every confidence-style step: which positions may commit, one forward
    pass, and a proposal for each of them.

    ``key`` holds the rows' (B,) int64 step keys; the proposals draw from
    ``position_keys(key, attention_mask, Purpose.PROPOSE)``, so a step is a pure function of
    its inputs and a row's draws do not depend on the other rows or on padding.
    """
    rows = eligible(canvas, denoiser.mask_id)  # (B, L)
    logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
    proposal = kernels.propose(
        logits, temperature=temperature, rows=rows, key=proposal_keys(key, canvas, temperature)
    )
    return Prediction(rows, logits, proposal, evaluations)


def proposal_keys(key: torch.Tensor, canvas: Canvas, temperature: float) -> torch.Tensor | None:
    """(B, L) int64 keys of a step's proposals (None at temperature 0, where nothing is drawn).

    ``key`` : (B,) int64 step keys. Folded by ``Purpose.PROPOSE`` and each position's rank
    among the row's real tokens (:func:`remask.kernels.position_keys`).
    """
    if temperature <= 0:
        return None
    return kernels.position_keys(key, canvas.attention_mask, kernels.Purpose.PROPOSE)
