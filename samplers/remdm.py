"""ReMDM: remasking diffusion sampling (Wang, Schiff, Sahoo, Kuleshov, "Remasking Discrete
Diffusion Models with Inference-Time Scaling", arXiv 2503.00307, NeurIPS 2025).

MDLM's ancestral sampler can only unmask; ReMDM adds a backward *remasking* probability
sigma_t so that a token decoded early can be revised later, while keeping the marginals of
MDLM's forward process (so a pretrained MDLM/LLaDA is reused unchanged). With the signal
level alpha_t (alpha = 1 - t for the log-linear schedule) and a step from time t to s < t,
every position of the active block moves independently:

* a decoded token is **remasked with probability sigma_t** (and kept otherwise);
* a masked position is unmasked, to a token drawn from the model's (nucleus-filtered)
  prediction, with probability ``(alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t)``, and
  stays masked with ``(1 - alpha_s - sigma_t alpha_t) / (1 - alpha_t)``.

sigma_t is bounded by ``sigma_max = min(1, (1 - alpha_s) / alpha_t)`` (both probabilities
must be valid). The four schedules of the paper (``sampling.sampler`` in the reference):

* ``"cap"``     sigma = min(eta, sigma_max)                          (eta = 0.008)
* ``"rescale"`` sigma = eta * sigma_max                              (eta = 0.015)
* ``"conf"``    sigma_i = sigma_max * softmax_i(-psi) over the decoded tokens of the block,
  psi_i the probability the token had when it was decoded (low confidence, more remasking)
* ``"loop"``    three phases: for t > t_on, MDLM with alpha rescaled to reach alpha_on at
  t_on; for t_on >= t > t_off, alpha held at alpha_on and decoded tokens remasked with
  sigma = eta (the "loop" that refines a nearly finished sequence); for t <= t_off, MDLM
  from alpha_on to 1 (eta = 0.02, t_on = 0.55, t_off = 0.05, alpha_on = 0.9). As in the
  reference, the phase of a step t -> s is decided by t alone and both alpha_t and alpha_s
  come from that phase's formula: the step that crosses t_on evaluates the first ramp at s
  (past alpha_on; with 16 steps it unmasks every mask left, where a piecewise alpha(s) would
  unmask 20% of them), and the step that crosses t_off is still a loop step. Probabilities
  are clipped to [0, 1] (on a coarse grid the extrapolated alpha_s exceeds 1). The loop
  phase's sigma is eta itself, not clamped to sigma_max = (1 - alpha_on) / alpha_on: a config
  with eta above that bound would give masks a negative probability of staying masked in the
  reference, so it is refused (ValueError) instead.

Defaults are those of the reference scripts ``scripts/remdm-*.sh``, with nucleus
``top_p = 0.9``. Checked against ``kuleshov-group/remdm/diffusion.py`` (``_ddpm_caching_update``
and its ``remdm-*`` sampler branches).

Departures from the reference code (deliberate):

- The time grid is ``t_k = 1 - k / steps`` ending exactly at t = 0 (alpha = 1) instead of
  ``linspace(1, eps=1e-5)`` plus a separate argmax "noise removal" pass: at the last step
  sigma_max = 0 and every remaining mask is unmasked by the same sampling rule, so no mask
  survives and no extra forward pass is spent. The last step never remasks (with the "loop"
  schedule on a coarse grid it can fall in the loop phase, where sigma would be eta).
- Every step runs the model (no ``ddpm_cache`` logit reuse): with remasking the canvas
  changes almost every step, and a fixed cost per step keeps NFE = steps.
- A row runs its full schedule even when its canvas happens to have no mask left before
  t = 0 (the remaining steps may still remask and revise); ``Canvas.window`` therefore
  follows the schedule (it moves when a block's last step is taken), not the first masked
  block, and the row is ``finished`` when the last block's schedule ends (``canvas.done``
  keeps its meaning, no mask left).
- Semi-autoregressive blocks (``block_length``) are supported: ``steps`` is split evenly over
  the blocks (remainder first) and the ReMDM schedule runs from t = 1 to 0 inside each
  block; only the active block's tokens are remasked. ``steps=None`` gives each block as
  many steps as it has masks. The reference is unconditional MDLM only.
- ``temperature`` (default 1, the reference's only setting) tempers the proposal before the
  nucleus filter; the unmask/remask decisions are always random.
- The nucleus is the reference's (``_nucleus_sample``): tokens whose cumulative probability,
  counting themselves, is ``<= top_p``, plus the top-1 — not Dream's, which also keeps the
  token that crosses ``top_p`` (at probabilities [0.5, 0.3, 0.15, 0.05] and ``top_p = 0.9``
  the third token is never drawn here, 16% of the time with Dream's rule). Tokens tied at
  the cut are all kept or all dropped (a sort keeps an arbitrary subset). Computed inside
  ``kernels.propose`` without a sort of the vocabulary.
- Randomness comes from the toolkit's counter-based streams (exact inverse-CDF sampling
  for tokens, Philox uniforms for the decisions) rather than fp64 Gumbel noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_choice, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register
from remask.samplers.schedules import allotted_steps, check_steps_cover_blocks

__all__ = ["ReMDM", "ReMDMState", "ReMDMInfo", "SCHEDULES", "DEFAULT_ETA"]

SCHEDULES = ("cap", "rescale", "conf", "loop")
#: Reference eta per schedule (scripts/remdm-*.sh); "conf" has none.
DEFAULT_ETA = {"cap": 0.008, "rescale": 0.015, "conf": None, "loop": 0.02}


class ReMDMState(NamedTuple):
    """State of :class:`ReMDM`.

    Attributes
    ----------
    canvas : Canvas
    block_step : (B,) int64
        Steps taken in the row's active block (k in t_k = 1 - k / n).
    block_steps : (B,) int64
        Steps allotted to the active block (n).
    confidence : (B, L) float32
        psi: probability each decoded token had when it was decoded (for ``"conf"``);
        +inf where nothing is decoded.
    ended : (B,) bool
        The row's schedule has ended (the last block's last step was taken): ``finished``.
    """

    canvas: Canvas
    block_step: torch.Tensor
    block_steps: torch.Tensor
    confidence: torch.Tensor
    ended: torch.Tensor


class ReMDMInfo(NamedTuple):
    """What a ReMDM step did: the StepInfo fields plus the two kinds of moves.

    Attributes
    ----------
    committed : (B, L) bool
        Positions written this step (unmasked or remasked).
    proposal : (B, L) int64
        Token drawn at the masks unmasked this step (-1 elsewhere: the draws at the masks
        that stay would be discarded, so they are not made).
    score : (B, L) float32
        Probability that a masked position of the active block unmasks this step (-inf
        where not masked).
    unmasked, remasked : (B, L) bool
        Masked positions that received a token; decoded tokens set back to the mask.
    sigma : (B, L) float64
        Remasking probability of each decoded token of the active block (0 elsewhere).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    unmasked: torch.Tensor
    remasked: torch.Tensor
    sigma: torch.Tensor


@register("remdm")
@dataclass(frozen=True, kw_only=True)
class ReMDM(Sampler):
    """ReMDM remasking sampler (arXiv 2503.00307) with the cap / rescale / conf / loop schedules.

    Parameters
    ----------
    schedule : {"cap", "rescale", "conf", "loop"}
        The sigma schedule (see the module docstring).
    eta : float, optional
        Remasking strength in [0, 1]; None takes the reference value of the schedule
        (cap 0.008, rescale 0.015, loop 0.02). ``"conf"`` has no eta.
    t_on, t_off : float
        Loop phase boundaries, 0 < t_off < t_on < 1 (``"loop"`` only; reference 0.55, 0.05).
    alpha_on : float
        Signal level held during the loop phase, in (0, 1) (reference 0.9).
    steps : int, optional
        Total steps over all blocks; None = one step per masked token of each block.
    temperature : float
        Proposal temperature (1 = the model's distribution, the reference; 0 = argmax).
    top_p : float, optional
        Nucleus filter of the proposal distribution (reference 0.9); None or 1 disables.
    block_length : int, optional
        Semi-autoregressive blocks; the schedule runs inside each block.

    Examples
    --------
    >>> import remask
    >>> from remask.models import load_model
    >>> model = load_model("oracle:markov?vocab=4&length=8&seed=0")
    >>> sampler = remask.samplers.build("remdm", schedule="loop", steps=16)
    >>> out = remask.generate(model, [[1, 2]], sampler, gen_length=6, seed=0)
    >>> out.nfe.tolist(), bool((out.tokens == model.mask_id).any())
    ([16], False)
    """

    edits_committed = True
    example_configs = (
        {"schedule": "loop", "steps": 12},
        {"schedule": "conf", "block_length": 4, "top_p": None},
        {"schedule": "rescale", "eta": 0.5, "steps": 7, "block_length": 3, "temperature": 0.0},
        {"schedule": "cap", "eta": 0.3, "steps": 20},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("cap, 2G steps", {"schedule": "cap", "steps": 2 * G}),
            ("loop, 2G steps", {"schedule": "loop", "steps": 2 * G}),
        )

    schedule: str = "cap"
    eta: float | None = None
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9
    steps: int | None = None
    temperature: float = 1.0
    top_p: float | None = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self.schedule, "schedule", SCHEDULES)
        if self.eta is not None:
            if self.schedule == "conf":
                raise ValueError(
                    f"schedule='conf' takes no eta (its sigma comes from the confidences), "
                    f"got eta={self.eta!r}"
                )
            _check_float(self.eta, "eta", low=0.0, high=1.0)
        for name in ("t_on", "t_off", "alpha_on"):
            _check_float(getattr(self, name), name, low=0.0)
        if not 0 < self.t_off < self.t_on < 1:
            raise ValueError(
                f"need 0 < t_off < t_on < 1, got t_off={self.t_off!r}, t_on={self.t_on!r}"
            )
        _check_float(self.alpha_on, "alpha_on", low=0.0, high=1.0, low_open=True, high_open=True)
        if self.steps is not None:
            _check_int(self.steps, "steps", low=1)
        _check_float(self.temperature, "temperature", low=0.0)
        if self.top_p is not None:
            _check_float(self.top_p, "top_p", low=0.0, high=1.0, low_open=True)
        bound = (1.0 - self.alpha_on) / self.alpha_on
        if self.schedule == "loop" and self.eta_value > bound:
            # The loop phase keeps a mask with (1 - alpha_on - eta alpha_on) / (1 - alpha_on).
            raise ValueError(
                f"schedule='loop' needs eta <= (1 - alpha_on) / alpha_on = {bound:.4g} "
                f"(else a mask's probability of staying masked is negative), got "
                f"eta={self.eta_value!r} with alpha_on={self.alpha_on!r}"
            )

    @property
    def stochastic(self) -> bool:
        return True  # the unmask / remask decisions are random at any temperature

    @property
    def eta_value(self) -> float:
        """The eta in use: ``eta``, else the schedule's reference value (0 for "conf")."""
        if self.eta is not None:
            return float(self.eta)
        return DEFAULT_ETA[self.schedule] or 0.0

    def max_steps(self, canvas: Canvas) -> int:
        per_row = int(canvas.editable.sum(-1).max())
        return max(per_row, self.steps or 0) + 1

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> ReMDMState:
        check_steps_cover_blocks(self.steps, canvas)
        return ReMDMState(
            canvas=canvas,
            block_step=torch.zeros_like(canvas.nfe),
            block_steps=allotted_steps(canvas, denoiser.mask_id, self.steps),
            confidence=torch.full(canvas.tokens.shape, float("inf"), device=canvas.tokens.device),
            ended=canvas.done.clone(),  # a row with nothing to decode has no schedule
        )

    def finished(self, state: ReMDMState) -> torch.Tensor:
        """(B,) bool: the row's schedule has ended (not merely its masks: it may still remask)."""
        return state.ended

    # ------------------------------------------------------------------ step
    def step(self, state: ReMDMState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        live = (~state.ended).unsqueeze(-1)  # (B, 1): finished rows never move
        in_block = canvas.editable & canvas.active & live  # (B, L)
        masked = in_block & (canvas.tokens == mask_id)  # (B, L)
        decoded = in_block & ~masked  # (B, L)

        # score: each position's move probability (unmask a mask, remask a decoded token);
        # model-free, so the moves are decided before the model is read.
        p_unmask, sigma = self._move_probabilities(state, decoded)  # (B,), (B, L)
        # select: every position moves independently.
        u = kernels.uniform(
            kernels.position_keys(key, canvas.attention_mask, kernels.Purpose.POSITIONS),
            dtype=torch.float64,
        )  # (B, L)
        unmasked = masked & (u < p_unmask.unsqueeze(-1))  # (B, L)
        remasked = decoded & (u < sigma)  # (B, L)

        # predict: the model's (nucleus-filtered) proposal where a mask is unmasked. A
        # position's draw depends on its own key alone, so skipping the draws the reference
        # makes and discards at the masks that stay changes no written token.
        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        # ReMDM's nucleus (_nucleus_sample): keep the tokens whose cumulative probability is
        # <= top_p, plus the top-1 ("strict"); psi is the probability under that distribution.
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            key=proposal_keys(key, canvas, self.temperature),
            rows=unmasked,
            top_p=self.top_p,
            nucleus="strict",
            stats="sampled",
        )

        # commit
        written = torch.where(remasked, mask_id, proposal.tokens)  # (B, L)
        committed = unmasked | remasked
        new_canvas = commit(canvas, committed, written, mask_id, evaluations, live=~state.ended)
        # The block's schedule, not its first mask, decides when the window moves (see the
        # module docstring): after the block's last step every mask of it is filled.
        block_over = (state.block_step + 1 >= state.block_steps) & ~state.ended  # (B,)
        last_block = canvas.block.amax(-1)  # (B,)
        ended = state.ended | (block_over & (canvas.window >= last_block))
        window = torch.where(block_over & ~ended, canvas.window + 1, canvas.window)
        new_canvas = new_canvas._replace(window=window)

        confidence = torch.where(unmasked, proposal.prob, state.confidence)
        confidence = torch.where(remasked, float("inf"), confidence)  # (B, L)
        moved = window != canvas.window  # (B,)
        new_state = ReMDMState(
            canvas=new_canvas,
            block_step=torch.where(moved, 0, state.block_step + 1),
            block_steps=torch.where(
                moved, allotted_steps(new_canvas, mask_id, self.steps), state.block_steps
            ),
            confidence=confidence,
            ended=ended,
        )
        info = ReMDMInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(masked, p_unmask.unsqueeze(-1).float(), float("-inf")),
            unmasked=unmasked,
            remasked=remasked,
            sigma=torch.where(decoded, sigma, 0.0),
        )
        return new_state, info

    # ------------------------------------------------------------------ schedules
    def _move_probabilities(self, state: ReMDMState, decoded: torch.Tensor):
        """((B,) float64 unmask probability of a mask, (B, L) float64 remask probability sigma
        of each decoded token) for the step each row's block is at."""
        # Time grid of the row's block: t = 1 - k/n -> s = 1 - (k+1)/n, ending at s = 0.
        n = state.block_steps.clamp_min(1).double()  # (B,)
        t = 1.0 - state.block_step.double() / n  # (B,)
        s = (1.0 - (state.block_step + 1).double() / n).clamp_min(0.0)  # (B,)
        alpha_t, alpha_s = self._alphas(t, s)  # (B,) each
        # sigma_max keeps both moves valid; at alpha_t = 0 (t = 1) nothing is decoded anyway.
        sigma_max = torch.where(alpha_t > 0, (1 - alpha_s) / alpha_t.clamp_min(1e-300), 1.0).clamp(
            0.0, 1.0
        )
        sigma = self._sigma(t, sigma_max, decoded, state.confidence)  # (B, L)
        # The last step (s = 0) replaces the reference's final argmax pass: it never remasks,
        # also when a coarse "loop" grid makes it a loop-phase step.
        sigma = torch.where((s > 0).unsqueeze(-1), sigma, 0.0)

        # Masked positions: unmask with (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t). Their own
        # sigma is the row's scalar sigma (0 for "conf", whose weights vanish on masks).
        sigma_masked = (
            torch.zeros_like(sigma_max)
            if self.schedule == "conf"
            else self._row_sigma(t, sigma_max)
        )  # (B,)
        p_unmask = (alpha_s - (1 - sigma_masked) * alpha_t) / (1 - alpha_t).clamp_min(
            1e-300
        )  # (B,)
        p_unmask = torch.where(
            s <= 0, 1.0, p_unmask.clamp(0.0, 1.0)
        )  # the last step fills everything
        return p_unmask, sigma

    def _alphas(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) float64 signal levels (alpha_t, alpha_s) of the step t -> s: 1 - t and 1 - s, or
        the three-phase loop schedule, whose phase is t's for both (as the reference)."""
        if self.schedule != "loop":
            return 1.0 - t, 1.0 - s
        before, after = t > self.t_on, t <= self.t_off  # (B,) the phase of the step

        def alpha(u: torch.Tensor) -> torch.Tensor:
            ramp_in = self.alpha_on * (1.0 - u) / (1.0 - self.t_on)  # 0 at u = 1, alpha_on at t_on
            ramp_out = 1.0 - (1.0 - self.alpha_on) * u / self.t_off  # alpha_on at t_off, 1 at 0
            held = torch.full_like(u, self.alpha_on)
            return torch.where(before, ramp_in, torch.where(after, ramp_out, held))

        # On a coarse grid the first ramp, extrapolated to s, passes 1: clip (p_unmask = 1).
        return alpha(t), alpha(s).clamp(max=1.0)

    def _row_sigma(self, t: torch.Tensor, sigma_max: torch.Tensor) -> torch.Tensor:
        """(B,) sigma of the scalar schedules: cap and rescale within sigma_max, loop eta."""
        eta = self.eta_value
        if self.schedule == "cap":
            return torch.minimum(torch.full_like(sigma_max, eta), sigma_max)
        if self.schedule == "rescale":
            return eta * sigma_max
        if self.schedule == "loop":  # remask only inside the loop phase t_off < t <= t_on
            # eta itself, as the reference (__post_init__ keeps it <= sigma_max of that phase).
            looping = (t > self.t_off) & (t <= self.t_on)
            return torch.where(
                looping, torch.full_like(sigma_max, eta), torch.zeros_like(sigma_max)
            )
        return torch.zeros_like(sigma_max)

    def _sigma(self, t, sigma_max, decoded, confidence) -> torch.Tensor:
        """(B, L) float64 remasking probability of each decoded token (0 elsewhere)."""
        if self.schedule == "conf":
            # softmax(-psi) over the decoded tokens of the block: the least confident decoded
            # token takes the largest share of sigma_max.
            key = torch.where(decoded, -confidence.double(), float("-inf"))  # (B, L)
            any_decoded = decoded.any(-1, keepdim=True)
            weights = torch.where(any_decoded, key.softmax(-1), 0.0).nan_to_num(0.0)  # (B, L)
            sigma = sigma_max.unsqueeze(-1) * weights
        else:
            sigma = self._row_sigma(t, sigma_max).unsqueeze(-1).expand(decoded.shape)
        return torch.where(decoded, sigma, 0.0)
