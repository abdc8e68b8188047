"""KLASS: KL-Adaptive Stability Sampling (Kim et al., "KLASS: KL-Adaptive Stability Sampling
for Fast Inference in Masked Diffusion Models", arXiv 2511.05664).

A masked position whose predictive distribution has stopped moving is unlikely to change its
mind: KLASS commits, at each step, every masked position of the active block that is

* **stable** — the step-to-step divergences KL(p_t ‖ p_{t−1}) of its predictive distribution
  were below ``kl_threshold`` at each of the last ``history`` steps, and
* **confident** — its proposal's probability exceeds ``conf_threshold``;

and when no position is ready it falls back to LLaDA's schedule (top-k by confidence, the
block's masks split evenly over its steps, remainder first). ``unmask_strategy`` picks all
ready positions ("all", the default) or just one of them.

**What is carried between steps, and why it is exact.** The reference keeps the previous
distribution of *every* position as a float64 (L, V) tensor plus an (L, H) float64 KL
history. Two observations make most of that unnecessary, with identical decisions:

1. Readiness only asks whether *all* of the last H KLs are below the threshold, so the
   history collapses to a per-position **streak** (B, L) int: the number of consecutive most
   recent steps whose KL was below it. "All of the last H below" ⟺ streak ≥ H.
2. The reference only tests readiness at a block step s ≥ H − 1 (s counted from 0 in each
   block), so the H KLs it reads were all computed at steps of the *current* block (block
   steps s−H+1 … s ≥ 0). A KL at block step 0 compares against the previous step's
   distribution at positions that were then in the *next* block — which is known when that
   step ends (the window has just moved). So the only distributions ever needed are the
   previous step's **at the active block's positions**: at most ``block_length`` rows per
   sequence, kept as the model's own logits (in their own dtype, gathered, never upcast), which
   the fused KL kernel reads when the KL is taken — at the block's *masked* positions only,
   since a decoded position is never eligible again. The streak restarts at 0
   when a block starts, which reproduces the s ≥ H − 1 gate (a streak of H needs H steps).

So the carried state is (B, W, V) logits in the model's dtype with W = min(L,
``block_length``) (with ``block_length=None`` the full logits tensor the model returned is
kept, without a copy), a (B, W) index and a (B, L) streak: for LLaDA (bf16, V = 126k,
L = 600, block 64) 16 MB instead of the reference's 0.6 GB. The test suite checks the
decisions against a naive per-row loop that keeps the full float64 (L, V) history.

The KL is ``Σ_v p_t(v) (log p_t(v) − log p_{t−1}(v))`` from one fused pass over both rows
(:func:`remask.kernels.kl`: float64 sums, float32 result, no (B, L, V) temporary); the
reference adds ``1e-12`` inside both logs. At the first step of a run there is no previous
distribution and the KL is +∞ (the reference compares against an all-zero "distribution",
giving ≈ 27.6 − H(p_t) nats: never below a useful threshold).

Checked against ``shkim0116/KLASS/src/model/llada_klass.py::stable_confident_decode``.
Reference defaults (``scripts/llada_gsm8k.sh``): ``conf_threshold=0.6``,
``kl_threshold=0.015``, ``history=2``, ``block_length=64``, ``steps = gen_length`` (None:
one token per fallback step), ``unmask_strategy="all"``.

Departures from the reference code:

- The confidence is the model's untempered probability of the proposal. The reference adds
  Gumbel noise to the logits and then softmaxes the noisy *scores* for both the confidence
  and the KL; here the KL is between the model's distributions and
  proposals at T > 0 are exact samples of softmax(logits / T).
- The fallback is decided per row (the reference rebuilds ``transfer_index`` for the whole
  batch inside its per-row loop, erasing earlier rows' selections) and its top-k
  never reaches past the block's masks (the reference's ``topk`` can select non-masked
  positions and overwrite committed tokens when fewer masks remain than scheduled).
- The last step allotted to a block commits every mask left in it. The reference instead
  moves on, leaving masks in the output whenever "ready" steps committed fewer tokens than
  the schedule; whenever the reference leaves no mask, the two agree.
- Any ``gen_length``/``block_length``/``steps`` and batches with ragged prompts.
- The reference's alternative ``alg`` scores (margin, and an "entropy" that ranks uncertain
  positions first) are not reproduced; the confidence is the proposal's probability.
- ``unmask_strategy="min_kl"`` ranks the ready positions by their KL rounded to float32
  (the selection kernels rank float32 scores; the KL is summed in float64 and kept as a
  float64 tensor in the info) where the reference takes a float64 argmin. Two ready
  positions whose KLs differ only below float32 resolution (relative 6e-8) tie here and go
  to the lower position; the reference may pick the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_choice, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import predict
from remask.samplers.registry import register
from remask.samplers.schedules import BlockSchedule, check_steps_cover_blocks

__all__ = ["Klass", "KlassInfo", "KlassState"]

STRATEGIES = ("all", "max_conf", "min_kl", "random")


def _window_index(canvas: Canvas, width: int) -> torch.Tensor:
    """(B, width) int64: the active block's positions of each row, left to right, padded with
    other (inactive) positions when the block is shorter; the identity when width = L."""
    B, L = canvas.tokens.shape
    if width == L:
        return torch.arange(L, device=canvas.tokens.device).expand(B, L)
    inactive = (~canvas.active).to(torch.int8)  # (B, L)
    return inactive.sort(dim=-1, stable=True).indices[:, :width]


class KlassState(NamedTuple):
    """State of :class:`Klass`.

    Attributes
    ----------
    canvas : Canvas
    schedule : BlockSchedule
        LLaDA's per-block schedule of the active block.
    streak : (B, L) int64
        Consecutive most recent steps (in the active block) whose KL was below
        ``kl_threshold``; 0 outside the active block's masked positions.
    index : (B, W) int64
        Positions of the active block (see :func:`_window_index`), W = min(L, block_length).
    previous : (B, W, V) float or None
        Last step's logits at ``index`` (in the model's dtype); None before the first step.
    """

    canvas: Canvas
    schedule: BlockSchedule
    streak: torch.Tensor
    index: torch.Tensor
    previous: torch.Tensor | None


class KlassInfo(NamedTuple):
    """What one KLASS step did.

    Attributes
    ----------
    committed : (B, L) bool
    proposal : (B, L) int64
    score : (B, L) float32
        Proposal probability (-inf where not eligible).
    kl : (B, L) float64
        KL(p_t ‖ p_{t−1}) at the active block's masked positions (+inf elsewhere and at
        step 0: a decoded position is never eligible again, so its KL is not computed).
    ready : (B, L) bool
        Eligible positions that were stable and confident.
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    kl: torch.Tensor
    ready: torch.Tensor


@register("klass")
@dataclass(frozen=True, kw_only=True)
class Klass(Sampler):
    """KLASS: commit the positions whose prediction is confident and has stopped moving.

    Parameters
    ----------
    conf_threshold : float
        Ready positions need a proposal probability strictly above this (in [0, 1]).
    kl_threshold : float
        Ready positions need each of their last ``history`` step-to-step KLs (nats) strictly
        below this (>= 0).
    history : int
        H >= 1: how many consecutive stable steps make a position stable.
    steps : int, optional
        Total steps over all blocks for the fallback schedule; None (default) = one token per
        fallback step (the reference scripts' steps = gen_length).
    block_length : int, optional
        Semi-autoregressive block length (default 64, the reference scripts'); None = one block.
    unmask_strategy : {"all", "max_conf", "min_kl", "random"}
        Commit every ready position, or only the most confident / least moving / a random one.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).
    cfg_scale : float
        Classifier-free guidance scale s >= 0 (0 disables; a guided step costs 2 NFE): sugar for
        running on ``remask.models.wrappers.Guided(model, cfg_scale)`` (see ``Sampler.wrap``).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("klass", block_length=4, kl_threshold=0.05, conf_threshold=0.3)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, int(out.nfe[0]) <= 8
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"block_length": 3, "kl_threshold": 0.5, "conf_threshold": 0.1},
        {
            "history": 1,
            "kl_threshold": 1.0,
            "conf_threshold": 0.0,
            "steps": 4,
            "block_length": None,
        },
        {"unmask_strategy": "random", "kl_threshold": 0.5, "temperature": 1.0, "block_length": 4},
        {"unmask_strategy": "min_kl", "history": 3, "kl_threshold": 2.0, "cfg_scale": 1.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("kl<0.01", {"temperature": 1.0, "kl_threshold": 0.01, "conf_threshold": 0.6}),
            ("kl<0.1", {"temperature": 1.0, "kl_threshold": 0.1, "conf_threshold": 0.3}),
        )

    block_length: int | None = 64
    conf_threshold: float = 0.6
    kl_threshold: float = 0.015
    history: int = 2
    steps: int | None = None
    unmask_strategy: str = "all"
    temperature: float = 0.0
    cfg_scale: float = 0.0

    @property
    def stochastic(self) -> bool:
        return self.temperature > 0 or self.unmask_strategy == "random"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.conf_threshold, "conf_threshold", low=0.0, high=1.0)
        _check_float(self.kl_threshold, "kl_threshold", low=0.0)
        _check_int(self.history, "history", low=1)
        if self.steps is not None:
            _check_int(self.steps, "steps", low=1)
        _check_choice(self.unmask_strategy, "unmask_strategy", STRATEGIES)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_float(self.cfg_scale, "cfg_scale", low=0.0)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> KlassState:
        check_steps_cover_blocks(self.steps, canvas)
        return KlassState(
            canvas=canvas,
            schedule=BlockSchedule.start(canvas, denoiser.mask_id, self.steps),
            streak=torch.zeros_like(canvas.tokens),
            index=_window_index(canvas, self._width(canvas)),
            previous=None,
        )

    # ------------------------------------------------------------------ step
    def step(self, state: KlassState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        active = canvas.active  # (B, L)
        B, L = canvas.tokens.shape
        eligible, logits, proposal, evaluations = predict(
            canvas, denoiser, key, temperature=self.temperature
        )
        confidence = proposal.prob  # (B, L)

        # Step-to-step KL at the active block's masked positions (the previous logits were
        # kept for the whole block), +inf where there is no previous distribution. A decoded
        # position never becomes eligible again, so its KL could decide nothing: its row of
        # logits is not read (as the block fills, the KL reads fewer rows).
        kl = torch.full((B, L), float("inf"), dtype=torch.float64, device=logits.device)  # (B, L)
        current = None  # (B, W, V) this step's logits at the old window, once gathered
        if state.previous is not None:
            # Only the eligible rows are read (the window may hold padding or, without
            # blocks, the prompt).
            window_rows = eligible.gather(1, state.index)  # (B, W)
            current = self._gather(logits, state.index)  # (B, W, V)
            window_kl = kernels.kl(current, state.previous, window_rows).double()  # (B, W)
            # The window may be padded with other positions: report the eligible ones only.
            kl = torch.where(eligible, kl.scatter(-1, state.index, window_kl), float("inf"))
        stable = kl < self.kl_threshold  # (B, L)
        streak = torch.where(active & stable, state.streak + 1, 0)  # (B, L)
        ready = eligible & (streak >= self.history) & (confidence > self.conf_threshold)  # (B, L)

        # Ready positions, or one of them; else LLaDA's scheduled top-k by confidence.
        if self.unmask_strategy == "all":
            chosen = ready
        else:
            rank_by = {
                "max_conf": lambda: confidence,
                "min_kl": lambda: (-kl).float(),
                "random": lambda: kernels.uniform(
                    kernels.position_keys(key, canvas.attention_mask, kernels.Purpose.SCORE)
                ),
            }[self.unmask_strategy]()
            chosen = kernels.topk_mask(rank_by, 1, ready)  # (B, L)
        # The block's last allotted step (or any later one) takes every mask left.
        last = state.schedule.step >= state.schedule.steps_of(canvas) - 1  # (B,)
        k = torch.where(last & ~canvas.done, L, state.schedule.count(canvas))  # (B,)
        fallback = kernels.topk_mask(confidence, k, eligible)  # (B, L)
        use_ready = ready.any(-1, keepdim=True) & ~last.unsqueeze(-1)  # (B, 1)
        committed = torch.where(use_ready, chosen, fallback)  # (B, L)

        new_canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)
        index = _window_index(new_canvas, state.index.shape[1])  # (B, W)
        # Within a block the window does not move: the rows gathered for the KL are the next
        # step's ``previous`` (on the CPU, where comparing two (B, W) indices costs nothing;
        # an accelerator would stall on the comparison, so there the gather runs again).
        same_window = (
            current is not None and index.device.type == "cpu" and torch.equal(index, state.index)
        )
        new_state = KlassState(
            canvas=new_canvas,
            schedule=state.schedule.advance(canvas, new_canvas, mask_id, self.steps),
            # Positions outside the active block hold 0, so a new block's streaks start from
            # scratch at its first step (the reference's s >= H - 1 gate).
            streak=streak,
            index=index,
            previous=current if same_window else self._gather(logits, index),
        )
        info = KlassInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, confidence, float("-inf")),
            kl=kl,
            ready=ready,
        )
        return new_state, info

    # ------------------------------------------------------------------ helpers
    def _width(self, canvas: Canvas) -> int:
        L = canvas.tokens.shape[1]
        return L if self.block_length is None else min(L, self.block_length)

    @staticmethod
    def _gather(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, W, V) rows of ``logits`` at ``index``: the model's tensor itself (no copy) for a
        full-width window, whose index is the identity."""
        B, L, V = logits.shape
        if index.shape[1] == L:
            return logits
        # Whole rows by index_select on the flattened (B * L, V) view: one memcpy per row,
        # where gather with an expanded (B, W, V) index reads an index per element (2x slower).
        offset = torch.arange(B, device=index.device).unsqueeze(-1) * L  # (B, 1)
        rows = (index + offset).reshape(-1)  # (B * W,)
        return logits.reshape(B * L, V).index_select(0, rows).reshape(B, index.shape[1], V)
