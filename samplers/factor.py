"""Fast-dLLM factor-based parallel decoding (Wu et al., "Fast-dLLM", arXiv 2505.22618, the
"factor" rule added to the code on 2025-07-06).

Checked against ``NVlabs/Fast-dLLM/llada/generate.py::get_transfer_index_dynamic``.
Semi-autoregressive blocks of ``block_length`` (32 in the paper settings); at each
step the masked positions of the active block propose tokens with confidences (untempered
probability of the proposal), sorted ``c(1) >= c(2) >= ... >= c(M)``. Rank ``n`` passes when

    c(n) >= 1 - f / (n + 1)        (equivalently (n + 1)(1 - c(n)) <= f),

rank 1 always passes, and the step commits the ``n*`` most confident proposals where ``n*`` is
the length of the leading run of passing ranks. Because ``c(n)`` decreases and the bar
``1 - f/(n+1)`` increases with ``n``, the passing ranks always form a prefix, so ``n*`` is
simply the number of passing ranks. The rationale (Fast-dLLM's Thm. 1): when the product of
the marginals' top-1 probabilities is high enough, greedy parallel decoding agrees with greedy
sequential decoding.

Edge cases, as defined here (not inherited)
-------------------------------------------
- ``n* >= 1`` always (rank 1's bar is -∞); ``M = 1`` commits the single position.
- If every rank passes, all ``M`` positions commit.
- If the first failing rank is the last one (rank ``M``), exactly ``M - 1`` commit. The
  reference commits all ``M`` here: its loop leaves the index at ``M - 1`` both when it runs
  out of ranks and when it breaks at the last rank, and then adds one in both cases. That
  is a bookkeeping accident, so it is not reproduced: a rank that fails its bar is never
  committed by the rule.
- Equality passes (the reference breaks on ``c(n) < bar``).
- ``factor = 0`` commits only positions of confidence 1 (at least one).

Other departures: float32 confidences (reference float64 softmax); rows advance through their
blocks independently; any ``gen_length``/``block_length``; ties to the lower position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, StepInfo, StepState, _check_float
from remask.samplers.canvas import commit
from remask.samplers.predict import predict
from remask.samplers.registry import register

__all__ = ["Factor", "factor_count"]


def factor_count(score: torch.Tensor, eligible: torch.Tensor, factor: float) -> torch.Tensor:
    """(B,) int64: how many of the most confident eligible positions the factor rule commits.

    Parameters
    ----------
    score : (B, L) float
        Confidence of each proposal (probability in [0, 1]).
    eligible : (B, L) bool
    factor : float
        ``f >= 0``.

    Returns
    -------
    (B,) int64
        ``n*`` = number of leading ranks ``n`` (1-based, confidence-descending) with
        ``c(n) >= 1 - f / (n + 1)``, rank 1 always counted; 0 for rows with no eligible
        position.
    """
    L = score.shape[-1]
    ranked = (
        torch.where(eligible, score.double(), float("-inf")).sort(dim=-1, descending=True).values
    )
    n = torch.arange(1, L + 1, device=score.device, dtype=torch.float64)  # (L,) 1-based rank
    bar = 1.0 - factor / (n + 1.0)  # (L,)
    bar[0] = float("-inf")  # at least one token per step
    within = n <= eligible.sum(-1, keepdim=True)  # (B, L) ranks that exist
    passes = (ranked >= bar) & within  # (B, L)
    return passes.long().cumprod(-1).sum(-1)  # (B,) length of the leading passing run


@register("factor")
@dataclass(frozen=True, kw_only=True)
class Factor(Sampler):
    """Fast-dLLM factor rule: commit the longest confident prefix with (n+1)(1 - c(n)) <= f.

    Parameters
    ----------
    factor : float
        ``f >= 0``; larger commits more per step (the paper uses f ≈ 1).
    block_length : int, optional
        Semi-autoregressive block length (default 32, the paper's); None = one block.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T) (confidence is
        the untempered probability of the proposal, as in the reference).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("factor", factor=1.0, block_length=4)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 8)
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"factor": 2.0, "block_length": 4},
        {"factor": 0.5, "temperature": 1.0},
        {"factor": 8.0, "block_length": None},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("f=1", {"temperature": 1.0, "factor": 1.0}),
            ("f=2", {"temperature": 1.0, "factor": 2.0}),
        )

    block_length: int | None = 32
    factor: float = 1.0
    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.factor, "factor", low=0.0)
        _check_float(self.temperature, "temperature", low=0.0)

    def init(self, canvas: Canvas, denoiser) -> StepState:
        return StepState(canvas=canvas)

    def step(self, state: StepState, denoiser, key: torch.Tensor):
        eligible, _, proposal, evaluations = predict(
            state.canvas, denoiser, key, temperature=self.temperature
        )
        k = factor_count(proposal.prob, eligible, self.factor)  # (B,)
        committed = kernels.topk_mask(proposal.prob, k, eligible)  # (B, L)
        new_canvas = commit(state.canvas, committed, proposal.tokens, denoiser.mask_id, evaluations)
        info = StepInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, proposal.prob, float("-inf")),
        )
        return StepState(canvas=new_canvas), info
