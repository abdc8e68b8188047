"""Prophet early commit around any base sampler (Li et al., "Diffusion Language Models Know
the Answer Before Decoding", arXiv 2508.19982).

Checked against ``pixeli99/Prophet/generate_earlyexit.py`` (``generate`` and
``should_early_exit``). The base sampler (any registered one, LLaDA's low-confidence
remasking in the paper) decodes as usual; at every step Prophet reads the logits of the
base's own forward pass and measures, on the *answer span*, the gap between the largest and
the second largest logit, averaged over the span's positions (decoded or not). When the gap
reaches the threshold of the current phase, the row stops refining: every position still
masked — in every block — takes its top-1 token from this forward pass, at once, and the
row is done. The base's own commits of that step are discarded (the reference exits before
its transfer step). A model that predicts a visible token with certainty (an exact oracle)
gives a decoded span position an infinite gap, and the span's mean with it: such a row exits
as soon as one span position is decoded. Phases follow the progress ``t / T`` (``t`` the
row's step, counting the current one; ``T`` its step budget): below 0.33 ``early_threshold``
(7.5), below 0.67 ``mid_threshold`` (5.0), else ``late_threshold`` (2.5) — the reference's
values.

Answer span: ``answer_length`` (5) editable positions starting ``answer_start`` positions
after the row's first editable position (the reference's ``answer_start_pos``, given there
as an absolute column, with the eval forcing "The answer is" just before it). Positions past
the row's end are dropped; a row with no span never exits early. ``answer_start=None``
takes the row's last ``answer_length`` editable positions (the reference has no default).

Step budget ``T``: ``total_steps`` when given; else the base's ``steps`` field when it is an
int (LLaDA's ``steps``, the reference's ``max_steps``); else the row's editable positions
(one token per step, LLaDA's default).

Config round trip: ``base`` is stored frozen as ``(key, value)`` pairs (the base's full
config, name first), so ``from_config(s.to_config()) == s``; it accepts a registry name, a
config dict or a sampler. ``block_length`` is the base's.

Departures from the reference code (all deliberate):

- The filled tokens are the argmax of the logits at temperature 0 and, when the base
  samples (its ``temperature`` > 0), a sample at that temperature drawn with its own key
  (``Purpose.RESAMPLE``; the reference reuses its Gumbel-perturbed argmax).
- The mask token is never a candidate in the top-1/top-2 gap (the protocol gives it -inf).
- Any base sampler, any batch size with ragged prompts; rows exit independently (the
  reference is LLaDA's loop at batch size 1, and its forced answer prefix is left to
  ``infill``).
- Prophet needs the base's forward pass on the canvas itself. A base whose step evaluates
  something else (WINO lengthens the sequence, Gibbs appends check rows) makes Prophet
  evaluate the canvas once more per step (one more NFE per row). A guided base
  (``cfg_scale``) is a wrapper around the model (:meth:`Sampler.wrap`), so its pass is on the
  canvas and the gap is measured on the guided logits, at no extra cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from remask import kernels
from remask.models.protocol import check_logits
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import masked_positions
from remask.samplers.predict import denoise, exclude_mask
from remask.samplers.registry import WrapsBase, frozen, register, resolve_base

__all__ = ["Prophet", "ProphetState", "ProphetInfo"]

# Progress boundaries of the three phases (the reference's should_early_exit).
_EARLY, _MID = 0.33, 0.67


class ProphetState(NamedTuple):
    """State of :class:`Prophet`.

    Attributes
    ----------
    canvas : Canvas
        The base's canvas (an exited row's tokens and NFE are frozen).
    base : NamedTuple
        The base sampler's state.
    clock : (B,) int64
        Steps the row took part in.
    total : (B,) int64
        The row's step budget ``T`` (the denominator of the progress).
    exited : (B,) bool
        Rows that committed early; their tokens and NFE are final.
    """

    canvas: Canvas
    base: Any
    clock: torch.Tensor
    total: torch.Tensor
    exited: torch.Tensor


class ProphetInfo(NamedTuple):
    """What a step did.

    Attributes
    ----------
    committed : (B, L) bool
        The base's commits, or every position filled by an early exit.
    proposal : (B, L) int64
        The base's proposals; the filled token where an exit filled.
    score : (B, L) float32
        The base's scores.
    base : NamedTuple
        The base step's info.
    gap : (B,) float32
        Mean top-1 minus top-2 logit over the answer span (NaN: no span, or row finished).
    threshold : (B,) float32
        The phase threshold the gap was compared with.
    exit : (B,) bool
        Rows that exited at this step.
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    base: Any
    gap: torch.Tensor
    threshold: torch.Tensor
    exit: torch.Tensor


class _Capture:
    """Denoiser wrapper that keeps the logits of the first call on a canvas of ``shape``."""

    def __init__(self, inner, shape: torch.Size):
        self.inner = inner
        self.mask_id = inner.mask_id
        self.vocab_size = inner.vocab_size
        self._shape = shape
        self.logits: torch.Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, tokens, attention_mask=None, **extra):
        out = self.inner(tokens, attention_mask, **extra)
        if self.logits is None and tokens.shape == self._shape:
            self.logits = out
        return out


@register("prophet")
@dataclass(frozen=True, kw_only=True)
class Prophet(WrapsBase, Sampler):
    """Prophet (2508.19982): commit every remaining mask once the answer's top-2 gap is wide.

    Parameters
    ----------
    base : str, dict, tuple of pairs or Sampler
        The base sampler: a registry name, a config dict (``{"name": ..., **fields}``) or a
        sampler; stored as its full config, frozen. Default: LLaDA's low-confidence remasking,
        one token per step over one block (the reference ``generate()``'s defaults).
    answer_start : int, optional
        Offset (>= 0) of the answer span from the row's first editable position; None = the
        row's last ``answer_length`` editable positions.
    answer_length : int
        Positions in the answer span (>= 1).
    early_threshold, mid_threshold, late_threshold : float
        Gap (in logits, >= 0; ``inf`` = never) that triggers the exit while the progress is
        below 0.33, below 0.67, and after.
    total_steps : int, optional
        Step budget ``T`` of the progress (>= 1); None: the base's ``steps``, else the row's
        editable positions.
    block_length : int, optional
        Must agree with the base's; taken from the base when omitted.

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("prophet", base={"name": "low_confidence", "steps": 8},
    ...                                 answer_length=2, late_threshold=0.5)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 8)
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"base": {"name": "low_confidence", "steps": 4}, "answer_length": 3, "late_threshold": 0.5},
        {
            "base": {"name": "threshold", "threshold": 0.5, "block_length": 4},
            "answer_start": 2,
            "answer_length": 2,
            "early_threshold": 1.0,
            "mid_threshold": 1.0,
            "late_threshold": 1.0,
        },
        {
            "base": {"name": "low_confidence", "temperature": 1.0, "block_length": 3},
            "early_threshold": 0.5,
            "total_steps": 4,
        },
        {
            "base": {"name": "llada21", "block_length": 4, "threshold": 0.5, "edit_threshold": 0.2},
            "answer_start": 0,
            "mid_threshold": 1.5,
        },
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens: the
        reference's thresholds and an eager variant, on LLaDA at one token per step, T = 1."""
        base = {"name": "low_confidence", "temperature": 1.0}
        return (
            ("7.5/5/2.5, LLaDA 1 tok/step", {"base": base}),
            (
                "2/1.5/1, LLaDA 1 tok/step",
                {"base": base, "early_threshold": 2.0, "mid_threshold": 1.5, "late_threshold": 1.0},
            ),
        )

    base: Any = "low_confidence"
    answer_start: int | None = None
    answer_length: int = 5
    early_threshold: float = 7.5
    mid_threshold: float = 5.0
    late_threshold: float = 2.5
    total_steps: int | None = None

    def __post_init__(self) -> None:
        sampler = resolve_base(self.base, self.block_length)
        object.__setattr__(self, "base", frozen(sampler.to_config()))
        object.__setattr__(self, "block_length", sampler.block_length)
        super().__post_init__()
        if self.answer_start is not None:
            _check_int(self.answer_start, "answer_start", low=0)
        _check_int(self.answer_length, "answer_length", low=1)
        for name in ("early_threshold", "mid_threshold", "late_threshold"):
            _check_float(getattr(self, name), name, low=0.0, allow_inf=True)
        if self.total_steps is not None:
            _check_int(self.total_steps, "total_steps", low=1)

    def finished(self, state: ProphetState) -> torch.Tensor:
        """(B,) bool: the base is finished with the row, or the row exited early."""
        return self.base_sampler.finished(state.base) | state.exited

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> ProphetState:
        base_state = self.base_sampler.init(canvas, denoiser)
        if self.total_steps is not None:
            total = torch.full_like(canvas.nfe, self.total_steps)
        elif isinstance(getattr(self.base_sampler, "steps", None), int):
            total = torch.full_like(canvas.nfe, self.base_sampler.steps)
        else:
            total = canvas.editable.sum(-1).clamp_min(1)  # (B,) one token per step
        return ProphetState(
            canvas=base_state.canvas,
            base=base_state,
            clock=torch.zeros_like(canvas.nfe),
            total=total,
            exited=torch.zeros_like(canvas.done),
        )

    # ------------------------------------------------------------------ step
    def key_step(self, state: ProphetState, step: int) -> int | torch.Tensor:
        """The base's (exited rows are finished and draw nothing more)."""
        return self.base_sampler.key_step(state.base, step)

    def step(self, state: ProphetState, denoiser, key: torch.Tensor):
        before = state.base.canvas  # (the canvas the base's forward pass sees)
        mask_id = denoiser.mask_id
        live = ~self.finished(state)  # (B,)

        model = _Capture(denoiser, before.tokens.shape)
        # The base gets its own key, folded from the step key by purpose.
        new_base, base_info = self.base_sampler.step(
            state.base, model, kernels.fold(key, kernels.Purpose.BASE)
        )
        logits = model.logits
        extra = 0
        if logits is None:  # the base evaluated something else: one more pass on the canvas
            logits, extra = denoise(denoiser, before)
        else:
            logits = exclude_mask(check_logits(logits, before.tokens, denoiser.vocab_size), mask_id)

        clock = state.clock + live.long()  # (B,) this step counts (the reference's global_step)
        gap = self._gap(logits, before)  # (B,)
        progress = clock.double() / state.total.double()  # (B,)
        threshold = torch.where(
            progress < _EARLY,
            self.early_threshold,
            torch.where(progress < _MID, self.mid_threshold, self.late_threshold),
        ).float()  # (B,)
        exit_ = live & (gap >= threshold)  # (B,) NaN gaps never exit

        # Exiting rows: every mask left takes its top-1 (or a sample) from this pass.
        holes = masked_positions(before, mask_id) & exit_.unsqueeze(-1)  # (B, L)
        temperature = self._fill_temperature()
        fill_key = None
        if temperature > 0:  # a second proposal this step: its own purpose
            fill_key = kernels.position_keys(key, before.attention_mask, kernels.Purpose.RESAMPLE)
        fill = kernels.propose(
            logits, temperature=temperature, key=fill_key, rows=holes
        ).tokens  # (B, L)
        after = new_base.canvas
        frozen = state.exited.unsqueeze(-1)  # (B, 1) rows whose tokens are final
        exiting = exit_.unsqueeze(-1)  # (B, 1)
        tokens = torch.where(exiting, torch.where(holes, fill, before.tokens), after.tokens)
        tokens = torch.where(frozen, before.tokens, tokens)  # (B, L)
        nfe = torch.where(state.exited, before.nfe, after.nfe + extra * live.long())  # (B,)
        exited = state.exited | exit_
        canvas = after._replace(tokens=tokens, nfe=nfe, done=after.done | exited)
        new_base = new_base._replace(canvas=canvas)

        committed = torch.where(exiting, holes, base_info.committed) & ~frozen  # (B, L)
        info = ProphetInfo(
            committed=committed,
            proposal=torch.where(holes, fill, base_info.proposal),
            score=base_info.score,
            base=base_info,
            gap=torch.where(live, gap, float("nan")),
            threshold=threshold,
            exit=exit_,
        )
        new_state = ProphetState(
            canvas=canvas, base=new_base, clock=clock, total=state.total, exited=exited
        )
        return new_state, info

    # ------------------------------------------------------------------ helpers
    def _fill_temperature(self) -> float:
        return float(getattr(self.base_sampler, "temperature", 0.0) or 0.0)

    def _gap(self, logits: torch.Tensor, canvas: Canvas) -> torch.Tensor:
        """(B,) float32: mean top-1 minus top-2 logit over each row's answer span (NaN if empty)."""
        B, L, V = logits.shape
        A = self.answer_length
        rank = canvas.editable.long().cumsum(-1) - 1  # (B, L) rank among editable positions
        if self.answer_start is None:
            start = (canvas.editable.sum(-1) - A).clamp_min(0).unsqueeze(-1)  # (B, 1)
        else:
            start = torch.full((B, 1), self.answer_start, device=rank.device)
        offset = rank - start  # (B, L) position within the span
        in_span = canvas.editable & (offset >= 0) & (offset < A)  # (B, L)
        slot = torch.where(in_span, offset, A)  # (B, L); A = outside
        column = torch.full((B, A + 1), L, dtype=torch.int64, device=rank.device)
        column.scatter_(1, slot, torch.arange(L, device=rank.device).expand(B, L))
        column = column[:, :A]  # (B, A) canvas column of each span slot; L = empty
        valid = column < L  # (B, A)
        # Whole rows by index_select on the flattened (B * L, V) view: one copy per row, where
        # gather with an expanded (B, A, V) index reads an index per element.
        flat = column.clamp_max(L - 1) + torch.arange(B, device=rank.device).unsqueeze(-1) * L
        span = logits.reshape(B * L, V).index_select(0, flat.reshape(-1)).view(B, A, V).float()
        if V >= 2:
            top = span.topk(2, dim=-1).values  # (B, A, 2)
            gap = top[..., 0] - top[..., 1]  # (B, A)
        else:  # a single candidate: nothing to compare with, the answer is certain
            gap = torch.full((B, A), math.inf, device=span.device)
        count = valid.sum(-1)  # (B,)
        total = torch.where(valid, gap, 0.0).sum(-1)  # (B,)
        return torch.where(count > 0, total / count.clamp_min(1), float("nan"))
