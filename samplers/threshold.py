"""Fast-dLLM confidence-threshold parallel decoding (Wu et al., "Fast-dLLM: Training-free
Acceleration of Diffusion LLM by Enabling KV Cache and Parallel Decoding", arXiv 2505.22618),
with DUS's optional spacing filter (Luxembourg et al., arXiv 2506.19037, §4.4).

Checked against ``NVlabs/Fast-dLLM/llada/generate.py`` (``generate`` and
``get_transfer_index`` with ``threshold``) and, for the spacing filter,
``omerlux/DUS/generate.py::apply_spacing_filter``. Semi-autoregressive blocks of
``block_length`` (32 in every paper setting); at each step every masked position of the
active block proposes a token (argmax, or a Gumbel-max sample at temperature T) whose
confidence is its probability under the untempered softmax; all positions with confidence
``>= threshold`` are committed, and always at least the most confident one, so each step
makes progress. The number of steps — and so NFE — depends on the data; it is reported per
row. ``steps`` is not a parameter: the reference ignores it once a threshold is set.

Spacing filter (``min_spacing = g``): the candidates above are visited in confidence order
(best first, ties to the lower position) and a candidate is committed only if it lies at
least ``g`` canvas positions away from every candidate already committed this step
(DUS's greedy ``apply_spacing_filter``, shared as :func:`remask.kernels.select.spacing_filter`);
the others stay masked for a later step. The most confident candidate is always committed.
``g <= 1`` is a no-op. The greedy is sequential in rank, so it loops over at most
``block_length`` ranks (never over rows) with (B, L) work each. DUS's adaptive gap
``max(2, ⌊M·g0/B⌋)`` is not reproduced: ``g`` is fixed.

Departures from the reference code (all deliberate):

- Confidences are float32 from one pass over the logits (reference: float64 softmax), so a
  confidence within ~1e-7 of ``threshold`` may compare differently.
- Rows advance through their blocks independently (the reference keeps stepping a row whose
  block is finished until every row of the batch finishes it); the tokens of each row are
  unchanged, NFE is per row. Any ``gen_length`` and ``block_length`` (the last block may be
  shorter; the reference asserts divisibility).
- No KV cache here: prefix/dual caching is a denoiser wrapper's job (``accepts_active``).
- Ties in confidence go to the lower position, deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from remask import kernels
from remask.kernels.select import spacing_filter
from remask.samplers.base import Canvas, Sampler, StepInfo, StepState, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.predict import predict
from remask.samplers.registry import register

__all__ = ["Threshold"]


@register("threshold")
@dataclass(frozen=True, kw_only=True)
class Threshold(Sampler):
    """Fast-dLLM v1 threshold rule: commit every confident proposal, at least one per step.

    Parameters
    ----------
    threshold : float
        Confidence τ in [0, 1]: positions whose proposal has probability ``>= τ`` commit.
    block_length : int, optional
        Semi-autoregressive block length (default 32, the paper's); None = one block.
    temperature : float
        0 proposes the argmax; T > 0 an exact sample from softmax(logits / T) (confidence is
        still the untempered probability of the proposal, as in the reference).
    min_spacing : int, optional
        DUS spacing filter: positions committed in one step are at least this far apart
        (None or 1 disables).

    Examples
    --------
    >>> import remask
    >>> from remask.models import TinyTransformer
    >>> sampler = remask.samplers.build("threshold", threshold=0.5, block_length=4)
    >>> out = remask.generate(TinyTransformer(), [[1, 2, 3]], sampler, gen_length=8, seed=0)
    >>> out.tokens.shape, bool(out.nfe[0] <= 8)
    (torch.Size([1, 11]), True)
    """

    example_configs = (
        {"threshold": 0.5, "block_length": 4},
        {"threshold": 0.2, "temperature": 1.0},
        {"threshold": 0.05, "block_length": None, "min_spacing": 3},
        {"threshold": 0.0, "block_length": 5, "min_spacing": 2},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("tau=0.9", {"temperature": 1.0, "threshold": 0.9}),
            ("tau=0.7", {"temperature": 1.0, "threshold": 0.7}),
            ("tau=0.5", {"temperature": 1.0, "threshold": 0.5}),
        )

    block_length: int | None = 32
    threshold: float = 0.9
    temperature: float = 0.0
    min_spacing: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.threshold, "threshold", low=0.0, high=1.0)
        _check_float(self.temperature, "temperature", low=0.0)
        if self.min_spacing is not None:
            _check_int(self.min_spacing, "min_spacing", low=1)

    def init(self, canvas: Canvas, denoiser) -> StepState:
        return StepState(canvas=canvas)

    def step(self, state: StepState, denoiser, key: torch.Tensor):
        eligible, _, proposal, evaluations = predict(
            state.canvas, denoiser, key, temperature=self.temperature
        )
        committed = kernels.threshold_mask(proposal.prob, self.threshold, eligible)  # (B, L)
        if self.min_spacing is not None:
            # At most block_length positions are eligible: a static bound on the rank loop.
            committed = spacing_filter(
                committed, proposal.prob, self.min_spacing, max_candidates=self.block_length
            )
        new_canvas = commit(state.canvas, committed, proposal.tokens, denoiser.mask_id, evaluations)
        info = StepInfo(
            committed=committed,
            proposal=proposal.tokens,
            score=torch.where(eligible, proposal.prob, float("-inf")),
        )
        return StepState(canvas=new_canvas), info
