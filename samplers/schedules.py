"""Step schedules: how many tokens a step commits, and on which time grid.

* LLaDA (arXiv 2502.09992): :class:`BlockSchedule` — a block's masks split evenly over the
  block's steps, remainder first (:func:`even_split`); the run's steps split evenly over its
  blocks. Every block's counts are tabulated once per run (:func:`block_masks`,
  :func:`split_table`) and a step reads its own (:func:`table_count`): at small batch sizes
  the per-step cost of a sampler is the number of small tensor ops it runs.
* MDLM (arXiv 2406.07524) / Dream (arXiv 2508.15487): the linear time grid
  ``t_j = 1 - j (1 - eps) / steps`` (:func:`grid_time`), the exact unmasking time of a masked
  position under it (:func:`next_unmask_index`) and Dream's per-step transfer count
  (:func:`dream_count`).

All functions are batched over rows: (B,) or (B, L) tensors in, no host sync in a step (the
tables' one sync, for their size, happens when they are built, at ``init``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from remask.samplers.canvas import Canvas, block_mask_count

__all__ = [
    "BlockSchedule",
    "even_split",
    "block_masks",
    "SplitTable",
    "split_table",
    "table_count",
    "allotted_steps",
    "check_steps_cover_blocks",
    "grid_time",
    "next_unmask_index",
    "dream_count",
]


def even_split(total: torch.Tensor, parts: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Share of part ``index`` when ``total`` items are split evenly into ``parts``.

    LLaDA's rule (``get_num_transfer_tokens``): every part gets ``total // parts`` and the
    first ``total % parts`` parts get one more (remainder front-loaded). All arguments are
    int64 tensors of the same shape; ``parts`` must be positive.
    """
    # Function calls, not ``//`` and ``%``: the operators go through a Python-level wrapper
    # (a few µs each at every step); bool + int64 promotes to int64.
    return torch.floor_divide(total, parts) + (index < torch.remainder(total, parts))


def block_masks(canvas: Canvas, mask_id: int) -> torch.Tensor:
    """(B, n_blocks) int64: masked positions of each block of each row, n_blocks >= 1.

    For a sampler that writes only its active block, a block's count here is what it holds
    when it becomes active, so every block's schedule can be computed once, at ``init`` (one
    host sync, for n_blocks), instead of at every step.
    """
    n_blocks = max(int(canvas.block.amax()) + 1, 1)
    masked = (canvas.editable & (canvas.tokens == mask_id)).long()  # (B, L)
    B = canvas.tokens.shape[0]
    # Column 0 collects the positions outside every block (block -1), then is dropped.
    counts = torch.zeros(B, n_blocks + 1, dtype=torch.int64, device=masked.device)
    return counts.scatter_add_(-1, canvas.block + 1, masked)[:, 1:]  # (B, n_blocks)


class SplitTable(NamedTuple):
    """Every count of :func:`even_split` for every block of every row (:func:`split_table`).

    Attributes
    ----------
    counts : (B, n_blocks * width) int64
        ``counts[b, j * width + i] = even_split(total[b, j], parts[b, j], i)``.
    width : int
        ``max(parts) + 1``: the last column of a block holds ``total // parts``, which is what
        :func:`even_split` gives every index past the schedule's end.
    base : (B,) int64
        Flat offset of each row's first entry (``b * n_blocks * width``).
    """

    counts: torch.Tensor
    width: int
    base: torch.Tensor


def split_table(total: torch.Tensor, parts: torch.Tensor) -> SplitTable:
    """Every count of :func:`even_split` for every block, computed once (e.g. at ``init``).

    Parameters
    ----------
    total, parts : (B, n_blocks) int64
        Items and parts (>= 1) of each block.

    Returns
    -------
    SplitTable
        Read it with :func:`table_count`, which agrees with :func:`even_split` at every index.
    """
    width = int(parts.amax()) + 1  # one host sync, once per run
    index = torch.arange(width, device=total.device)  # (W,)
    counts = even_split(total.unsqueeze(-1), parts.unsqueeze(-1), index)  # (B, n_blocks, W)
    B, n_blocks = total.shape
    base = torch.arange(B, device=total.device) * (n_blocks * width)  # (B,)
    return SplitTable(counts.flatten(1), width, base)


def table_count(table: SplitTable, block: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B,) int64: the :func:`even_split` count of step ``index`` (B,) of block ``block``
    (B,), read from a :func:`split_table` (four small ops per step instead of the division,
    remainder and comparison, and of recounting a new block's masks when a row moves on)."""
    flat = torch.add(table.base, block, alpha=table.width) + index.clamp_max(table.width - 1)
    return torch.take(table.counts, flat)  # (B,)


class BlockSchedule(NamedTuple):
    """LLaDA's per-block commit schedule, per row (arXiv 2502.09992, ``get_num_transfer_tokens``).

    A block's masks are split evenly over the steps allotted to the block, remainder first; the
    steps of a run are split evenly over its blocks, remainder first. Every block's counts are
    computed once, at :meth:`start` (a sampler using this schedule writes only its active
    block, so a block holds the same masks when it becomes active as at the start); a step
    reads its count from the table (:func:`table_count`).

    Attributes
    ----------
    step : (B,) int64
        Steps taken in the row's active block.
    table : SplitTable
        Each block's masks split over its allotted steps.
    allotted : (B, n_blocks) int64
        Steps allotted to each block.
    """

    step: torch.Tensor
    table: SplitTable
    allotted: torch.Tensor

    @classmethod
    def start(cls, canvas: Canvas, mask_id: int, steps: int | None) -> BlockSchedule:
        """The schedule of every row's blocks; ``steps`` None = one token per step."""
        masks = block_masks(canvas, mask_id)  # (B, n_blocks)
        if steps is None:  # one token per step: as many steps as the block has masks
            allotted = masks
        else:
            blocks = canvas.block.amax(-1, keepdim=True) + 1  # (B, 1) the row's own blocks
            index = torch.arange(masks.shape[1], device=masks.device)  # (n_blocks,)
            allotted = even_split(torch.full_like(blocks, steps), blocks.clamp_min(1), index)
        # A block without masks has no steps: clamp so it divides safely (it counts 0).
        return cls(
            torch.zeros_like(canvas.nfe), split_table(masks, allotted.clamp_min(1)), allotted
        )

    def count(self, canvas: Canvas) -> torch.Tensor:
        """(B,) int64: tokens to commit this step (0 for finished rows)."""
        k = table_count(self.table, canvas.window, self.step)  # (B,)
        return torch.where(canvas.done, 0, k)

    def steps_of(self, canvas: Canvas) -> torch.Tensor:
        """(B,) int64: steps allotted to each row's active block."""
        return self.allotted.gather(-1, canvas.window.unsqueeze(-1)).squeeze(-1)

    def advance(
        self, before: Canvas, after: Canvas, mask_id: int, steps: int | None
    ) -> BlockSchedule:
        """The schedule after a step: rows whose window moved start their new block afresh."""
        moved = after.window != before.window  # (B,)
        return self._replace(step=torch.where(moved, 0, self.step + 1))


def allotted_steps(canvas: Canvas, mask_id: int, steps: int | None) -> torch.Tensor:
    """(B,) int64: steps allotted to each row's active block: ``steps`` split evenly over the
    row's blocks, remainder first (None: one step per mask of the block)."""
    if steps is None:  # one token per step: as many steps as the block has masks
        return block_mask_count(canvas, mask_id)
    blocks = canvas.block.amax(-1) + 1  # (B,)
    return even_split(torch.full_like(blocks, steps), blocks.clamp_min(1), canvas.window)


def check_steps_cover_blocks(steps: int | None, canvas: Canvas) -> None:
    """Raise ``ValueError`` unless every block can get at least one of ``steps`` (None: no
    limit). Called from ``init`` (one host sync), never from a step."""
    if steps is None:
        return
    blocks = int(canvas.block.amax()) + 1
    if steps < blocks:
        raise ValueError(
            f"steps={steps} is fewer than the {blocks} blocks of the canvas; every block needs at least one step"
        )


def grid_time(index: torch.Tensor, steps: torch.Tensor, eps: float) -> torch.Tensor:
    """Time ``t_j = 1 - j (1 - eps) / steps`` of grid index ``j`` (``linspace(1, eps, steps+1)``).

    Parameters
    ----------
    index, steps : int64 tensors of broadcastable shapes
    eps : float

    Returns
    -------
    float64 tensor of the broadcast shape
    """
    return 1.0 - index.double() * ((1.0 - eps) / steps.double())


def next_unmask_index(
    u: torch.Tensor, index: torch.Tensor, steps: torch.Tensor, eps: float
) -> torch.Tensor:
    """Grid index at which a position masked at grid index ``index`` unmasks (linear schedule).

    With ``P(still masked at t_j | masked at t_i) = t_j / t_i`` (MDLM log-linear noise, Dream's
    ``1 - s/t`` transfer probability), the unmask index is the first ``j`` with
    ``t_j <= u t_i`` for a uniform ``u``: ``j = ceil((1 - u t_i) / dt)``, ``dt = (1 - eps) /
    steps``. Values above ``steps`` mean "still masked at the end of the grid".

    Parameters
    ----------
    u : (B, L) float64
        Uniforms in (0, 1), one per position.
    index : (B,) int64
        Current grid index of each row (the canvas is at time ``t_index``).
    steps : (B,) int64
        Grid size of each row (>= 1).
    eps : float
        Final time of the grid.

    Returns
    -------
    (B, L) int64
        Always ``>= index + 1``.
    """
    index, steps = index.unsqueeze(-1), steps.unsqueeze(-1)  # (B, 1)
    dt = (1.0 - eps) / steps.double()  # (B, 1)
    t = grid_time(index, steps, eps)  # (B, 1)
    j = torch.ceil((1.0 - u * t) / dt)  # (B, L) float64
    # Rounding can land exactly on the current index when u t is within an ulp of t.
    return torch.maximum(j.clamp_max(2**62).long(), index + 1)


def dream_count(
    masks: torch.Tensor, grid: torch.Tensor, steps: torch.Tensor, eps: float, max_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dream's transfer count, skipping the grid steps on which it is 0.

    At grid step ``i`` (from ``t_i`` to ``t_{i+1}``) the reference commits
    ``floor(M (1 - t_{i+1} / t_i))`` tokens, and all ``M`` at the last step ``i = steps - 1``.
    While nothing is committed ``M`` stays the same, so the first step from ``grid`` on with
    a non-zero count is found in one vectorised pass.

    Parameters
    ----------
    masks : (B,) int64
        Masks left in the row's active block (``M``).
    grid : (B,) int64
        First grid step not yet taken.
    steps : (B,) int64
        Grid size of the row's block (<= ``max_steps``).
    eps : float
    max_steps : int
        Static upper bound on ``steps`` (the width of the search).

    Returns
    -------
    step : (B,) int64
        The grid step taken (first ``i >= grid`` with a non-zero count; 0 if ``M = 0``).
    count : (B,) int64
        Tokens it commits (0 if ``M = 0``).
    """
    i = torch.arange(max_steps, device=masks.device)  # (S,)
    n = steps.unsqueeze(-1)  # (B, 1)
    t = grid_time(i, n, eps)  # (B, S)
    s = grid_time(i + 1, n, eps)  # (B, S)
    count = torch.floor(masks.unsqueeze(-1).double() * (1.0 - s / t)).long()  # (B, S)
    count = torch.where(i == n - 1, masks.unsqueeze(-1), count)  # last step: everything left
    usable = (i >= grid.unsqueeze(-1)) & (i < n) & (count >= 1)  # (B, S)
    step = usable.long().argmax(-1)  # (B,) first usable step (argmax returns the first max)
    found = usable.any(-1)  # (B,)
    return step, torch.where(found, count.gather(-1, step.unsqueeze(-1)).squeeze(-1), 0)
