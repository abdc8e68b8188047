"""CreditDecoding: threshold decoding on logits fused with each position's trace credit
(Wang et al., "CreditDecoding: Accelerating Parallel Decoding in Diffusion Large Language
Models with Trace Credits", arXiv 2510.06133).

Checked against dInfer's ``CreditThresholdParallelDecoder`` (``_apply_credit_fusion`` and
``get_transfer_index_threshold``, ``inclusionAI/dInfer``, the authors' group). Blocks of
``block_length`` are decoded left to right. Every position of the active block carries a
credit vector ``C`` over the vocabulary, zero when the block becomes active. At each step,
with ``z`` the model's logits:

1. **Credit**: ``C <- decay_beta * C``; then at every still-masked position the current
   top-1 token ``v = argmax z`` gains ``p_v ** boost_gamma`` (``p = softmax(z)``), so a token
   predicted step after step accumulates credit, and a steady prediction more than a
   fluctuating one.
2. **Fusion**: ``z' = z + credit_alpha * log(1 + C)``.
3. **Threshold rule** on ``z'`` (Fast-dLLM's): each masked position proposes ``argmax z'``
   (or a sample at temperature T) with confidence ``softmax(z')`` of the proposal; all
   positions with confidence ``>= threshold`` commit, and always the most confident one.

So an under-confident token the model has kept predicting crosses the threshold earlier;
with ``credit_alpha = 0`` the sampler is exactly ``threshold``. Defaults: dInfer's
(``credit_alpha=0.7, boost_gamma=0.2, decay_beta=0.8``), threshold 0.9 and blocks of 32 as
in its benchmarks.

Memory: the credit is sparse. A slot gains credit only at its top-1 token of a step, one token
per step, and a block takes at most W steps (W = ``block_length``, or the longest editable
span when ``block_length`` is None: every step commits at least one of the block's masks), so
a slot holds at most S = min(W, V) credited tokens; every other entry of the credit vector is
zero, where ``log(1 + C)`` adds nothing. The state keeps those entries, (B, W, S) token ids
and values, not the reference's dense (B, W, V) tensor, and a step decays, boosts and takes
``log1p`` of them only, then adds ``alpha * log1p`` to the window's logits at their tokens:
the same float32 operations on the same values (the dense tensor's other entries are zeros
that stay zero), with no pass over (B, W, V) beyond the window's copy and the two proposals.

Departures from the reference code (all deliberate):

- The reference commits every position within 1e-5 of the best confidence when nothing
  passes the threshold (``min(threshold, max - 1e-5)``); here exactly one position (ties to
  the lower position) — the shared :func:`remask.kernels.threshold_mask` rule.
- Any batch size with ragged prompts, rows advancing through their blocks independently;
  any ``gen_length`` (the last block may be shorter); blocks cut from the first generated
  position (aligned to a block-diffusion model's grid by the driver).
- Float32 softmax of the fused logits (the reference's default, ``use_float64=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, StepInfo, _check_float
from remask.samplers.canvas import commit, eligible
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register

__all__ = ["Credit", "CreditState"]


class CreditState(NamedTuple):
    """State of :class:`Credit`.

    Attributes
    ----------
    canvas : Canvas
    credit_tokens : (B, W, S) int64
        The credited tokens of the active block's positions, in the block's order (slot k is
        the block's k-th generated position), in the order they were first credited; -1 for
        an unused entry. Slot k's credit vector is zero but at these tokens.
    credit_values : (B, W, S) float32
        Their credit (0 at unused entries).
    credit_block : (B,) int64
        The block the credit belongs to; a row whose window has moved starts from zero.
    """

    canvas: Canvas
    credit_tokens: torch.Tensor
    credit_values: torch.Tensor
    credit_block: torch.Tensor

    def dense_credit(self, vocab_size: int) -> torch.Tensor:
        """(B, W, V) float32: the credit vectors as the paper writes them (for inspection)."""
        B, W, _ = self.credit_values.shape
        values = self.credit_values  # (B, W, S)
        dense = torch.zeros(B, W, vocab_size + 1, dtype=values.dtype, device=values.device)
        index = torch.where(self.credit_tokens < 0, vocab_size, self.credit_tokens)  # (B, W, S)
        return dense.scatter_(2, index, values)[..., :vocab_size]


@register("credit")
@dataclass(frozen=True, kw_only=True)
class Credit(Sampler):
    """CreditDecoding (2510.06133): the threshold rule on logits fused with trace credit.

    Parameters
    ----------
    block_length : int, optional
        Block length (default 32); None = one block.
    threshold : float
        Confidence in [0, 1] (under the fused logits) at or above which a position commits.
    credit_alpha : float
        Fusion weight alpha >= 0 of ``log(1 + credit)`` (0: plain threshold decoding).
    boost_gamma : float
        Exponent gamma >= 0 of the top-1 probability added to the credit (0: add 1).
    decay_beta : float
        Per-step decay beta in [0, 1] of the credit (0: only the current step counts).
    temperature : float
        0 proposes the argmax of the fused logits; T > 0 samples from softmax(fused / T).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("credit", threshold=0.5, block_length=4)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 8)
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"threshold": 0.5, "block_length": 4},
        {"threshold": 0.3, "block_length": None, "credit_alpha": 2.0, "decay_beta": 1.0},
        {"threshold": 0.2, "block_length": 3, "temperature": 1.0},
        {"threshold": 0.9, "block_length": 5, "boost_gamma": 0.0, "decay_beta": 0.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens (the
        thresholds of ``threshold``'s, for a side-by-side comparison)."""
        return tuple(
            (f"tau={tau}", {"temperature": 1.0, "threshold": tau}) for tau in (0.9, 0.7, 0.5)
        )

    block_length: int | None = 32
    threshold: float = 0.9
    credit_alpha: float = 0.7
    boost_gamma: float = 0.2
    decay_beta: float = 0.8
    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.threshold, "threshold", low=0.0, high=1.0)
        _check_float(self.credit_alpha, "credit_alpha", low=0.0)
        _check_float(self.boost_gamma, "boost_gamma", low=0.0)
        _check_float(self.decay_beta, "decay_beta", low=0.0, high=1.0)
        _check_float(self.temperature, "temperature", low=0.0)

    def init(self, canvas: Canvas, denoiser) -> CreditState:
        width = self._width(canvas)
        B, device = canvas.tokens.shape[0], canvas.tokens.device
        entries = min(width, denoiser.vocab_size)  # S: credited tokens a slot can hold
        return CreditState(
            canvas=canvas,
            credit_tokens=torch.full((B, width, entries), -1, dtype=torch.int64, device=device),
            credit_values=torch.zeros(B, width, entries, dtype=torch.float32, device=device),
            credit_block=canvas.window.clone(),
        )

    def step(self, state: CreditState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        B, L = canvas.tokens.shape
        W, S = state.credit_values.shape[1:]
        rows = eligible(canvas, mask_id)  # (B, L) masked positions of the active block

        # Slot k of the window is the k-th position of the row's active block.
        active = canvas.active  # (B, L)
        slot = torch.where(active, active.long().cumsum(-1) - 1, W)  # (B, L); W = outside
        column = torch.full((B, W + 1), L, dtype=torch.int64, device=slot.device)
        column.scatter_(1, slot, torch.arange(L, device=slot.device).expand(B, L))
        column = column[:, :W]  # (B, W) canvas column of each slot; L = empty slot
        filled = column < L  # (B, W)
        column = column.clamp_max(L - 1)
        masked_w = rows.gather(1, column) & filled  # (B, W)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        V = logits.shape[-1]
        # Whole rows by index_select on the flattened (B * L, V) view: one copy per row, where
        # gather with an expanded (B, W, V) index reads an index per element (2x slower). The
        # copy is this step's own: the fusion below writes into it.
        flat = (column + torch.arange(B, device=column.device).unsqueeze(-1) * L).reshape(-1)
        logits_w = logits.reshape(B * L, V).index_select(0, flat).view(B, W, V).float()

        # 1. Credit: decay (zero for a row that entered a new block), then boost the top-1.
        fresh = (canvas.window != state.credit_block).view(B, 1, 1)  # (B, 1, 1)
        tokens_c = state.credit_tokens.masked_fill(fresh, -1)  # (B, W, S)
        decay = torch.where(fresh, 0.0, self.decay_beta).to(torch.float32)  # (B, 1, 1)
        values = state.credit_values * decay  # (B, W, S), a fresh tensor
        top = kernels.propose(logits_w, temperature=0.0, rows=masked_w)  # untempered top-1
        boost = torch.where(masked_w, top.prob.pow(self.boost_gamma), 0.0)  # (B, W)
        # The top-1's entry: the one holding it, else the first unused (entries fill in
        # order). A slot has at most S tokens while its block lasts (S = min(W, V), above);
        # the clamp only matters to a row whose results are dropped (an early-stopped row
        # stepped with its frozen tokens) or to a run that fails (the mask token proposed).
        # Outside masked_w (top.tokens -1) whatever entry is picked keeps its token and gains 0.
        match = tokens_c == top.tokens.unsqueeze(-1)  # (B, W, S)
        used = (tokens_c >= 0).sum(-1)  # (B, W)
        entry = torch.where(match.any(-1), match.long().argmax(-1), used).clamp_max(S - 1)
        entry = entry.unsqueeze(-1)  # (B, W, 1)
        new_token = torch.where(masked_w, top.tokens, tokens_c.gather(2, entry).squeeze(-1))
        tokens_c = tokens_c.scatter(2, entry, new_token.unsqueeze(-1))  # (B, W, S)
        values = values.scatter_add_(2, entry, boost.unsqueeze(-1))  # in place on the decayed

        # 2. Fusion: z' = z + alpha * log1p(C), written at the credited tokens only (C is zero
        # elsewhere, so log1p adds nothing there). Unused entries add an exact 0.0 to token 0.
        fusion = torch.log1p(values).mul_(self.credit_alpha)  # (B, W, S)
        fused = logits_w.scatter_add_(2, tokens_c.clamp_min(0), fusion)  # (B, W, V) in place

        # 3. The threshold rule on the fused logits.
        keys = proposal_keys(key, canvas, self.temperature)  # (B, L) or None at T = 0
        proposal = kernels.propose(
            fused,
            temperature=self.temperature,
            rows=masked_w,
            key=None if keys is None else keys.gather(1, column),
        )
        chosen_w = kernels.threshold_mask(proposal.prob, self.threshold, masked_w)  # (B, W)

        # Back to canvas columns (empty slots write into a dropped extra column).
        target = torch.where(filled, column, L)  # (B, W)
        committed = _to_canvas(chosen_w, target, L, False)  # (B, L)
        tokens = _to_canvas(proposal.tokens, target, L, -1)  # (B, L)
        score = _to_canvas(proposal.prob, target, L, float("-inf"))  # (B, L)
        new_canvas = commit(canvas, committed, tokens, mask_id, evaluations)
        new_state = CreditState(
            canvas=new_canvas,
            credit_tokens=tokens_c,
            credit_values=values,
            credit_block=canvas.window,
        )
        info = StepInfo(
            committed=committed,
            proposal=torch.where(rows, tokens, -1),
            score=torch.where(rows, score, float("-inf")),
        )
        return new_state, info

    def _width(self, canvas: Canvas) -> int:
        """Slots of the credit window: the largest block (one host sync, at init)."""
        if self.block_length is not None:
            return self.block_length
        return max(int(canvas.editable.sum(-1).max()), 1)


def _to_canvas(values: torch.Tensor, target: torch.Tensor, L: int, fill) -> torch.Tensor:
    """Scatter (B, W) slot values to their (B, L) canvas columns (``target == L``: dropped)."""
    B = values.shape[0]
    out = torch.full((B, L + 1), fill, dtype=values.dtype, device=values.device)
    return out.scatter(1, target, values)[:, :L]
