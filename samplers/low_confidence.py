"""LLaDA low-confidence remasking (Nie et al., "Large Language Diffusion Models", arXiv 2502.09992).

Each step predicts every masked position of the active block, proposes a token per position
(argmax, or an exact Gumbel-max sample at temperature T), scores it by its untempered
probability ("low_confidence") or uniformly at random ("random"), and commits the k best;
the rest stay masked ("remasked"). k follows LLaDA's schedule: the block's masks are split
evenly over the block's steps, remainder first. Semi-autoregressive decoding is the same
algorithm with ``block_length`` < gen_length.

Departures from the reference ``generate.py`` (``ML-GSAI/LLaDA``):

- ``confidence_eos_eot_inf`` works as the paper intends (App. B.4): EOS/EoT may be proposed
  but are ranked after every other candidate. The reference sets the EOS logit to -inf after
  drawing the proposal, so the confidence it ranks by is untouched (LLaDA issue #137).
- Any ``gen_length``, ``block_length`` and ``steps`` are accepted: blocks are cut
  ``block_length`` at a time (the last may be shorter) and ``steps`` is split evenly over the
  blocks, remainder first. The reference asserts divisibility. A step that would commit
  nothing is never taken, so no forward pass is wasted when ``steps`` exceeds the tokens.
- Classifier-free guidance works without an attention mask (the reference raises NameError).
- Proposals and confidences are computed in float32 from one pass over the logits (the
  reference uses float64 Gumbel noise and a bf16 softmax), and ties in confidence go to the
  lower position, deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.kernels.score import SCORE_ALIASES, SCORES, demote, score_proposals
from remask.models import protocol
from remask.models.wrappers import Suppress
from remask.samplers._validate import check_bool
from remask.samplers.base import Canvas, Sampler, StepInfo, _check_choice, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.canvas import eligible as eligible_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register
from remask.samplers.schedules import BlockSchedule, check_steps_cover_blocks

__all__ = ["LowConfidence", "LowConfidenceState"]


class LowConfidenceState(NamedTuple):
    """State of :class:`LowConfidence`.

    Attributes
    ----------
    canvas : Canvas
    schedule : BlockSchedule
        LLaDA's per-block schedule of the active block.
    """

    canvas: Canvas
    schedule: BlockSchedule


@register("low_confidence")
@dataclass(frozen=True, kw_only=True)
class LowConfidence(Sampler):
    """LLaDA's reference sampler: commit the k most confident proposals per step.

    Parameters
    ----------
    steps : int, optional
        Total steps over all blocks. None (default) commits one token per step, LLaDA's
        best-quality setting (steps = gen_length).
    block_length : int, optional
        Semi-autoregressive block length; None = one block (pure diffusion).
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).
    remasking : {"low_confidence", "random"}
        LLaDA's name for the score: the proposal's untempered probability, or a uniform random
        number.
    score : {"prob", "margin", "entropy", "random"}, optional
        Dream-style orderings (top-1 probability, top-1 minus top-2 margin, negative entropy,
        random); None follows ``remasking``. Giving both inconsistently raises.
    cfg_scale : float
        Classifier-free guidance scale s >= 0 (0 disables; a guided step costs 2 NFE): sugar for
        running on ``remask.models.wrappers.Guided(model, cfg_scale)`` (see ``Sampler.wrap``).
    eos_id, eot_id : int, optional
        End-of-sequence / end-of-turn ids for the two EOS options; default to the denoiser's.
    logits_eos_inf : bool
        Never propose EOS: sugar for running on ``remask.models.wrappers.Suppress(model,
        [eos_id])`` (applied around the guided model, as the reference bans EOS after
        guidance).
    confidence_eos_eot_inf : bool
        Propose EOS/EoT freely but rank them after every other candidate.

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("low_confidence", steps=8, block_length=4)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, out.nfe.tolist()
    (torch.Size([1, 11]), [8])
    """

    example_configs = (
        {"block_length": 3},
        {"steps": 5, "block_length": 4, "temperature": 1.0},
        {"remasking": "random", "temperature": 1.0},
        {"score": "margin", "steps": 4},
        {"score": "entropy", "block_length": 4},
        {"cfg_scale": 1.0, "steps": 4},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("1 tok/step", {"temperature": 1.0}),
            ("2 tok/step", {"temperature": 1.0, "steps": max(G // 2, 1)}),
            ("4 tok/step", {"temperature": 1.0, "steps": max(G // 4, 1)}),
            ("random, 1 tok/step", {"temperature": 1.0, "remasking": "random"}),
        )

    steps: int | None = None
    temperature: float = 0.0
    remasking: str = "low_confidence"
    score: str | None = None
    cfg_scale: float = 0.0
    eos_id: int | None = None
    eot_id: int | None = None
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False

    @property
    def stochastic(self) -> bool:
        return self.temperature > 0 or self.score_kind == "random"

    @property
    def score_kind(self) -> str:
        """The score actually used: ``score``, else the one ``remasking`` names."""
        if self.score is not None:
            return self.score
        return SCORE_ALIASES.get(self.remasking, self.remasking)  # "low_confidence" is "prob"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps is not None:
            _check_int(self.steps, "steps", low=1)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_choice(self.remasking, "remasking", ("low_confidence", "random"))
        if self.score is not None:
            _check_choice(self.score, "score", SCORES)
            if self.remasking == "random" and self.score != "random":
                raise ValueError(
                    f"remasking='random' contradicts score={self.score!r}; give one of them"
                )
        _check_float(self.cfg_scale, "cfg_scale", low=0.0)
        for name in ("eos_id", "eot_id"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, low=0)
        for name in ("logits_eos_inf", "confidence_eos_eot_inf"):
            check_bool(getattr(self, name), name)

    # ------------------------------------------------------------------ model-side sugar
    def wrap(self, denoiser):
        """``cfg_scale`` builds ``Guided`` (see :meth:`Sampler.wrap`); ``logits_eos_inf`` then
        wraps that in ``Suppress(..., [eos_id])``."""
        model = super().wrap(denoiser)
        if not self.logits_eos_inf:
            return model
        self._check_special_ids(denoiser)
        return Suppress(model, [self._special_ids(denoiser)[0]])

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> LowConfidenceState:
        self._check_special_ids(denoiser)
        check_steps_cover_blocks(self.steps, canvas)
        return LowConfidenceState(
            canvas=canvas,
            schedule=BlockSchedule.start(canvas, denoiser.mask_id, self.steps),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: LowConfidenceState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        eligible = eligible_positions(canvas, mask_id)  # (B, L)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        eos, eot = self._special_ids(denoiser)

        # Counter-based randomness from the rows' step keys, folded by purpose and position:
        # the step is a pure function of its inputs, each row's draws of its own key only.
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            rows=eligible,
            key=proposal_keys(key, canvas, self.temperature),
        )
        score = score_proposals(
            proposal, self.score_kind, key=key, attention_mask=canvas.attention_mask
        )  # (B, L)
        if self.confidence_eos_eot_inf:
            score = demote(score, proposal.tokens, tuple(i for i in (eos, eot) if i is not None))

        k = state.schedule.count(canvas)  # (B,)
        committed = kernels.topk_mask(score, k, eligible)  # (B, L)
        new_canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)
        new_state = LowConfidenceState(
            canvas=new_canvas,
            schedule=state.schedule.advance(canvas, new_canvas, mask_id, self.steps),
        )
        info = StepInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, score, float("-inf")),
        )
        return new_state, info

    # ------------------------------------------------------------------ helpers
    def _special_ids(self, denoiser) -> tuple[int | None, int | None]:
        """(eos_id, eot_id): the config's, else the denoiser's, else None."""
        caps = protocol.capabilities(denoiser)
        eos = self.eos_id if self.eos_id is not None else caps.eos_id
        eot = self.eot_id if self.eot_id is not None else caps.eot_id
        return eos, eot

    def _check_special_ids(self, denoiser) -> None:
        """Raise ``ValueError`` unless the EOS options have ids inside the vocabulary."""
        eos, eot = self._special_ids(denoiser)
        if (self.logits_eos_inf and eos is None) or (
            self.confidence_eos_eot_inf and eos is eot is None
        ):
            raise ValueError(
                "logits_eos_inf/confidence_eos_eot_inf need an EOS id: set eos_id= or use a "
                f"denoiser with an eos_id attribute ({type(denoiser).__name__} has none)"
            )
        for name, value in (("eos_id", eos), ("eot_id", eot)):
            # Checked here, not at build: the vocabulary is the denoiser's. Only ids the EOS
            # options will index with matter.
            used = self.logits_eos_inf or self.confidence_eos_eot_inf
            if used and value is not None and not 0 <= value < denoiser.vocab_size:
                raise ValueError(
                    f"{name}={value} is outside the denoiser's vocabulary "
                    f"[0, {denoiser.vocab_size})"
                )
