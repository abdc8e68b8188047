"""DUS, the Dilated Unmasking Scheduler (Luxembourg, Permuter, Nachmani, "Plan for Speed:
Dilated Scheduling for Masked Diffusion Language Models", arXiv 2506.19037).

A planner-free schedule: each block of n positions is cut into ≈ log_base(n) **level sets**
of far-apart positions — first every (n/base)-th position, then the points between them, and
so on down to stride 1 — and each step commits one level with a single forward pass. Under a
fast-mixing (first-order Markov) assumption non-adjacent tokens are nearly independent given
the context, so the joint entropy of a dilated level is close to the sum of its marginals:
committing it in parallel costs little total correlation (the gap between the sum of the
marginal entropies and the joint entropy, which is what parallel decoding loses).

Level sets for a block of any size n (DUS ``dilated_unmask_levels(start, end, base,
skip_exp)`` followed by ``merge_last_level``), by offset ``i`` in ``0..n-1``:

1. strides ``s_0 = n // base**skip_exp``, ``s_{k+1} = s_k // base``, while ``s_k >= 1``;
2. offset ``i`` belongs to the first round ``k`` with ``i % s_k == 0``; offsets that match no
   round (only when ``s_0 = 0``, i.e. n < base**skip_exp) form one last round; rounds that
   reveal nothing new are dropped;
3. if the last level is smaller than the one before it, the two are merged.

So n = 32, base 2 gives levels of sizes 2, 2, 4, 8, 16 (5 passes); n = 10 gives {0, 5},
{2, 4, 6, 8}, {1, 3, 7, 9}; n = 5 gives one level (sizes 3, 2 merged); ``base = 1`` gives
one level. ``schedule="binary"`` uses DUS's ``binary_search_levels`` instead (level =
depth of the offset in the midpoint-first binary search of ``0..n-1``), with the same merge.
Offsets count the block's editable positions left to right (for ``generate`` these are the
canvas offsets from the block start, as in the reference).

Optional **confidence floor** (DUS ``confidence_threshold``): a scheduled position whose
proposal has probability below the floor is not committed (DUS commits then "remasks" it);
the last level of a block ignores the floor.

Checked against ``omerlux/DUS/generate.py::generate_scheduled``.
Reference defaults: ``schedule="dilated"`` (the function's own default is "binary"; DUS's
method is the dilated one), ``base=2``, ``skip_exp=1``, ``block_length=32``,
``confidence_threshold=0.3``.

Departures from the reference code:

- **Positions left masked by the floor are rescheduled**: step k of a
  block proposes at every still-masked position of levels 0..k, so a position refused by the
  floor is retried with the next level, and the last level commits everything left. The
  reference's levels are disjoint, so such a position is never revisited and a mask can
  survive to the output. With no floor (``confidence_threshold=None``) nothing differs.
- The floor compares the model's untempered probability of the proposal; the reference
  computes it on Gumbel-perturbed scores when T > 0. Proposals at T > 0 are exact
  samples of softmax(logits / T), drawn from a counter-based stream.
- Any ``gen_length``/``block_length`` (the reference asserts divisibility; a shorter last
  block gets its own levels) and batches with ragged prompts (the reference is B = 1).
- Classifier-free guidance uses LLaDA's ``un + (s + 1)(cond − un)`` with only the fixed
  tokens masked in the unconditional branch (the reference's ``generate_scheduled`` masks
  every non-mask token, committed ones included).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, StepInfo, _check_choice, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.canvas import eligible as eligible_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register

__all__ = ["Dilated", "DilatedState", "binary_levels", "dilated_levels"]

SCHEDULES = ("dilated", "binary")


def _merge_last(level: list[int]) -> tuple[int, ...]:
    """DUS ``merge_last_level``: fold the last level into the previous one if it is smaller."""
    count = max(level) + 1
    sizes = [level.count(k) for k in range(count)]
    if count >= 2 and sizes[-1] < sizes[-2]:
        level = [min(v, count - 2) for v in level]
    return tuple(level)


@functools.lru_cache(maxsize=1024)
def dilated_levels(n: int, base: int = 2, skip_exp: int = 1) -> tuple[int, ...]:
    """Level of each offset ``0..n-1`` of a block of ``n`` positions under DUS's dilated schedule.

    See the module docstring for the rule; levels are numbered 0, 1, ... with no gaps.

    Examples
    --------
    >>> dilated_levels(8)
    (0, 2, 1, 2, 0, 2, 1, 2)
    """
    if base == 1:
        return (0,) * n
    level = [-1] * n
    stride = n // base**skip_exp
    k = 0
    while stride >= 1:
        fresh = [i for i in range(0, n, stride) if level[i] < 0]
        if fresh:
            for i in fresh:
                level[i] = k
            k += 1
        stride //= base
    if any(v < 0 for v in level):  # the reference's final "leftovers" round
        level = [k if v < 0 else v for v in level]
    return _merge_last(level)


@functools.lru_cache(maxsize=1024)
def binary_levels(n: int) -> tuple[int, ...]:
    """Level of each offset ``0..n-1`` under DUS's ``binary_search_levels`` (then merged).

    Examples
    --------
    >>> binary_levels(7)
    (2, 1, 2, 0, 2, 1, 2)
    """
    level = [0] * n
    stack = [(0, n - 1, 0)]
    while stack:
        lo, hi, depth = stack.pop()
        if lo > hi:
            continue
        mid = (lo + hi) // 2
        level[mid] = depth
        stack += [(lo, mid - 1, depth + 1), (mid + 1, hi, depth + 1)]
    return _merge_last(level)


class DilatedState(NamedTuple):
    """State of :class:`Dilated`.

    Attributes
    ----------
    canvas : Canvas
    level : (B, L) int64
        Level of each editable position inside its block (-1 elsewhere).
    last_level : (B, L) int64
        Index of the last level of each editable position's block (-1 elsewhere).
    block_step : (B,) int64
        Level the active block is at (steps taken in it).
    """

    canvas: Canvas
    level: torch.Tensor
    last_level: torch.Tensor
    block_step: torch.Tensor


@register("dilated")
@dataclass(frozen=True, kw_only=True)
class Dilated(Sampler):
    """DUS: commit one dilated level set of each block per forward pass.

    Parameters
    ----------
    block_length : int, optional
        Block size (default 32, the paper's); each block takes about log_base(block_length)
        passes. None = one block over the whole editable region.
    schedule : {"dilated", "binary"}
        DUS's dilated levels (stride n/base^skip_exp, then divided by ``base``) or its
        binary-search (midpoint-first) levels.
    base : int
        Dilation factor (>= 1; 1 commits the whole block in one pass). Dilated schedule only.
    skip_exp : int
        The first stride is ``n // base**skip_exp`` (>= 1). Dilated schedule only.
    confidence_threshold : float, optional
        Confidence floor in [0, 1]: scheduled positions whose proposal probability is below it
        stay masked and are retried with the next level (never on a block's last level).
        None or 0 disables it.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).
    cfg_scale : float
        Classifier-free guidance scale s >= 0 (0 disables; a guided step costs 2 NFE): sugar for
        running on ``remask.models.wrappers.Guided(model, cfg_scale)`` (see ``Sampler.wrap``).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("dilated", block_length=8)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=16, seed=0)
    >>> out.nfe.tolist()  # two blocks of 8, three levels each
    [6]
    """

    example_configs = (
        {"block_length": 3},
        {"block_length": 5, "confidence_threshold": 0.9},
        {"schedule": "binary", "block_length": None, "temperature": 1.0},
        {"base": 3, "confidence_threshold": None, "cfg_scale": 1.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("base 2", {"temperature": 1.0, "block_length": G, "confidence_threshold": None}),
            ("base 2, floor 0.3", {"temperature": 1.0, "block_length": G}),
        )

    block_length: int | None = 32
    schedule: str = "dilated"
    base: int = 2
    skip_exp: int = 1
    confidence_threshold: float | None = 0.3
    temperature: float = 0.0
    cfg_scale: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self.schedule, "schedule", SCHEDULES)
        _check_int(self.base, "base", low=1)
        _check_int(self.skip_exp, "skip_exp", low=1)
        if self.confidence_threshold is not None:
            _check_float(self.confidence_threshold, "confidence_threshold", low=0.0, high=1.0)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_float(self.cfg_scale, "cfg_scale", low=0.0)

    def levels(self, n: int) -> tuple[int, ...]:
        """Level of each offset of a block of ``n`` positions under this config."""
        if self.schedule == "binary":
            return binary_levels(n)
        return dilated_levels(n, self.base, self.skip_exp)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> DilatedState:
        editable = canvas.editable
        order = editable.long().cumsum(-1) - 1  # (B, L): rank of each editable position in its row
        total = editable.sum(-1, keepdim=True)  # (B, 1)
        if self.block_length is None:
            offset, size = order, total.expand_as(order)  # (B, L) each
        else:
            # Offsets and sizes come from the canvas's blocks, which need not be cut from the
            # first editable position (a block-diffusion model's grid cuts the first one short).
            block = canvas.block.clamp_min(0)  # (B, L)
            n_blocks = int(block.max()) + 1 if block.numel() else 1
            counts = torch.zeros(block.shape[0], n_blocks, dtype=torch.int64, device=block.device)
            counts.scatter_add_(1, block, editable.long())  # (B, n_blocks) editable per block
            big = torch.iinfo(torch.int64).max
            first = torch.full_like(counts, big).scatter_reduce_(
                1, block, torch.where(editable, order, big), reduce="amin"
            )  # (B, n_blocks)
            offset = order - first.gather(1, block)  # (B, L) rank inside the block
            size = counts.gather(1, block)  # (B, L)
        size = torch.where(editable, size, 0)
        level = torch.full_like(order, -1)  # (B, L)
        last_level = torch.full_like(order, -1)  # (B, L)
        # Few distinct block sizes exist (block_length and the last blocks' remainders), so the
        # host-side level tables are built once per size; init is not the hot path.
        for n in torch.unique(size[editable]).tolist():
            table = torch.tensor(self.levels(n), dtype=torch.int64, device=order.device)  # (n,)
            here = editable & (size == n)  # (B, L)
            level = torch.where(here, table[offset.clamp(0, n - 1)], level)
            last_level = torch.where(here, table.max(), last_level)
        return DilatedState(
            canvas=canvas,
            level=level,
            last_level=last_level,
            block_step=torch.zeros_like(canvas.nfe),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: DilatedState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        active = canvas.active  # (B, L)
        eligible = eligible_positions(canvas, mask_id)  # (B, L)
        # Every still-masked position of levels 0..k: level k plus those the floor refused.
        scheduled = eligible & (state.level <= state.block_step.unsqueeze(-1))  # (B, L)
        final = state.block_step >= torch.where(active, state.last_level, -1).amax(-1)  # (B,)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            key=proposal_keys(key, canvas, self.temperature),
            rows=scheduled,
        )
        committed = scheduled  # (B, L)
        if self.confidence_threshold:
            confident = proposal.prob >= self.confidence_threshold  # (B, L)
            committed = scheduled & (confident | final.unsqueeze(-1))

        new_canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)
        moved = new_canvas.window != canvas.window  # (B,): the block is complete
        new_state = DilatedState(
            canvas=new_canvas,
            level=state.level,
            last_level=state.last_level,
            block_step=torch.where(moved, 0, state.block_step + 1),
        )
        info = StepInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(scheduled, proposal.prob, float("-inf")),
        )
        return new_state, info
