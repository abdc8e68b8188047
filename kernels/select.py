"""Selection ops: choose positions to commit, per row, with no host sync.

All three take device tensors and return a (B, L) bool mask on the same device; they use
only tensor ops (sort, cumsum, comparisons), never ``.item()`` or a Python loop over rows, so
they run asynchronously on a GPU. They are plain torch on every backend: the work is
O(B·L log L), negligible next to reading (B, L, V) logits.

Ordering convention shared by the three ops: eligible positions are ranked by ``score``
descending, ties broken towards the lower position index; a NaN or ``-inf`` score ranks
below every other eligible score (but above ineligible positions): it sorts as the lowest
finite value, which no score reaches — :func:`remask.kernels.score.demote` writes the one
just above it.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["entropy_budget_mask", "spacing_filter", "threshold_mask", "topk_mask"]


def _check(score: torch.Tensor, eligible: torch.Tensor, name: str) -> None:
    if not isinstance(score, torch.Tensor) or not score.is_floating_point():
        raise TypeError(
            f"{name}: score must be a floating-point tensor, got "
            f"{getattr(score, 'dtype', type(score).__name__)}"
        )
    if score.dim() != 2:
        raise ValueError(f"{name}: score must be (B, L), got shape {tuple(score.shape)}")
    if not isinstance(eligible, torch.Tensor) or eligible.dtype != torch.bool:
        raise TypeError(
            f"{name}: eligible must be a bool tensor, got "
            f"{getattr(eligible, 'dtype', type(eligible).__name__)}"
        )
    if eligible.shape != score.shape:
        raise ValueError(
            f"{name}: eligible shape {tuple(eligible.shape)} != score shape {tuple(score.shape)}"
        )


def _per_row(
    value: float | torch.Tensor,
    score: torch.Tensor,
    name: str,
    what: str,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A scalar, (B,) or (B, 1) tensor as a (B, 1) tensor on score's device. A number becomes
    a ``dtype`` tensor (int64 for an int when None), saturating to ±inf beyond the dtype's
    range, as torch compares a tensor with a Python number (no overflow error)."""
    if isinstance(value, torch.Tensor):
        rows = score.shape[0]
        if value.dim() == 2 and value.shape[1] == 1 and value.shape[0] in (1, rows):
            column = value  # (B, 1) already
        else:
            if value.dim() == 0:
                value = value.reshape(1)
            if value.dim() != 1 or value.shape[0] not in (1, rows):
                raise ValueError(
                    f"{name}: {what} must be a scalar, ({rows},) or ({rows}, 1), got "
                    f"shape {tuple(value.shape)}"
                )
            column = value.unsqueeze(-1)  # (B, 1)
        if column.device != score.device:
            column = column.to(score.device)
        return column
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: {what} must be a number or a tensor, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name}: {what} must not be NaN")
    if dtype is not None and dtype.is_floating_point:
        big = torch.finfo(dtype).max
        value = math.inf if value > big else -math.inf if value < -big else float(value)
    return torch.full((1, 1), value, dtype=dtype, device=score.device)


def _order(score: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """(B, L) int64: each row's positions from best to worst, eligible positions first."""
    key = _key(score, eligible)  # (B, L)
    return key.sort(dim=-1, descending=True, stable=True).indices  # stable: low index first


def _rank(score: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """(B, L) int64 rank of each position in its row (0 = best), eligible positions first."""
    order = _order(score, eligible)  # (B, L)
    # The inverse permutation by one scatter (a second sort costs as much as the first).
    positions = _positions(order.shape[-1], order.device).expand_as(order)  # (B, L)
    return torch.empty_like(order).scatter_(-1, order, positions)  # (B, L)


@functools.lru_cache(maxsize=32)
def _positions(length: int, device: torch.device) -> torch.Tensor:
    """(L,) int64 ``arange(L)``, made once per length and device (read only, never written)."""
    return torch.arange(length, device=device)


def _key(score: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """(B, L) sort key: eligible scores mapped into [lowest, +inf] (NaN and -inf to lowest) so
    that every eligible position outranks the ineligible ones, which get -inf."""
    lowest = torch.finfo(score.dtype).min
    return torch.where(
        eligible, score.nan_to_num(nan=lowest, posinf=float("inf"), neginf=lowest), float("-inf")
    )


def _best(score: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the best eligible position of each row (ties to the lower index; nothing
    in a row without an eligible position) — rank 0 without a sort."""
    if score.shape[-1] == 0:  # no position at all (argmax has nothing to reduce)
        return eligible.clone()
    best = _key(score, eligible).argmax(-1, keepdim=True)  # (B, 1): first maximum
    return eligible & (torch.arange(score.shape[-1], device=score.device) == best)


def topk_mask(score: torch.Tensor, k: torch.Tensor | int, eligible: torch.Tensor) -> torch.Tensor:
    """Per-row top-k of ``score`` among ``eligible`` positions.

    Parameters
    ----------
    score : (B, L) float
    k : (B,) or (B, 1) int64 tensor (or an int for every row)
        How many to select in each row (clipped to the number of eligible positions;
        k ≤ 0 selects nothing).
    eligible : (B, L) bool

    Returns
    -------
    (B, L) bool
        Ties are broken towards the lower position index (deterministic).
    """
    _check(score, eligible, "topk_mask")
    if isinstance(k, torch.Tensor):
        if k.dtype == torch.bool or k.is_floating_point() or k.is_complex():
            raise TypeError(f"topk_mask: k must be an integer tensor, got dtype {k.dtype}")
    elif isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"topk_mask: k must be an int or an integer tensor, got {k!r}")
    else:
        k = max(0, min(k, score.shape[-1]))  # k <= 0 selects nothing, k >= L everything
    if type(k) is int and k == 1:  # the common single pick: an argmax, no sort
        return _best(score, eligible)
    k = _per_row(k, score, "topk_mask", "k")  # (B, 1)
    order = _order(score, eligible)  # (B, L)
    # The first k of each row's order, written back to their positions: one scatter, no rank
    # (``order`` is a permutation of every row, so the scatter writes every element).
    first_k = _positions(order.shape[-1], order.device) < k  # (B, L) in sorted order
    if first_k.shape != order.shape:  # one k for every row: (1, L)
        first_k = first_k.expand_as(order)
    return eligible & torch.empty_like(eligible).scatter_(-1, order, first_k)


def threshold_mask(
    score: torch.Tensor, threshold: float | torch.Tensor, eligible: torch.Tensor
) -> torch.Tensor:
    """All eligible positions with ``score >= threshold``, and at least one per row.

    Fast-dLLM's parallel decoding rule (arXiv 2505.22618): commit every confident position,
    and when none clears the bar commit the single best one so every step makes progress.

    Parameters
    ----------
    score : (B, L) float
    threshold : float or (B,) tensor
        Per-row thresholds are compared without a host sync (a NaN threshold selects only
        the fallback position).
    eligible : (B, L) bool

    Returns
    -------
    (B, L) bool
        Rows with no eligible position select nothing; otherwise the best eligible position
        (ties → lower index) is always selected. NaN scores never clear the threshold.
    """
    _check(score, eligible, "threshold_mask")
    # A number is compared in the score's dtype, as ``score >= threshold`` in torch compares
    # (the references' rule: a float32 confidence against float32(0.9)).
    tau = _per_row(threshold, score, "threshold_mask", "threshold", score.dtype)  # (B, 1)
    return eligible & ((score >= tau) | _best(score, eligible))


def entropy_budget_mask(
    score: torch.Tensor,
    entropy: torch.Tensor,
    gamma: float | torch.Tensor,
    eligible: torch.Tensor,
) -> torch.Tensor:
    """EB-Sampler's entropy-bounded selection (arXiv 2505.24857).

    In descending-``score`` order among eligible positions, select the largest prefix ``U``
    with ``sum(entropy[U]) - max(entropy[U]) <= gamma``, and at least one position per row
    that has an eligible one. ``gamma = 0`` selects one position per row (unless several
    have zero entropy); ``gamma = inf`` every eligible position.

    Parameters
    ----------
    score : (B, L) float
        Ordering score (e.g. ``Proposal.prob``, or ``-entropy``).
    entropy : (B, L) float
        Per-position entropy, in the unit of ``gamma`` (``propose`` gives nats).
    gamma : float or (B,) tensor
        Error budget, >= 0.
    eligible : (B, L) bool

    Returns
    -------
    (B, L) bool
    """
    _check(score, eligible, "entropy_budget_mask")
    if not isinstance(entropy, torch.Tensor) or entropy.shape != score.shape:
        raise ValueError(
            f"entropy_budget_mask: entropy must be a tensor of shape "
            f"{tuple(score.shape)}, got {getattr(entropy, 'shape', entropy)!r}"
        )
    if not isinstance(gamma, torch.Tensor) and isinstance(gamma, (int, float)) and gamma < 0:
        raise ValueError(f"entropy_budget_mask: gamma must be >= 0, got {gamma!r}")
    # float64, as the entropy sums it is compared with (a float32 gamma rounded 0.1 up)
    budget = _per_row(gamma, score, "entropy_budget_mask", "gamma", torch.float64)  # (B, 1)
    rank = _rank(score, eligible)  # (B, L)
    order = rank.argsort(dim=-1)  # (B, L) position at each rank
    ent = torch.where(eligible, entropy, 0.0).to(torch.float64)  # (B, L)
    ent_sorted = ent.gather(-1, order)  # (B, L) in selection order
    spent = ent_sorted.cumsum(-1) - ent_sorted.cummax(-1).values  # (B, L) Σ H − max H per prefix
    within = (spent <= budget.to(torch.float64)).to(torch.int64)  # (B, L)
    count = (
        within.cumprod(-1).sum(-1, keepdim=True).clamp_min(1)
    )  # (B, 1) largest valid prefix, ≥ 1
    return eligible & (rank < count)


def spacing_filter(
    selected: torch.Tensor, score: torch.Tensor, min_spacing: int, max_candidates: int | None = None
) -> torch.Tensor:
    """Keep selected positions at least ``min_spacing`` apart (DUS spacing post-filter).

    DUS's ``apply_spacing_filter`` (arXiv 2506.19037, Sec. 4.4), made exact and batched:
    visit the ``selected`` positions of each row in descending ``score`` order (ties to the
    lower position, NaN/-inf last, as in :mod:`remask.kernels` selection ops) and keep one
    iff its distance ``|i - j|`` (in canvas positions) to every position kept before it is
    ``>= min_spacing``. The best selected position is always kept, so a row that selected
    something keeps at least one; the others stay masked for a later step.
    ``min_spacing <= 1`` returns ``selected`` unchanged.

    Greedy acceptance is sequential in rank, so this loops over ranks (never over rows):
    ``max_candidates`` iterations of (B, L) work each. Pass a static bound on how many
    positions a row can select (e.g. the block length) to shorten the loop; None uses L.

    Parameters
    ----------
    selected : (B, L) bool
    score : (B, L) float
    min_spacing : int
    max_candidates : int, optional

    Returns
    -------
    (B, L) bool
        A subset of ``selected``.
    """
    if not isinstance(selected, torch.Tensor) or selected.dtype != torch.bool:
        raise TypeError(
            f"spacing_filter: selected must be a bool tensor, got "
            f"{getattr(selected, 'dtype', type(selected).__name__)}"
        )
    if not isinstance(score, torch.Tensor) or not score.is_floating_point():
        raise TypeError(
            "spacing_filter: score must be a floating-point tensor, got "
            f"{getattr(score, 'dtype', type(score).__name__)}"
        )
    if selected.dim() != 2 or score.shape != selected.shape:
        raise ValueError(
            f"spacing_filter: selected (B, L) and score of the same shape, got "
            f"{tuple(selected.shape)} and {tuple(score.shape)}"
        )
    if isinstance(min_spacing, bool) or not isinstance(min_spacing, int):
        raise TypeError(f"spacing_filter: min_spacing must be an int, got {min_spacing!r}")
    if max_candidates is not None and (
        isinstance(max_candidates, bool) or not isinstance(max_candidates, int)
    ):
        raise TypeError(
            f"spacing_filter: max_candidates must be an int or None, got {max_candidates!r}"
        )
    if max_candidates is not None and max_candidates < 1:
        raise ValueError(f"spacing_filter: max_candidates must be >= 1, got {max_candidates}")
    if min_spacing <= 1:
        return selected
    B, L = selected.shape
    key = _key(score, selected)  # (B, L): the selection ops' order, unselected last
    order = key.sort(dim=-1, descending=True, stable=True).indices  # (B, L): positions, best first
    count = selected.sum(-1)  # (B,)
    position = torch.arange(L, device=selected.device)  # (L,)
    kept = torch.zeros_like(selected)  # (B, L)
    blocked = torch.zeros_like(selected)  # (B, L): within min_spacing - 1 of a kept position
    for r in range(L if max_candidates is None else min(L, max_candidates)):
        p = order[:, r : r + 1]  # (B, 1): the rank-r position of each row
        take = (count > r).unsqueeze(-1) & ~blocked.gather(-1, p)  # (B, 1)
        kept |= take & (position == p)
        blocked |= take & ((position - p).abs() < min_spacing)
    return kept
