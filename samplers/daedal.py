"""DAEDAL: variable-length denoising (Li et al., "Beyond Fixed: Variable-Length Denoising for
Diffusion Large Language Models", arXiv 2508.00819).

Checked against the authors' release (``Li-Jinsong/DAEDAL``: the lm-eval model
``LLaDA_DAEDAL`` and ``scripts/eval_LLaDA_DAEDAL.sh``, whose settings are the defaults here)
and d2Cache's port
(``Kamichanw/d2Cache``, ``src/generation/daedal.py``). Each row's answer starts short and
grows where the model asks for room; ``gen_length`` is the most it may reach.

**EOS confidence** of a row: over the row's current answer, the model's argmax at every
position (decided ones included); of the last ``eos_check_tokens`` positions whose argmax is
the EOS token, the sum of their EOS probabilities divided by ``eos_check_tokens`` (so fewer
EOS predictions count as lower confidence). A model that declares no ``eos_id`` has
confidence 0 everywhere (the reference helper's rule without an EOS id).

1. **Initial length adjustment.** The answer starts at ``initial_length`` masks. Each step
   of this phase is one forward pass that commits nothing: while the EOS confidence is below
   ``eos_threshold`` and the answer is shorter than its capacity, ``expansion_factor``
   masks are appended. Once it is not, the phase ends and ``eos_check_tokens // 2`` EOS
   tokens are appended (fixed, not editable, as the reference does after its phase 1; none
   without an EOS id), all capped at the capacity.
2. **Iterative denoising and mask insertion.** Blocks of ``block_length`` left to right.
   Each step proposes a token at every masked position of the active block (argmax, or a
   sample at temperature T) with confidence its untempered probability, and commits every
   proposal with confidence ``> threshold`` — the single most confident one when none is.
   Then, if the row's EOS confidence is below ``expand_eos_threshold`` and the answer is
   below capacity, the masked position of the block with the lowest confidence among those
   below ``low_threshold`` (and not committed this step) is an *expansion point*: it is
   replaced by ``expansion_factor`` masks (``expansion_factor - 1`` inserted after it). At
   most one point per row and step; what the insertion pushes past the capacity is dropped.

The canvas (``samplers/canvas.py``): the driver builds it with the full ``gen_length`` of
masks. ``init`` keeps each row's first ``initial_length`` of them and turns the rest into
right padding (``attention_mask`` False, not editable, holding the EOS id, else the model's
pad id, else 0); growth goes through :func:`remask.samplers.canvas.grow`, which shifts the
row right into that padding with one gather (no loop over rows). The canvas width never
changes, so nothing in the driver or any other sampler changes: a row's output is its
answer followed by padding, and ``GenerateOutput.attention_mask`` is False exactly on the
padding (``decode`` skips it). The growable answer of a row is its trailing run of editable
positions (the generated span of ``generate``; the last run of masks of an ``infill`` canvas
when nothing fixed follows it); masks before a fixed token are decoded at their given length.
Blocks are recounted over the editable positions after every insertion (the reference's
moving window of ``block_length`` positions from the first one still holding a mask: the
same positions, since the answer is contiguous and the EOS tail follows it).

Every forward pass is one step and charges each live row one evaluation (phase 1 steps too).
``info.source`` maps each column after the step to the column it came from (-1 where
inserted), so a callback can follow positions across insertions.

Departures from the reference code (all deliberate):

- Rows are independent: each row leaves phase 1 on its own (the reference runs phase 1 for
  the whole batch until no row expands, and stops it early for every row once no expanding
  row exceeds the batch's longest), so a row's output and NFE do not depend on its batch
  neighbours; a row in phase 1 shares the batch's forward pass with rows already denoising.
  Left padding of prompts is hidden from the model (the reference attends to it).
- Probabilities exclude the mask token (its logit is -inf by the protocol; the reference's
  softmax includes LLaDA's finite mask logit, and its fallback for a masked argmax is moot).
  Float32 probabilities.
- Ties: the fallback commit and the expansion point go to the lower position.
- At T > 0 the proposal is an exact sample from softmax(logits / T) (the reference uses
  LLaDA's Gumbel trick, which is exact only at T = 1); the EOS confidence and the commit
  confidence stay untempered, as in the reference.
- No classifier-free guidance (``cfg_scale`` 0 in every reference setting). A KV-caching
  denoiser (the reference has none) sees positions move only from the active block on
  (insertions happen in the active block, appends at the end), so the exact cache of
  finished blocks stays valid; an approximate cache of later positions reuses keys of
  moved positions until it refreshes. On a block-diffusion model (``block_size``) the
  recounted blocks keep the model's grid, counted from the first real token as the driver
  does for ``generate``.
- The reference stops a run whose canvas did not change in a step; here every step commits
  at least one token, so that cannot happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.models.protocol import capabilities
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import commit, follow, grow
from remask.samplers.predict import predict
from remask.samplers.registry import register

__all__ = ["Daedal", "DaedalInfo", "DaedalState", "eos_confidence"]


class DaedalState(NamedTuple):
    """State of :class:`Daedal`.

    Attributes
    ----------
    canvas : Canvas
    start : (B,) int64
        First column of each row's answer (the growable span).
    length : (B,) int64
        Current length of each row's answer, EOS tail included (columns ``start`` to
        ``start + length - 1``).
    capacity : (B,) int64
        The most ``length`` may reach (``L - start``; 0 for a row with no growable span).
    adjusting : (B,) bool
        Rows still in the initial length adjustment (phase 1).
    offset : (B,) int64 or None
        A block-diffusion model's block grid offset (the driver's rule), kept when blocks are
        recounted after an insertion; None for other models.
    first : int
        ``start.min()``: no row's answer holds a column before it (the EOS check reads the
        columns from there on).
    """

    canvas: Canvas
    start: torch.Tensor
    length: torch.Tensor
    capacity: torch.Tensor
    adjusting: torch.Tensor
    offset: torch.Tensor | None = None
    first: int = 0


class DaedalInfo(NamedTuple):
    """What a :class:`Daedal` step did (the :class:`~remask.samplers.base.StepInfo` fields
    first, all in the columns of the canvas after the step).

    Attributes
    ----------
    committed : (B, L) bool
    proposal : (B, L) int64
    score : (B, L) float32
        Confidence of each eligible proposal (-inf elsewhere).
    source : (B, L) int64
        Column each position held before the step's insertion; -1 at inserted positions.
    eos_confidence : (B,) float32
        Each row's EOS confidence this step (before the step's changes).
    length : (B,) int64
        Each row's answer length after the step.
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    source: torch.Tensor
    eos_confidence: torch.Tensor
    length: torch.Tensor


def eos_confidence(
    logits: torch.Tensor, answer: torch.Tensor, eos_id: int | None, count: int, *, first: int = 0
) -> torch.Tensor:
    """DAEDAL's sequence-completion signal.

    Parameters
    ----------
    logits : (B, L, V) float
        The step's logits (mask column at -inf).
    answer : (B, L) bool
        Each row's answer columns.
    eos_id : int or None
        None gives 0 for every row.
    count : int
        ``eos_check_tokens``: how many EOS predictions, counted from the end, are averaged.
    first : int
        No row's answer holds a column before ``first``: those columns are not read.

    Returns
    -------
    (B,) float32
        Sum of the EOS probability over the last ``count`` answer columns whose argmax is EOS,
        divided by ``count``.
    """
    B, V = logits.shape[0], logits.shape[-1]
    if eos_id is None:
        return torch.zeros(B, dtype=torch.float32, device=logits.device)
    # "The argmax is EOS" without an argmax: the EOS logit exceeds every logit before it
    # (ties go to the lower index) and is at least every logit after it. Two max reductions
    # over the answers' columns read each of their logits once, vectorised; torch's argmax
    # is several times slower per logit and a fused propose pays an exp per logit.
    x = logits[:, first:]  # (B, L - first, V) a view
    top = x[..., eos_id]  # (B, L - first)
    is_top = torch.ones_like(top, dtype=torch.bool)  # (B, L - first)
    if eos_id > 0:
        is_top &= top > x[..., :eos_id].amax(-1)
    if eos_id < V - 1:
        is_top &= top >= x[..., eos_id + 1 :].amax(-1)
    is_eos = answer.clone()  # (B, L)
    is_eos[:, :first] = False
    is_eos[:, first:] &= is_top
    from_end = is_eos.flip(-1).long().cumsum(-1).flip(-1)  # (B, L): EOS argmaxes at or after
    counted = is_eos & (from_end <= count)  # (B, L)
    # The fused softmax probability of EOS, on the counted columns only: one read of those
    # rows and O(B·L) memory.
    eos = torch.full_like(answer, eos_id, dtype=torch.int64)  # (B, L)
    p_eos = kernels.token_prob(logits, eos, counted)  # (B, L) float32, 0 outside counted
    return p_eos.sum(-1) / count


@register("daedal")
@dataclass(frozen=True, kw_only=True)
class Daedal(Sampler):
    """DAEDAL: start short, append masks while EOS confidence is low, insert masks at
    low-confidence positions while denoising (arXiv 2508.00819).

    ``gen_length`` of :func:`remask.generate` is the maximum answer length (the reference's
    ``max_gen_length``, 2048 in its scripts); positions a row does not use come back as
    padding (``attention_mask`` False).

    Parameters
    ----------
    initial_length : int
        Answer length before the length adjustment (>= 1; capped at ``gen_length``).
    block_length : int, optional
        Semi-autoregressive block length (default 32); None = one block.
    threshold : float
        Confidence in [0, 1] above which (strictly) a proposal commits.
    low_threshold : float
        Confidence in [0, 1] below which a masked position may become an expansion point.
    eos_threshold : float
        In [0, 1]: phase 1 appends masks while the EOS confidence is below it.
    expand_eos_threshold : float
        In [0, 1]: phase 2 inserts masks only while the EOS confidence is below it.
    expansion_factor : int
        Masks appended per phase-1 step, and masks an expansion point becomes (>= 1).
    eos_check_tokens : int
        EOS predictions averaged by the EOS confidence (>= 1); phase 1 ends by appending
        ``eos_check_tokens // 2`` EOS tokens.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("daedal", initial_length=4, block_length=4)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=16, seed=0)
    >>> out.tokens.shape, out.attention_mask.shape
    (torch.Size([1, 19]), torch.Size([1, 19]))
    """

    # The first example decodes at full length (no padding: it runs on the fixed-length
    # oracles of the EOS-stop test); the others start short and grow.
    example_configs = (
        {"initial_length": 64, "block_length": 3, "threshold": 0.5, "low_threshold": 0.5},
        {"initial_length": 2, "block_length": 3, "expansion_factor": 3, "low_threshold": 0.5},
        {"initial_length": 3, "expansion_factor": 2, "eos_check_tokens": 4, "temperature": 1.0},
        {"initial_length": 1, "block_length": None, "threshold": 0.3, "low_threshold": 0.9},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens.

        The exact oracles model fixed-length sequences and declare no EOS (some refuse
        padding), so the answer starts at its full length G: what is measured is DAEDAL's
        commit rule plus its one length check per row (no growth can happen there)."""
        return (
            ("tau=0.9", {"temperature": 1.0, "initial_length": G}),
            ("tau=0.5", {"temperature": 1.0, "threshold": 0.5, "initial_length": G}),
        )

    initial_length: int = 64
    block_length: int | None = 32
    threshold: float = 0.9
    low_threshold: float = 0.1
    eos_threshold: float = 0.5
    expand_eos_threshold: float = 0.9
    expansion_factor: int = 8
    eos_check_tokens: int = 32
    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.initial_length, "initial_length", low=1)
        for name in ("threshold", "low_threshold", "eos_threshold", "expand_eos_threshold"):
            _check_float(getattr(self, name), name, low=0.0, high=1.0)
        _check_int(self.expansion_factor, "expansion_factor", low=1)
        _check_int(self.eos_check_tokens, "eos_check_tokens", low=1)
        _check_float(self.temperature, "temperature", low=0.0)

    def max_steps(self, canvas: Canvas) -> int:
        # Phase 1 appends >= 1 position per step but the last; phase 2 commits >= 1 mask per
        # step, and at most capacity insertions (each lengthens the answer) add
        # expansion_factor - 1 masks each.
        capacity = int(canvas.editable.sum(-1).max())
        return (self.expansion_factor + 1) * capacity + 2

    def init(self, canvas: Canvas, denoiser) -> DaedalState:
        B, L = canvas.tokens.shape
        col = torch.arange(L, device=canvas.tokens.device)  # (L,)
        fixed = canvas.attention_mask & ~canvas.editable  # (B, L): prompt and fixed tokens
        last_fixed = torch.where(fixed, col, -1).amax(-1)  # (B,)
        first_real = canvas.attention_mask.long().argmax(-1)  # (B,) (left padding only)
        start = torch.maximum(last_fixed + 1, first_real)  # (B,)
        capacity = L - start  # (B,): the trailing span is all editable (nothing fixed after)
        length = capacity.clamp(max=self.initial_length)  # (B,)
        cut = col >= (start + length).unsqueeze(-1)  # (B, L): beyond the initial answer
        pad = _pad_token(denoiser)
        canvas = canvas._replace(
            tokens=torch.where(cut, pad, canvas.tokens),
            editable=canvas.editable & ~cut,
            block=torch.where(cut, -1, canvas.block),
            attention_mask=canvas.attention_mask & ~cut,
        )
        adjusting = torch.ones(B, dtype=torch.bool, device=col.device)
        # A block-diffusion model's grid starts at the first real token (as the driver cuts
        # the first block short): recounted blocks keep it.
        block_length = _block_length(self, denoiser)
        offset = None
        if getattr(denoiser, "block_size", None) is not None and block_length is not None:
            before = (canvas.attention_mask & (col < start.unsqueeze(-1))).sum(-1)  # (B,)
            offset = before % block_length
        # One host read at init: the answers' columns never move (insertions follow start).
        first = int(start.min())
        return DaedalState(canvas, start, length, capacity, adjusting, offset, first)

    def step(self, state: DaedalState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        eos_id = capabilities(denoiser).eos_id
        B, L = canvas.tokens.shape
        col = torch.arange(L, device=canvas.tokens.device)  # (L,)
        live = ~canvas.done  # (B,)
        end = state.start + state.length  # (B,)
        answer = (col >= state.start.unsqueeze(-1)) & (col < end.unsqueeze(-1))  # (B, L)

        eligible, logits, proposal, evaluations = predict(
            canvas, denoiser, key, temperature=self.temperature
        )
        confidence = eos_confidence(
            logits, answer, eos_id, self.eos_check_tokens, first=state.first
        )  # (B,)
        room = state.length < state.capacity  # (B,)

        # Phase 1: append masks while the model does not expect the answer to end.
        adjusting = state.adjusting & live  # (B,)
        append = adjusting & (confidence < self.eos_threshold) & room  # (B,)
        settle = adjusting & ~append  # (B,): leave phase 1, append the EOS tail

        # Phase 2: threshold commit (strictly above), at least the best proposal.
        eligible = eligible & (live & ~state.adjusting).unsqueeze(-1)  # (B, L)
        prob = proposal.prob  # (B, L)
        committed = eligible & (prob > self.threshold)  # (B, L)
        best = kernels.topk_mask(prob, 1, eligible)  # (B, L)
        committed = committed | (best & ~committed.any(-1, keepdim=True))
        # The expansion point: the least confident uncommitted mask below low_threshold.
        candidates = eligible & ~committed & (prob < self.low_threshold)  # (B, L)
        insert = (confidence < self.expand_eos_threshold) & room & candidates.any(-1)  # (B,)
        point = kernels.topk_mask(-prob, 1, candidates)  # (B, L)

        canvas = commit(canvas, committed, proposal.tokens, mask_id, evaluations)

        # One insertion per growing row: after its last answer column (phase 1) or after the
        # expansion point (phase 2).
        factor = self.expansion_factor
        tail = self.eos_check_tokens // 2 if eos_id is not None else 0
        free = state.capacity - state.length  # (B,)
        count = torch.where(append, free.clamp(max=factor), 0)  # (B,)
        count = torch.where(settle, free.clamp(max=tail), count)
        count = torch.where(insert, factor - 1, count)
        where = torch.where(insert, point.long().argmax(-1), end - 1).clamp(min=0)  # (B,)
        counts = torch.zeros_like(canvas.tokens)  # (B, L)
        counts.scatter_(1, where.unsqueeze(-1), count.unsqueeze(-1))
        token = torch.where(settle, eos_id if eos_id is not None else mask_id, mask_id)  # (B,)
        canvas, source = grow(
            canvas, counts, token, ~settle, mask_id, _block_length(self, denoiser), state.offset
        )
        length = torch.minimum(state.length + count, state.capacity)  # (B,)

        score = torch.where(eligible, prob, float("-inf"))  # (B, L)
        info = DaedalInfo(
            committed=follow(committed, source, False),
            proposal=follow(proposal.tokens, source, -1),
            score=follow(score, source, float("-inf")),
            source=source,
            eos_confidence=confidence,
            length=length,
        )
        new_state = state._replace(
            canvas=canvas, length=length, adjusting=state.adjusting & ~settle
        )
        return new_state, info


def _pad_token(denoiser) -> int:
    """Token written on the unused columns: the EOS id, else the pad id, else 0."""
    caps = capabilities(denoiser)
    for value in (caps.eos_id, caps.pad_id):
        if value is not None:
            return value
    return 0


def _block_length(sampler: Daedal, denoiser) -> int | None:
    """The canvas's block length, as the driver chose it: the sampler's, else a
    block-diffusion model's ``block_size``."""
    if sampler.block_length is not None:
        return sampler.block_length
    size = getattr(denoiser, "block_size", None)
    return None if size is None else int(size)
