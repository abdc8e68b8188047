"""Core types of the sampler contract (docs/design.md §3).

A sampler is a frozen, validated config plus a pure transition:

    state = sampler.init(canvas, denoiser)
    state, info = sampler.step(state, denoiser, key)
    over = sampler.finished(state)  # (B,) bool: the driver stops when every row is

Every state is a NamedTuple whose first field is a :class:`Canvas`; every info carries at
least the :class:`StepInfo` fields. Samplers never hold mutable state.

``key`` is a (B,) int64 tensor: each row's 64-bit Philox key for this step, which the driver
derives as ``fold(row_key, sampler.key_step(state, step))`` (see
:mod:`remask.kernels._philox`). A step draws every random number from it, folded by a
:class:`remask.kernels.Purpose` and by position (:func:`remask.kernels.position_keys`), so it
is a pure function of its inputs and a row's draws never depend on the other rows.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

import torch

from remask.kernels.propose import MIN_TEMPERATURE
from remask.models.wrappers import Guided
from remask.samplers._validate import check_choice, check_float, check_int
from remask.samplers.canvas import Canvas

__all__ = ["Canvas", "StepInfo", "StepState", "Sampler", "State", "Callback"]


class StepInfo(NamedTuple):
    """What a step did (every sampler's info has at least these fields).

    Attributes
    ----------
    committed : (B, L) bool
        Positions written this step.
    proposal : (B, L) int64
        Candidate token at each eligible position (-1 elsewhere).
    score : (B, L) float32
        Selection score (-inf where not eligible).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor


class StepState(NamedTuple):
    """The state of samplers that need nothing beyond the canvas.

    Attributes
    ----------
    canvas : Canvas
    """

    canvas: Canvas


class State(Protocol):
    canvas: Canvas


class Callback(Protocol):
    def __call__(self, state: Any, info: Any) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Sampler:
    """Base of every sampler config.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)``, validate their fields in
    ``__post_init__`` (calling ``super().__post_init__()``) and implement ``init`` and
    ``step``. A sampler that may rewrite tokens it committed earlier sets
    ``edits_committed = True``; one whose contract allows masks in its output sets
    ``may_leave_masks = True`` (otherwise the driver raises when a mask survives a run). A
    run ends when :meth:`finished` says so for every row (default: no mask left).

    Parameters
    ----------
    block_length : int, optional
        Length of the semi-autoregressive blocks (the last one may be shorter); None means one
        block over the whole editable region.
    """

    name: ClassVar[str] = ""
    edits_committed: ClassVar[bool] = False
    may_leave_masks: ClassVar[bool] = False
    #: Representative settings (besides the defaults) for docs and the conformance suite;
    #: each must work on any canvas (any gen_length, prompts of any length).
    example_configs: ClassVar[tuple[dict[str, Any], ...]] = ({"block_length": 3},)

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict[str, Any]], ...]:
        """Settings of the quality benchmark (``remask bench samplers``) for G generated tokens.

        Each sampler defines its own, next to ``example_configs``: ``(label, config)`` pairs,
        sampling at temperature 1 where the sampler has a temperature (the benchmark compares
        output distributions with an exact joint; greedy decoding gives a point mass). The
        benchmark has no settings table of its own: a sampler without settings is not measured
        (and the contract meta-test fails).
        """
        return ()

    block_length: int | None = None

    def __post_init__(self) -> None:
        if self.block_length is not None:
            _check_int(self.block_length, "block_length", low=1)
        # Every temperature field reaches kernels.propose, which refuses a positive T below
        # the smallest normal float32: refused here too, at build time, not at the first step.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if (
                field.name.endswith("temperature")
                and isinstance(value, numbers.Real)
                and not isinstance(value, bool)
                and 0 < value < MIN_TEMPERATURE
            ):
                raise ValueError(
                    f"{field.name} must be 0 or at least {MIN_TEMPERATURE:.4g}, got {value!r}"
                )

    # The contract -------------------------------------------------------------------
    def init(self, canvas: Canvas, denoiser) -> State:
        raise NotImplementedError

    def step(self, state: State, denoiser, key: torch.Tensor) -> tuple[State, StepInfo]:
        """One transition; ``key`` is the (B,) int64 step keys of the rows."""
        raise NotImplementedError

    def wrap(self, denoiser):
        """The denoiser a run of this sampler talks to; the driver calls this once per run.

        Model-side options that a config carries as sugar become denoiser wrappers
        (:mod:`remask.models.wrappers`) here, never code in ``step``: a ``cfg_scale`` field
        > 0 builds ``Guided(denoiser, cfg_scale)``. Otherwise ``denoiser`` itself.
        """
        scale = getattr(self, "cfg_scale", 0.0)
        return Guided(denoiser, scale) if scale else denoiser

    def finished(self, state: State) -> torch.Tensor:
        """(B,) bool: rows whose run is over; the driver steps until every row is finished.

        The default is the canvas's own rule, ``state.canvas.done``: no editable position of
        the row still holds the mask. A sampler with another rule (a schedule that keeps
        revising a complete canvas, a corrector's final sweeps) overrides this method and
        leaves ``canvas.done`` alone. Either way, after the loop the driver checks that no
        editable position holds the mask unless the class sets ``may_leave_masks``.
        """
        return state.canvas.done

    def key_step(self, state: State, step: int) -> int | torch.Tensor:
        """What the driver folds each row's key by before ``step`` (an int or (B,) int64).

        Default: the driver's step count, which is each unfinished row's own step count since
        every unfinished row takes every step. A sampler whose rows can wait, unfinished,
        while others step (the Gibbs corrector's final sweeps) returns each row's own count,
        so that a row's stream does not depend on its batch neighbours.
        """
        return step

    @property
    def stochastic(self) -> bool:
        """Whether outputs depend on the random stream (greedy samplers are batch-invariant)."""
        return getattr(self, "temperature", 0.0) > 0

    def max_steps(self, canvas: Canvas) -> int:
        """Upper bound on the steps a run may take (the driver raises beyond it; nothing hangs)."""
        return int(canvas.editable.sum(-1).max()) + 1

    # Configs --------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """``{"name": registry name, **fields}``; ``remask.samplers.from_config`` inverts it."""
        return {"name": self.name, **dataclasses.asdict(self)}


# The shared checks (remask.samplers._validate) under the names the sampler modules import.
_check_int = check_int
_check_float = check_float
_check_choice = check_choice
