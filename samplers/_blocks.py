"""Small building blocks shared by samplers: canvas set-up, denoiser calls, commits, counts.

Semi-autoregressive blocks are a mask, not a loop: each editable position carries a block
index, ``Canvas.window`` names the left-most block that still holds a mask, and
:func:`commit` moves it. Every sampler gets blocks for free.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from remask import kernels
from remask.models.protocol import check_logits
from remask.samplers.base import Canvas

__all__ = ["SCORES", "BlockSchedule", "Prediction", "make_canvas", "masked_positions", "denoise", "exclude_mask",
           "predict",
           "score_proposals", "demote", "commit", "even_split", "block_mask_count", "spacing_filter",
           "allotted_steps", "check_steps_cover_blocks"]

#: Per-position scores a sampler can rank proposals by (higher = commit first).
SCORES = ("prob", "margin", "entropy", "random")


def make_canvas(
    tokens: torch.Tensor, editable: torch.Tensor, attention_mask: torch.Tensor, block_length: int | None,
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


def predict(canvas: Canvas, denoiser, generator: torch.Generator, step: int, *, temperature: float,
            cfg_scale: float = 0.0) -> Prediction:
    """The first half of every confidence-style step: which positions may commit, one forward
    pass, and a proposal for each of them.

    Randomness is counter-based and keyed by (run seed, step number), so a step is a pure
    function of its inputs.
    """
    eligible = masked_positions(canvas, denoiser.mask_id) & canvas.active  # (B, L)
    logits, evaluations = denoise(denoiser, canvas, cfg_scale=cfg_scale)  # (B, L, V)
    proposal = kernels.propose(logits, temperature=temperature, seed=generator.initial_seed(),
                               offset=step, rows=eligible)
    return Prediction(eligible, logits, proposal, evaluations)


def score_proposals(proposal: kernels.Proposal, kind: str, *, seed: int, offset: int) -> torch.Tensor:
    """(B, L) float32 ranking score of each proposal; higher commits first.

    ``"prob"``: the proposal's untempered probability (LLaDA "low_confidence", Dream
    "maskgit_plus"); ``"margin"``: top-1 minus top-2 probability (Dream "topk_margin");
    ``"entropy"``: negative entropy in nats (Dream "entropy"); ``"random"``: a Philox uniform
    from the ``uniform`` stream at (``seed``, ``offset``) (LLaDA "random" remasking).
    """
    if kind == "prob":
        return proposal.prob
    if kind == "margin":
        return proposal.margin
    if kind == "entropy":
        return -proposal.entropy
    if kind == "random":
        return kernels.uniform(proposal.prob.shape, seed=seed, offset=offset, device=proposal.prob.device)
    raise ValueError(f"score must be one of {SCORES}, got {kind!r}")


def demote(score: torch.Tensor, proposal_tokens: torch.Tensor, token_ids: tuple[int, ...]) -> torch.Tensor:
    """Rank proposals of ``token_ids`` after every other candidate (among themselves, left to
    right), without making them ineligible: LLaDA's "EOS confidence set to 0" (App. B.4)."""
    ids = torch.tensor(token_ids, device=score.device)
    hit = torch.isin(proposal_tokens, ids)  # (B, L)
    return torch.where(hit, torch.finfo(score.dtype).min, score)


def commit(
    canvas: Canvas, committed: torch.Tensor, proposal: torch.Tensor, mask_id: int, evaluations: int
) -> Canvas:
    """Write ``proposal`` where ``committed``, charge the step to unfinished rows, move windows.

    Parameters
    ----------
    canvas : Canvas
    committed : (B, L) bool
    proposal : (B, L) int64
    mask_id : int
    evaluations : int
        Denoiser evaluations this step cost each unfinished row.
    """
    tokens = torch.where(committed, proposal, canvas.tokens)  # (B, L)
    nfe = canvas.nfe + evaluations * (~canvas.done).long()  # (B,)
    masked = canvas.editable & (tokens == mask_id)  # (B, L)
    done = ~masked.any(-1)  # (B,)
    # The active block is the left-most one still holding a mask; a finished row keeps its last.
    big = torch.iinfo(torch.int64).max
    window = torch.where(masked, canvas.block, big).amin(-1)  # (B,)
    window = torch.where(done, canvas.window, window)
    return canvas._replace(tokens=tokens, nfe=nfe, done=done, window=window)


def even_split(total: torch.Tensor, parts: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Share of part ``index`` when ``total`` items are split evenly into ``parts``.

    LLaDA's rule (``get_num_transfer_tokens``): every part gets ``total // parts`` and the
    first ``total % parts`` parts get one more (remainder front-loaded). All arguments are
    int64 tensors of the same shape; ``parts`` must be positive.
    """
    return total // parts + (index < total % parts).long()


def block_mask_count(canvas: Canvas, mask_id: int) -> torch.Tensor:
    """(B,) int64: masked positions in each row's active block."""
    return (masked_positions(canvas, mask_id) & canvas.active).sum(-1)


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
    if min_spacing <= 1:
        return selected
    B, L = selected.shape
    lowest = torch.finfo(score.dtype).min
    key = torch.where(selected, score.nan_to_num(nan=lowest, neginf=lowest), float("-inf"))  # (B, L)
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


class BlockSchedule(NamedTuple):
    """LLaDA's per-block commit schedule, per row (arXiv 2502.09992, ``get_num_transfer_tokens``).

    A block's masks are split evenly over the steps allotted to the block, remainder first; the
    steps of a run are split evenly over its blocks, remainder first. All fields (B,) int64.

    Attributes
    ----------
    step : steps taken in the row's active block.
    masks : masks the active block held when it became active.
    steps : steps allotted to the active block.
    """

    step: torch.Tensor
    masks: torch.Tensor
    steps: torch.Tensor

    @classmethod
    def start(cls, canvas: Canvas, mask_id: int, steps: int | None) -> "BlockSchedule":
        """The schedule of every row's first block; ``steps`` None = one token per step."""
        return cls(torch.zeros_like(canvas.nfe), block_mask_count(canvas, mask_id),
                   allotted_steps(canvas, mask_id, steps))

    def count(self, canvas: Canvas) -> torch.Tensor:
        """(B,) int64: tokens to commit this step (0 for finished rows)."""
        # A finished row has an empty block (0 steps): clamp so it divides safely, then zero it.
        k = even_split(self.masks, self.steps.clamp_min(1), self.step)  # (B,)
        return torch.where(canvas.done, 0, k)

    def advance(self, before: Canvas, after: Canvas, mask_id: int, steps: int | None) -> "BlockSchedule":
        """The schedule after a step: rows whose window moved start their new block afresh."""
        moved = after.window != before.window  # (B,)
        return BlockSchedule(
            step=torch.where(moved, 0, self.step + 1),
            masks=torch.where(moved, block_mask_count(after, mask_id), self.masks),
            steps=torch.where(moved, allotted_steps(after, mask_id, steps), self.steps),
        )


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
