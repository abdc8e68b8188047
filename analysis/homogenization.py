"""Homogenization of masked predictions as a function of distance to known tokens.

A mask predictor's marginal at a masked position far from every known token loses the context
and drifts towards the context-free marginal ("homogenization"), while the joint can keep its
local dependence. For every masked position i of a canvas, with
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

Position-matched control. On a real model "distance to the nearest known token" is
confounded with position: a position can be predicted confidently from where it is (a
conserved antibody framework residue, the token after BOS) however far the context is, so
a by-distance curve of D_uni mixes homogenization with conservation. The control canvas
keeps every position, every mask and every structural (special) token of the canvas and
ablates the context: each observed non-special token becomes a mask. Its prediction
``p_θ(x_i | ablated c)`` is what the model knows at position i from position (and length)
alone; the same statistics computed on it at the same positions, grouped by the *real*
canvas's distances, are ``control_*``, and ``excess_* = model − control`` (per position,
then averaged) is the part due to the context. ``kl_to_control`` ``KL(p_θ(x_i | c) ‖
p_θ(x_i | ablated c))`` is the information the context adds at i. A toy whose marginals
depend on position only gives zero excess exactly; a stationary chain, whose ablated
predictions are the stationary law, keeps all of its D_uni as excess.

Why ablation and not a context permuted across canvases: every statistic here is a
property of the prediction alone (no true token enters), and another canvas's context is
just as informative as the canvas's own, so a permuted control would show the same
concentration and cancel the distance effect it is meant to isolate. Its caveat: the
ablated canvas has more masks than the real one, and a model may react to the mask rate
itself; the excess then includes that reaction (on exact oracles there is none). On an
oracle, the excess over the exact Bayes-optimal marginals is the ``reference`` comparison
(``excess_over_reference``): the oracle homogenizes too, so only the excess over it is a
failure of the model.

For a Markov chain the exact D_uni(d) decays geometrically, at a rate set by |λ₂|, while
adjacent masked pairs keep their mutual information (see :func:`pairwise_cmi`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from remask.analysis import _fused, _util
from remask.analysis._util import (
    as_tokens,
    call_logits,
    check_model,
    js,
    position_chunks,
    unit_scale,
    work_log_probs,
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

    Per-position arrays are (B, L) float64, NaN at observed, special and padding positions.

    Attributes
    ----------
    masked : (B, L) bool
    d_left, d_right, distance : (B, L) float64
        Distances to the nearest observed (non-special) token; inf when there is none on that side.
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
        ``reference_kl_unigram``, ``ratio`` (r(d)), ``excess_over_reference`` (D_uni^θ − D_uni^ref),
        the control's ``control_entropy``, ``control_max_prob``, ``control_kl_unigram``,
        ``kl_to_control`` and the excesses ``excess_entropy``, ``excess_max_prob``,
        ``excess_kl_unigram`` (model − control at the same positions), and
        ``unigram_missed_mass``.
    unit : str
    control_entropy, control_max_prob, control_kl_unigram, kl_to_control : (B, L) float64 or None
        The position-matched control (module docstring): the same statistics with the
        context ablated, and ``KL(p_θ(x_i | c) ‖ p_θ(x_i | ablated c))``.
    unigram_missed_mass : (B, L) float64 or None
        Mass of the prediction outside the support of ``unigram`` (only when it has zeros).
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
    control_entropy: np.ndarray | None = None
    control_max_prob: np.ndarray | None = None
    control_kl_unigram: np.ndarray | None = None
    kl_to_control: np.ndarray | None = None
    unigram_missed_mass: np.ndarray | None = None


@torch.no_grad()
def _context_free(model, tokens, real, attention_mask, bar=None):
    """The model's context-free marginal: mean prediction over an all-masked canvas, (V,) float64.

    All-masked canvases differ only in their padding, so equal ones share one forward pass.
    """
    V = model.vocab_size
    blank = torch.full_like(tokens, model.mask_id)
    uniq, inv = torch.unique(real, dim=0, return_inverse=True)  # (U, L)
    total = np.zeros(V)  # float64
    for k in range(uniq.shape[0]):
        rows = (inv == k).nonzero()[:, 0]
        am = None if attention_mask is None else attention_mask[rows[:1]]
        logits = call_logits(model, blank[rows[:1]], am)  # (1, L, V)
        w = real[rows[0]].double() * len(rows)  # (L,)
        if logits.device.type == "cpu":  # read in place
            _fused.softmax_mean(logits[0], w, total)
        else:  # torch ops on float32 working chunks
            for sl in position_chunks(1, tokens.shape[1], V):
                _fused.softmax_mean(logits[0, sl], w[sl], total)
        if bar is not None:
            bar.update()
    total = torch.from_numpy(total)
    return total / total.sum()


def _log_of(u: torch.Tensor) -> torch.Tensor:
    return u.clamp_min(1e-300).log().where(u > 0, torch.tensor(-math.inf, dtype=torch.float64))


def _group_mean(values: torch.Tensor, groups: torch.Tensor, keys: torch.Tensor) -> np.ndarray:
    """Mean of the finite ``values`` per group id in ``keys`` (sorted), NaN for an empty group."""
    v, g = values.reshape(-1), groups.reshape(-1)
    ok = torch.isfinite(v) & (g >= 0)
    v, g = v[ok], g[ok]
    at = torch.searchsorted(keys, g).clamp_max(max(0, len(keys) - 1))
    hit = keys[at] == g if len(keys) else torch.zeros_like(g, dtype=torch.bool)
    at, v = at[hit], v[hit]
    total = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, at, v.double())
    count = torch.bincount(at, minlength=len(keys))
    return torch.where(count > 0, total / count.clamp_min(1), math.nan).numpy()


def homogenization_profile(
    model,
    tokens,
    *,
    reference=None,
    unigram=None,
    attractor_ids: Sequence[int] | None = None,
    attention_mask=None,
    special=None,
    control: bool = True,
    pairwise: bool = True,
    batch_size: int | None = 64,
    unit: str = "nats",
    progress: bool = False,
) -> HomogenizationProfile:
    """Homogenization profile of a denoiser's masked predictions against distance to known tokens.

    Parameters
    ----------
    model : Denoiser
        Any denoiser, including real checkpoints.
    tokens : (L,) or (B, L) int64
        Canvases with ``mask_id`` at masked positions (islands of known text allowed).
    reference : Denoiser, optional
        A second denoiser, typically the exact oracle the model was trained on, evaluated on
        the same canvases.
    unigram : (V,) array, optional
        Reference distribution u; default the model's own context-free marginal (and the
        reference's own for ``reference_kl_unigram``). Zeros are allowed: ``kl_unigram`` is
        then computed on the support of u (the prediction renormalised there), the mass
        outside is reported as ``unigram_missed_mass`` and a warning says so.
    attractor_ids : sequence of int, optional
        Token ids whose mass is reported; default the model's ``eos_id``/``pad_id`` if any.
    attention_mask : (B, L) bool, optional
        False on padding.
    special : (B, L) bool, optional
        Structural tokens (a tokenizer's CLS/SEP/BOS/EOS): not counted as context for the
        distances, and kept in the control canvas.
    control : bool
        Compute the position-matched control (module docstring): one more forward pass per row.
    pairwise : bool
        Compute the (B, L, L) pairwise JS matrix between masked positions.
    batch_size : int, optional
        Rows per forward pass.
    unit : {"nats", "bits"}
        Of the entropies and divergences.
    progress : bool
        A progress bar over the forward passes.

    Returns
    -------
    HomogenizationProfile

    Notes
    -----
    Cost, for B rows of length L, vocabulary V, M masked positions per row and U distinct
    padding patterns (U = 1 without padding):

    - forward passes: B (model) + B (control) + U (context-free marginal, only without
      ``unigram``) + B + U (reference, when given);
    - memory: the logits of ``batch_size`` rows in the model's dtype, once per model, control
      and reference; O(B L) float64 summaries (on the CPU the masked rows are read in place
      by fused kernels, ``analysis/_fused.py``; elsewhere reduced in float32 chunks of at
      most 2**21 elements); with ``pairwise`` a (B, L, L) float64 matrix;
    - arithmetic beyond the forwards: O(B M V) per model (two reads of each masked row, one
      ``exp`` per element), O(U L V) for the context-free marginal, and O(B M² V) for
      ``pairwise`` (the dominant cost on long canvases with large vocabularies: pass
      ``pairwise=False``).
    """
    from tqdm.auto import tqdm

    check_model(model)
    tokens = as_tokens(tokens)
    B, L = tokens.shape
    V = model.vocab_size
    scale = unit_scale(unit)
    real = _real_positions(tokens, attention_mask)
    special = _special_positions(tokens, special)
    masked = (tokens == model.mask_id) & real
    observed = (tokens != model.mask_id) & real & ~special
    d_left, d_right = distances_to_observed(observed, real)
    dist = torch.minimum(d_left, d_right)
    step = B if batch_size is None else max(1, int(batch_size))
    n_chunks = -(-B // step)

    if reference is not None:
        check_model(reference)
        if reference.vocab_size != V:
            raise ValueError(f"reference vocab_size {reference.vocab_size} != model vocab_size {V}")
    u, support = _check_unigram(unigram, V)
    n_free = (
        0
        if u is not None
        else int(torch.unique(real, dim=0).shape[0]) * (2 if reference is not None else 1)
    )
    bar = tqdm(total=n_free + n_chunks, desc="homogenization", disable=not progress, leave=False)
    if u is None:
        u = _context_free(model, tokens, real, attention_mask, bar)
    logu = _log_of(u)
    logur = logu
    if reference is not None and unigram is None:
        ref_tokens0 = torch.where(masked, torch.full_like(tokens, reference.mask_id), tokens)
        logur = _log_of(_context_free(reference, ref_tokens0, real, attention_mask, bar))
    attractor_ids = _attractor_ids(model, attractor_ids, V)

    names = ["entropy", "max_prob", "kl_unigram", "attractor_mass", "unigram_missed_mass"]
    if control:
        names += ["control_entropy", "control_max_prob", "control_kl_unigram", "kl_to_control"]
    if reference is not None:
        names += ["kl_to_reference", "reference_kl_unigram"]
    stat = {name: torch.full((B, L), math.nan, dtype=torch.float64) for name in names}
    J = torch.full((B, L, L), math.nan, dtype=torch.float64) if pairwise else None
    # The control ablates the context: every observed non-special token becomes a mask.
    ctrl_tokens = torch.where(observed, torch.full_like(tokens, model.mask_id), tokens)
    sup = support if support is not None else torch.isfinite(logu)
    sup_r = support if support is not None else torch.isfinite(logur)
    ids = torch.tensor(attractor_ids, dtype=torch.int64)
    for s in range(0, B, step):
        e = min(B, s + step)
        am = None if attention_mask is None else attention_mask[s:e]
        logits = call_logits(model, tokens[s:e], am)  # (b, L, V) model dtype
        clog = call_logits(model, ctrl_tokens[s:e], am) if control else None
        rlog = None
        if reference is not None:
            ref_tokens = torch.where(
                masked[s:e], torch.full_like(tokens[s:e], reference.mask_id), tokens[s:e]
            )
            rlog = call_logits(reference, ref_tokens, am).to(logits.device)
        # Only the masked positions' predictions are reduced (every statistic is NaN
        # elsewhere), each row read once where it lies, by a fused kernel (analysis/_fused.py).
        for r in range(e - s):
            at = masked[s + r].nonzero()[:, 0]  # (M,)
            x = logits[r]  # (L, V) model dtype, a view
            out = _fused.pair_stats(x, None if clog is None else clog[r], at, logu, sup)
            col = dict(zip(_fused.PAIR_COLUMNS, out.unbind(-1)))  # each (M,) float64
            row = (s + r, at)
            _put(
                stat,
                row,
                entropy=col["x_entropy"],
                max_prob=col["x_max_prob"],
                kl_unigram=col["x_kl_unigram"],
                unigram_missed_mass=col["x_missed"],
                attractor_mass=_attractor_mass(x, at, col["x_lognorm"], ids),
            )
            if control:
                _put(
                    stat,
                    row,
                    control_entropy=col["y_entropy"],
                    control_max_prob=col["y_max_prob"],
                    control_kl_unigram=col["y_kl_unigram"],
                    kl_to_control=col["kl_xy"],
                )
            if rlog is not None:
                ref = _fused.pair_stats(rlog[r], x, at, logur, sup_r)
                rcol = dict(zip(_fused.PAIR_COLUMNS, ref.unbind(-1)))
                _put(
                    stat,
                    row,
                    kl_to_reference=rcol["kl_xy"],
                    reference_kl_unigram=rcol["x_kl_unigram"],
                )
        if pairwise:
            _pairwise_js(logits, masked[s:e], J[s:e])
        del logits, clog, rlog
        bar.update()
    bar.close()

    # Per-position results at masked positions only, information quantities in `unit`.
    nan = torch.tensor(math.nan, dtype=torch.float64)
    for name, x in stat.items():
        stat[name] = torch.where(masked, x * scale if name in _INFORMATION else x, nan)
    if support is None:
        stat["unigram_missed_mass"] = None  # u > 0 everywhere: nothing is missed
    if J is not None:
        pair = masked.unsqueeze(2) & masked.unsqueeze(1)
        pair &= ~torch.eye(L, dtype=torch.bool).unsqueeze(0)
        J = torch.where(pair, J * scale, nan)

    def arr(name):
        x = stat.get(name)
        return None if x is None else x.numpy()

    return HomogenizationProfile(
        masked=masked.numpy(),
        d_left=d_left.numpy(),
        d_right=d_right.numpy(),
        distance=dist.numpy(),
        entropy=arr("entropy"),
        max_prob=arr("max_prob"),
        kl_unigram=arr("kl_unigram"),
        attractor_mass=arr("attractor_mass"),
        js=None if J is None else J.numpy(),
        kl_to_reference=arr("kl_to_reference"),
        reference_kl_unigram=arr("reference_kl_unigram"),
        unigram=u.numpy(),
        by_distance=_by_distance(stat, J, masked, dist),
        unit=unit,
        control_entropy=arr("control_entropy"),
        control_max_prob=arr("control_max_prob"),
        control_kl_unigram=arr("control_kl_unigram"),
        kl_to_control=arr("kl_to_control"),
        unigram_missed_mass=arr("unigram_missed_mass"),
    )


# ---------------------------------------------------------------------------- inputs
def _real_positions(tokens: torch.Tensor, attention_mask) -> torch.Tensor:
    """(B, L) bool, False on padding."""
    if attention_mask is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != tokens.shape:
        raise ValueError(f"attention_mask must have shape {tuple(tokens.shape)}")
    return attention_mask.bool()


def _special_positions(tokens: torch.Tensor, special) -> torch.Tensor:
    """(B, L) bool, True on structural tokens."""
    if special is None:
        return torch.zeros_like(tokens, dtype=torch.bool)
    special = torch.as_tensor(special)
    if special.shape != tokens.shape or special.dtype != torch.bool:
        raise ValueError(
            f"special must be a bool tensor of shape {tuple(tokens.shape)}, "
            f"got {special.dtype} {tuple(special.shape)}"
        )
    return special


def _check_unigram(unigram, V: int):
    """(u (V,) float64 normalised or None, its support (V,) bool or None when u > 0 everywhere)."""
    if unigram is None:
        return None, None
    u = torch.as_tensor(np.asarray(unigram), dtype=torch.float64).flatten()
    if (
        u.shape != (V,)
        or bool((u < 0).any())
        or not float(u.sum()) > 0
        or not bool(torch.isfinite(u).all())
    ):
        raise ValueError(
            f"unigram must be {V} finite non-negative numbers with a positive sum, "
            f"got shape {tuple(u.shape)}"
        )
    u = u / u.sum()
    if not bool((u == 0).any()):
        return u, None
    support = u > 0
    warnings.warn(
        f"unigram has {int((~support).sum())} zero entries out of {V}: kl_unigram is computed on "
        f"its support (each prediction renormalised there) and the mass outside is reported "
        f"as unigram_missed_mass",
        stacklevel=3,
    )
    return u, support


def _attractor_ids(model, attractor_ids, V: int) -> list[int]:
    """The ids whose mass is reported: given, else the model's EOS/pad ids."""
    if attractor_ids is None:
        attractor_ids = [
            t
            for t in (getattr(model, "eos_id", None), getattr(model, "pad_id", None))
            if isinstance(t, int)
        ]
    attractor_ids = sorted(set(int(t) for t in attractor_ids))
    for t in attractor_ids:
        if not 0 <= t < V:
            raise ValueError(f"attractor id {t} is outside [0, {V})")
    return attractor_ids


# ---------------------------------------------------------------------------- metrics
# One function per statistic, on a (b, c, V) chunk of log-probs ``lp`` and probabilities
# ``p``; each returns (b, c) on the chunk's device.
_INFORMATION = frozenset(
    {
        "entropy",
        "kl_unigram",
        "control_entropy",
        "control_kl_unigram",
        "kl_to_control",
        "kl_to_reference",
        "reference_kl_unigram",
    }
)  # scaled to `unit`


def _attractor_mass(
    x: torch.Tensor, rows: torch.Tensor, lognorm: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """Σ_{v in ids} softmax(x[r])_v for r in ``rows``, from their log-normalisers, (M,) float64."""
    if not ids.numel():
        return torch.zeros(rows.shape[0], dtype=torch.float64)
    dev = x.device
    picked = x[rows.to(dev).unsqueeze(1), ids.to(dev).unsqueeze(0)].double().cpu()  # (M, |ids|)
    return (picked - lognorm.unsqueeze(-1)).exp().sum(-1)


def _put(stat: dict, at: tuple, **values: torch.Tensor) -> None:
    for name, value in values.items():
        stat[name][at] = value.cpu()


# ---------------------------------------------------------------------------- aggregation
def _by_distance(stat: dict, J, masked: torch.Tensor, dist: torch.Tensor) -> dict:
    """Means over masked positions grouped by distance (finite distances; inf = no observed token)."""
    keys = torch.unique(dist[masked & torch.isfinite(dist)]).to(torch.int64)
    dgrp = torch.where(
        masked & torch.isfinite(dist), dist, torch.tensor(-1.0, dtype=torch.float64)
    ).to(torch.int64)

    def mean(x):
        return _group_mean(x, dgrp, keys)

    byd = {
        "distance": keys.numpy(),
        "count": np.asarray([int((dgrp == k).sum()) for k in keys.tolist()]),
    }
    for name in ("entropy", "max_prob", "kl_unigram", "attractor_mass", "unigram_missed_mass"):
        if stat.get(name) is not None:
            byd[name] = mean(stat[name])
    if J is not None:
        pd = torch.minimum(dgrp.unsqueeze(2), dgrp.unsqueeze(1))  # nearer member's distance
        pd = torch.where((dgrp.unsqueeze(2) < 0) | (dgrp.unsqueeze(1) < 0), torch.tensor(-1), pd)
        byd["js"] = _group_mean(J, pd, keys)
    if "kl_to_control" in stat:
        for name in ("control_entropy", "control_max_prob", "control_kl_unigram", "kl_to_control"):
            byd[name] = mean(stat[name])
        # Differences at the same positions, then averaged (positions where both are finite).
        for name in ("entropy", "max_prob", "kl_unigram"):
            byd[f"excess_{name}"] = mean(stat[name] - stat[f"control_{name}"])
    if "kl_to_reference" in stat:
        byd["kl_to_reference"] = mean(stat["kl_to_reference"])
        byd["reference_kl_unigram"] = mean(stat["reference_kl_unigram"])
        byd["excess_over_reference"] = mean(stat["kl_unigram"] - stat["reference_kl_unigram"])
        with np.errstate(divide="ignore", invalid="ignore"):
            byd["ratio"] = byd["kl_unigram"] / byd["reference_kl_unigram"]
    return byd


def _pairwise_js(logits: torch.Tensor, masked: torch.Tensor, out: torch.Tensor) -> None:
    """JS between every pair of masked positions, written into ``out`` (b, L, L), in bounded chunks."""
    V = logits.shape[-1]
    for b in range(logits.shape[0]):
        idx = masked[b].nonzero()[:, 0]
        if idx.numel() < 2:
            continue
        # (ci, cj, V) float64 temporaries: ci * cj * V <= _util.CHUNK_ELEMENTS.
        side = max(1, int(math.isqrt(max(1, _util.CHUNK_ELEMENTS // max(1, V)))))
        dev_idx = idx.to(logits.device)
        for a in range(0, len(idx), side):
            ia = dev_idx[a : a + side]
            la = work_log_probs(logits[b, ia])  # (ci, V)
            for c in range(0, len(idx), side):
                lc = work_log_probs(logits[b, dev_idx[c : c + side]])  # (cj, V)
                val = js(la.unsqueeze(1), lc.unsqueeze(0)).double().cpu()  # (ci, cj)
                out[b, idx[a : a + side].unsqueeze(1), idx[c : c + side].unsqueeze(0)] = val
