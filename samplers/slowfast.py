"""SlowFast sampling (Wei et al., "Accelerating Diffusion Large Language Models with SlowFast
Sampling: The Three Golden Principles", arXiv 2506.10848).

Three principles decide which tokens to commit: *certainty* (commit what the model is sure
of), *convergence* (wait until the region the model is sure of stops moving) and *position*
(that region is the span right after what is already decoded). Each block is decoded in
**sub-cycles**, each an exploratory (slow) phase followed by a fast phase:

* **Slow phase** — ``explore_steps`` steps. At each, while the span is not yet settled, its
  end is estimated as one past the farthest masked position (from the span's start to the
  block's end) whose confidence is at least ``span_threshold`` (one past the start if none),
  and the estimate joins a window of the last ``stability_window`` estimates; when their
  (population) standard deviation falls below ``stability_std`` the span is settled with the
  latest estimate, else its end is the floor of their mean (settled anyway at the phase's last
  step; a window never filled settles on the mean of what it holds). Meanwhile every step
  commits tokens anywhere from the span's start to the block's end: all masked positions with
  confidence ``>= high_threshold`` if there are at least two, else the single most confident.
* **Fast phase** — until the span has no mask left, each step commits, within the span, all
  masked positions with confidence ``>= high_threshold`` if at least two, else the most
  confident one. Then the next sub-cycle starts at the span's end.

The confidence is the untempered softmax probability of the proposal (argmax at T = 0).
Positions are counted over the editable positions of the block (for ``generate``, the
generated positions), so infilling works the same way.

Checked against the authors' ``sampling_utils/generate_slow_fast_sampling.py``
(``generate_slow_fast_sampling``). Reference defaults: ``k_exploration_steps = 6``,
``cycle_len_confidence_threshold = 0.3``, ``cycle_length_stability_window = 2``,
``cycle_length_stability_std_dev_threshold = 1.0``, ``high_confidence_threshold = 0.9``,
temperature 0, and in the evaluation scripts ``block_length = gen_length`` (one block:
``block_length=None`` here).

Departures from the reference code:

- No suffix truncation in the fast phase. After its first fast step the reference runs the
  model on the canvas truncated after the span (reusing the first fast step's logits beyond
  it): an approximation of the model that changes its input, and so possibly its tokens.
  Here every step sees the whole canvas; truncation or dropping of distant suffix masks is a
  denoiser wrapper's business (see DPad), not the sampler's.
- Once a block has no mask left the sampler moves on; the reference spends the rest of the
  slow phase's ``explore_steps`` forward passes on it without committing anything (tokens are
  unchanged, NFE is lower here).
- Rows are independent: a row whose span is filled starts its next sub-cycle while other rows
  are still in their fast phase (the reference waits for the whole batch, and then rewrites
  an already-decoded position of the waiting rows with a fresh argmax through ``topk`` over
  an all ``-inf`` span); per-row NFE; ragged prompts.
- No cap of 256 sub-cycles per block (each step commits at least one token, so a block of
  ``b`` masks ends within ``b`` steps); ``num_important_low_confidence_tokens`` is unused in
  the reference and absent here. Any ``gen_length``/``block_length`` (the reference asserts
  divisibility; the last block may be shorter, and the span is clamped to the block).
- Proposals at T > 0 are exact samples of softmax(logits / T) (reference: ``exp(logits) /
  (-log u)^T`` in the logits' dtype); confidences are float32; ties go to the lower position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import predict
from remask.samplers.registry import register

__all__ = ["SlowFast", "SlowFastState", "SlowFastInfo"]


class SlowFastState(NamedTuple):
    """State of :class:`SlowFast` (one sub-cycle per row).

    Attributes
    ----------
    canvas : Canvas
    start, end : (B,) int64
        The span of the sub-cycle, as ranks among the active block's editable positions
        (``end`` is meaningful once the span is settled).
    explored : (B,) int64
        Slow-phase steps taken in this sub-cycle (``>= explore_steps``: fast phase).
    settled : (B,) bool
        The span's end is decided (estimates stop).
    history : (B, W) int64
        The last W span-end estimates, oldest first (W = ``stability_window``).
    filled : (B,) int64
        How many of ``history`` are real estimates (the most recent ones).
    """

    canvas: Canvas
    start: torch.Tensor
    end: torch.Tensor
    explored: torch.Tensor
    settled: torch.Tensor
    history: torch.Tensor
    filled: torch.Tensor


class SlowFastInfo(NamedTuple):
    """What one SlowFast step did.

    Attributes
    ----------
    committed : (B, L) bool
    proposal : (B, L) int64
    score : (B, L) float32
        Confidence of the proposal at the masked positions of the active block (-inf elsewhere).
    slow : (B,) bool
        The row took a slow (exploratory) step; False: a fast step.
    start, end : (B,) int64
        The span after the step (ranks in the block).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    slow: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor


@register("slowfast")
@dataclass(frozen=True, kw_only=True)
class SlowFast(Sampler):
    """SlowFast sampling: explore until the span to decode stabilises, then fill it fast.

    Parameters
    ----------
    explore_steps : int
        Steps of each slow phase (reference ``k_exploration_steps``, 6).
    span_threshold : float
        Confidence in [0, 1] at which a masked position counts as inside the span
        (``cycle_len_confidence_threshold``, 0.3).
    stability_window : int
        How many recent span estimates must agree (``cycle_length_stability_window``, 2).
    stability_std : float
        The span is settled when those estimates' standard deviation is below this (> 0;
        ``cycle_length_stability_std_dev_threshold``, 1.0).
    high_threshold : float
        Confidence in [0, 1] at which positions commit together (``high_confidence_threshold``,
        0.9); with fewer than two such positions the most confident one commits alone.
    block_length : int, optional
        Block length; None (default, the reference scripts' block_length = gen_length) = one
        block.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).
    cfg_scale : float
        Classifier-free guidance scale s >= 0 (0 disables; a guided step costs 2 NFE): sugar for
        running on ``remask.models.wrappers.Guided(model, cfg_scale)`` (see ``Sampler.wrap``).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("slowfast", explore_steps=2)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 8)
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"explore_steps": 2, "block_length": 4},
        {"explore_steps": 1, "stability_window": 3, "span_threshold": 0.05},
        {"high_threshold": 0.1, "temperature": 1.0, "block_length": 5},
        {"stability_std": 3.0, "explore_steps": 3, "cfg_scale": 1.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("k=6, high 0.9", {"temperature": 1.0}),
            ("k=2, high 0.7", {"temperature": 1.0, "explore_steps": 2, "high_threshold": 0.7}),
        )

    block_length: int | None = None
    explore_steps: int = 6
    span_threshold: float = 0.3
    stability_window: int = 2
    stability_std: float = 1.0
    high_threshold: float = 0.9
    temperature: float = 0.0
    cfg_scale: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.explore_steps, "explore_steps", low=1)
        _check_float(self.span_threshold, "span_threshold", low=0.0, high=1.0)
        _check_int(self.stability_window, "stability_window", low=1)
        _check_float(self.stability_std, "stability_std", low=0.0, low_open=True)
        _check_float(self.high_threshold, "high_threshold", low=0.0, high=1.0)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_float(self.cfg_scale, "cfg_scale", low=0.0)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> SlowFastState:
        zeros = torch.zeros_like(canvas.nfe)  # (B,)
        return SlowFastState(
            canvas=canvas,
            start=zeros,
            end=zeros,
            explored=zeros,
            settled=torch.zeros_like(canvas.done),
            history=zeros.unsqueeze(-1).repeat(1, self.stability_window),
            filled=zeros,
        )

    # ------------------------------------------------------------------ step
    def step(self, state: SlowFastState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        K, W = self.explore_steps, self.stability_window
        live = ~canvas.done  # (B,)
        block = canvas.editable & canvas.active & live.unsqueeze(-1)  # (B, L)
        rank = block.long().cumsum(-1) - 1  # (B, L): position within the block
        size = block.sum(-1)  # (B,)
        start, end = state.start, state.end

        eligible, _, proposal, evaluations = predict(
            canvas, denoiser, key, temperature=self.temperature
        )
        eligible = eligible & live.unsqueeze(-1)
        confidence = torch.where(eligible, proposal.prob, float("-inf"))  # (B, L)
        after = eligible & (rank >= start.unsqueeze(-1))  # (B, L) masks from the span's start on
        slow = live & (state.explored < K)  # (B,)

        # Slow phase: estimate the span's end (rows not yet settled).
        estimating = slow & ~state.settled  # (B,)
        inside = after & (confidence >= self.span_threshold)  # (B, L)
        farthest = torch.where(inside, rank, -1).amax(-1)  # (B,)
        increment = torch.where(inside.any(-1), farthest - start + 1, 1)
        increment = torch.where(start < size, increment, 0)  # (B,)
        estimate = torch.minimum((start + increment).clamp_min(1), size)  # (B,)
        pushed = torch.cat([state.history[:, 1:], estimate.unsqueeze(-1)], -1)  # (B, W)
        history = torch.where(estimating.unsqueeze(-1), pushed, state.history)
        filled = torch.where(estimating, (state.filled + 1).clamp_max(W), state.filled)
        full = estimating & (filled >= W)  # (B,)
        spread = history.double().std(-1, correction=0)  # (B,) population std, as np.std
        stable = spread < self.stability_std
        mean = torch.minimum((history.sum(-1) // W).clamp_min(1), size)  # (B,) floor of the mean
        end = torch.where(full, torch.where(stable, estimate, mean), end)
        settled = state.settled | (full & (stable | (state.explored == K - 1)))

        # Commit: all confident positions if at least two, else the most confident one; the
        # slow phase looks up to the block's end, the fast phase within the span.
        upper = torch.where(slow, size, end)  # (B,)
        candidates = after & (rank < upper.unsqueeze(-1))  # (B, L)
        confident = candidates & (confidence >= self.high_threshold)  # (B, L)
        committed = torch.where(
            (confident.sum(-1) > 1).unsqueeze(-1),
            confident,
            kernels.topk_mask(confidence, 1, candidates),
        )  # (B, L)

        # The slow phase's end settles a span that never became stable within its window.
        explored = torch.where(slow, state.explored + 1, state.explored)  # (B,)
        unsettled = slow & (explored >= K) & ~settled
        recent = torch.arange(W, device=history.device) >= (W - filled).unsqueeze(-1)  # (B, W)
        partial = torch.where(recent, history, 0).sum(-1) // filled.clamp_min(1)  # (B,)
        fallback = torch.where(filled > 0, partial, size // 2)
        end = torch.where(unsettled, torch.minimum(fallback.clamp_min(1), size), end)
        settled = settled | unsettled

        new_canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)

        # A finished span starts the next sub-cycle at its end; a new block starts afresh.
        masks_left = block & (new_canvas.tokens == mask_id)  # (B, L)
        in_span = (rank >= start.unsqueeze(-1)) & (rank < end.unsqueeze(-1))  # (B, L)
        span_done = (explored >= K) & ~(masks_left & in_span).any(-1)  # (B,)
        new_block = (new_canvas.window != canvas.window) | new_canvas.done  # (B,)
        restart = span_done | new_block  # (B,)
        zero = torch.zeros_like(start)
        new_state = SlowFastState(
            canvas=new_canvas,
            start=torch.where(new_block, zero, torch.where(span_done, end, start)),
            end=torch.where(new_block, zero, end),
            explored=torch.where(restart, zero, explored),
            settled=settled & ~restart,
            history=torch.where(restart.unsqueeze(-1), 0, history),
            filled=torch.where(restart, zero, filled),
        )
        info = SlowFastInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=confidence,
            slow=slow,
            start=new_state.start,
            end=new_state.end,
        )
        return new_state, info
