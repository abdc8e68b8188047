"""Scores: the per-position number a sampler ranks proposals by (higher commits first).

One vocabulary across samplers: ``prob | margin | entropy | random``. The papers' own names
map onto it: LLaDA's "low_confidence" remasking is ``prob`` and its "random" remasking is
``random``; Dream's ``maskgit_plus`` is ``prob``, ``topk_margin`` is ``margin`` and
``entropy`` is ``entropy`` (ranked by negative entropy).
"""

from __future__ import annotations

import functools

import torch

from remask.kernels._philox import Purpose, position_keys, uniform
from remask.kernels.propose import Proposal

__all__ = ["SCORES", "SCORE_ALIASES", "score_proposals", "demote"]

#: Per-position scores a sampler can rank proposals by (higher = commit first).
SCORES = ("prob", "margin", "entropy", "random")
#: The papers' names for the scores (documented aliases).
SCORE_ALIASES = {"low_confidence": "prob", "maskgit_plus": "prob", "topk_margin": "margin"}


def score_proposals(
    proposal: Proposal,
    kind: str,
    *,
    key: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, L) float32 ranking score of each proposal; higher commits first.

    ``"prob"``: the proposal's untempered probability (LLaDA "low_confidence", Dream
    "maskgit_plus"); ``"margin"``: top-1 minus top-2 probability (Dream "topk_margin");
    ``"entropy"``: negative entropy in nats (Dream "entropy"); ``"random"``: a Philox uniform
    per position under ``position_keys(key, attention_mask, Purpose.SCORE)`` (LLaDA "random"
    remasking).

    Parameters
    ----------
    proposal : Proposal
        (B, L) fields.
    kind : str
        One of :data:`SCORES`, or a paper's name for one (:data:`SCORE_ALIASES`: LLaDA's
        ``"low_confidence"``, Dream's ``"maskgit_plus"`` and ``"topk_margin"``).
    key : (B,) int64, optional
        The rows' step keys; required for ``"random"``.
    attention_mask : (B, L) bool, optional
        False on padding; required for ``"random"`` (positions count from each row's first
        real token, so padding does not change the draws).
    """
    kind = SCORE_ALIASES.get(kind, kind)
    if kind == "prob":
        return proposal.prob
    if kind == "margin":
        return proposal.margin
    if kind == "entropy":
        return -proposal.entropy
    if kind == "random":
        if key is None or attention_mask is None:
            raise ValueError("score 'random' needs the rows' step keys and the attention mask")
        return uniform(position_keys(key, attention_mask, Purpose.SCORE))
    raise ValueError(
        f"score must be one of {SCORES} (or an alias in {sorted(SCORE_ALIASES)}), got {kind!r}"
    )


def demote(
    score: torch.Tensor, proposal_tokens: torch.Tensor, token_ids: tuple[int, ...]
) -> torch.Tensor:
    """Rank proposals of ``token_ids`` after every other candidate (among themselves, left to
    right), without making them ineligible: LLaDA's "EOS confidence set to 0" (App. B.4)."""
    ids = torch.tensor(token_ids, device=score.device)
    hit = torch.isin(proposal_tokens, ids)  # (B, L)
    return torch.where(hit, _above_lowest(score.dtype), score)


@functools.cache
def _above_lowest(dtype: torch.dtype) -> float:
    """The value just above ``finfo(dtype).min``, where the selection ops put NaN and -inf
    scores: a demoted proposal still outranks those (computed once per dtype)."""
    lowest = torch.tensor(torch.finfo(dtype).min, dtype=dtype)
    return torch.nextafter(lowest, torch.zeros_like(lowest)).item()
