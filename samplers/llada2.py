"""LLaDA 2.0 block decoding: threshold when enough positions pass, else the scheduled top-k
(inclusionAI, "LLaDA2.0: Scaling Up Diffusion Language Models to 100B", technical report, 2025;
its arXiv id was not verified when this file was written — check before citing).

Checked against the HF ``inclusionAI/LLaDA2.0-mini`` ``modeling_llada2_moe.py``
(``LLaDA2MoeModelLM.generate``, ``_get_num_transfer_tokens``,
``_sample_with_temperature_topk_topp``) and ``ZHZisZZ/dllm``'s ``LLaDA2Sampler``.
Blocks of ``block_length`` (32) are decoded left to right; each
block has ``steps`` (32) steps and a schedule that splits the block's size evenly over them
(remainder first). At step ``i`` of a block with scheduled count ``k_i``, every masked
position proposes a token and a confidence; if at least ``k_i`` positions have confidence
``> threshold`` (strict, as in the reference) all of them commit, otherwise the ``k_i`` most
confident commit. The block ends as soon as it has no mask.

Confidence: at T = 0 the probability of the argmax under the raw softmax; at T > 0 the
probability of the sampled token under ``softmax(logits / T)`` (the reference's
``token_prob`` is taken from the tempered distribution).

``minimal_topk`` — "lower-bounds the number of tokens transferred per step; also caps
steps" in the reference docstring — caps the steps of a block of ``b`` tokens at
``b // minimal_topk`` so every scheduled count is at least ``minimal_topk``.

Departures from the reference code (all deliberate):

- ``minimal_topk`` caps the steps per block at ``block size // minimal_topk`` (at least 1).
  The reference computes ``min(steps, gen_length // minimal_topk)``, which only bites when
  ``gen_length < steps · minimal_topk`` and so leaves the documented lower bound unenforced
  for any long generation; with the default ``minimal_topk = 1`` both agree.
- Blocks are cut from the first generated position (the toolkit's convention for every
  sampler); the reference aligns blocks to multiples of ``block_length`` from the start of
  the sequence, prompt included, because its model attends block-causally. The two agree when
  the prompt length is a multiple of ``block_length``; block-causal attention itself is the
  model adapter's business. The schedule uses the block's actual size (the last block may
  be shorter), where the reference always splits ``block_length``.
- No EOS early stop (``eos_early_stop``): the driver runs until no mask is left; truncating
  at the first EOS is a post-processing step. No top-p/top-k filtering.
- Any batch size with ragged prompts (the reference is batch-size 1); float32 confidences
  (reference: float32 softmax of bf16 logits); ties to the lower position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, StepInfo, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.canvas import eligible as eligible_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register
from remask.samplers.schedules import SplitTable, block_masks, split_table, table_count

__all__ = ["LLaDA2", "LLaDA2State"]


class LLaDA2State(NamedTuple):
    """State of :class:`LLaDA2`.

    Attributes
    ----------
    canvas : Canvas
    block_step : (B,) int64
        Steps taken in the row's active block.
    schedule : SplitTable
        Every block's scheduled count per step (:func:`~remask.samplers.schedules.split_table`
        of the block's masks over its steps), computed once at ``init``: the sampler writes
        only its active block, so a block holds the same masks when it becomes active as at
        the start.
    """

    canvas: Canvas
    block_step: torch.Tensor
    schedule: SplitTable


@register("llada2")
@dataclass(frozen=True, kw_only=True)
class LLaDA2(Sampler):
    """LLaDA 2.0's rule: all positions above the threshold if there are enough, else top-k.

    Parameters
    ----------
    block_length : int, optional
        Block length (default 32); None = one block.
    steps : int
        Steps per block (default 32), capped at ``block size // minimal_topk``.
    threshold : float
        Confidence in [0, 1] above which (strictly) a proposal may commit early.
    minimal_topk : int
        Lower bound on the scheduled count per step (caps the steps per block).
    temperature : float
        0 proposes the argmax; T > 0 samples from softmax(logits / T).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("llada2", block_length=4, steps=2)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 4)
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"block_length": 4, "steps": 2},
        {"threshold": 0.3, "minimal_topk": 2, "block_length": 5},
        {"temperature": 1.0, "steps": 4, "block_length": None},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("tau=0.95", {"temperature": 1.0, "threshold": 0.95, "steps": max(G // 2, 1)}),
            ("tau=0.7", {"temperature": 1.0, "threshold": 0.7, "steps": max(G // 4, 1)}),
        )

    block_length: int | None = 32
    steps: int = 32
    threshold: float = 0.95
    minimal_topk: int = 1
    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.steps, "steps", low=1)
        _check_float(self.threshold, "threshold", low=0.0, high=1.0)
        _check_int(self.minimal_topk, "minimal_topk", low=1)
        _check_float(self.temperature, "temperature", low=0.0)

    def init(self, canvas: Canvas, denoiser) -> LLaDA2State:
        size = block_masks(canvas, denoiser.mask_id)  # (B, n_blocks) masks of every block
        return LLaDA2State(
            canvas=canvas,
            block_step=torch.zeros_like(canvas.nfe),
            schedule=split_table(size, self._block_steps(size)),
        )

    def step(self, state: LLaDA2State, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        eligible = eligible_positions(canvas, mask_id)  # (B, L)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        # The reference's confidence is the sampled token's tempered probability: the
        # "sampled" statistics (no (B, L, V) division by T first).
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            key=proposal_keys(key, canvas, self.temperature),
            rows=eligible,
            stats="sampled" if self.temperature > 0 else "untempered",
        )
        score = proposal.prob  # (B, L), 0 outside ``eligible``

        # A finished row has no eligible position (done means no mask is left), so it commits
        # nothing whatever its scheduled count: no per-row masking by ``done`` is needed.
        k = table_count(state.schedule, canvas.window, state.block_step)  # (B,) scheduled
        # "All confident positions if there are at least k, else the top k" is the top
        # max(k, n) with n the number of confident positions: the confident ones (score >
        # threshold) outrank every other eligible position, so when n >= k the top n are
        # exactly they. ``score`` is 0 outside ``eligible`` and threshold >= 0, so n counts
        # eligible positions only.
        confident = (score > self.threshold).sum(-1)  # (B,)
        committed = kernels.topk_mask(score, torch.maximum(k, confident), eligible)  # (B, L)
        new_canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)

        moved = new_canvas.window != canvas.window  # (B,) rows starting a new block
        new_state = LLaDA2State(
            canvas=new_canvas,
            block_step=torch.where(moved, 0, state.block_step + 1),
            schedule=state.schedule,
        )
        info = StepInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, score, float("-inf")),
        )
        return new_state, info

    def _block_steps(self, size: torch.Tensor) -> torch.Tensor:
        """Steps of a block of ``size`` masks: min(steps, size // minimal_topk), >= 1."""
        if self.minimal_topk > 1:
            size = torch.floor_divide(size, self.minimal_topk)
        return size.clamp(min=1, max=self.steps)
