"""MDLM ancestral sampling with the log-linear schedule (Sahoo et al., "Simple and Effective
Masked Diffusion Language Models", arXiv 2406.07524), ``predictor: ddpm_cache``.

Checked against ``kuleshov-group/mdlm/diffusion.py`` (``_sample``, ``_ddpm_caching_update``).
On the grid ``t_j = 1 - j (1 - eps) / steps`` (``linspace(1, eps, steps+1)``)
one reverse step from ``t`` to ``s < t`` leaves a masked position masked with probability
``s / t`` and otherwise writes a token drawn from the model's ``p_θ(x0)``; decoded tokens are
carried over. After the last grid step a final *noise removal* pass writes the argmax of
``p_θ(x0)`` at the positions still masked.

How the ``ddpm_cache`` behaviour is realised
--------------------------------------------
Under the log-linear schedule the stay-masked probability ``s / t`` does not depend on the
model: given that a position is masked at ``t_i``, it is still masked at ``t_j`` with
probability ``t_j / t_i``, independently of every other position. So the grid index at which
each masked position unmasks can be drawn directly (one uniform per position, inverse CDF:
:func:`next_unmask_index`). The reference walks the grid one step at a time and, while the
canvas is unchanged, reuses its cached ``p_θ(x0)`` (an unconditioned model gives the same
probabilities for the same canvas); here a ``step`` jumps straight to the next grid index at
which *some* position of the row unmasks, calls the model once on the (unchanged) canvas —
exactly the probabilities the reference's cache holds — and samples the tokens of every
position unmasking at that index. Positions that do not unmask keep their masked state, and
by the memoryless property of the schedule their next unmask index is redrawn afresh next
step without changing the law. The output law is therefore the reference's, exactly, while
every forward pass is spent on a canvas that is about to change — grid steps that change
nothing cost neither a forward pass nor a ``step`` (so the cache never has to outlive a step
and the state needs no (B, L, V) buffer). With ``steps`` far above the sequence length this is
what makes fine grids free: a run takes at most (masked positions + 1) steps whatever
``steps`` is.

Departures from the reference code (all deliberate):

- No forward pass is spent on a canvas that does not change: the reference evaluates the
  canvas once after every change even when the rest of the grid then unmasks nothing, and
  always runs a noise-removal pass, also when no mask is left. Outputs have the same law;
  NFE is never larger.
- Works with prompts, infill and semi-autoregressive blocks (the reference is unconditional
  and uses a separate stride-based semi-AR scheme): each block runs its own grid from t = 1 to
  ``eps`` followed by its own noise removal; ``steps`` is split evenly over the blocks,
  remainder first, as for ``low_confidence``.
- Per-row caching: a row's step depends only on that row (the reference's
  ``torch.allclose(x_next, x)`` test is batch-wide).
- Tokens are drawn exactly from ``softmax(logits)`` by ``kernels.propose`` (counter-based
  Philox; no Gumbel-max with float32 noise, whose truncated tail changes the law); the mask
  column, if the denoiser has one, must already be ``-inf`` (SUBS parameterisation — the adapter's job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.canvas import eligible as eligible_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register
from remask.samplers.schedules import (
    allotted_steps,
    check_steps_cover_blocks,
    next_unmask_index,
)

__all__ = ["Ancestral", "AncestralState"]


class AncestralState(NamedTuple):
    """State of :class:`Ancestral`.

    Attributes
    ----------
    canvas : Canvas
    grid : (B,) int64
        Grid index the row's active block has reached (its time is ``t_grid``).
    block_steps : (B,) int64
        Grid size of the row's active block.
    """

    canvas: Canvas
    grid: torch.Tensor
    block_steps: torch.Tensor


class AncestralInfo(NamedTuple):
    """:class:`StepInfo` plus the grid bookkeeping.

    Attributes
    ----------
    committed, proposal, score
        As in :class:`StepInfo`; ``proposal`` is drawn only at the positions the step writes
        (-1 elsewhere: the other draws would be discarded), ``score`` is minus the unmask grid
        index (higher = sooner).
    grid : (B,) int64
        Grid index reached by the step (``block_steps`` after a noise removal).
    noise_removal : (B,) bool
        Rows whose step was the final argmax pass of their block.
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    grid: torch.Tensor
    noise_removal: torch.Tensor


@register("ancestral")
@dataclass(frozen=True, kw_only=True)
class Ancestral(Sampler):
    """MDLM ancestral sampling (``ddpm_cache``) on the log-linear schedule.

    Every step is one forward pass on a canvas that then changes: it jumps to the next grid
    time at which some masked position of the row unmasks and samples those positions from
    ``p_θ(x0)``; once no position would unmask on the rest of the grid, one noise-removal
    pass writes the argmax at the positions still masked. Exact in law to walking the grid
    step by step with MDLM's cache; exact for the data distribution as ``steps`` grows
    (one token per forward pass) when the model's conditionals are exact.

    Parameters
    ----------
    steps : int
        Grid steps from t = 1 to ``eps`` (over all blocks; split evenly, remainder first).
        Larger grids cost nothing extra beyond at most one forward pass per token.
    eps : float
        Final time of the grid, in (0, 1).
    block_length : int, optional
        Semi-autoregressive blocks, each with its own grid and noise removal.

    Examples
    --------
    >>> import remask
    >>> from remask.models import MarkovChainOracle
    >>> oracle = MarkovChainOracle(vocab_size=3, seq_len=6, seed=0)
    >>> sampler = remask.samplers.build("ancestral", steps=10_000)
    >>> out = remask.generate(oracle, [[1]], sampler, gen_length=5, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 6)
    (torch.Size([1, 6]), True)
    """

    example_configs = (
        {"steps": 2},
        {"steps": 6, "block_length": 4},
        {"steps": 100_000, "eps": 0.1},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("G steps", {"steps": G}),
            ("4G steps", {"steps": 4 * G}),
        )

    steps: int = 128
    eps: float = 1e-5

    @property
    def stochastic(self) -> bool:
        return True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.steps, "steps", low=1)
        _check_float(self.eps, "eps", low=0.0, high=1.0, low_open=True, high_open=True)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> AncestralState:
        check_steps_cover_blocks(self.steps, canvas)
        return AncestralState(
            canvas=canvas,
            grid=torch.zeros_like(canvas.nfe),
            block_steps=allotted_steps(canvas, denoiser.mask_id, self.steps),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: AncestralState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        eligible = eligible_positions(canvas, mask_id)  # (B, L)

        # When does each masked position unmask, given the row is at t_grid? (model-free)
        u = kernels.uniform(
            kernels.position_keys(key, canvas.attention_mask, kernels.Purpose.POSITIONS),
            dtype=torch.float64,
        )  # (B, L)
        when = next_unmask_index(u, state.grid, state.block_steps, self.eps)  # (B, L)
        big = torch.iinfo(torch.int64).max
        when = torch.where(eligible, when, big)  # (B, L)
        event = when.amin(-1)  # (B,) the next grid index at which the canvas changes
        removal = event > state.block_steps  # (B,) nothing unmasks on the rest of the grid

        # Which positions move is decided before the model is read (the schedule is
        # model-free): those unmasking at the event, or every mask left at a noise removal.
        removing = removal.unsqueeze(-1)  # (B, 1)
        committed = eligible & ((when == event.unsqueeze(-1)) | removing)  # (B, L)
        committed &= ~canvas.done.unsqueeze(-1)

        # One forward pass on the (unchanged) canvas: p_θ(x0) of the reference's cache. Tokens
        # are drawn only where they are written: a position's draw depends on its own key
        # alone, so skipping the draws the reference discards changes no committed token.
        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        draw = kernels.propose(
            logits,
            temperature=1.0,
            rows=committed & ~removing,
            key=proposal_keys(key, canvas, 1.0),
        )
        greedy = kernels.propose(logits, temperature=0.0, rows=committed & removing)
        proposal = torch.where(removing, greedy.tokens, draw.tokens)  # (B, L), -1 off committed
        new_canvas = commit(canvas, committed, proposal, mask_id, evaluations)
        grid = torch.where(removal, state.block_steps, event)  # (B,)

        moved = new_canvas.window != canvas.window  # (B,) a new block starts its own grid
        new_state = AncestralState(
            canvas=new_canvas,
            grid=torch.where(moved, 0, grid),
            block_steps=torch.where(
                moved, allotted_steps(new_canvas, mask_id, self.steps), state.block_steps
            ),
        )
        score = torch.where(
            eligible, -(when - state.grid.unsqueeze(-1)).clamp_max(2**24).float(), float("-inf")
        )  # (B, L)
        info = AncestralInfo(
            committed=committed,
            proposal=proposal,
            score=score,
            grid=grid,
            noise_removal=removal & ~canvas.done,
        )
        return new_state, info
