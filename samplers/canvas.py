"""The canvas: the sequence being decoded and the bookkeeping every sampler shares.

Semi-autoregressive blocks are a mask, not a loop: each editable position carries a block
index, ``Canvas.window`` names the left-most block that still holds a mask, and
:func:`commit` moves it. Every sampler gets blocks for free. A step reads the canvas through
:func:`eligible` (which positions may be written now) and writes it through :func:`commit`
(the one place that charges evaluations and decides ``done``).

A canvas has a fixed width L, but a row's content may grow inside it (variable-length
generation, ``daedal``): :func:`grow` inserts positions anywhere in a row and shifts the rest
of the row right, into the row's right padding; :func:`follow` moves any other per-position
tensor the same way. Samplers that never call them are unaffected.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# A block index above every real one (the minimum over a row with no mask).
_NO_BLOCK = torch.iinfo(torch.int64).max

__all__ = [
    "Canvas",
    "make_canvas",
    "masked_positions",
    "eligible",
    "commit",
    "block_mask_count",
    "eos_cut",
    "grow",
    "follow",
]


class Canvas(NamedTuple):
    """The sequence being decoded, with the bookkeeping every sampler shares.

    Attributes
    ----------
    tokens : (B, L) int64
        Prompt, committed tokens, and ``mask_id`` where undecided.
    editable : (B, L) bool
        Positions the sampler may write (the masked positions it was given). False on the
        prompt, on fixed infill tokens and on padding.
    block : (B, L) int64
        Semi-autoregressive block of each editable position (counted left to right over the
        editable positions of the row); -1 elsewhere.
    window : (B,) int64
        The active block of each row: the left-most block that still holds a mask.
    attention_mask : (B, L) bool
        False on padding.
    nfe : (B,) int64
        Denoiser evaluations consumed by each row (a classifier-free-guidance step counts 2).
    done : (B,) bool
        True once no editable position of the row is masked (the default
        ``Sampler.finished``; a sampler with another termination rule overrides that method).
    """

    tokens: torch.Tensor
    editable: torch.Tensor
    block: torch.Tensor
    window: torch.Tensor
    attention_mask: torch.Tensor
    nfe: torch.Tensor
    done: torch.Tensor

    @property
    def active(self) -> torch.Tensor:
        """(B, L) bool: positions of the active block."""
        return self.block == self.window.unsqueeze(-1)


def make_canvas(
    tokens: torch.Tensor,
    editable: torch.Tensor,
    attention_mask: torch.Tensor,
    block_length: int | None,
    offset: torch.Tensor | None = None,
) -> Canvas:
    """Build the initial canvas.

    Parameters
    ----------
    tokens : (B, L) int64
        ``mask_id`` at every editable position.
    editable : (B, L) bool
    attention_mask : (B, L) bool
    block_length : int or None
        Blocks cover the editable positions of each row left to right, ``block_length`` at a
        time (the last one may be shorter); None puts them all in block 0.
    offset : (B,) int64, optional
        Positions of each row's first block that precede its first editable position (that
        block is shorter by as much): aligns the blocks to a block-diffusion model's grid.
    """
    order = editable.long().cumsum(-1) - 1  # (B, L): rank of each editable position in its row
    if offset is not None and block_length is not None:
        order = order + offset.unsqueeze(-1)
    block = torch.zeros_like(order) if block_length is None else order // block_length
    block = torch.where(editable, block, -1)  # (B, L)
    B = tokens.shape[0]
    zeros = torch.zeros(B, dtype=torch.int64, device=tokens.device)
    return Canvas(
        tokens=tokens,
        editable=editable,
        block=block,
        window=zeros,
        attention_mask=attention_mask,
        nfe=zeros.clone(),
        done=~editable.any(-1),
    )


def masked_positions(canvas: Canvas, mask_id: int) -> torch.Tensor:
    """(B, L) bool: editable positions that still hold the mask."""
    return canvas.editable & (canvas.tokens == mask_id)


def eligible(canvas: Canvas, mask_id: int) -> torch.Tensor:
    """(B, L) bool: masked positions of each row's active block (what a step may commit)."""
    # ``block == window`` already implies ``editable``: ``block`` is -1 off the editable
    # positions and a window is never negative. One op fewer than ``masked_positions & active``
    # (this runs at every step of most samplers).
    return (canvas.tokens == mask_id) & canvas.active


def commit(
    canvas: Canvas,
    committed: torch.Tensor,
    proposal: torch.Tensor,
    mask_id: int,
    evaluations: int | torch.Tensor,
    live: torch.Tensor | None = None,
) -> Canvas:
    """Write ``proposal`` where ``committed``, charge the step to unfinished rows, move windows.

    Parameters
    ----------
    canvas : Canvas
    committed : (B, L) bool
    proposal : (B, L) int64
    mask_id : int
    evaluations : int or (B,) int64 tensor
        Denoiser evaluations this step cost each row it ran for (one count for every row,
        or one per row).
    live : (B,) bool, optional
        Rows this step ran for (charged ``evaluations``); default: rows not ``done``. A
        sampler whose own ``finished`` rule outlasts the masks passes the rows it still runs.
    """
    tokens = torch.where(committed, proposal, canvas.tokens)  # (B, L)
    live = ~canvas.done if live is None else live  # (B,)
    if isinstance(evaluations, torch.Tensor):
        nfe = canvas.nfe + evaluations * live  # (B,) int64: a per-row charge
    else:
        nfe = torch.add(canvas.nfe, live, alpha=evaluations)  # (B,) int64: one op, no temporaries
    masked = canvas.editable & (tokens == mask_id)  # (B, L)
    # The active block is the left-most one still holding a mask; a finished row (no mask:
    # every block index is replaced by ``_NO_BLOCK``) keeps its last. ``done`` falls out of
    # the same minimum (no separate ``any``: this runs at every step of every sampler).
    first = torch.where(masked, canvas.block, _NO_BLOCK).amin(-1)  # (B,)
    done = first == _NO_BLOCK  # (B,)
    window = torch.where(done, canvas.window, first)
    return canvas._replace(tokens=tokens, nfe=nfe, done=done, window=window)


def block_mask_count(canvas: Canvas, mask_id: int) -> torch.Tensor:
    """(B,) int64: masked positions in each row's active block."""
    return eligible(canvas, mask_id).sum(-1)


def eos_cut(
    canvas: Canvas, eos_id: int, mask_id: int, settled_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each row may stop at an end-of-sequence token, and its canvas cut there.

    A row's *stopping EOS* is its first editable position holding ``eos_id`` with no mask at
    or before it among the row's editable positions (everything before it is decided). The
    cut canvas writes ``eos_id`` at every editable position from that EOS on (masks and
    tokens a sampler committed out of order alike); fixed positions are never touched.

    Parameters
    ----------
    canvas : Canvas
    eos_id, mask_id : int
    settled_only : bool
        Count an EOS only once its block is no longer active (``block < window``): for
        samplers that may still rewrite tokens of the active block.

    Returns
    -------
    stop : (B,) bool
        Rows that have a stopping EOS.
    tokens : (B, L) int64
        The canvas tokens, cut (unchanged in rows without a stopping EOS).
    """
    masked = masked_positions(canvas, mask_id)  # (B, L)
    clear = masked.long().cumsum(-1) == 0  # (B, L): no mask at or before the position
    eos = canvas.editable & (canvas.tokens == eos_id) & clear  # (B, L)
    if settled_only:
        eos = eos & (canvas.block < canvas.window.unsqueeze(-1))
    after = (eos.long().cumsum(-1) > 0) & canvas.editable  # (B, L): the stopping EOS and later
    return eos.any(-1), torch.where(after, eos_id, canvas.tokens)


def grow(
    canvas: Canvas,
    counts: torch.Tensor,
    token: int | torch.Tensor,
    editable: bool | torch.Tensor,
    mask_id: int,
    block_length: int | None,
    offset: torch.Tensor | None = None,
) -> tuple[Canvas, torch.Tensor]:
    """Insert ``counts[b, j]`` new positions right after column j of row b.

    Everything after an insertion point moves right by the number of positions inserted
    before it; the canvas keeps its width L, so what is pushed past column L - 1 is dropped
    (a row that grows into its right padding loses only padding). Vectorised: one exclusive
    cumsum of the counts gives each old column its new column, one scatter inverts that map
    and one gather per field moves the row — no loop over rows or insertions.

    Inserted positions are real (``attention_mask`` True) and hold ``token``; ``editable``
    says whether a sampler may write them. In every row that grew, ``block`` is recounted
    over the editable positions left to right (as :func:`make_canvas` does, without an
    offset, or with the ``offset`` given) and ``window`` and ``done`` are recomputed; rows with no insertion keep every
    field as it was, so a canvas that never grows is untouched.

    Parameters
    ----------
    canvas : Canvas
    counts : (B, L) int64
        Positions to insert after each column (>= 0).
    token : int or (B,) int64
        Token written at the inserted positions (per row when a tensor).
    editable : bool or (B,) bool
        Whether the inserted positions are editable (per row when a tensor).
    mask_id : int
    block_length : int or None
        Block length used to recount ``block`` in the rows that grew (None: one block).
    offset : (B,) int64, optional
        As in :func:`make_canvas`: keeps a block-diffusion model's block grid.

    Returns
    -------
    canvas : Canvas
    source : (B, L) int64
        The old column each new column holds, -1 at inserted positions; pass it to
        :func:`follow` to move other per-position tensors.
    """
    B, L = canvas.tokens.shape
    device = canvas.tokens.device
    col = torch.arange(L, device=device)  # (L,)
    new_col = col + (counts.cumsum(-1) - counts)  # (B, L): where each old column lands
    # Invert the map; columns pushed past the edge all land in the spare slot L (discarded).
    source = torch.full((B, L + 1), -1, dtype=torch.int64, device=device)  # (B, L + 1)
    source.scatter_(1, new_col.clamp(max=L), col.expand(B, L).contiguous())
    source = source[:, :L]  # (B, L)
    grew = counts.sum(-1) > 0  # (B,)
    token = torch.as_tensor(token, dtype=torch.int64, device=device).expand(B).unsqueeze(-1)
    new_editable = torch.as_tensor(editable, dtype=torch.bool, device=device).expand(B)
    tokens = follow(canvas.tokens, source, token)  # (B, L)
    edit = follow(canvas.editable, source, new_editable.unsqueeze(-1))  # (B, L)
    real = follow(canvas.attention_mask, source, True)  # (B, L)
    order = edit.long().cumsum(-1) - 1  # (B, L): rank among the row's editable positions
    if offset is not None and block_length is not None:
        order = order + offset.unsqueeze(-1)
    block = torch.zeros_like(order) if block_length is None else order // block_length
    block = torch.where(edit, block, -1)  # (B, L)
    masked = edit & (tokens == mask_id)  # (B, L)
    done = ~masked.any(-1)  # (B,)
    big = torch.iinfo(torch.int64).max
    window = torch.where(masked, block, big).amin(-1)  # (B,)
    window = torch.where(done, canvas.window, window)
    rows = grew.unsqueeze(-1)  # (B, 1)
    grown = canvas._replace(
        tokens=torch.where(rows, tokens, canvas.tokens),
        editable=torch.where(rows, edit, canvas.editable),
        block=torch.where(rows, block, canvas.block),
        attention_mask=torch.where(rows, real, canvas.attention_mask),
        window=torch.where(grew, window, canvas.window),
        done=torch.where(grew, done, canvas.done),
    )
    source = torch.where(rows, source, col)  # (B, L): identity in rows that did not grow
    return grown, source


def follow(x: torch.Tensor, source: torch.Tensor, fill) -> torch.Tensor:
    """Move a per-position tensor as :func:`grow` moved the canvas.

    Parameters
    ----------
    x : (B, L, ...) tensor
    source : (B, L) int64
        From :func:`grow`: old column of each new column, -1 at inserted positions.
    fill : scalar or tensor broadcastable to ``x``
        Value at the inserted positions.

    Returns
    -------
    (B, L, ...) tensor, same dtype as ``x``.
    """
    index = source.clamp(min=0)  # (B, L)
    for _ in range(x.dim() - 2):
        index = index.unsqueeze(-1)
    moved = x.gather(1, index.expand_as(x) if x.dim() > 2 else index)
    keep = source >= 0
    for _ in range(x.dim() - 2):
        keep = keep.unsqueeze(-1)
    return torch.where(keep, moved, torch.as_tensor(fill, dtype=x.dtype, device=x.device))
