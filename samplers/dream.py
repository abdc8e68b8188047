"""Dream's ``diffusion_generate`` (Ye et al., "Dream 7B: Diffusion Large Language Models",
arXiv 2508.15487).

Checked against the HF ``Dream-org/Dream-v0-Instruct-7B/generation_utils.py``
(``DreamGenerationMixin._sample`` and ``sample_tokens``).
On the grid ``t_i = linspace(1, eps, steps + 1)`` each step goes from ``t = t_i`` to
``s = t_{i+1}``:

- ``alg="origin"``: every masked position independently flips with probability ``1 - s/t``
  (probability 1 at the last step) and is sampled from the (temperature / top-p / top-k)
  categorical — D3PM/MDLM ancestral sampling;
- ``alg`` in {"maskgit_plus", "topk_margin", "entropy"}: every masked position proposes a
  token and a confidence (top-1 probability, top-1 minus top-2 probability, negative
  entropy), and ``n = floor(M (1 - s/t))`` of them are committed (``M`` = masks left; the last
  step commits all): the ``n`` most confident, or — with ``alg_temp`` — ``n`` positions drawn
  without replacement from ``softmax(confidence / alg_temp)``.

Proposals and confidences follow ``sample_tokens``: logits are divided by the temperature
(when T > 0), then top-p filtered, then top-k filtered, and the confidence is computed on
the resulting distribution (tempered and filtered — *not* the raw model probabilities); the
token is a sample from it (T > 0) or its argmax (T = 0). Implemented inside one
``kernels.propose`` call (``top_p``/``top_k``, ``nucleus="crossing"`` — Dream keeps the token
whose cumulative mass crosses ``top_p`` — and ``stats="sampled"``, whose probability, margin
and entropy are those of the tempered, filtered distribution): no sort of the vocabulary and
no (B, L, V) temporary. Tokens tied with the top-p cut are all kept (Dream's sort keeps an
arbitrary subset of them). Dream's one-position logit shift is the model adapter's job.

Departures from the reference code (all deliberate):

- **No zero-commit steps.** With ``steps`` close to or above the number of masks,
  ``floor(M (1 - s/t))`` is 0 on early steps (e.g. 512 tokens / 512 steps: step 0 commits
  nothing) and the reference still pays a forward pass for them. Here a
  step *skips* the grid steps whose count is 0 — the count depends only on ``M`` and the
  grid, not on the model, and Dream is not time-conditioned, so the skipped forward passes
  would have seen the same canvas and changed nothing. Outputs are therefore token for token
  the reference's (greedy); only NFE drops. (Redefining the count so every step commits
  >= 1 would change the schedule itself, so we did not.) The same holds for ``"origin"``:
  grid steps on which no position flips are skipped by drawing each position's flip index
  directly (:func:`remask.samplers.ancestral.next_unmask_index`), which leaves the output law
  unchanged.
- ``M`` is the row's own mask count (the reference uses the batch mean, equal for its
  equal-length tails), so a row decodes the same alone or in a batch.
- Semi-autoregressive blocks and infill work: the rule runs inside the active block, each
  block with its own grid; ``steps`` is split evenly over the blocks, remainder first.
- ``alg_temp`` sampling is Gumbel-top-k (exactly sampling without replacement from
  ``softmax(score / alg_temp)``, Plackett-Luce) with counter-based uniforms instead of
  ``torch.multinomial``; ``alg_temp`` of None or 0 means top-k, as in the reference.
- Softmax statistics in float32 from one pass (reference: bf16 softmax); entropy without the
  reference's ``+1e-10`` inside the log; the count ``M (1 - s/t)`` in float64 (reference:
  float32 ``linspace``), so it can differ by one where that product is within float32
  rounding of an integer. Confidence ties go to the lower position.
- Dream's token/logits hooks are not reproduced (callbacks see every step's info instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.kernels.score import score_proposals
from remask.samplers.base import Canvas, Sampler, StepInfo, _check_choice, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.canvas import eligible as eligible_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register
from remask.samplers.schedules import (
    allotted_steps,
    check_steps_cover_blocks,
    dream_count,
    next_unmask_index,
)

__all__ = ["Dream", "DreamState"]

ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")


class DreamState(NamedTuple):
    """State of :class:`Dream`.

    Attributes
    ----------
    canvas : Canvas
    grid : (B,) int64
        Grid steps of the active block already taken (or skipped).
    block_steps : (B,) int64
        Grid size of the active block.
    """

    canvas: Canvas
    grid: torch.Tensor
    block_steps: torch.Tensor


@register("dream")
@dataclass(frozen=True, kw_only=True)
class Dream(Sampler):
    """Dream's sampler: the ``1 - s/t`` schedule with a choice of confidence ("alg").

    Parameters
    ----------
    steps : int
        Grid steps (over all blocks; split evenly, remainder first). Steps that would commit
        nothing are skipped, so NFE <= min(steps, masks).
    alg : {"origin", "maskgit_plus", "topk_margin", "entropy"}
        "origin": random flips with probability ``1 - s/t`` (ancestral sampling);
        otherwise commit by top-1 probability, top-1 minus top-2 margin or negative entropy.
    alg_temp : float, optional
        With a confidence alg: None or 0 commits the top-n; > 0 draws the n positions without
        replacement from ``softmax(confidence / alg_temp)``.
    temperature : float
        0 proposes the argmax, T > 0 samples from ``softmax(logits / T)`` (after top-p/top-k).
    top_p : float, optional
        Nucleus filter in (0, 1] (None or 1 disables).
    top_k : int, optional
        Top-k filter (>= 1; None disables).
    eps : float
        Final time of the grid, in (0, 1).
    block_length : int, optional
        Semi-autoregressive blocks (Dream itself uses one block).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("dream", alg="entropy", steps=8)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, out.nfe.tolist()
    (torch.Size([1, 11]), [7])
    """

    example_configs = (
        {"alg": "entropy", "steps": 5},
        {"alg": "maskgit_plus", "steps": 6, "block_length": 4, "temperature": 0.5, "top_p": 0.9},
        {"alg": "topk_margin", "alg_temp": 0.5, "steps": 4, "top_k": 3},
        {"alg": "origin", "steps": 3, "temperature": 1.0},
        {"alg": "maskgit_plus", "steps": 64},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("maskgit_plus, G steps", {"temperature": 1.0, "alg": "maskgit_plus", "steps": G}),
            (
                "maskgit_plus, G/2 steps",
                {"temperature": 1.0, "alg": "maskgit_plus", "steps": max(G // 2, 1)},
            ),
            ("origin, G steps", {"temperature": 1.0, "alg": "origin", "steps": G}),
        )

    steps: int = 512
    alg: str = "origin"
    alg_temp: float | None = None
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    eps: float = 1e-3

    @property
    def stochastic(self) -> bool:
        return self.temperature > 0 or self.alg == "origin" or bool(self.alg_temp)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.steps, "steps", low=1)
        _check_choice(self.alg, "alg", ALGS)
        if self.alg_temp is not None:
            _check_float(self.alg_temp, "alg_temp", low=0.0)
        _check_float(self.temperature, "temperature", low=0.0)
        if self.top_p is not None:
            _check_float(self.top_p, "top_p", low=0.0, high=1.0, low_open=True)
        if self.top_k is not None:
            _check_int(self.top_k, "top_k", low=1)
        _check_float(self.eps, "eps", low=0.0, high=1.0, low_open=True, high_open=True)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> DreamState:
        check_steps_cover_blocks(self.steps, canvas)
        return DreamState(
            canvas=canvas,
            grid=torch.zeros_like(canvas.nfe),
            block_steps=allotted_steps(canvas, denoiser.mask_id, self.steps),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: DreamState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        eligible = eligible_positions(canvas, mask_id)  # (B, L)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        # Dream's categorical: softmax(logits / T), top-p (the crossing token kept), top-k; the
        # confidences are those of that distribution ("sampled" statistics).
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            key=proposal_keys(key, canvas, self.temperature),
            rows=eligible,
            top_p=self.top_p,
            top_k=self.top_k,
            nucleus="crossing",
            stats="sampled",
        )

        if self.alg == "origin":
            committed, grid, score = self._origin(state, eligible, key)
        else:
            committed, grid, score = self._confidence(state, eligible, proposal, key)
        committed &= ~canvas.done.unsqueeze(-1)
        new_canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)

        moved = new_canvas.window != canvas.window  # (B,) a new block starts its own grid
        new_state = DreamState(
            canvas=new_canvas,
            grid=torch.where(moved, 0, grid),
            block_steps=torch.where(
                moved, allotted_steps(new_canvas, mask_id, self.steps), state.block_steps
            ),
        )
        info = StepInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, score, float("-inf")),
        )
        return new_state, info

    def _origin(self, state: DreamState, eligible: torch.Tensor, step_key: torch.Tensor):
        """Flip positions at the next grid step on which any flips (last step: all left)."""
        u = kernels.uniform(
            kernels.position_keys(step_key, state.canvas.attention_mask, kernels.Purpose.POSITIONS),
            dtype=torch.float64,
        )  # (B, L)
        n = state.block_steps.unsqueeze(-1)  # (B, 1)
        # Flip index j: the position is unmasked by the step ending at t_j (j = n forced).
        when = torch.minimum(next_unmask_index(u, state.grid, state.block_steps, self.eps), n)
        when = torch.where(eligible, when, torch.iinfo(torch.int64).max)  # (B, L)
        event = when.amin(-1)  # (B,)
        committed = eligible & (when == event.unsqueeze(-1))  # (B, L)
        grid = torch.minimum(event, state.block_steps)  # (B,) (done rows: no eligible position)
        score = (
            -(when - state.grid.unsqueeze(-1)).clamp_max(2**24).float()
        )  # (B, L) sooner = higher
        return committed, grid, score

    def _confidence(
        self, state: DreamState, eligible: torch.Tensor, proposal, step_key: torch.Tensor
    ):
        """Commit Dream's count of the most confident (or alg_temp-sampled) positions."""
        # Dream's names are aliases of the shared scores: maskgit_plus = prob, topk_margin = margin.
        score = score_proposals(proposal, self.alg)  # (B, L)
        masks = eligible.sum(-1)  # (B,)
        taken, k = dream_count(
            masks, state.grid, state.block_steps, self.eps, max(self.steps, 1)
        )  # (B,), (B,)
        key = score
        if self.alg_temp:
            # Gumbel-top-k: the top-k of score/alg_temp + Gumbel noise is a draw of k positions
            # without replacement from softmax(score / alg_temp) (Plackett-Luce).
            u = kernels.uniform(
                kernels.position_keys(
                    step_key, state.canvas.attention_mask, kernels.Purpose.POSITIONS
                ),
                dtype=torch.float64,
            )  # (B, L)
            key = score.double() / self.alg_temp - torch.log(-torch.log(u))  # (B, L)
        committed = kernels.topk_mask(key, k, eligible)  # (B, L)
        return committed, taken + 1, score
