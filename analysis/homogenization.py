"""Homogenization of masked predictions as a function of distance to known tokens.

coherence.md §3.2 M3 / §3.4 E1. For every masked position i of a canvas, with
``d_left``/``d_right`` the distances to the nearest observed token on each side and
``d = min(d_left, d_right)``:

- ``entropy`` H(p_θ(x_i | c)) and ``max_prob`` max_v p_θ(x_i = v | c);
- ``kl_unigram`` ``D_uni(i) = KL(p_θ(x_i | c) ‖ u)``, u a reference unigram (given), or the
  model's own context-free marginal (the average prediction over an all-masked canvas of
  the same shape, which for a stationary oracle is the stationary law);
- ``attractor_mass`` ``p_θ(x_i ∈ 𝒜 | c)`` for 𝒜 the given ids (default EOS/pad when the
  model declares them);
- ``js`` pairwise Jensen-Shannon divergence between masked positions (the conjecture of
  arXiv 2510.03289 §3.2.3 predicts it vanishes in the middle of long masked spans);
- with a ``reference`` denoiser (an exact oracle on toys): ``kl_to_reference``
  ``KL(p_ref(x_i | c) ‖ p_θ(x_i | c))`` and the excess-homogenization ratio
  ``r(d) = mean D_uni^θ(d) / mean D_uni^ref(d)`` (below 1: the model is smoother than the
  truth at that distance).

For a Markov chain the exact D_uni(d) decays geometrically, at a rate set by |λ₂|, while
adjacent masked pairs keep their mutual information (see :func:`pairwise_cmi`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from remask.analysis._util import (
    as_tokens,
    call_log_probs,
    check_model,
    entropy,
    js,
    kl,
    unit_scale,
)

__all__ = ["HomogenizationProfile", "distances_to_observed", "homogenization_profile"]


def distances_to_observed(observed: torch.Tensor, real: torch.Tensor | None = None):
    """Distance of every position to the nearest observed position on each side.

    Parameters
    ----------
    observed : (B, L) bool
    real : (B, L) bool, optional
        False on padding (never counts as observed).

    Returns
    -------
    d_left, d_right : (B, L) float64
        ``i − (nearest observed j < i)`` and ``(nearest observed j > i) − i``; inf when none.
    """
    if real is not None:
        observed = observed & real
    B, L = observed.shape
    idx = torch.arange(L, dtype=torch.float64).expand(B, L)
    inf = torch.full((B, L), math.inf, dtype=torch.float64)
    # Last observed index strictly before i: cumulative max of observed indices, shifted by one.
    last = torch.where(observed, idx, torch.full_like(idx, -math.inf)).cummax(-1).values
    last = torch.cat([torch.full((B, 1), -math.inf, dtype=torch.float64), last[:, :-1]], -1)
    nxt = torch.where(observed, idx, inf).flip(-1).cummin(-1).values.flip(-1)
    nxt = torch.cat([nxt[:, 1:], torch.full((B, 1), math.inf, dtype=torch.float64)], -1)
    return idx - last, nxt - idx


@dataclass(frozen=True)
class HomogenizationProfile:
    """Per-position homogenization statistics and their aggregation by distance.

    Per-position arrays are (B, L) float64, NaN at observed and padding positions.

    Attributes
    ----------
    masked : (B, L) bool
    d_left, d_right, distance : (B, L) float64
        Distances to the nearest observed token (inf when there is none on that side).
    entropy, max_prob, kl_unigram, attractor_mass : (B, L) float64
    js : (B, L, L) float64 or None
        Pairwise JS between masked positions (NaN elsewhere and on the diagonal).
    kl_to_reference, reference_kl_unigram : (B, L) float64 or None
        With a reference: ``KL(p_ref ‖ p_θ)`` and the reference's own D_uni.
    unigram : (V,) float64
        The u used for ``kl_unigram``.
    by_distance : dict of str to ndarray
        Means over masked positions grouped by ``distance``: keys ``distance``, ``count``,
        ``entropy``, ``max_prob``, ``kl_unigram``, ``attractor_mass`` and, when available,
        ``js`` (mean over pairs whose nearer member is at that distance), ``kl_to_reference``,
        ``reference_kl_unigram`` and ``ratio`` (r(d)).
    unit : str
    """

    masked: np.ndarray
    d_left: np.ndarray
    d_right: np.ndarray
    distance: np.ndarray
    entropy: np.ndarray
    max_prob: np.ndarray
    kl_unigram: np.ndarray
    attractor_mass: np.ndarray
    js: np.ndarray | None
    kl_to_reference: np.ndarray | None
    reference_kl_unigram: np.ndarray | None
    unigram: np.ndarray
    by_distance: dict = field(default_factory=dict)
    unit: str = "nats"


def _context_free(model, tokens, real, batch_size):
    """The model's context-free marginal: mean prediction over an all-masked canvas, (V,)."""
    blank = torch.full_like(tokens, model.mask_id)
    lp = call_log_probs(model, blank, real, batch_size=batch_size)  # (B, L, V)
    w = real.double().unsqueeze(-1)
    return (lp.exp() * w).sum((0, 1)) / w.sum()


def _group_mean(values: torch.Tensor, groups: torch.Tensor, keys: torch.Tensor) -> np.ndarray:
    out = []
    for k in keys.tolist():
        sel = (groups == k) & torch.isfinite(values)
        out.append(float(values[sel].mean()) if bool(sel.any()) else math.nan)
    return np.asarray(out)


def homogenization_profile(model, tokens, *, reference=None, unigram=None,
                           attractor_ids: Sequence[int] | None = None, attention_mask=None,
                           pairwise: bool = True, batch_size: int | None = 64,
                           unit: str = "nats") -> HomogenizationProfile:
    """Homogenization profile of a denoiser's masked predictions (coherence.md §3.4 E1).

    Parameters
    ----------
    model : Denoiser
        Any denoiser, including real checkpoints (one forward pass per row, batched).
    tokens : (L,) or (B, L) int64
        Canvases with ``mask_id`` at masked positions (islands of known text allowed).
    reference : Denoiser, optional
        A second denoiser, typically the exact oracle the model was trained on, evaluated on
        the same canvases.
    unigram : (V,) array, optional
        Reference distribution u; default the model's own context-free marginal (and the
        reference's own for ``reference_kl_unigram``).
    attractor_ids : sequence of int, optional
        Token ids whose mass is reported; default the model's ``eos_id``/``pad_id`` if any.
    attention_mask : (B, L) bool, optional
        False on padding.
    pairwise : bool
        Compute the (B, L, L) pairwise JS matrix (costs L² V per row, chunked).
    batch_size : int, optional
        Rows per forward pass.
    unit : {"nats", "bits"}
        Of the entropies and divergences.

    Returns
    -------
    HomogenizationProfile
    """
    check_model(model)
    tokens = as_tokens(tokens)
    B, L = tokens.shape
    V = model.vocab_size
    scale = unit_scale(unit)
    if attention_mask is None:
        real = torch.ones_like(tokens, dtype=torch.bool)
    else:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != tokens.shape:
            raise ValueError(f"attention_mask must have shape {tuple(tokens.shape)}")
        real = attention_mask.bool()
    masked = (tokens == model.mask_id) & real
    observed = (tokens != model.mask_id) & real
    d_left, d_right = distances_to_observed(observed, real)
    dist = torch.minimum(d_left, d_right)
    logp = call_log_probs(model, tokens, attention_mask, batch_size=batch_size)  # (B, L, V)

    if unigram is None:
        u = _context_free(model, tokens, real, batch_size)
    else:
        u = torch.as_tensor(np.asarray(unigram), dtype=torch.float64).flatten()
        if u.shape != (V,) or bool((u < 0).any()) or not float(u.sum()) > 0:
            raise ValueError(f"unigram must be {V} non-negative numbers with a positive sum, got shape {tuple(u.shape)}")
        u = u / u.sum()
    logu = u.clamp_min(1e-300).log().where(u > 0, torch.tensor(-math.inf, dtype=torch.float64))

    if attractor_ids is None:
        attractor_ids = [t for t in (getattr(model, "eos_id", None), getattr(model, "pad_id", None))
                         if isinstance(t, int)]
    attractor_ids = sorted(set(int(t) for t in attractor_ids))
    for t in attractor_ids:
        if not 0 <= t < V:
            raise ValueError(f"attractor id {t} is outside [0, {V})")

    nan = torch.full((B, L), math.nan, dtype=torch.float64)

    def on_masked(x):
        return torch.where(masked, x, nan)

    H = on_masked(entropy(logp) * scale)
    pmax = on_masked(logp.exp().max(-1).values)
    duni = on_masked(kl(logp, logu) * scale)
    attr = on_masked(logp.exp()[..., attractor_ids].sum(-1) if attractor_ids else torch.zeros(B, L, dtype=torch.float64))

    J = None
    if pairwise:
        J = torch.full((B, L, L), math.nan, dtype=torch.float64)
        chunk = max(1, 2**24 // max(1, L * V))
        for b in range(B):
            for s in range(0, L, chunk):
                J[b, s:s + chunk] = js(logp[b, s:s + chunk].unsqueeze(1), logp[b].unsqueeze(0)) * scale
        pair = masked.unsqueeze(2) & masked.unsqueeze(1)
        pair &= ~torch.eye(L, dtype=torch.bool).unsqueeze(0)
        J = torch.where(pair, J, torch.tensor(math.nan, dtype=torch.float64))

    kl_ref = ref_duni = None
    if reference is not None:
        check_model(reference)
        if reference.vocab_size != V:
            raise ValueError(f"reference vocab_size {reference.vocab_size} != model vocab_size {V}")
        ref_tokens = torch.where(masked, torch.full_like(tokens, reference.mask_id), tokens)
        lref = call_log_probs(reference, ref_tokens, attention_mask, batch_size=batch_size)
        kl_ref = on_masked(kl(lref, logp) * scale)
        if unigram is None:
            ur = _context_free(reference, ref_tokens, real, batch_size)
            logur = ur.clamp_min(1e-300).log().where(ur > 0, torch.tensor(-math.inf, dtype=torch.float64))
        else:
            logur = logu
        ref_duni = on_masked(kl(lref, logur) * scale)

    # Aggregation by distance (finite distances; inf = no observed token at all).
    keys = torch.unique(dist[masked & torch.isfinite(dist)]).to(torch.int64)
    dgrp = torch.where(masked & torch.isfinite(dist), dist, torch.tensor(-1.0, dtype=torch.float64)).to(torch.int64)
    byd = {
        "distance": keys.numpy(),
        "count": np.asarray([int((dgrp == k).sum()) for k in keys.tolist()]),
        "entropy": _group_mean(H, dgrp, keys),
        "max_prob": _group_mean(pmax, dgrp, keys),
        "kl_unigram": _group_mean(duni, dgrp, keys),
        "attractor_mass": _group_mean(attr, dgrp, keys),
    }
    if J is not None:
        pd = torch.minimum(dgrp.unsqueeze(2), dgrp.unsqueeze(1))  # nearer member's distance
        pd = torch.where((dgrp.unsqueeze(2) < 0) | (dgrp.unsqueeze(1) < 0), torch.tensor(-1), pd)
        byd["js"] = _group_mean(J, pd, keys)
    if kl_ref is not None:
        byd["kl_to_reference"] = _group_mean(kl_ref, dgrp, keys)
        byd["reference_kl_unigram"] = _group_mean(ref_duni, dgrp, keys)
        with np.errstate(divide="ignore", invalid="ignore"):
            byd["ratio"] = byd["kl_unigram"] / byd["reference_kl_unigram"]
    return HomogenizationProfile(
        masked=masked.numpy(), d_left=d_left.numpy(), d_right=d_right.numpy(), distance=dist.numpy(),
        entropy=H.numpy(), max_prob=pmax.numpy(), kl_unigram=duni.numpy(), attractor_mass=attr.numpy(),
        js=None if J is None else J.numpy(), kl_to_reference=None if kl_ref is None else kl_ref.numpy(),
        reference_kl_unigram=None if ref_duni is None else ref_duni.numpy(), unigram=u.numpy(),
        by_distance=byd, unit=unit,
    )
