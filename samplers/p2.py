"""P2 path planning with the model as its own planner (Peng et al., "Path Planning for Masked
Diffusion Model Sampling", arXiv 2502.03540).

Each P2 step is split into *planning* (which positions to update) and *denoising* (what to
write there). With the self-planner, one forward pass of the denoiser does both: every
editable position of the active block, decoded or masked, proposes a token ``x0`` (argmax, or
a sample from softmax(logits / T)) and is scored by the log-probability of that proposal. The
schedule κ(t) = t fixes how many positions are unmasked after step ``i`` of ``n``: of the N
editable positions, ``m_i = floor(N (1 - i / n))`` stay masked. The ``N - m_i`` best-scored
positions are kept unmasked and the rest are masked, so

* a masked position among the best gets its proposal (it is *unmasked*), and
* a decoded position outside the best is set back to the mask (it is *remasked*) and is
  decoded afresh at a later step; a decoded position among the best keeps its token.

Decoded positions' scores are multiplied by the stochasticity strength ``eta`` (scores are
log-probabilities, <= 0: ``eta > 1`` remasks decoded tokens more readily, ``eta = 0`` never
remasks them and gives greedy ancestral decoding). The run ends after the step budget: at
``i = n`` nothing stays masked.

Checked against the authors' ``path_planning/p2.py::p2_sampling`` (``planner=None``,
``score_fn=logP``, ``kappa_fn=lambda t: t``) and ``path_planning/utils.py``. Reference
defaults: ``tau = 1`` (``temperature``), ``eta = 1``, linear κ; ``num_steps`` has no default
(``steps=None`` here: one net token per step, as many steps as the block has positions).

Departures from the reference code:

- Exactly ``m_i`` positions stay masked, ties in score broken towards the lower position
  staying unmasked; the reference masks the positions strictly below the ``m_i``-th smallest
  score, so tied scores at the cut keep more positions unmasked. ``m_i`` is computed in exact
  integer arithmetic (the reference's float ``N * (1 - i * (1/n))`` can round down by one).
- The score at T > 0 is the log of the proposal's *untempered* probability; the reference
  scores the argmax of Gumbel-perturbed, tempered logits by its log-softmax under those
  perturbed logits. At T = 0 both are log p(argmax).
- A step after which the block holds no mask (``m_i = 0``) ends the block: the remaining
  steps of the budget could change nothing (nothing may be remasked once ``m = 0``) and are
  not taken, so NFE can be below ``steps`` when ``steps`` exceeds the block's size.
- Semi-autoregressive blocks (``block_length``) are supported: ``steps`` is split evenly over
  the blocks (remainder first) and the P2 schedule runs inside each block with N = the
  block's editable positions; only the active block is planned. The reference plans the
  whole sequence at once (``block_length=None``, the default here).
- Only the self-planner: no external BERT or trained planner (the planner would be a second
  model, which the toolkit's single-denoiser contract does not carry).
- Any batch with ragged prompts; float32 probabilities (reference: float64 log-softmax).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register
from remask.samplers.schedules import allotted_steps, check_steps_cover_blocks

__all__ = ["P2", "P2State", "P2Info"]


class P2State(NamedTuple):
    """State of :class:`P2`.

    Attributes
    ----------
    canvas : Canvas
    block_step : (B,) int64
        Steps taken in the row's active block (i - 1 of the schedule).
    block_steps : (B,) int64
        Steps allotted to the active block (n of the schedule).
    block_size : (B,) int64
        Editable positions of the active block (N of the schedule).
    """

    canvas: Canvas
    block_step: torch.Tensor
    block_steps: torch.Tensor
    block_size: torch.Tensor


class P2Info(NamedTuple):
    """What one P2 step did: the StepInfo fields plus the two kinds of moves.

    Attributes
    ----------
    committed : (B, L) bool
        Positions written this step (unmasked or remasked).
    proposal : (B, L) int64
        The proposal at every editable position of the active block (-1 elsewhere).
    score : (B, L) float32
        The planner's score (log-probability, times ``eta`` on decoded positions); -inf
        outside the active block.
    unmasked, remasked : (B, L) bool
        Masked positions that received their proposal; decoded tokens set back to the mask.
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    unmasked: torch.Tensor
    remasked: torch.Tensor


@register("p2")
@dataclass(frozen=True, kw_only=True)
class P2(Sampler):
    """P2 self-planning: keep the best-scored positions unmasked, remask the worst decoded ones.

    Parameters
    ----------
    steps : int, optional
        Total steps over all blocks (the reference's ``num_steps``); None (default) gives each
        block as many steps as it has editable positions.
    temperature : float
        The reference's ``tau`` (default 1): 0 proposes the argmax; T > 0 an exact sample from
        softmax(logits / T).
    eta : float
        Stochasticity strength >= 0 (default 1): decoded positions' log-probability scores
        are multiplied by it before the ranking.
    block_length : int, optional
        Semi-autoregressive blocks; the schedule runs inside each block (None: one block).
    cfg_scale : float
        Classifier-free guidance scale s >= 0 (0 disables; a guided step costs 2 NFE): sugar for
        running on ``remask.models.wrappers.Guided(model, cfg_scale)`` (see ``Sampler.wrap``).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("p2", steps=4, temperature=0.0)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, out.nfe.tolist()
    (torch.Size([1, 11]), [4])
    """

    edits_committed = True
    example_configs = (
        {"temperature": 0.0},
        {"steps": 5, "block_length": 4, "temperature": 0.0},
        {"eta": 3.0, "steps": 20},
        {"eta": 0.0, "block_length": 3},
        {"cfg_scale": 1.0, "steps": 4, "temperature": 0.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("G steps", {"temperature": 1.0}),
            ("G steps, eta=2", {"temperature": 1.0, "eta": 2.0}),
            ("G/2 steps", {"temperature": 1.0, "steps": max(G // 2, 1)}),
        )

    steps: int | None = None
    temperature: float = 1.0
    eta: float = 1.0
    cfg_scale: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps is not None:
            _check_int(self.steps, "steps", low=1)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_float(self.eta, "eta", low=0.0)
        _check_float(self.cfg_scale, "cfg_scale", low=0.0)

    def max_steps(self, canvas: Canvas) -> int:
        return max(int(canvas.editable.sum(-1).max()), self.steps or 0) + 1

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> P2State:
        check_steps_cover_blocks(self.steps, canvas)
        return P2State(
            canvas=canvas,
            block_step=torch.zeros_like(canvas.nfe),
            block_steps=allotted_steps(canvas, denoiser.mask_id, self.steps),
            block_size=_block_size(canvas),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: P2State, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        live = (~canvas.done).unsqueeze(-1)  # (B, 1): finished rows never move
        in_block = canvas.editable & canvas.active & live  # (B, L): what the planner scores
        masked = in_block & (canvas.tokens == mask_id)  # (B, L)
        decoded = in_block & ~masked  # (B, L)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            key=proposal_keys(key, canvas, self.temperature),
            rows=in_block,
        )
        # Log-probability scores; clamped so that eta = 0 gives 0 (not NaN) on a zero probability.
        logp = proposal.prob.log().clamp_min(torch.finfo(proposal.prob.dtype).min)  # (B, L)
        score = torch.where(decoded, self.eta * logp, logp)  # (B, L)

        # After block step i of n, m = floor(N (n - i) / n) positions stay masked (exact ints).
        i = state.block_step + 1  # (B,)
        n = state.block_steps.clamp_min(1)  # (B,)
        stay_masked = (state.block_size * (n - i).clamp_min(0)) // n  # (B,)
        keep = kernels.topk_mask(score, state.block_size - stay_masked, in_block)  # (B, L)

        unmasked = masked & keep  # (B, L)
        remasked = decoded & ~keep  # (B, L)
        committed = unmasked | remasked
        written = torch.where(remasked, mask_id, proposal.tokens)  # (B, L)
        new_canvas = commit(canvas, committed, written, mask_id, evaluations)

        moved = new_canvas.window != canvas.window  # (B,) rows that finished their block
        new_state = P2State(
            canvas=new_canvas,
            block_step=torch.where(moved, 0, state.block_step + 1),
            block_steps=torch.where(
                moved, allotted_steps(new_canvas, mask_id, self.steps), state.block_steps
            ),
            block_size=torch.where(moved, _block_size(new_canvas), state.block_size),
        )
        info = P2Info(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(in_block, score, float("-inf")),
            unmasked=unmasked,
            remasked=remasked,
        )
        return new_state, info


def _block_size(canvas: Canvas) -> torch.Tensor:
    """(B,) int64: editable positions of each row's active block (P2's N)."""
    return (canvas.editable & canvas.active).sum(-1)
