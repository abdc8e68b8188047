"""Fused per-row reductions of the analysis estimators (Numba, CPU).

The streamed estimators need a handful of numbers per distribution (entropy, top
probability, KL to a unigram, KL between two predictions, the CMI of a mixture) at a few
positions, each a sum over the vocabulary. Computed with torch ops, every number is one or
more passes over a (rows, V) float32 copy (log-softmax, exp, products, sums): ~15 passes per
row at LLaDA's V = 126,464. These kernels read each row of logits (float32 or float64, one
row's bf16 widened by the caller) twice: once for its maximum, once for every sum at
once, with ``exp`` and every accumulator in float64. They are exact to float64 rounding
whatever the input dtype (the float32 working chunks they replace were off by ~1e-5 nats on
an entropy of 12 nats) and use O(rows) memory.

Conventions: a logit of ``-inf`` is probability 0 and contributes nothing (0 · log 0 = 0);
a unigram ``u`` is given as ``log u`` with ``-inf`` off its support. Rows whose logits are
all ``-inf`` give NaN (no distribution).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

__all__ = ["as_rows", "mixture_cmi", "pair_stats", "softmax_mean"]

#: Columns of :func:`pair_stats`' output, for the first distribution (``x_``) and the
#: second (``y_``), and the cross term.
PAIR_COLUMNS = (
    "x_lognorm",
    "x_entropy",
    "x_max_prob",
    "x_kl_unigram",
    "x_missed",
    "y_lognorm",
    "y_entropy",
    "y_max_prob",
    "y_kl_unigram",
    "y_missed",
    "kl_xy",
)


def as_rows(logits: torch.Tensor) -> np.ndarray:
    """A (…, V) CPU tensor as a contiguous float32/float64 numpy array (bf16/fp16 widened)."""
    x = logits.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.contiguous().numpy()


@njit(cache=True, inline="always")
def _row_max(x, r):  # pragma: no cover - compiled
    m = -np.inf
    for v in range(x.shape[1]):
        xv = np.float64(x[r, v])
        if xv > m:
            m = xv
    return m


@njit(cache=True, parallel=True)
def _pair_kernel(x, y, has_y, logu, sup, out):  # pragma: no cover - compiled
    n, V = x.shape
    for r in prange(n):
        mx = _row_max(x, r)
        my = _row_max(y, r) if has_y else 0.0
        # Unnormalised sums with e = exp(x - mx): s = Σ e, t = Σ e d (d = x - mx); with the
        # suffix 1 the same over supp(u), w1 = Σ_supp e log u; c = Σ e (y - my).
        s = 0.0
        t = 0.0
        s1 = 0.0
        t1 = 0.0
        w1 = 0.0
        c = 0.0
        sy = 0.0
        ty = 0.0
        s1y = 0.0
        t1y = 0.0
        w1y = 0.0
        hole = False
        for v in range(V):
            d = np.float64(x[r, v]) - mx
            if d > -np.inf:
                e = math.exp(d)
                s += e
                t += e * d
                if sup[v]:
                    s1 += e
                    t1 += e * d
                    w1 += e * logu[v]
                if has_y:
                    dy = np.float64(y[r, v]) - my
                    if dy > -np.inf:
                        c += e * dy
                    elif e > 0.0:
                        hole = True  # p > 0 = q: the KL is +inf
            if has_y:
                dy = np.float64(y[r, v]) - my
                if dy > -np.inf:
                    ey = math.exp(dy)
                    sy += ey
                    ty += ey * dy
                    if sup[v]:
                        s1y += ey
                        t1y += ey * dy
                        w1y += ey * logu[v]
        _finish(out, r, 0, mx, s, t, s1, t1, w1)
        if has_y:
            _finish(out, r, 5, my, sy, ty, s1y, t1y, w1y)
            if hole:
                out[r, 10] = np.inf
            else:
                # KL(p ‖ q) = Σ (e/s)(d − log s − (dy − log sy)).
                out[r, 10] = (t - c) / s - math.log(s) + math.log(sy)


@njit(cache=True, inline="always")
def _finish(out, r, at, m, s, t, s1, t1, w1):  # pragma: no cover - compiled
    log_s = math.log(s)
    out[r, at] = m + log_s  # log Σ exp(x)
    out[r, at + 1] = log_s - t / s  # H = −Σ p log p, p = e / s
    out[r, at + 2] = 1.0 / s  # max p = exp(0) / s
    if s1 > 0.0:
        # KL(p restricted to supp u, renormalised ‖ u) = Σ_supp (e/s1)(d − log s1 − log u).
        out[r, at + 3] = t1 / s1 - math.log(s1) - w1 / s1
    else:
        out[r, at + 3] = np.nan  # no mass on the support: no restriction
    out[r, at + 4] = max(0.0, 1.0 - s1 / s)


def pair_stats(
    x: torch.Tensor, y: torch.Tensor | None, logu: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """Entropy, top probability, KL to a unigram of ``softmax(x)`` (and of ``softmax(y)``), and
    ``KL(softmax(x) ‖ softmax(y))``, per row, in one fused read.

    Parameters
    ----------
    x : (n, V) float tensor (any float dtype; CPU or not, reduced on the CPU)
    y : (n, V) float tensor or None
    logu : (V,) float64
        ``log u``; only its entries on ``support`` are read.
    support : (V,) bool
        Where u > 0. The KL to u is that of the prediction restricted to the support and
        renormalised; the mass outside is reported (``*_missed``).

    Returns
    -------
    (n, 11) float64 CPU tensor
        Columns :data:`PAIR_COLUMNS` in nats (``lognorm`` = log Σ_v exp(x_v)); the ``y_`` and
        ``kl_xy`` columns are NaN when ``y`` is None. ``kl_xy`` is +inf where ``y`` gives 0 to
        a token ``x`` does not.
    """
    xa = as_rows(x)
    ya = xa if y is None else as_rows(y)
    out = np.full((xa.shape[0], len(PAIR_COLUMNS)), np.nan)
    lu = np.ascontiguousarray(logu.detach().cpu().numpy(), dtype=np.float64)
    sup = np.ascontiguousarray(support.detach().cpu().numpy(), dtype=np.bool_)
    if xa.shape[0]:
        _pair_kernel(xa, ya, y is not None, lu, sup, out)
    return torch.from_numpy(out)


@njit(cache=True, parallel=True)
def _lognorm_kernel(x, out):  # pragma: no cover - compiled
    n, V = x.shape
    for r in prange(n):
        m = _row_max(x, r)
        s = 0.0
        for v in range(V):
            d = np.float64(x[r, v]) - m
            if d > -np.inf:
                s += math.exp(d)
        out[r] = m + math.log(s)


@njit(cache=True, parallel=True)
def _mean_kernel(x, lognorm, w, acc):  # pragma: no cover - compiled
    n, V = x.shape
    tile = 4096
    for k in prange((V + tile - 1) // tile):  # columns split between threads: no write race
        lo = k * tile
        hi = min(V, lo + tile)
        for r in range(n):
            if w[r] == 0.0:
                continue
            for v in range(lo, hi):
                d = np.float64(x[r, v]) - lognorm[r]
                if d > -np.inf:
                    acc[v] += w[r] * math.exp(d)


def softmax_mean(x: torch.Tensor, weights: torch.Tensor, acc: np.ndarray) -> None:
    """``acc += Σ_r weights[r] softmax(x[r])``, in float64.

    Parameters
    ----------
    x : (n, V) float tensor
    weights : (n,) float64
    acc : (V,) float64 numpy array, updated in place
    """
    xa = as_rows(x)
    if not xa.shape[0]:
        return
    lognorm = np.empty(xa.shape[0])
    _lognorm_kernel(xa, lognorm)
    w = np.ascontiguousarray(weights.detach().cpu().numpy(), dtype=np.float64)
    _mean_kernel(xa, lognorm, w, acc)


@njit(cache=True, parallel=True)
def _cmi_kernel(x, w, out):  # pragma: no cover - compiled
    K, C, V = x.shape
    for j in prange(C):
        lse = np.empty(K)
        mean_h = 0.0
        for a in range(K):
            m = -np.inf
            for v in range(V):
                xv = np.float64(x[a, j, v])
                if xv > m:
                    m = xv
            s = 0.0
            t = 0.0
            for v in range(V):
                d = np.float64(x[a, j, v]) - m
                if d > -np.inf:
                    e = math.exp(d)
                    s += e
                    t += e * d
            lse[a] = m + math.log(s)
            mean_h += w[a] * (math.log(s) - t / s)  # Σ_a w_a H(p_a)
        h_bar = 0.0
        for v in range(V):
            pbar = 0.0
            for a in range(K):
                d = np.float64(x[a, j, v]) - lse[a]
                if d > -np.inf:
                    pbar += w[a] * math.exp(d)
            if pbar > 0.0:
                h_bar -= pbar * math.log(pbar)
        out[j, 0] = h_bar - mean_h  # I = H(p̄) − Σ_a w_a H(p_a), accumulated in float64
        out[j, 1] = mean_h
        out[j, 2] = h_bar


def mixture_cmi(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The CMI of a mixture of predictions, per position, in one fused pass per position.

    Parameters
    ----------
    x : (K, C, V) float tensor
        The logits at C positions of K clamped canvases (candidates a of one clamped position).
    w : (K,) float64
        Candidate weights, summing to 1.

    Returns
    -------
    (C, 3) float64 CPU tensor
        ``H(p̄) − Σ_a w_a H(p_a)`` (= Σ_a w_a KL(p_a ‖ p̄), the CMI), ``Σ_a w_a H(p_a)`` and
        ``H(p̄)`` with ``p̄ = Σ_a w_a softmax(x[a])``, in nats. Accumulated in float64, so the
        difference loses nothing to cancellation beyond float64 rounding (~1e-15 H).
    """
    xa = as_rows(x)
    out = np.full((xa.shape[1], 3), np.nan)
    if xa.shape[1]:
        _cmi_kernel(xa, np.ascontiguousarray(w.detach().cpu().numpy(), dtype=np.float64), out)
    return torch.from_numpy(out)
