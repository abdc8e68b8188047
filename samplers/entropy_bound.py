"""EB-Sampler: entropy-bounded unmasking (Ben-Hamu, Gat, Severo, Nolte, Karrer, "Accelerated
Sampling from Masked Diffusion Models via Entropy Bounded Unmasking", arXiv 2505.24857).

Committing a set U of masked positions in one step from the product of their marginals costs
the total correlation TC(U) = Σ_{i∈U} H(x_i) − H(x_U) on top of the model error, and because
H(x_U) ≥ max_{i∈U} H(x_i),

    TC(U) ≤ Σ_{i∈U} H_i − max_{i∈U} H_i.

So each step ranks the masked positions of the active block by an error proxy and commits the
**largest prefix U of that order with Σ H − max H ≤ γ**, and always at least one position.
γ = 0 commits one token per step (plus any zero-entropy ties); γ = ∞ commits the whole block.

**Units.** ``gamma`` is in **nats** (entropies from natural logarithms), as in the
PC-Sampler implementation; DUS's ``generate_eb_sampler`` measures entropy in bits, so its
γ_bits equals ``gamma / ln 2`` here (γ_nats = γ_bits · ln 2 ≈ 0.693 γ_bits).

Checked against ``NEUIR/PC-Sampler/src/generate.py::generate_with_eb_sampler`` (official code
is not released), with ``omerlux/DUS/generate.py::generate_eb_sampler`` and
``generate_eb_sampler_spaced`` for the block-wise form and the spacing filter.
Reference defaults: γ = 0.1 nats, entropy ordering (lowest entropy first), no blocks.

Departures from the reference code:

- Entropy is that of the model's untempered distribution, computed in float32 from one pass
  over the logits (``remask.kernels.propose``); DUS computes it on Gumbel-perturbed scores
  when T > 0. Proposals at T > 0 are exact samples of softmax(logits/T).
- Ties in the ordering go to the lower position (PC-Sampler uses an unstable ``argsort``).
  d2Cache's ``cummax`` over the batch dimension (which lets one row's entropies change
  another row's commits) is not reproduced: the running max is
  taken along each row's own order.
- ``block_length`` works for any length and any batch (the references are B = 1, and DUS
  asserts divisibility).
- No per-block step budget: a block takes as many steps as the bound needs (at most one
  per mask, since every step commits at least one), and every mask is decoded. DUS's
  block-wise EB gives each block a fixed number of steps and moves on when they are spent,
  so it can leave masks in its output.
- ``min_spacing`` is a fixed gap, where DUS's spaced variant uses the adaptive
  ``max(2, ⌊M·g0/B⌋)``; the greedy filter itself is DUS's ``apply_spacing_filter``. It is
  applied after the entropy bound, so the committed set (a subset of the prefix) still
  satisfies the bound: for S ⊆ U, Σ_S H − max_S H ≤ Σ_U H − max_U H.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.kernels.score import score_proposals
from remask.kernels.select import spacing_filter
from remask.samplers.base import Canvas, Sampler, StepState, _check_choice, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import predict
from remask.samplers.registry import register

__all__ = ["EntropyBound", "EntropyBoundInfo"]

#: Orderings: lowest entropy first, highest proposal probability first, largest top-1/top-2 margin first.
ORDERINGS = ("entropy", "prob", "margin")


class EntropyBoundInfo(NamedTuple):
    """What one EB step did.

    Attributes
    ----------
    committed : (B, L) bool
    proposal : (B, L) int64
        -1 outside the eligible positions.
    score : (B, L) float32
        Ordering score (higher commits first; -inf where not eligible).
    entropy : (B, L) float32
        Entropy of each eligible position's predicted distribution, in nats (0 elsewhere).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    entropy: torch.Tensor


@register("entropy_bound")
@dataclass(frozen=True, kw_only=True)
class EntropyBound(Sampler):
    """EB-Sampler: commit the largest low-error prefix whose entropy excess stays within γ.

    Parameters
    ----------
    gamma : float
        Error budget γ >= 0 **in nats**: the committed set U satisfies
        ``Σ_{i∈U} H_i − max_{i∈U} H_i <= gamma`` (DUS's bits: γ_nats = γ_bits · ln 2).
        ``float("inf")`` commits the whole block at once.
    score : {"entropy", "prob", "margin"}
        Order in which positions enter the prefix: lowest entropy first (PC-Sampler, DUS),
        most probable proposal first (d2Cache's "confidence"), or largest top-1/top-2 margin.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).
    min_spacing : int, optional
        DUS spacing post-filter: positions committed in one step are at least this far apart
        (greedy in score order, see :func:`remask.kernels.select.spacing_filter`); None or 1
        disables it.
    block_length : int, optional
        Semi-autoregressive block length; None = one block (the reference setting).
    cfg_scale : float
        Classifier-free guidance scale s >= 0 (0 disables; a guided step costs 2 NFE): sugar for
        running on ``remask.models.wrappers.Guided(model, cfg_scale)`` (see ``Sampler.wrap``).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("entropy_bound", gamma=0.5, block_length=4)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, int(out.nfe[0]) <= 8
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"gamma": 0.0, "score": "prob"},
        {"gamma": 2.0, "block_length": 4, "min_spacing": 2},
        {"gamma": 1.0, "score": "margin", "temperature": 1.0},
        {"gamma": float("inf"), "cfg_scale": 1.0, "block_length": 3},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("gamma=0.1", {"temperature": 1.0, "gamma": 0.1}),
            ("gamma=0.5", {"temperature": 1.0, "gamma": 0.5}),
            ("gamma=2", {"temperature": 1.0, "gamma": 2.0}),
        )

    gamma: float = 0.1
    score: str = "entropy"
    temperature: float = 0.0
    min_spacing: int | None = None
    cfg_scale: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.gamma, "gamma", low=0.0, allow_inf=True)
        _check_choice(self.score, "score", ORDERINGS)
        _check_float(self.temperature, "temperature", low=0.0)
        if self.min_spacing is not None:
            _check_int(self.min_spacing, "min_spacing", low=1)
        _check_float(self.cfg_scale, "cfg_scale", low=0.0)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> StepState:
        return StepState(canvas=canvas)

    # ------------------------------------------------------------------ step
    def step(self, state: StepState, denoiser, key: torch.Tensor):
        eligible, _, proposal, evaluations = predict(
            state.canvas, denoiser, key, temperature=self.temperature
        )
        # The ordering never uses the random stream (no "random" score): the key only
        # matters for the proposal.
        score = score_proposals(proposal, self.score)

        # Largest prefix in score order with Σ H − max H ≤ γ (nats), at least one per row.
        committed = kernels.entropy_budget_mask(
            score, proposal.entropy, self.gamma, eligible
        )  # (B, L)
        if self.min_spacing is not None and self.min_spacing > 1:
            # A row selects at most its active block: a static bound on the greedy loop.
            committed = spacing_filter(committed, score, self.min_spacing, self.block_length)

        new_canvas = commit(state.canvas, committed, proposal.tokens, denoiser.mask_id, evaluations)
        info = EntropyBoundInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, score, float("-inf")),
            entropy=proposal.entropy,
        )
        return StepState(canvas=new_canvas), info
