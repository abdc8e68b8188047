"""LLaDA 2.1 joint threshold decoding: mask-to-token commits plus token-to-token editing
(inclusionAI, "LLaDA2.1: Speeding Up Text Diffusion via Token Editing", arXiv 2602.08676).

Checked against the ``generate`` of the LLaDA2.1 checkpoints' ``modeling_llada2_moe.py``
(``_transfer_tokens``), SGLang's ``JointThreshold`` algorithm (``edit_threshold``,
``max_post_edit_steps``), diffusers' ``BlockRefinementScheduler`` (``editing_threshold``) and
``ZHZisZZ/dllm``'s ``LLaDA21Sampler``. Blocks of ``block_length`` (32) are decoded left to
right. At each step every position of the active block gets a proposal (the argmax, or a
sample at temperature T) and its confidence (the proposal's probability):

* **Mask to token (M2T)**: the masked positions whose confidence is ``> threshold``
  (strictly) commit, if there are at least ``num_to_transfer`` of them; otherwise the
  ``num_to_transfer`` most confident masked positions commit.
* **Token to token (T2T)**: every position of the block decoded in an earlier step whose
  proposal differs from its current token and has confidence ``> edit_threshold`` is
  overwritten by the proposal, in the same step. ``edit_threshold = 0`` edits every
  disagreement (the paper's Speedy mode); ``edit_threshold = 1`` never edits (LLaDA 2.0's
  rule without its step schedule).

Once the block has no mask it is not left at once: up to ``max_post_steps`` further steps
("post-fill" steps) run the T2T rule alone; the block closes after the first post-fill step
that edits nothing, or after ``max_post_steps`` of them, and the next block becomes active.
Edits are confined to the active block (earlier blocks are final) and to generated
positions (never the prompt or fixed infill tokens). Edits never write the mask, so the
M2T phase of a block of ``b`` positions takes at most ``b`` steps and the block at most
``b + max_post_steps``: the reference's per-block iteration budget
(``max(steps, block_length) + max_post_steps``) never binds before these limits, and
:meth:`LLaDA21.max_steps` bounds the run. The paper's two modes are ``threshold=0.5,
edit_threshold=0.0`` (Speedy) and ``threshold=0.7, edit_threshold=0.5`` (Quality); the
defaults are the checkpoint ``generate()``'s (0.95 / 0.9, ``max_post_steps=16``).

Confidence at T > 0 is the sampled token's probability under ``softmax(logits / T)``, as in
the reference's ``_sample_with_confidence`` (and :mod:`remask.samplers.llada2`).

Departures from the reference code (all deliberate):

- The reference spends one more forward pass when a block reaches ``max_post_steps``
  post-fill steps (it evaluates the model, then notices the budget is exhausted and
  discards the result); here the block closes without it. Tokens are identical; such a
  block costs one NFE less.
- Any batch size with ragged prompts, rows advancing through their blocks independently
  (the HF and dllm implementations are batch-size 1; SGLang loops over rows in Python).
- Blocks are cut from the first generated position (the toolkit's convention; for a
  block-diffusion model the driver aligns them to the model's grid, as the reference does).
- No top-p/top-k filtering, no repetition penalty (SGLang's ``penalty_lambda``), no
  ``eos_early_stop``. Float32 confidences; ties to the lower position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import commit, eligible, masked_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register

__all__ = ["LLaDA21", "LLaDA21State", "LLaDA21Info"]


class LLaDA21State(NamedTuple):
    """State of :class:`LLaDA21`.

    Attributes
    ----------
    canvas : Canvas
        ``window`` is the block being decoded or edited: it stays on a filled block during
        its post-fill steps.
    post : (B,) int64
        Post-fill steps taken in the row's active block (0 while it holds a mask).
    over : (B,) bool
        The row's last block has closed (:meth:`LLaDA21.finished`); ``canvas.done`` (no
        mask left) comes earlier, before the last block's post-fill steps.
    """

    canvas: Canvas
    post: torch.Tensor
    over: torch.Tensor


class LLaDA21Info(NamedTuple):
    """What a step did.

    Attributes
    ----------
    committed : (B, L) bool
        Positions written: masks filled (M2T) and tokens edited (T2T).
    proposal : (B, L) int64
        The proposal at every position of the active block (-1 elsewhere).
    score : (B, L) float32
        The proposal's confidence on the active block (-inf elsewhere).
    edited : (B, L) bool
        The T2T part of ``committed``: decoded tokens overwritten this step.
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    edited: torch.Tensor


@register("llada21")
@dataclass(frozen=True, kw_only=True)
class LLaDA21(Sampler):
    """LLaDA 2.1: threshold mask-to-token decoding plus token-to-token editing (2602.08676).

    Parameters
    ----------
    block_length : int, optional
        Block length (default 32); None = one block.
    threshold : float
        M2T confidence in [0, 1]: masked positions above it (strictly) commit.
    edit_threshold : float
        T2T confidence in [0, 1]: a decoded token of the active block whose proposal differs
        and is above it (strictly) is overwritten; 0 edits every disagreement.
    max_post_steps : int
        Most post-fill (editing-only) steps per block, >= 0 (0: a block closes once filled).
    num_to_transfer : int
        Fewest masks committed per M2T step (>= 1): when fewer pass ``threshold``, this many
        of the most confident commit.
    temperature : float
        0 proposes the argmax; T > 0 samples from softmax(logits / T).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("llada21", block_length=4, threshold=0.5, edit_threshold=0.5)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape
    torch.Size([1, 11])
    """

    edits_committed = True
    example_configs = (
        {"block_length": 4, "threshold": 0.5, "edit_threshold": 0.0},  # Speedy mode
        {"block_length": 5, "threshold": 0.7, "edit_threshold": 0.5, "max_post_steps": 2},
        {"block_length": None, "threshold": 0.3, "num_to_transfer": 2, "max_post_steps": 0},
        {"block_length": 3, "threshold": 0.5, "edit_threshold": 0.1, "temperature": 1.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens: the
        paper's two modes."""
        return (
            ("S mode 0.5/0.0", {"temperature": 1.0, "threshold": 0.5, "edit_threshold": 0.0}),
            ("Q mode 0.7/0.5", {"temperature": 1.0, "threshold": 0.7, "edit_threshold": 0.5}),
        )

    block_length: int | None = 32
    threshold: float = 0.95
    edit_threshold: float = 0.9
    max_post_steps: int = 16
    num_to_transfer: int = 1
    temperature: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.threshold, "threshold", low=0.0, high=1.0)
        _check_float(self.edit_threshold, "edit_threshold", low=0.0, high=1.0)
        _check_int(self.max_post_steps, "max_post_steps", low=0)
        _check_int(self.num_to_transfer, "num_to_transfer", low=1)
        _check_float(self.temperature, "temperature", low=0.0)

    def max_steps(self, canvas: Canvas) -> int:
        # Each block: at most one M2T step per position, then max_post_steps post-fill steps.
        blocks = int(canvas.block.amax()) + 1
        return int(canvas.editable.sum(-1).max()) + max(blocks, 0) * self.max_post_steps + 1

    def init(self, canvas: Canvas, denoiser) -> LLaDA21State:
        return LLaDA21State(
            canvas=canvas, post=torch.zeros_like(canvas.nfe), over=canvas.done.clone()
        )

    def finished(self, state: LLaDA21State) -> torch.Tensor:
        """(B,) bool: the row's last block has closed (its post-fill steps are over)."""
        return state.over

    def step(self, state: LLaDA21State, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        live = ~state.over  # (B,)
        block = canvas.active & live.unsqueeze(-1)  # (B, L) generated positions of the active block
        masked = eligible(canvas, mask_id) & live.unsqueeze(-1)  # (B, L) masks of the block
        has_mask = masked.any(-1)  # (B,)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        # Every position of the block gets a proposal: masks for M2T, decoded ones for T2T.
        proposal = kernels.propose(
            logits,
            temperature=self.temperature,
            rows=block,
            key=proposal_keys(key, canvas, self.temperature),
            stats="sampled" if self.temperature > 0 else "untempered",
        )
        conf = proposal.prob  # (B, L)

        confident = masked & (conf > self.threshold)  # (B, L)
        enough = confident.sum(-1) >= self.num_to_transfer  # (B,)
        m2t = torch.where(
            enough.unsqueeze(-1), confident, kernels.topk_mask(conf, self.num_to_transfer, masked)
        )  # (B, L)
        edited = block & ~masked & (proposal.tokens != canvas.tokens) & (conf > self.edit_threshold)
        committed = m2t | edited  # (B, L)
        after = commit(canvas, committed, proposal.tokens, mask_id, evaluations, live=live)

        # Close the block after a post-fill step that changed nothing or the last allowed one;
        # until then the window stays on it (commit() would move it as soon as it is filled).
        post = torch.where(has_mask, 0, state.post + 1)  # (B,)
        filled = ~(masked_positions(after, mask_id) & canvas.active).any(-1)  # (B,)
        idle = ~has_mask & ~committed.any(-1)  # (B,)
        closed = filled & (idle | (post >= self.max_post_steps))  # (B,)
        new_canvas = after._replace(window=torch.where(closed, after.window, canvas.window))
        new_state = LLaDA21State(
            canvas=new_canvas,
            post=torch.where(closed, 0, post),
            over=state.over | (after.done & closed),
        )
        info = LLaDA21Info(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(block, conf, float("-inf")),
            edited=edited,
        )
        return new_state, info
