"""remask.kernels: the shared per-step ops of every sampler (docs/design.md §4).

Ops
---
propose(logits, ...)                         token proposal + prob/margin/entropy, one row read
token_prob(logits, tokens, rows)             softmax probability of given tokens, one row read
kl(p_logits, q_logits, rows)                 KL(softmax(p) || softmax(q)) per row, one read each
uniform(key)                                 Philox4x32-10 uniforms in (0, 1), one per key
fold / split / position_keys / Purpose       explicit per-row keys (see _philox)
topk_mask / threshold_mask / entropy_budget_mask   per-row selection, no host sync
spacing_filter(selected, score, min_spacing)  DUS's spacing post-filter on a selection
score_proposals(proposal, kind, ...)         the score vocabulary prob | margin | entropy | random

Backends: "torch" (reference), "numba" (CPU), "triton" (GPU); see :func:`use_backend`,
:func:`backends` and the ``REMASK_BACKEND`` environment variable. Importing this package
imports neither numba nor triton.
"""

from __future__ import annotations

from remask.kernels._dispatch import backends, resolve_backend, use_backend
from remask.kernels._philox import (
    STREAM_FOLD,
    STREAM_PROPOSE,
    STREAM_UNIFORM,
    Purpose,
    fold,
    position_keys,
    split,
    uniform,
)
from remask.kernels.propose import MIN_TEMPERATURE, SAMPLE_TILE, Proposal, propose
from remask.kernels.score import SCORES, demote, score_proposals
from remask.kernels.select import entropy_budget_mask, spacing_filter, threshold_mask, topk_mask
from remask.kernels.stats import kl, token_prob

__all__ = [
    "MIN_TEMPERATURE",
    "SAMPLE_TILE",
    "SCORES",
    "STREAM_FOLD",
    "STREAM_PROPOSE",
    "STREAM_UNIFORM",
    "Proposal",
    "Purpose",
    "backends",
    "demote",
    "entropy_budget_mask",
    "fold",
    "kl",
    "position_keys",
    "propose",
    "resolve_backend",
    "score_proposals",
    "spacing_filter",
    "split",
    "threshold_mask",
    "token_prob",
    "topk_mask",
    "uniform",
    "use_backend",
]
