"""PC-Sampler: position-aware calibrated decoding (Huang et al., "PC-Sampler: Position-Aware
Calibration of Decoding Bias in Masked Diffusion Models", arXiv 2508.13021).

Confidence-ordered samplers show two biases: a *U-shaped trajectory* (both ends of the
sequence are decoded first) and a *trivial-token bias* (frequent, low-information tokens —
punctuation, fillers, EOS — win the confidence ranking early). PC-Sampler keeps LLaDA's
schedule (the block's masks split evenly over its steps, remainder first) but ranks the
proposals by

    score_i = exp(−λ · i) · min(−p_i · log(f_bg(x̂_i) + 1e-9), α)

where ``i`` is the position's offset from the start of its block, ``p_i`` the probability of
the proposal ``x̂_i``, and ``f_bg`` a background token-frequency table (how often each token
occurs in reference text) supplied by the caller: −log f_bg is large for rare tokens, so
trivial tokens are demoted; α caps the calibrated confidence; λ > 0 favours early positions
(global left-to-right trajectory control). Without a table (``background=None``) the
calibration factor is dropped and ``score_i = exp(−λ i) · min(p_i, α)`` — position decay
only.

Checked against ``NEUIR/PC-Sampler/src/generate.py::generate_with_pc_sampler`` and
``pc_sampler_function``. Reference defaults (``scripts/eval_pc_sampler.sh``):
λ = 0.25 (0 for Sudoku, 0.5 for Countdown), α = 10, ``steps = gen_length`` (one token per
step) and ``block_length = gen_length`` (one block).

Departures from the reference code:

- The background table is an argument (a (V,) tensor or sequence of frequencies), not a
  JSON file loaded into a module-global cache at the first call (which then ignores any later
  table); its length must equal the denoiser's ``vocab_size``.
- Offsets ``i`` count the block's editable positions (for ``generate``, the canvas offsets
  from the block start, as in the reference); any ``gen_length``/``block_length``/``steps``
  (the reference asserts divisibility) and batches with ragged prompts (the reference is
  B = 1).
- Proposals and probabilities come from one float32 pass over the logits; at T > 0 the
  proposal is an exact sample of softmax(logits / T) and ``p_i`` stays the untempered
  probability (as in the reference). Ties in the score go to the lower position.
- The ``linear_position`` variant of the reference is not implemented.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, StepInfo, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import predict
from remask.samplers.registry import register
from remask.samplers.schedules import BlockSchedule, check_steps_cover_blocks

__all__ = ["PCSampler", "PCSamplerState", "pc_score"]

#: Added to the background frequency before the log, as in the reference (unseen tokens).
EPSILON = 1e-9


def pc_score(
    prob: torch.Tensor,
    tokens: torch.Tensor,
    offset: torch.Tensor,
    *,
    lambd: float,
    alpha: float,
    background: torch.Tensor | None,
) -> torch.Tensor:
    """PC-Sampler's position-aware calibrated score (higher commits first).

    Parameters
    ----------
    prob : (B, L) float
        Probability of each proposal.
    tokens : (B, L) int64
        The proposals (any value where unused; clamped into the table's range).
    offset : (B, L) int64
        Offset of each position from the start of its block.
    lambd, alpha : float
        Position decay λ and calibration cap α.
    background : (V,) float tensor or None
        Background token frequencies; None drops the calibration factor.

    Returns
    -------
    (B, L) float32
    """
    prob = prob.float()
    if background is None:
        calibrated = prob  # (B, L)
    else:
        frequency = background[tokens.clamp(0, background.numel() - 1)]  # (B, L)
        calibrated = -prob * torch.log(frequency + EPSILON)  # (B, L)
    decay = torch.exp(-lambd * offset.float())  # (B, L)
    return decay * calibrated.clamp(max=alpha)


class PCSamplerState(NamedTuple):
    """State of :class:`PCSampler`.

    Attributes
    ----------
    canvas : Canvas
    offset : (B, L) int64
        Offset of each editable position from the start of its block.
    background : (V,) float32 or None
        The background frequency table on the canvas's device.
    schedule : BlockSchedule
        LLaDA's per-block schedule of the active block.
    """

    canvas: Canvas
    offset: torch.Tensor
    background: torch.Tensor | None
    schedule: BlockSchedule


@register("pc_sampler")
@dataclass(frozen=True, kw_only=True)
class PCSampler(Sampler):
    """PC-Sampler: LLaDA's schedule ranked by a position-decayed, frequency-calibrated score.

    Parameters
    ----------
    lambd : float
        Position decay λ >= 0 (reference flag ``--lambd``): 0.25 for most tasks, 0 for Sudoku,
        0.5 for Countdown.
    alpha : float
        Cap α > 0 on the calibrated confidence.
    background : (V,) tensor or sequence of float, optional
        Background frequency of every token id (non-negative, finite), e.g. token counts of
        a reference corpus divided by the total, unseen tokens at 1/total. Stored as a tuple
        of floats so the config stays comparable, hashable and serialisable; its length is
        checked against the denoiser's ``vocab_size`` at ``init``. None: no calibration.
    steps : int, optional
        Total steps over all blocks; None (default) commits one token per step.
    block_length : int, optional
        Semi-autoregressive block length; None = one block (the reference setting).
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).
    cfg_scale : float
        Classifier-free guidance scale s >= 0 (0 disables; a guided step costs 2 NFE): sugar for
        running on ``remask.models.wrappers.Guided(model, cfg_scale)`` (see ``Sampler.wrap``).

    Examples
    --------
    >>> import torch, remask
    >>> from remask.models import TinyTransformer
    >>> model = TinyTransformer()
    >>> frequency = torch.full((model.vocab_size,), 1.0 / model.vocab_size)
    >>> sampler = remask.samplers.build("pc_sampler", background=frequency, steps=4)
    >>> out = remask.generate(model, [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.nfe.tolist()
    [4]
    """

    example_configs = (
        {"block_length": 3},
        {"lambd": 0.0, "steps": 4, "temperature": 1.0},
        {"lambd": 1.0, "alpha": 0.5, "block_length": 4, "cfg_scale": 1.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("1 tok/step", {"temperature": 1.0}),
            ("2 tok/step", {"temperature": 1.0, "steps": max(G // 2, 1)}),
        )

    lambd: float = 0.25
    alpha: float = 10.0
    background: tuple[float, ...] | None = field(default=None, repr=False)
    steps: int | None = None
    temperature: float = 0.0
    cfg_scale: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.lambd, "lambd", low=0.0)
        _check_float(self.alpha, "alpha", low=0.0, low_open=True)
        if self.background is not None:
            object.__setattr__(self, "background", _as_frequencies(self.background))
        if self.steps is not None:
            _check_int(self.steps, "steps", low=1)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_float(self.cfg_scale, "cfg_scale", low=0.0)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> PCSamplerState:
        if self.background is not None and len(self.background) != denoiser.vocab_size:
            raise ValueError(
                f"background has {len(self.background)} entries but the denoiser's vocab_size is "
                f"{denoiser.vocab_size}; give one frequency per token id"
            )
        check_steps_cover_blocks(self.steps, canvas)
        order = canvas.editable.long().cumsum(-1) - 1  # (B, L): rank among editable positions
        offset = order if self.block_length is None else order % self.block_length  # (B, L)
        return PCSamplerState(
            canvas=canvas,
            offset=torch.where(canvas.editable, offset, 0),
            background=None
            if self.background is None
            else torch.tensor(self.background, dtype=torch.float32, device=canvas.tokens.device),
            schedule=BlockSchedule.start(canvas, denoiser.mask_id, self.steps),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: PCSamplerState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        eligible, _, proposal, evaluations = predict(
            canvas, denoiser, key, temperature=self.temperature
        )
        score = pc_score(
            proposal.prob,
            proposal.tokens,
            state.offset,
            lambd=self.lambd,
            alpha=self.alpha,
            background=state.background,
        )  # (B, L)

        k = state.schedule.count(canvas)  # (B,) LLaDA's schedule
        committed = kernels.topk_mask(score, k, eligible)  # (B, L)
        new_canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)
        new_state = state._replace(
            canvas=new_canvas,
            schedule=state.schedule.advance(canvas, new_canvas, mask_id, self.steps),
        )
        info = StepInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, score, float("-inf")),
        )
        return new_state, info


def _as_frequencies(background: Any) -> tuple[float, ...]:
    """Validate a background table and return it as a tuple of floats."""
    if not isinstance(background, (torch.Tensor, str, bytes)) and hasattr(background, "__array__"):
        background = torch.as_tensor(background)  # numpy arrays and the like
    if isinstance(background, torch.Tensor):
        if background.dim() != 1:
            raise ValueError(
                f"background must be a (V,) tensor, got shape {tuple(background.shape)}"
            )
        if background.dtype == torch.bool or background.dtype.is_complex:
            raise TypeError(f"background must hold real numbers, got dtype {background.dtype}")
        values = tuple(float(v) for v in background.detach().double().cpu().tolist())
    elif isinstance(background, Sequence) and not isinstance(background, (str, bytes)):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in background):
            raise TypeError("background must be a (V,) tensor or a sequence of numbers")
        values = tuple(float(v) for v in background)
    else:
        raise TypeError(
            f"background must be a (V,) tensor, a sequence of floats or None, "
            f"got {type(background).__name__}"
        )
    if not values:
        raise ValueError("background must not be empty")
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v) or v < 0), None)
    if bad is not None:
        raise ValueError(
            f"background frequencies must be finite and >= 0; entry {bad} is {values[bad]!r}"
        )
    return values
