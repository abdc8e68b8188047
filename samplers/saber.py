"""Saber: adaptive acceleration and backtracking remasking (Dong et al., "Saber: An Efficient
Sampling with Adaptive Acceleration and Backtracking Enhanced Remasking for Diffusion Language
Model", arXiv 2510.18165).

Two rules per step, both driven by the model's confidence (the untempered probability of its
proposal at a position):

* **Adaptive acceleration.** The bar a masked position must clear is the mean confidence that
  the tokens committed so far had when they were committed: as context builds and the model
  grows confident, more positions clear it and more commit per step. Every masked position
  above the bar commits; when fewer than ``n`` do, the ``n`` most confident commit instead (the
  first step, with nothing committed yet, uses a bar of 1 and so commits ``n``).
* **Backtracking remasking.** Then, unless the block has just been completed, the decoded
  tokens whose confidence *fell* the most since the previous step (the smallest
  ``c_t - c_{t-1}``, the model's confidence in its own proposal at that position, whether
  decoded or not) are set back to the mask: ``max(n // 2, ceil(f / 8))`` of them, at most
  ``f - 1``, where ``f = max(n, committed this step)``. Tokens just committed are candidates
  too; so are tokens of earlier blocks: backtracking reaches every decoded position before the
  active block's end. Each step therefore gains at least one token.

Blocks (``block_length``) are decoded left to right as in LLaDA; because backtracking can
reopen an earlier block, the active block (``Canvas.window``) is the row's frontier — the
left-most block not yet completed *in order* — and every masked position up to its end may
commit. The frontier moves when no mask is left up to its end.

Checked against the authors' ``decoding.py::generate_with_saber``; reference defaults ``n = 2``,
``temperature = 0`` and (configs/*.yaml) ``block_length = gen_length = 256`` — one block,
``block_length=None`` here.

Departures from the reference code:

- When fewer than ``n`` masked positions are left before the block's end, all of them commit
  (the block is then complete). The reference's ``topk(k=n)`` also picks positions of score
  -inf there — decoded or prompt tokens, which it overwrites with the current argmax.
- Rows are independent: any batch size with ragged prompts (the reference is batch-size 1),
  NFE per row. Any ``gen_length``/``block_length`` (the last block may be shorter).
- Proposals at T > 0 are exact samples of softmax(logits / T) (reference: ``exp(logits) /
  (-log u)^T`` in float64); confidences are float32 (reference: the model dtype's softmax);
  ties in confidence or in the confidence drop go to the lower position.
- No 1024-step cap per block: every step gains a token, so a block of ``b`` masks takes at
  most ``b`` steps.
- The reference's ``initial_confidence`` (the confidence at a token's first commit) is kept
  but never read; it is not carried here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register

__all__ = ["Saber", "SaberState", "SaberInfo"]


class SaberState(NamedTuple):
    """State of :class:`Saber`.

    Attributes
    ----------
    canvas : Canvas
        ``window`` is the row's frontier block (see the module docstring).
    last_confidence : (B, L) float32
        Previous step's confidence of the proposal at each editable position up to the
        frontier's end (-inf elsewhere; 0 before the first step, as in the reference).
    final_confidence : (B, L) float32
        Confidence each position had when it was last committed (-inf if never committed;
        kept when the token is remasked, as in the reference).
    """

    canvas: Canvas
    last_confidence: torch.Tensor
    final_confidence: torch.Tensor


class SaberInfo(NamedTuple):
    """What one Saber step did.

    Attributes
    ----------
    committed : (B, L) bool
        Positions whose token changed this step (unmasked, or remasked).
    proposal : (B, L) int64
        Proposal at each editable position up to the frontier's end (-1 elsewhere).
    score : (B, L) float32
        Confidence of the proposal at the masked positions that could commit (-inf elsewhere).
    threshold : (B,) float32
        The acceleration bar (mean confidence of the committed tokens, or 1).
    unmasked, remasked : (B, L) bool
        Masked positions that received a token and stayed decoded; decoded tokens set back to
        the mask (a position committed and remasked in the same step is in neither).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    threshold: torch.Tensor
    unmasked: torch.Tensor
    remasked: torch.Tensor


@register("saber")
@dataclass(frozen=True, kw_only=True)
class Saber(Sampler):
    """Saber: a confidence bar that falls as context builds, and backtracking remasking.

    Parameters
    ----------
    n : int
        The reference's ``n`` (default 2): the fewest tokens committed per step (the top-n
        when fewer clear the bar); also sets the remasking count ``max(n // 2, ceil(f / 8))``.
    block_length : int, optional
        Semi-autoregressive block length; None (default) = one block, as in the reference
        configs.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T) (confidence is
        still the untempered probability of the proposal).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("saber", n=2)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 8)
    (torch.Size([1, 11]), True)
    """

    edits_committed = True
    example_configs = (
        {"block_length": 3},
        {"n": 1, "block_length": 4},
        {"n": 4, "temperature": 1.0},
        {"n": 3, "block_length": 5, "temperature": 0.5},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("n=2", {"temperature": 1.0}),
            ("n=1", {"temperature": 1.0, "n": 1}),
            ("n=4", {"temperature": 1.0, "n": 4}),
        )

    block_length: int | None = None
    n: int = 2
    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.n, "n", low=1)
        _check_float(self.temperature, "temperature", low=0.0)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> SaberState:
        zeros = torch.zeros(canvas.tokens.shape, dtype=torch.float32, device=canvas.tokens.device)
        return SaberState(
            canvas=canvas,
            last_confidence=zeros,
            final_confidence=torch.full_like(zeros, float("-inf")),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: SaberState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        live = (~canvas.done).unsqueeze(-1)  # (B, 1)
        # Everything up to the frontier block's end: the reference's positions before block_end.
        region = canvas.editable & (canvas.block <= canvas.window.unsqueeze(-1)) & live  # (B, L)
        masked = region & (canvas.tokens == mask_id)  # (B, L)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            key=proposal_keys(key, canvas, self.temperature),
            rows=region,
        )
        confidence = torch.where(region, proposal.prob, float("-inf"))  # (B, L)
        # Confidence change since the last step; undefined (a new block, a finished row) = +inf,
        # which never ranks among the largest drops.
        delta = confidence - state.last_confidence  # (B, L)
        delta = torch.where(torch.isfinite(delta), delta, float("inf"))

        # Adaptive acceleration: the bar is the mean confidence of the committed tokens.
        seen = torch.isfinite(state.final_confidence)  # (B, L)
        count = seen.sum(-1)  # (B,)
        total = torch.where(seen, state.final_confidence, 0.0).sum(-1)  # (B,)
        threshold = torch.where(count > 0, total / count.clamp_min(1), 1.0)  # (B,)
        above = masked & (confidence > threshold.unsqueeze(-1))  # (B, L)
        n_above = above.sum(-1)  # (B,)
        unmask = torch.where(
            (n_above >= self.n).unsqueeze(-1), above, kernels.topk_mask(confidence, self.n, masked)
        )  # (B, L)
        fix = n_above.clamp_min(self.n)  # (B,) the reference's max(n, len(select))
        final_confidence = torch.where(unmask, proposal.prob, state.final_confidence)

        # Backtracking, unless this step completed the frontier block (or the row).
        tokens = torch.where(unmask, proposal.tokens, canvas.tokens)  # (B, L)
        left = (region & (tokens == mask_id)).any(-1)  # (B,) masks left up to the frontier's end
        k = torch.minimum(torch.maximum(torch.full_like(fix, self.n // 2), (fix + 7) // 8), fix - 1)
        k = torch.where(left, k, 0)  # (B,)
        decoded = region & (tokens != mask_id)  # (B, L): includes this step's commits
        remask = kernels.topk_mask(-delta, k, decoded)  # (B, L) the largest drops

        changed = unmask ^ remask  # committed then remasked in one step: unchanged
        written = torch.where(remask, mask_id, proposal.tokens)  # (B, L)
        new_canvas = commit(canvas, changed, written, mask_id, evaluations)
        # The frontier moves past a block only once nothing up to its end is masked.
        last_block = canvas.block.amax(-1)  # (B,)
        advance = ~left & ~new_canvas.done & (canvas.window < last_block)  # (B,)
        window = torch.where(advance, canvas.window + 1, canvas.window)
        new_canvas = new_canvas._replace(window=window)

        new_state = SaberState(
            canvas=new_canvas, last_confidence=confidence, final_confidence=final_confidence
        )
        info = SaberInfo(
            committed=changed,
            proposal=proposal.tokens,
            score=torch.where(masked, confidence, float("-inf")),
            threshold=threshold,
            unmasked=unmask & ~remask,
            remasked=remask & ~unmask,
        )
        return new_state, info
