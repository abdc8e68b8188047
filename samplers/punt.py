"""PUNT: parallel unmasking of candidates that pass an approximate conditional-independence
test (Azangulov, Pandeva, Prasad, Zazo & Karmalkar, "Parallel Sampling from Masked Diffusion
Models via Conditional Independence Testing", arXiv 2510.21961).

Committing several positions in one step samples them from the product of their marginals,
which is exact only when they are conditionally independent given the canvas. PUNT keeps the
confident candidates and removes, from every group of mutually dependent ones, the less
confident members; the dependence is *tested* with the model itself, so this is the first
sampler here whose selection uses an estimate of the joint, not only marginals.

One round, per row (every call below is one batched model call, one step of the driver):

1. **Predict** (one call). Every masked position of the active block proposes a token (the
   argmax, or a sample at ``temperature``) and gets a score (``score``: the proposal's
   probability by default); the K candidates are ranked by score, best first (ties to the
   lower position), and the predictive distributions ``p_j`` are kept.
2. **Test** (``n = ceil(log2 K)`` calls). The ranks are split dyadically: at level
   ``l = 1..n`` the candidates whose rank has bit ``n - l`` clear are *revealed* (their
   proposals written into the canvas) and the others are *tested*: candidate ``j`` is dropped
   when its predictive moves, ``KL(p_j(· | canvas, revealed) ‖ p_j) > epsilon`` (nats). Only
   candidates still kept take part in later levels. Every pair of kept candidates ``i < j``
   (by rank) was split at exactly one level, where ``i`` was revealed and ``j`` tested, so no
   pair the test calls dependent survives, and the best candidate (rank 0, never tested)
   always does: each round commits at least one token.
3. **Commit** the kept candidates' proposals, in the step of the last test call.

Rows run their own rounds: a row predicts while another tests, in the same call, so a row's
tokens and cost never depend on its batch-mates (no host sync). A round with one candidate
commits in its predict step. Cost: ``1 + ceil(log2 K)`` evaluations per round. Sampled
proposals and random scores draw from the row's key of the predict step (``proposal_keys``,
``score_proposals``), as in every confidence-style sampler.

Exactness (tested on the Markov oracle): at ``temperature = 1``, with a score that does not
depend on the sampled tokens (``margin``, ``entropy``) and a small ``epsilon``, the committed
set of every round is conditionally independent, so the round samples exactly from the model's
joint over it and the run samples the model's joint law — with fewer model calls than
one-token-per-step decoding whenever the canvas splits into independent pieces.

Provenance and departures: the paper's full text and code were not available when this module
was written; it follows the method as the paper's abstract states it (approximate
conditional-independence tests among the candidates, lower-confidence tokens removed from
conflicting groups, an unmasking set that satisfies both the independence and the confidence
criteria). The specific test (the KL shift of a candidate's predictive when higher-ranked
candidates are revealed), the dyadic grouping (``ceil(log2 K)`` test calls) and the default
``epsilon = 0.05`` nats are this module's choices, to be checked against the paper:

- At a level, a tested candidate sees the revealed candidates of every group, including
  lower-ranked ones of later groups, so it may be dropped for depending on a less confident
  candidate: conservative (never keeps a pair the test calls dependent), not minimal.
- The test is pairwise within a level and uses one realisation (the proposals), not an
  expectation; it is not a test of mutual independence (a triple with pairwise-independent
  members can pass).
- No classifier-free guidance; the KL is computed in float32 from the logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.kernels.score import SCORES, score_proposals
from remask.samplers.base import Canvas, Sampler, _check_choice, _check_float
from remask.samplers.canvas import commit, masked_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register

__all__ = ["Punt", "PuntState", "PuntInfo"]


class PuntState(NamedTuple):
    """State of :class:`Punt`.

    Attributes
    ----------
    canvas : Canvas
    phase : (B,) int64
        0: the row's next call predicts; l >= 1: it runs test level l of its round.
    levels : (B,) int64
        Test levels of the row's current round (``ceil(log2 K)``).
    rank : (B, L) int64
        Rank of each candidate of the round (0 = best score); -1 elsewhere.
    kept : (B, L) bool
        Candidates not dropped so far.
    proposal : (B, L) int64
        The candidates' proposals; -1 elsewhere.
    score : (B, L) float32
        The candidates' scores; -inf elsewhere.
    logits : (B, L, V) float or None
        The round's predictive (the logits of its predict call); None before the first call.
    """

    canvas: Canvas
    phase: torch.Tensor
    levels: torch.Tensor
    rank: torch.Tensor
    kept: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    logits: torch.Tensor | None


class PuntInfo(NamedTuple):
    """What a PUNT step did.

    Attributes
    ----------
    committed : (B, L) bool
        Positions written this step (the kept candidates of rounds that ended).
    proposal : (B, L) int64
        Candidates' proposals (-1 elsewhere).
    score : (B, L) float32
        Candidates' scores (-inf elsewhere).
    revealed : (B, L) bool
        Candidates written into this call's canvas (test steps).
    tested : (B, L) bool
        Candidates tested in this call.
    kl : (B, L) float32
        ``KL(p_j(· | revealed) ‖ p_j)`` at tested positions, 0 elsewhere.
    dropped : (B, L) bool
        Tested candidates removed (KL above ``epsilon``).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    revealed: torch.Tensor
    tested: torch.Tensor
    kl: torch.Tensor
    dropped: torch.Tensor


def _levels(count: torch.Tensor) -> torch.Tensor:
    """(B,) int64 ``ceil(log2 count)`` (0 for count <= 1): bits of the largest rank."""
    ranks = (count - 1).clamp_min(0)  # (B,) largest rank
    bits = torch.arange(63, device=ranks.device)  # (63,)
    # Bit length of the largest rank in one (B, 63) op, no float rounding (a Python loop
    # over the bits was ~190 small ops per step).
    return ((ranks.unsqueeze(-1) >> bits) > 0).sum(-1)  # (B,)


def _row_select(rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, ...) row i of ``a`` where ``rows[i]``, else of ``b`` (same values as a
    ``torch.where``).

    On the CPU, when every row picks the same side (a batch whose rows run their rounds in
    step, the common case), that tensor itself is returned: reading two (B,) flags costs
    nothing there, while the ``torch.where`` is a full pass over two (B, L, V) tensors and a
    fresh (B, L, V) allocation per step. On an accelerator the flag read would stall the
    stream, so there the ``torch.where`` always runs. Neither tensor is ever written in
    place, so sharing one is safe.
    """
    if rows.device.type == "cpu":
        if bool(rows.all()):
            return a
        if not bool(rows.any()):
            return b
    return torch.where(rows.view(-1, *([1] * (a.dim() - 1))), a, b)


@register("punt")
@dataclass(frozen=True, kw_only=True)
class Punt(Sampler):
    """PUNT: commit the confident candidates that pass a conditional-independence test.

    Parameters
    ----------
    epsilon : float
        KL threshold in nats (>= 0, +inf allowed): a tested candidate whose predictive moves by
        more when higher-ranked candidates are revealed is dropped. 0 keeps only candidates
        whose predictive does not move at all (up to float32 rounding); inf disables the test
        (every candidate commits at once, one call per step).
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T).
    score : {"prob", "margin", "entropy", "random"}
        Candidate ranking: the proposal's untempered probability, top-1 minus top-2 margin,
        negative entropy, or uniform random. Only the ranking depends on it.
    block_length : int, optional
        Semi-autoregressive block length; None = one block.

    Examples
    --------
    >>> import remask
    >>> from remask.models import MarkovChainOracle
    >>> oracle = MarkovChainOracle(vocab_size=3, seq_len=6, seed=0)
    >>> out = remask.generate(oracle, [[1]], remask.samplers.build("punt", epsilon=1e-4),
    ...                       gen_length=5, seed=0)
    >>> out.tokens.shape
    torch.Size([1, 6])
    """

    example_configs = (
        {"block_length": 3},
        {"epsilon": 0.0, "block_length": 4},
        {"epsilon": float("inf")},
        {"temperature": 1.0, "score": "margin", "epsilon": 0.01},
        {"score": "random", "temperature": 1.0, "block_length": 5},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("eps 0.05, margin", {"temperature": 1.0, "score": "margin"}),
            ("eps 0.01, margin", {"temperature": 1.0, "score": "margin", "epsilon": 0.01}),
            ("eps 0.5, margin", {"temperature": 1.0, "score": "margin", "epsilon": 0.5}),
        )

    epsilon: float = 0.05
    temperature: float = 0.0
    score: str = "prob"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.epsilon, "epsilon", low=0.0, allow_inf=True)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_choice(self.score, "score", SCORES)

    @property
    def stochastic(self) -> bool:
        return self.temperature > 0 or self.score == "random"

    def max_steps(self, canvas: Canvas) -> int:
        # A round commits at least one token and costs 1 + ceil(log2 K) steps, K <= block size.
        tokens = int(canvas.editable.sum(-1).max())
        block = tokens if self.block_length is None else min(self.block_length, tokens)
        return tokens * (1 + math.ceil(math.log2(max(block, 1)))) + 1

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> PuntState:
        B, L = canvas.tokens.shape
        zeros = torch.zeros(B, dtype=torch.int64, device=canvas.tokens.device)
        return PuntState(
            canvas=canvas,
            phase=zeros,
            levels=zeros.clone(),
            rank=torch.full((B, L), -1, dtype=torch.int64, device=canvas.tokens.device),
            kept=torch.zeros_like(canvas.editable),
            proposal=torch.full((B, L), -1, dtype=torch.int64, device=canvas.tokens.device),
            score=torch.full((B, L), float("-inf"), device=canvas.tokens.device),
            logits=None,
        )

    # ------------------------------------------------------------------ step
    def step(self, state: PuntState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        B, L = canvas.tokens.shape
        live = ~canvas.done  # (B,)
        predicting = live & (state.phase == 0)  # (B,)
        testing = live & (state.phase > 0)  # (B,)

        # This level's split of a testing row's candidates: rank bit (levels - phase).
        shift = (state.levels - state.phase).clamp_min(0)  # (B,)
        candidate = state.kept & (state.rank >= 0)  # (B, L)
        high = ((state.rank.clamp_min(0) >> shift.unsqueeze(-1)) & 1) == 1  # (B, L)
        revealed = testing.unsqueeze(-1) & candidate & ~high  # (B, L)
        tested = testing.unsqueeze(-1) & candidate & high  # (B, L)

        # One call: predicting rows see their canvas, testing rows the revealed proposals.
        tokens = torch.where(revealed, state.proposal, canvas.tokens)  # (B, L)
        logits, evaluations = denoise(denoiser, canvas._replace(tokens=tokens))  # (B, L, V)

        # Predict: proposals, scores and ranks of the new round's candidates.
        eligible = (
            masked_positions(canvas, mask_id) & canvas.active & predicting.unsqueeze(-1)
        )  # (B, L)
        prop = kernels.propose(
            logits,
            temperature=self.temperature,
            rows=eligible,
            key=proposal_keys(key, canvas, self.temperature),
        )
        new_score = torch.where(
            eligible,
            score_proposals(prop, self.score, key=key, attention_mask=canvas.attention_mask),
            float("-inf"),
        )  # (B, L)
        order = torch.sort(
            new_score, dim=-1, descending=True, stable=True
        ).indices  # (B, L) ties: lower pos
        positions = torch.arange(L, device=logits.device).expand(B, L)
        new_rank = torch.empty_like(order).scatter_(
            -1, order, positions
        )  # (B, L) rank of each position
        new_rank = torch.where(eligible, new_rank, -1)
        new_levels = _levels(eligible.sum(-1))  # (B,)
        if math.isinf(self.epsilon):  # no candidate can fail the test: skip the test calls
            new_levels = torch.zeros_like(new_levels)

        # Test: drop tested candidates whose predictive moved.
        if state.logits is None:
            kl = torch.zeros(B, L, device=logits.device)
        else:
            kl = kernels.kl(logits, state.logits, rows=tested)  # (B, L) float32
        dropped = tested & (kl > self.epsilon)
        kept = state.kept & ~dropped  # (B, L)

        # Commit: single-candidate rounds at once, tested rounds after their last level.
        instant = predicting & (new_levels == 0)  # (B,)
        finishing = testing & (state.phase >= state.levels)  # (B,)
        committed = (instant.unsqueeze(-1) & eligible) | (finishing.unsqueeze(-1) & kept)  # (B, L)
        proposal = torch.where(
            predicting.unsqueeze(-1), torch.where(eligible, prop.tokens, -1), state.proposal
        )  # (B, L)
        score = torch.where(predicting.unsqueeze(-1), new_score, state.score)  # (B, L)
        new_canvas = commit(canvas, committed, proposal, mask_id, evaluations)

        starting = predicting & (new_levels > 0)  # (B,) rows whose round goes on to its tests
        phase = torch.where(starting, 1, torch.where(testing & ~finishing, state.phase + 1, 0))
        stored = (
            logits if state.logits is None else _row_select(predicting, logits, state.logits)
        )  # (B, L, V) the round's predictive
        new_state = PuntState(
            canvas=new_canvas,
            phase=phase,
            levels=torch.where(predicting, new_levels, state.levels),
            rank=torch.where(predicting.unsqueeze(-1), new_rank, state.rank),
            kept=torch.where(predicting.unsqueeze(-1), eligible, kept),
            proposal=proposal,
            score=score,
            logits=stored,
        )
        info = PuntInfo(
            committed=committed,
            proposal=proposal,
            score=score,
            revealed=revealed,
            tested=tested,
            kl=torch.where(tested, kl, 0.0),
            dropped=dropped,
        )
        return new_state, info
