"""remask.analysis: measurements of parallel-decoding failure modes.

Decoding several masked tokens in one step samples them from the product of their marginals,
not from their joint; the gap is their total correlation given the context. These functions
measure it and its symptoms (docs/design.md §5).

Exact quantities on oracles (:mod:`remask.models.oracles`):

- :func:`total_correlation` — TC and dual TC of a masked set given its context;
- :func:`partition_error` — exact KL/TV/validity of unmasking a fixed partition with exact
  marginals, with the per-step E[TC] whose sum equals the KL (chain rule);
- :func:`entropy_profile`, :func:`schedule_error` — the random-order schedule error;
- :func:`sampler_error` — a sampler's output law against the exact joint, with noise floors
  (:func:`empirical_error`: the same for samples already drawn).

Estimators for any Denoiser (validated against the exact values on oracles):

- :func:`homogenization_profile` — entropy, confidence, KL to a unigram, attractor mass and
  pairwise JS of masked predictions against distance to known tokens, each with a
  position-matched control (the context ablated) and the excess over it;
- :func:`pairwise_cmi`, :func:`cmi_matrix` — clamp-and-rerun conditional mutual information;
- :func:`marginal_consistency` — the martingale test.

All of them stream: logits stay in the model's dtype on its device and are reduced in
bounded position chunks (no (B, L, V) float64 tensor), so they run at LLaDA's vocabulary;
each docstring gives its cost in forward passes and memory. Real canvases (token ids or text
with mask markers, masked reproducibly): :func:`read_canvases`, :func:`mask_canvases`.

Traces: :class:`TraceRecorder` (a ``generate`` callback), :func:`decode_order_metrics`,
:func:`step_certificates`, :func:`step_total_correlation`. Plots: :mod:`remask.analysis.plots`.

Trained toys: :func:`train_toy` fits a TinyTransformer masked diffusion model to an oracle's
samples (:class:`ToyModel` speaks the oracle's vocabulary, :func:`load_toy` reloads it), so the
estimators can be validated on a model that is not exact (``load_model(DIR)`` reopens a saved
one).

The applications that run these measurements, write their summaries and print tables (the
``remask analyze`` commands, the toy report, the demo) are in :mod:`remask.app`; nothing here
loads a model by name or writes a summary.

All information quantities are in nats unless ``unit="bits"``.
"""

from __future__ import annotations

from remask.analysis.canvases import Canvases, mask_canvases, read_canvases
from remask.analysis.estimators import (
    MarginalConsistency,
    PairwiseCMI,
    cmi_matrix,
    marginal_consistency,
    one_shot_logits,
    pairwise_cmi,
)
from remask.analysis.exact import (
    PartitionError,
    SamplerError,
    TotalCorrelation,
    conditional_joint,
    empirical_error,
    entropy_profile,
    exact_samples,
    partition_error,
    sampler_error,
    schedule_error,
    total_correlation,
)
from remask.analysis.homogenization import (
    HomogenizationProfile,
    distances_to_observed,
    homogenization_profile,
)
from remask.analysis.trace import (
    DecodeOrder,
    StepCertificates,
    Trace,
    TraceRecorder,
    commit_steps,
    decode_order_metrics,
    step_certificates,
    step_total_correlation,
)
from remask.analysis.train import ToyModel, diffusion_loss, load_toy, train_toy

__all__ = [
    "Canvases",
    "DecodeOrder",
    "HomogenizationProfile",
    "MarginalConsistency",
    "PairwiseCMI",
    "PartitionError",
    "SamplerError",
    "StepCertificates",
    "TotalCorrelation",
    "ToyModel",
    "Trace",
    "TraceRecorder",
    "cmi_matrix",
    "commit_steps",
    "conditional_joint",
    "decode_order_metrics",
    "diffusion_loss",
    "distances_to_observed",
    "empirical_error",
    "entropy_profile",
    "exact_samples",
    "homogenization_profile",
    "load_toy",
    "marginal_consistency",
    "mask_canvases",
    "one_shot_logits",
    "pairwise_cmi",
    "partition_error",
    "read_canvases",
    "sampler_error",
    "schedule_error",
    "step_certificates",
    "step_total_correlation",
    "total_correlation",
    "train_toy",
]
