"""The model call of a step: one denoiser evaluation and the proposals it yields.

:func:`denoise` is the one path from a sampler to its denoiser; :func:`predict` is the first
half of every confidence-style step (which positions may commit, one forward pass, a proposal
and its statistics per eligible position).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from remask import kernels
from remask.models.protocol import check_logits
from remask.samplers.canvas import Canvas, eligible

__all__ = ["Prediction", "denoise", "exclude_mask", "predict", "proposal_keys"]


def denoise(denoiser, canvas: Canvas, *, cfg_scale: float = 0.0) -> tuple[torch.Tensor, int]:
    """Call the denoiser on the canvas, with optional classifier-free guidance.

    The unconditional branch replaces every fixed real token (prompt, infill context) by the
    mask — except the first real token of a shifted model (``denoiser.shift > 0``, Dream),
    which has nothing before it to be predicted from — and both branches go through the model
    in one batched call;
    ``logits = un + (s + 1) (cond - un)`` (LLaDA, arXiv 2502.09992, App. B).

    The mask token is never proposed, whatever the denoiser returns: its logit column (when
    it has one, ``mask_id < V``) is set to -inf here, in place on the returned tensor — so a
    plain function that gives the mask an ordinary logit still works. Adapters that already
    do it save nothing but a cheap column fill.

    Returns
    -------
    logits : (B, L, V) float
        The mask column at -inf.
    evaluations : int
        Sequence evaluations per row (1, or 2 with guidance) — what ``nfe`` counts.
    """
    tokens, attention_mask = canvas.tokens, canvas.attention_mask
    # Denoisers that can exploit the active block (KV-caching wrappers) opt in to receive it.
    extra = {"active": canvas.active} if getattr(denoiser, "accepts_active", False) else {}
    if cfg_scale == 0:
        logits = check_logits(denoiser(tokens, attention_mask, **extra), tokens, denoiser.vocab_size)
        return exclude_mask(logits, denoiser.mask_id), 1
    fixed = attention_mask & ~canvas.editable  # (B, L)
    if getattr(denoiser, "shift", 0) > 0:
        # A shifted model (Dream) predicts position i from output i - 1: its first real token
        # (BOS) has no predecessor and must stay, so the unconditional branch keeps it.
        first = attention_mask & (attention_mask.long().cumsum(-1) == 1)  # (B, L)
        fixed = fixed & ~first
    unconditional = torch.where(fixed, denoiser.mask_id, tokens)  # (B, L)
    both = torch.cat([tokens, unconditional])  # (2B, L)
    extra = {k: v.repeat(2, 1) for k, v in extra.items()}
    logits = check_logits(denoiser(both, attention_mask.repeat(2, 1), **extra), both, denoiser.vocab_size)
    cond, un = logits.chunk(2)  # (B, L, V) each
    guided = un + (cfg_scale + 1) * (cond - un)  # (B, L, V)
    # Columns that are -inf in both branches (the mask token) would give -inf - -inf = NaN.
    return exclude_mask(torch.where(cond == un, cond, guided), denoiser.mask_id), 2


def exclude_mask(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Set the mask token's column of (B, L, V) ``logits`` to -inf, in place when possible.

    A mask with no column (``mask_id == V``, MDLM-style) needs nothing. Writing in place
    avoids a (B, L, V) copy per step; a tensor that cannot be written (an expanded view whose
    elements share memory, a read-only inference tensor) is copied once instead.
    """
    if not 0 <= mask_id < logits.shape[-1]:
        return logits
    try:
        logits[..., mask_id] = float("-inf")
    except RuntimeError:  # overlapping memory (expand) or an inference-mode tensor
        logits = logits.clone()
        logits[..., mask_id] = float("-inf")
    return logits


class Prediction(NamedTuple):
    """One forward pass and the proposals at the eligible positions (see :func:`predict`).

    Attributes
    ----------
    eligible : (B, L) bool
        Masked positions of the active block.
    logits : (B, L, V) float
        The (guided) logits.
    proposal : kernels.Proposal
        Token, prob, margin and entropy per eligible position.
    evaluations : int
        Denoiser evaluations per row (what ``commit`` charges).
    """

    eligible: torch.Tensor
    logits: torch.Tensor
    proposal: kernels.Proposal
    evaluations: int


def predict(canvas: Canvas, denoiser, key: torch.Tensor, *, temperature: float,
            cfg_scale: float = 0.0) -> Prediction:
    """The first half of every confidence-style step: which positions may commit, one forward
    pass, and a proposal for each of them.

    ``key`` holds the rows' (B,) int64 step keys; the proposals draw from
    ``position_keys(key, attention_mask, Purpose.PROPOSE)``, so a step is a pure function of
    its inputs and a row's draws do not depend on the other rows or on padding.
    """
    rows = eligible(canvas, denoiser.mask_id)  # (B, L)
    logits, evaluations = denoise(denoiser, canvas, cfg_scale=cfg_scale)  # (B, L, V)
    proposal = kernels.propose(logits, temperature=temperature, rows=rows,
                               key=proposal_keys(key, canvas, temperature))
    return Prediction(rows, logits, proposal, evaluations)


def proposal_keys(key: torch.Tensor, canvas: Canvas, temperature: float) -> torch.Tensor | None:
    """(B, L) int64 keys of a step's proposals (None at temperature 0, where nothing is drawn).

    ``key`` : (B,) int64 step keys. Folded by ``Purpose.PROPOSE`` and each position's rank
    among the row's real tokens (:func:`remask.kernels.position_keys`).
    """
    if temperature <= 0:
        return None
    return kernels.position_keys(key, canvas.attention_mask, kernels.Purpose.PROPOSE)
