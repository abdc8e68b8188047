"""WINO: wide-in, narrow-out revocable decoding (Hong et al., "Wide-In, Narrow-Out: Revokable
Decoding for Efficient and Effective DLLMs", ICLR 2026; code ``Feng-Hong/WINO-DLLM``).

Each step drafts aggressively and verifies conservatively, with **one** forward pass:

* a *shadow block* — the active block again, filled with masks and given the same position
  ids — is appended to the canvas. Real tokens cannot attend to the shadow; shadow slot k
  attends to the whole real canvas except the real token it shadows (a leave-one-out
  diagonal) and to the shadow block. Its prediction is p(x_k | x_{-k}): how plausible each
  decoded token still is given everything decoded since;
* **wide in**: every masked position of the block whose proposal has confidence
  > ``threshold_in`` (tau_in = 0.6) is committed, at most
  ``clamp(floor(accept_ratio * #masked), accept_min, accept_max)`` = clamp(0.7 m, 5, 20)
  (the most confident ones), and at least the single most confident one;
* **narrow out**: when more than one token was accepted this step, decoded tokens of the
  block (decoded before this step) whose leave-one-out probability is < ``threshold_out``
  (tau_out = 0.9) are remasked — at most (tokens accepted at the previous step - 1), the
  least plausible first. This bound makes every step a net gain, so a block of m masks
  finishes within m steps.

Checked against ``Feng-Hong/WINO-DLLM/LLaDA/decoding.py::decoding_wino``, token for token,
by a slow one-row loop in the tests.

The shadow forward: the attention-bias capability
--------------------------------------------------
The shadow forward needs a denoiser with the ``accepts_attention_bias`` capability of
:mod:`remask.models.protocol` (remask's LLaDA and Dream checkpoint adapters have it). The
canvas (B, L) is extended by the W shadow slots, all masks, to (B, L + W) and the denoiser
is called once with ``attention_bias`` (B, L + W, L + W) bool — the pattern above, padding
hidden from every query, an unused slot attending only to itself — and ``position_ids``
(B, L + W): canvas columns, ``0 .. L - 1`` for the canvas and the shadowed column for each
slot (the reference passes ``arange`` positions and the block's positions, the same thing
on its unpadded canvas). The denoiser maps columns to its own positions, so a left-padded
row gets exactly the positions its plain call gives it.

``shadow`` selects how the leave-one-out predictions are obtained:

* ``"attention"`` — the shadow block above; a denoiser without the capability raises a
  ``TypeError`` at ``init``. One evaluation (of a sequence L + W long; a shifted model such
  as Dream runs L + 2W, see its adapter) per step.
* ``"emulate"`` — for any denoiser: the leave-one-out canvases (the canvas with one block
  position masked) are batched with the canvas in the same call. Exact leave-one-out
  conditionals, at 1 + n evaluations per step, counted in ``nfe`` (n = the positions of the
  row's active block: a row is not charged for the slots a batch neighbour's longer region
  adds).
* ``"auto"`` (default) — ``"attention"`` when the denoiser declares the capability, else
  ``"emulate"``.

The shadow width W is ``block_length`` (without blocks, the longest editable region of the
batch); slot k holds the k-th editable position of the row's active block.

Departures from the reference code (deliberate):

- Batched and ragged: every row has its own counts, caps and shadow mapping (the reference
  takes top-k over the flattened batch and only supports B = 1); padding is hidden from
  every query.
- Any ``gen_length``/``block_length`` (the reference asserts divisibility); blocks are cut
  ``block_length`` at a time over the editable positions.
- ``temperature`` > 0 samples the draft exactly from softmax(logits / T) — the law of the
  reference's Gumbel-max draw (its ``add_gumbel_noise``), by ``remask.kernels.propose``'s
  inverse-CDF rule from remask's counter-based random streams, so the sampled tokens are
  not the reference's draws; ``temperature=0`` takes the argmax
  like the reference's default. Confidences are probabilities of the proposed token in
  float32 from one pass over the logits (the reference uses float64 softmax), ties to the
  lower position.
- The first-step cap of the reference (``last_accept = 30`` at each block start) only ever
  applies to positions decoded before the block began, of which there are none; we start
  each block with no cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.models import protocol
from remask.samplers.base import Canvas, Sampler, _check_choice, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import proposal_keys
from remask.samplers.registry import register

__all__ = ["WINO", "WinoState", "WinoInfo", "SHADOW_MODES", "supports_attention_bias"]

SHADOW_MODES = ("auto", "attention", "emulate")


def supports_attention_bias(denoiser) -> bool:
    """Whether ``denoiser`` declares the ``accepts_attention_bias`` capability
    (:mod:`remask.models.protocol`)."""
    return protocol.capabilities(denoiser).attention_bias


class WinoState(NamedTuple):
    """State of :class:`WINO`.

    Attributes
    ----------
    canvas : Canvas
    last_accept : (B,) int64
        Tokens accepted at the row's previous step in this block (the narrow-out cap is one
        less); a large number at the start of a block.
    width : int
        Shadow width W: ``block_length`` capped at the longest editable region (fixed at
        ``init``, so the shapes of every step are static and padding does not change them).
    """

    canvas: Canvas
    last_accept: torch.Tensor
    width: int


class WinoInfo(NamedTuple):
    """What a WINO step did.

    Attributes
    ----------
    committed : (B, L) bool
        Positions written (accepted or remasked).
    proposal : (B, L) int64
        Draft token at masked positions of the active block (-1 elsewhere).
    score : (B, L) float32
        Draft confidence (-inf where not masked).
    accepted, remasked : (B, L) bool
        Wide-in commits and narrow-out revocations.
    verify_prob : (B, L) float64
        Leave-one-out probability of each decoded token of the block (NaN elsewhere).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    accepted: torch.Tensor
    remasked: torch.Tensor
    verify_prob: torch.Tensor


_NO_CAP = 2**62


@register("wino")
@dataclass(frozen=True, kw_only=True)
class WINO(Sampler):
    """Wide-in, narrow-out revocable decoding (WINO, ICLR 2026).

    Parameters
    ----------
    threshold_in : float
        tau_in in [0, 1]: draft confidence above which a masked position is accepted (reference 0.6).
    threshold_out : float
        tau_out in [0, 1]: leave-one-out probability below which a decoded token is remasked (0.9).
    accept_ratio : float
        Cap on acceptances per step, as a fraction in [0, 1] of the block's masks (0.7) ...
    accept_min, accept_max : int
        ... clamped to [accept_min, accept_max] (5, 20).
    temperature : float
        0 drafts the argmax (the reference's default); T > 0 samples from softmax(logits / T).
    shadow : {"auto", "attention", "emulate"}
        How leave-one-out predictions are computed (see the module docstring).
    block_length : int, optional
        Semi-autoregressive blocks (the reference default is one block over the generation).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("wino", block_length=4)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape
    torch.Size([1, 11])
    """

    edits_committed = True
    example_configs = (
        {"block_length": 4},
        {"threshold_in": 0.05, "threshold_out": 0.99, "accept_min": 2},
        {"threshold_in": 0.1, "temperature": 1.0, "block_length": 5, "shadow": "emulate"},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("in 0.6, out 0.9", {"temperature": 1.0}),
            ("in 0.3, out 0.9", {"temperature": 1.0, "threshold_in": 0.3}),
        )

    threshold_in: float = 0.6
    threshold_out: float = 0.9
    accept_ratio: float = 0.7
    accept_min: int = 5
    accept_max: int = 20
    temperature: float = 0.0
    shadow: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        # Thresholds are probabilities and accept_ratio a fraction of the block's masks.
        for name in ("threshold_in", "threshold_out", "accept_ratio"):
            _check_float(getattr(self, name), name, low=0.0, high=1.0)
        _check_float(self.temperature, "temperature", low=0.0)
        _check_int(self.accept_min, "accept_min", low=1)
        _check_int(self.accept_max, "accept_max", low=1)
        if self.accept_max < self.accept_min:
            raise ValueError(f"accept_max={self.accept_max} is below accept_min={self.accept_min}")
        _check_choice(self.shadow, "shadow", SHADOW_MODES)

    def max_steps(self, canvas: Canvas) -> int:
        # Every step decodes at least one token net (see the module docstring).
        return int(canvas.editable.sum(-1).max()) + int(canvas.block.amax()) + 2

    def uses_attention(self, denoiser) -> bool:
        """Whether the shadow block goes through the attention-bias call for ``denoiser``."""
        return self.shadow == "attention" or (
            self.shadow == "auto" and supports_attention_bias(denoiser)
        )

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> WinoState:
        if self.shadow == "attention" and not supports_attention_bias(denoiser):
            raise TypeError(
                f"wino with shadow='attention' needs a denoiser that accepts a custom attention "
                f"pattern: {type(denoiser).__name__} does not declare accepts_attention_bias = True "
                "(called as denoiser(tokens, attention_mask, attention_bias=(B, L, L) bool, "
                "position_ids=(B, L) int64)); use shadow='emulate' for any denoiser"
            )
        longest = max(int(canvas.editable.sum(-1).max()), 1)  # one sync, at init
        width = longest if self.block_length is None else min(self.block_length, longest)
        return WinoState(
            canvas=canvas, last_accept=torch.full_like(canvas.nfe, _NO_CAP), width=width
        )

    # ------------------------------------------------------------------ step
    def step(self, state: WinoState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        live = (~canvas.done).unsqueeze(-1)  # (B, 1)
        in_block = canvas.editable & canvas.active & live  # (B, L)
        masked = in_block & (canvas.tokens == mask_id)  # (B, L)
        decoded = in_block & ~masked  # (B, L): candidates for narrow-out

        logits, verify_logits, evaluations = self._forward(
            canvas, denoiser, in_block, state.width
        )  # (B, L, V) x2

        # Wide in: threshold, capped, at least the best one.
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            rows=masked,
            key=proposal_keys(key, canvas, self.temperature),
        )
        confidence = proposal.prob  # (B, L)
        n_masked = masked.sum(-1)  # (B,)
        cap = (
            (n_masked.double() * self.accept_ratio)
            .floor()
            .long()
            .clamp(self.accept_min, self.accept_max)
        )
        over = masked & (confidence > self.threshold_in)  # (B, L)
        n_over = over.sum(-1, keepdim=True)  # (B, 1)
        capped = kernels.topk_mask(confidence, cap, masked)  # (B, L)
        best = kernels.topk_mask(confidence, 1, masked)  # (B, L)
        accepted = torch.where(
            n_over > cap.unsqueeze(-1), capped, torch.where(n_over == 0, best, over)
        )
        n_accept = accepted.sum(-1)  # (B,)

        # Narrow out: leave-one-out probability of every token decoded before this step.
        # One fused pass per decoded row (no (B, L, V) log-softmax for one number per row).
        current = canvas.tokens.clamp(0, verify_logits.shape[-1] - 1)  # (B, L)
        verify_prob = kernels.token_prob(verify_logits, current, decoded).double()  # (B, L)
        verify_prob = torch.where(decoded, verify_prob, float("nan"))
        doubtful = (
            decoded & (verify_prob < self.threshold_out) & (n_accept > 1).unsqueeze(-1)
        )  # (B, L)
        remask_cap = (state.last_accept - 1).clamp_min(0)  # (B,)
        remasked = kernels.topk_mask(
            (-verify_prob).float(), remask_cap, doubtful
        )  # (B, L) lowest first

        written = torch.where(remasked, mask_id, proposal.tokens)  # (B, L)
        committed = accepted | remasked
        new_canvas = commit(canvas, committed, written, mask_id, evaluations)
        moved = new_canvas.window != canvas.window  # (B,)
        new_state = WinoState(
            canvas=new_canvas,
            last_accept=torch.where(moved, _NO_CAP, n_accept),
            width=state.width,
        )
        info = WinoInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(masked, confidence, float("-inf")),
            accepted=accepted,
            remasked=remasked,
            verify_prob=verify_prob,
        )
        return new_state, info

    # ------------------------------------------------------------------ the two forwards
    def _forward(self, canvas: Canvas, denoiser, in_block: torch.Tensor, W: int):
        """Draft logits (B, L, V), leave-one-out logits (B, L, V) and evaluations (an int, or
        (B,) int64 per row in emulation)."""
        tokens, attention_mask = canvas.tokens, canvas.attention_mask
        B, L = tokens.shape
        device = tokens.device
        # Slot k of a row shadows the k-th position of its active block; slot_pos (B, W) holds
        # that position (L for an unused slot).
        rank = in_block.long().cumsum(-1) - 1  # (B, L)
        target = torch.where(in_block, rank, W)  # (B, L): out-of-block positions go to a spill slot
        slot_pos = torch.full((B, W + 1), L, dtype=torch.int64, device=device)
        slot_pos.scatter_(1, target, torch.arange(L, device=device).expand(B, L))
        slot_pos = slot_pos[:, :W]  # (B, W)
        slot_live = slot_pos < L  # (B, W)
        slot_of = rank.clamp(0, W - 1)  # (B, L): slot of each in-block position

        if self.uses_attention(denoiser):
            ext_tokens = torch.cat(
                [tokens, torch.full((B, W), denoiser.mask_id, dtype=tokens.dtype, device=device)],
                dim=1,
            )  # (B, L + W)
            ext_mask = torch.cat([attention_mask, slot_live], dim=1)  # (B, L + W)
            # Shadow slots are never writable: guidance keeps them (masks) as they are.
            ext_editable = torch.cat([canvas.editable, torch.zeros_like(slot_live)], dim=1)
            # Canvas columns, not positions: the denoiser numbers them by its own rule, so left
            # padding gives the positions of its plain call (an unused slot names column 0).
            columns = torch.arange(L, device=device).expand(B, L)  # (B, L)
            ext_columns = torch.cat(
                [columns, torch.where(slot_live, slot_pos, 0)], dim=1
            )  # (B, L + W)
            bias = self._shadow_bias(attention_mask, slot_pos, slot_live)  # (B, L + W, L + W)
            out, evaluations = protocol.call(
                denoiser,
                ext_tokens,
                ext_mask,
                editable=ext_editable,
                attention_bias=bias,
                position_ids=ext_columns,
            )  # (B, L + W, V)
            logits, shadow_logits = out[:, :L], out[:, L:]  # (B, L, V), (B, W, V)
        else:
            # Leave-one-out canvases: slot k's copy of the row has position slot_pos[k] masked.
            hide = torch.nn.functional.one_hot(slot_pos, L + 1)[..., :L].bool()  # (B, W, L)
            copies = torch.where(hide, denoiser.mask_id, tokens.unsqueeze(1))  # (B, W, L)
            batch = torch.cat([tokens, copies.reshape(B * W, L)])  # (B + B W, L)
            batch_mask = torch.cat([attention_mask, attention_mask.repeat_interleave(W, dim=0)])
            batch_editable = torch.cat(
                [canvas.editable, canvas.editable.repeat_interleave(W, dim=0)]
            )
            out, per_call = protocol.call(denoiser, batch, batch_mask, editable=batch_editable)
            logits = out[:B]  # (B, L, V)
            per_copy = out[B:].reshape(B, W, L, -1)  # (B, W, L, V)
            index = slot_pos.clamp_max(L - 1)[..., None, None].expand(B, W, 1, per_copy.shape[-1])
            shadow_logits = per_copy.gather(2, index).squeeze(2)  # (B, W, V)
            # Each row pays for its own leave-one-out canvases (its active block's positions),
            # not for the unused slots a longer neighbour's block adds to the batch.
            evaluations = (1 + slot_live.sum(-1)) * per_call  # (B,)
        V = shadow_logits.shape[-1]
        verify_logits = shadow_logits.gather(1, slot_of.unsqueeze(-1).expand(B, L, V))  # (B, L, V)
        return logits, verify_logits, evaluations

    @staticmethod
    def _shadow_bias(
        attention_mask: torch.Tensor, slot_pos: torch.Tensor, slot_live: torch.Tensor
    ) -> torch.Tensor:
        """(B, L + W, L + W) bool attention pattern of the shadow forward (True = may attend)."""
        B, L = attention_mask.shape
        W = slot_pos.shape[1]
        real_keys = attention_mask.unsqueeze(1)  # (B, 1, L)
        # Real queries: every real (non-padding) token, never the shadow.
        top = torch.cat([real_keys.expand(B, L, L), attention_mask.new_zeros(B, L, W)], dim=2)
        # Shadow queries: the real canvas minus the token they shadow, plus the live shadow.
        own = torch.nn.functional.one_hot(slot_pos, L + 1)[..., :L].bool()  # (B, W, L)
        see_real = real_keys & ~own & slot_live.unsqueeze(-1)  # (B, W, L)
        see_shadow = slot_live.unsqueeze(1) & slot_live.unsqueeze(-1)  # (B, W, W)
        # An unused slot attends only to itself, so no query has an empty row.
        see_shadow = see_shadow | torch.eye(W, dtype=torch.bool, device=attention_mask.device)
        bottom = torch.cat([see_real, see_shadow], dim=2)  # (B, W, L + W)
        return torch.cat([top, bottom], dim=1)
