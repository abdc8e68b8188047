"""A model-agnostic Gibbs corrector composable after any base sampler.

Predictor-corrector sampling for masked diffusion: the *base* sampler (any registered one)
decodes as usual; the corrector re-examines tokens committed in the last few steps, re-masks
the ones the model no longer finds plausible and re-samples them. It follows the informed
correctors of Zhao et al. ("Informed Correctors for Discrete Diffusion Models", arXiv
2407.21243: resample the least confident positions from their conditionals, Hogwild-Gibbs
style) and the planner view of P2 (Peng et al., "Path Planning for Masked Diffusion Model
Sampling", arXiv 2502.03540: a step may remask already decoded tokens chosen by their
re-predicted confidence). Neither paper's code is reproduced; the pieces below are defined
here and documented (no reference code exists for this corrector; the slow loop it is
tested against follows the definition below).

One check, in one forward pass:

1. **Candidates**: editable positions written (by the base or by the corrector) within the
   last ``window`` steps of the row, while the row's revision budget (``max_revisions``)
   lasts.
2. **Dilated re-masking**: the candidates of one parity class (even / odd rank among the
   row's editable positions, alternating from check to check) are replaced by the mask and
   the model predicts them. Masking only every other candidate keeps each one's neighbours
   visible, so its re-prediction is close to the leave-one-out conditional p(x_i | x_{-i})
   that informed correctors get from a hollow transformer — for a first-order Markov model
   it *is* that conditional, and the positions of one class are conditionally independent.
3. **Revision**: candidates whose current token has re-predicted probability below
   ``threshold`` are re-sampled from the re-prediction (at ``temperature``), the least
   plausible first, as many as the budget allows. With ``threshold = inf`` every candidate
   is re-sampled: a systematic-scan checkerboard Gibbs sweep, which leaves the model's joint
   invariant (tested exactly on the Markov oracle) — provided the set of checked positions
   does not depend on the tokens: once ``max_revisions`` runs out the least plausible are
   chosen first, and a base sampler whose commit order depends on the values chooses the
   candidates, so the invariance is exact only for a fixed candidate set.

Schedule: during the base's run a check is made every ``every`` steps on the canvas the
base step starts from (it corrects earlier commits), its rows appended to the base's forward
call — one call per step, ``1 + 1`` evaluations for the checked rows (like classifier-free
guidance). Once every row's base sampler is finished, ``sweeps`` final checks (one parity
class each; 2 = both) correct the last commits; a row whose base finished early waits for
them without cost, so its tokens and NFE do not depend on the rest of the batch.
Termination is structural: revisions never add masks, the base's steps are bounded by the
base, and the final phase has exactly ``sweeps`` steps.

Config round trip: ``base`` is stored frozen as a tuple of ``(key, value)`` pairs — the full
config of the base sampler with its name first — so ``from_config(s.to_config()) == s``
and the config is hashable. ``to_config()`` writes it as a dict; ``base`` also accepts a
registry name, a config dict or a sampler instance. The corrector's ``block_length`` is the
base's (the driver builds the canvas from it); giving both inconsistently raises.

Limitations (documented, deliberate):

- The check rows are appended to the base's first denoiser call of the step. A base whose
  call changes the sequence length (WINO's attention-bias shadow) or passes keywords other
  than ``active`` gets its own call and the check a second one.
- The base's state is updated with the corrected tokens (its canvas), but fields it derives
  from tokens it committed (e.g. ReMDM's decode confidences) are not recomputed.
- The host syncs once per step (besides the driver's) to know whether every base row has
  finished, which decides whether the base is stepped at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from remask import kernels
from remask.models import protocol
from remask.models.protocol import check_logits
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.predict import exclude_mask
from remask.samplers.registry import WrapsBase, frozen, register, resolve_base

__all__ = ["Gibbs", "GibbsState", "GibbsInfo"]


class GibbsState(NamedTuple):
    """State of :class:`Gibbs`.

    Attributes
    ----------
    canvas : Canvas
        The base's canvas (the corrected tokens); ``Gibbs.finished`` says when a row is over.
    base : NamedTuple
        The base sampler's state (``base_sampler.finished`` of it: the base is done).
    step : int
        Steps taken (the ``every`` schedule of the checks counts them).
    sweeps_done : int
        Final sweeps made (all rows enter the final phase together).
    clock : (B,) int64
        Steps the row took part in (base steps and final sweeps).
    written_at : (B, L) int64
        Row clock of the step that last wrote each position; -1 if never.
    checks : (B,) int64
        Checks made on the row (their parity alternates).
    revisions : (B,) int64
        Positions re-sampled so far (bounded by ``max_revisions``).
    """

    canvas: Canvas
    base: Any
    step: int
    sweeps_done: int
    clock: torch.Tensor
    written_at: torch.Tensor
    checks: torch.Tensor
    revisions: torch.Tensor


class GibbsInfo(NamedTuple):
    """What a corrector step did.

    Attributes
    ----------
    committed : (B, L) bool
        Positions written (by the base step or by a revision).
    proposal : (B, L) int64
        The base's proposals, and the re-sampled token at revised positions.
    score : (B, L) float32
        The base's scores (-inf in a final sweep).
    base : NamedTuple or None
        The base step's info (None in a final sweep).
    checked : (B, L) bool
        Positions re-masked and re-predicted by the check.
    revised : (B, L) bool
        Checked positions whose token was re-sampled.
    verify_prob : (B, L) float64
        Re-predicted probability of the current token at checked positions (NaN elsewhere).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    base: Any
    checked: torch.Tensor
    revised: torch.Tensor
    verify_prob: torch.Tensor


class _WithCheckRows:
    """Denoiser wrapper that appends the corrector's rows to the first call of a step."""

    # The protocol's attention-bias capability is not passed through: a longer sequence
    # cannot share the batch with the check rows.
    accepts_attention_bias = False

    def __init__(
        self,
        inner,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor,
        active: torch.Tensor,
        editable: torch.Tensor,
    ):
        self.inner = inner
        self.mask_id = inner.mask_id
        self.vocab_size = inner.vocab_size
        self._rows = (tokens, attention_mask, {"active": active, "editable": editable})
        self.logits: torch.Tensor | None = None  # (B, L, V) once the rows have been evaluated

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, tokens, attention_mask=None, **extra):
        rows, rows_mask, rows_extra = self._rows
        if (
            self.logits is not None
            or tokens.shape[1] != rows.shape[1]
            or set(extra) - set(rows_extra)
        ):
            return self.inner(tokens, attention_mask, **extra)
        n = tokens.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        batch = torch.cat([tokens, rows])  # (n + B, L)
        kwargs = {k: torch.cat([v, rows_extra[k]]) for k, v in extra.items()}
        out = exclude_mask(
            check_logits(
                self.inner(batch, torch.cat([attention_mask, rows_mask]), **kwargs),
                batch,
                self.vocab_size,
            ),
            self.inner.mask_id,
        )
        self.logits = out[n:]
        return out[:n]


@register("gibbs")
@dataclass(frozen=True, kw_only=True)
class Gibbs(WrapsBase, Sampler):
    """Gibbs corrector after any base sampler (informed correctors 2407.21243, P2 2502.03540).

    Parameters
    ----------
    base : str, dict, tuple of pairs or Sampler
        The base sampler: a registry name, a config dict (``{"name": ..., **fields}``) or a
        sampler; stored as its full config, frozen.
    threshold : float
        A checked token is re-sampled when its re-predicted probability is below this
        (``inf``: always — plain Gibbs sweeps).
    window : int
        Tokens written within the last ``window`` steps of the row are checked.
    max_revisions : int
        Most tokens re-sampled per row over the whole run.
    every : int
        During the base's run, check every ``every`` steps.
    sweeps : int
        Final checks after the base has finished (each covers one parity class).
    temperature : float, optional
        Re-sampling temperature; None uses the base's ``temperature`` (0 if it has none).
    block_length : int, optional
        Must agree with the base's; taken from the base when omitted.

    Examples
    --------
    >>> import remask
    >>> from remask.models import load_model
    >>> model = load_model("oracle:markov?vocab=4&length=8&seed=0")
    >>> sampler = remask.samplers.build("gibbs", base={"name": "low_confidence", "steps": 2},
    ...                                 threshold=0.3, sweeps=2)
    >>> sampler.to_config()["base"]["steps"]
    2
    >>> remask.generate(model, [[1]], sampler, gen_length=6, seed=0).tokens.shape
    torch.Size([1, 7])
    """

    edits_committed = True
    example_configs = (
        {"base": {"name": "low_confidence", "steps": 3}, "threshold": 0.5},
        {
            "base": {"name": "low_confidence", "steps": 4, "block_length": 4, "temperature": 1.0},
            "every": 2,
            "window": 2,
            "max_revisions": 3,
        },
        {"base": "low_confidence", "block_length": 3, "threshold": float("inf"), "sweeps": 3},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            (
                "LLaDA 2 tok/step + corrector",
                {"base": {"name": "low_confidence", "steps": max(G // 2, 1), "temperature": 1.0}},
            ),
        )

    base: Any = "low_confidence"
    threshold: float = 0.2
    window: int = 4
    max_revisions: int = 32
    every: int = 1
    sweeps: int = 2
    temperature: float | None = None

    def __post_init__(self) -> None:
        sampler = resolve_base(self.base, self.block_length)
        object.__setattr__(self, "base", frozen(sampler.to_config()))
        object.__setattr__(self, "block_length", sampler.block_length)
        super().__post_init__()
        _check_float(self.threshold, "threshold", low=0.0, allow_inf=True)
        _check_int(self.window, "window", low=1)
        _check_int(self.max_revisions, "max_revisions", low=0)
        _check_int(self.every, "every", low=1)
        _check_int(self.sweeps, "sweeps", low=0)
        if self.temperature is not None:
            _check_float(self.temperature, "temperature", low=0.0)

    @property
    def resample_temperature(self) -> float:
        if self.temperature is not None:
            return float(self.temperature)
        return float(getattr(self.base_sampler, "temperature", 0.0) or 0.0)

    @property
    def stochastic(self) -> bool:
        return self.base_sampler.stochastic or self.resample_temperature > 0

    def max_steps(self, canvas: Canvas) -> int:
        return self.base_sampler.max_steps(canvas) + self.sweeps

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> GibbsState:
        base_state = self.base_sampler.init(canvas, denoiser)
        base_canvas = base_state.canvas
        zeros = torch.zeros_like(canvas.nfe)
        return GibbsState(
            canvas=base_canvas,
            base=base_state,
            step=0,
            sweeps_done=0,
            clock=zeros,
            written_at=torch.full_like(canvas.tokens, -1),
            checks=zeros.clone(),
            revisions=zeros.clone(),
        )

    # ------------------------------------------------------------------ step
    def key_step(self, state: GibbsState, step: int) -> torch.Tensor:
        """Each row's own step count (its clock): a row waiting, unfinished, for the final
        sweeps while its neighbours still decode does not advance its stream."""
        return state.clock

    def step(self, state: GibbsState, denoiser, key: torch.Tensor):
        base_state = state.base
        canvas = base_state.canvas  # tokens before this step
        base_over = self.base_sampler.finished(base_state)  # (B,) the base has nothing left to do
        mask_id = denoiser.mask_id
        # The one host decision: is there still base work to do? (see module docstring)
        final = bool(base_over.all())
        if final:
            check_rows = ~self.finished(state)  # (B,) every row still sweeping
        elif state.step > 0 and state.step % self.every == 0:
            check_rows = ~base_over  # rows the base is still decoding share the step count
        else:
            check_rows = torch.zeros_like(base_over)
        checking = final or (state.step > 0 and state.step % self.every == 0)

        # The positions this check re-masks (recent commits of one parity class, budget left).
        checked = self._candidates(state, canvas, mask_id, check_rows)  # (B, L)
        check_tokens = torch.where(checked, mask_id, canvas.tokens)  # (B, L)

        # predict: the base's step and the check rows' logits, in one denoiser call.
        base_info = None
        if final:
            new_base = base_state
            check_logits_, _ = protocol.call(
                denoiser, check_tokens, canvas.attention_mask, editable=canvas.editable
            )
        else:
            model = (
                _WithCheckRows(
                    denoiser, check_tokens, canvas.attention_mask, canvas.active, canvas.editable
                )
                if checking
                else denoiser
            )
            # The base gets its own key, folded from the step key by purpose.
            new_base, base_info = self.base_sampler.step(
                base_state, model, kernels.fold(key, kernels.Purpose.BASE)
            )
            check_logits_ = None
            if checking:
                check_logits_ = model.logits
                if check_logits_ is None:  # the base made no call this step
                    check_logits_, _ = protocol.call(
                        denoiser, check_tokens, canvas.attention_mask, editable=canvas.editable
                    )

        after = new_base.canvas  # (the base's commits of this step)
        base_committed = base_info.committed if base_info is not None else torch.zeros_like(checked)
        if check_logits_ is not None:
            # score: each checked token's re-predicted probability. One fused pass per checked
            # row (no (B, L, V) log-softmax for one number per row).
            current = canvas.tokens.clamp(0, check_logits_.shape[-1] - 1)  # (B, L)
            verify_prob = kernels.token_prob(check_logits_, current, checked).double()  # (B, L)
            verify_prob = torch.where(checked, verify_prob, float("nan"))
            # select: the implausible ones, least plausible first, within the budget.
            doubtful = checked & (verify_prob < self.threshold) & ~base_committed  # (B, L)
            budget = (self.max_revisions - state.revisions).clamp_min(0)  # (B,)
            revised = kernels.topk_mask((-verify_prob).float(), budget, doubtful)  # lowest first
            resample_key = None
            if self.resample_temperature > 0:
                resample_key = kernels.position_keys(
                    key, canvas.attention_mask, kernels.Purpose.RESAMPLE
                )
            resampled = kernels.propose(
                check_logits_, temperature=self.resample_temperature, key=resample_key, rows=revised
            ).tokens  # (B, L)
        else:
            verify_prob = torch.full(
                checked.shape, float("nan"), dtype=torch.float64, device=checked.device
            )
            revised = torch.zeros_like(checked)
            resampled = torch.full_like(canvas.tokens, -1)

        # commit: the revisions over the base's commits (which charged the base's evaluations).
        tokens = torch.where(revised, resampled, after.tokens)  # (B, L)
        # One call's evaluations per checked row (1; 2 through Guided).
        nfe = after.nfe + check_rows.long() * protocol.capabilities(denoiser).evaluations  # (B,)
        new_base = new_base._replace(canvas=after._replace(tokens=tokens, nfe=nfe))

        stepped = check_rows if final else ~base_over  # (B,) rows that took part in this step
        written = base_committed | revised  # (B, L)
        sweeps_done = state.sweeps_done + int(final)
        new_state = GibbsState(
            canvas=new_base.canvas,
            base=new_base,
            step=state.step + 1,
            sweeps_done=sweeps_done,
            clock=state.clock + stepped.long(),
            written_at=torch.where(written, state.clock.unsqueeze(-1), state.written_at),
            checks=state.checks + check_rows.long(),
            revisions=state.revisions + revised.sum(-1),
        )
        if base_info is not None:
            proposal = torch.where(revised, resampled, base_info.proposal)
            score = base_info.score
        else:
            proposal = torch.where(revised, resampled, -1)
            score = torch.full(checked.shape, float("-inf"), device=checked.device)
        info = GibbsInfo(
            committed=written,
            proposal=proposal,
            score=score,
            base=base_info,
            checked=checked,
            revised=revised,
            verify_prob=verify_prob,
        )
        return new_state, info

    # ------------------------------------------------------------------ helpers
    def _candidates(
        self, state: GibbsState, canvas: Canvas, mask_id: int, check_rows: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) bool: positions this check re-masks (recent, one parity class, budget left)."""
        age = state.clock.unsqueeze(-1) - state.written_at  # (B, L)
        recent = (state.written_at >= 0) & (age >= 1) & (age <= self.window)
        decoded = canvas.editable & (canvas.tokens != mask_id)  # (B, L)
        rank = (
            canvas.editable.long().cumsum(-1) - 1
        )  # (B, L) rank among the row's editable positions
        parity = (rank % 2) == (state.checks % 2).unsqueeze(-1)  # (B, L)
        budget = (state.revisions < self.max_revisions).unsqueeze(-1)  # (B, 1)
        return decoded & recent & parity & budget & check_rows.unsqueeze(-1)

    def finished(self, state: GibbsState) -> torch.Tensor:
        """(B,) bool: the base is finished and the final sweeps are made (or nothing to decode)."""
        nothing = ~state.canvas.editable.any(-1)  # (B,)
        swept = state.sweeps_done >= self.sweeps
        return self.base_sampler.finished(state.base) & (nothing | swept)
