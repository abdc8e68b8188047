"""Fused per-row reductions of the analysis estimators (Numba on CPU, torch elsewhere).

The streamed estimators need a handful of numbers per distribution (entropy, top
probability, KL to a unigram, KL between two predictions, the CMI of a mixture, the mean
prediction) at a few positions, each a sum over the vocabulary. Computed with torch ops on
the CPU, every number is one or more passes over a (rows, V) float32 copy (log-softmax,
exp, products, sums): ~15 passes per row at LLaDA's V = 126,464, which cost far more than
the model's forward. These kernels read the logits where they lie (bf16 bits, float32 or
float64; the rows named by an index, no copy), each row twice: once for its maximum, once
for every sum at once. Arithmetic and accumulators are float64, with an ``exp`` and a
``log`` written out below so that the compiler vectorises the loops (libm's are scalar
calls); both are within ~3e-14 relative of libm's, so the results are exact to ~1e-13
whatever the input dtype (the float32 working chunks they replace were off by ~1e-5 nats on
an entropy of 12 nats).

On another device (CUDA) the same quantities come from torch ops in bounded float32 chunks
(``_*_torch``), which a GPU runs at memory speed.

Conventions: a logit of ``-inf`` is probability 0 and contributes nothing (0 · log 0 = 0);
a unigram ``u`` is given as ``log u`` and its support.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload

from remask.analysis import _util

__all__ = ["PAIR_COLUMNS", "mixture_cmi", "pair_stats", "softmax_mean"]

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

# Fast-math flags that let LLVM vectorise float64 reductions (reassociation) but keep
# infinities meaningful (no "ninf": -inf logits are probability 0).
_FAST = {"nnan", "nsz", "arcp", "contract", "reassoc"}
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split in two so that k ln 2 is exact for |k| < 2**20
_LN2_LO = 1.9082149292705877e-10
_D_MIN = -708.0  # exp(-708) ~ 3e-308, the smallest normal float64 scale 2**k reaches
_SQRT2 = 1.4142135623730951


@njit(cache=True, inline="always", fastmath=_FAST)
def _exp(d):  # pragma: no cover - compiled
    """exp(d) for float64 d in [_D_MIN, 0]: 2**k · exp(r), |r| <= ln2 / 2, Taylor to r**12
    (truncation r**13 / 13! < 2e-16)."""
    kf = np.floor(d * _LOG2E + 0.5)
    r = d - kf * _LN2_HI - kf * _LN2_LO
    p = 1.0 / 479001600.0
    p = 1.0 / 39916800.0 + r * p
    p = 1.0 / 3628800.0 + r * p
    p = 1.0 / 362880.0 + r * p
    p = 1.0 / 40320.0 + r * p
    p = 1.0 / 5040.0 + r * p
    p = 1.0 / 720.0 + r * p
    p = 1.0 / 120.0 + r * p
    p = 1.0 / 24.0 + r * p
    p = 1.0 / 6.0 + r * p
    p = 0.5 + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    return p * np.int64((np.int64(kf) + 1023) << 52).view(np.float64)


@njit(cache=True, inline="always", fastmath=_FAST)
def _log(x):  # pragma: no cover - compiled
    """log(x) for normal float64 x > 0: x = 2**k · m, m in [√½, √2), log m = 2 atanh(f) with
    f = (m − 1)/(m + 1), |f| <= 0.172, series to f**21 (truncation < 1e-17)."""
    bits = np.float64(x).view(np.int64)
    k = ((bits >> 52) & 0x7FF) - 1023
    m = np.int64((bits & 0xFFFFFFFFFFFFF) | (np.int64(1023) << 52)).view(np.float64)  # [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    k = k + 1 if big else k
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    s = 1.0 / 21.0
    s = 1.0 / 19.0 + f2 * s
    s = 1.0 / 17.0 + f2 * s
    s = 1.0 / 15.0 + f2 * s
    s = 1.0 / 13.0 + f2 * s
    s = 1.0 / 11.0 + f2 * s
    s = 1.0 / 9.0 + f2 * s
    s = 1.0 / 7.0 + f2 * s
    s = 1.0 / 5.0 + f2 * s
    s = 1.0 / 3.0 + f2 * s
    s = 1.0 + f2 * s
    return 2.0 * f * s + np.float64(k) * _LN2_HI + np.float64(k) * _LN2_LO


def _widen(v):
    """Overloaded for Numba below: one stored logit as float64."""


@overload(_widen, inline="always")
def _widen_impl(v):
    if isinstance(v, types.Integer):  # bfloat16 bits: the high half of a float32

        def bf16(v):
            return np.float64(np.uint32(np.uint32(v) << np.uint32(16)).view(np.float32))

        return bf16
    return lambda v: np.float64(v)


@njit(cache=True, inline="always", fastmath=_FAST)
def _row_max(x, r):  # pragma: no cover - compiled
    m = -np.inf
    for v in range(x.shape[1]):
        m = max(m, _widen(x[r, v]))
    return m


# ---------------------------------------------------------------------------------- pair stats
@njit(cache=True, parallel=True, fastmath=_FAST)
def _pair_kernel(x, y, idx, has_y, logu_on, on, out):  # pragma: no cover - compiled
    V = x.shape[1]
    for k in prange(idx.shape[0]):
        r = idx[k]
        mx = _row_max(x, r)
        my = _row_max(y, r) if has_y else 0.0
        # Unnormalised sums with e = exp(x − mx): s = Σ e, t = Σ e d (d = x − mx); suffix 1:
        # over supp(u) (on = 1 there, 0 elsewhere), w1 = Σ_supp e log u; c = Σ e (y − my).
        s = t = s1 = t1 = w1 = c = 0.0
        sy = ty = s1y = t1y = w1y = 0.0
        holes = 0
        for v in range(V):
            xv = _widen(x[r, v])
            d = max(_D_MIN, xv - mx)  # -inf (probability 0) -> e ~ 3e-308, contributes ~0
            e = _exp(d) if xv > -np.inf else 0.0
            s += e
            t += e * d
            s1 += e * on[v]
            t1 += e * d * on[v]
            w1 += e * logu_on[v]
            if has_y:
                yv = _widen(y[r, v])
                dy = max(_D_MIN, yv - my)
                ey = _exp(dy) if yv > -np.inf else 0.0
                c += e * dy
                holes += 1 if (xv > -np.inf and yv == -np.inf) else 0  # p > 0 = q: KL = inf
                sy += ey
                ty += ey * dy
                s1y += ey * on[v]
                t1y += ey * dy * on[v]
                w1y += ey * logu_on[v]
        _finish(out, k, 0, mx, s, t, s1, t1, w1)
        if has_y:
            _finish(out, k, 5, my, sy, ty, s1y, t1y, w1y)
            # KL(p ‖ q) = Σ (e/s)(d − log s − (dy − log sy)).
            out[k, 10] = np.inf if holes > 0 else (t - c) / s - math.log(s) + math.log(sy)


@njit(cache=True, inline="always")
def _finish(out, k, at, m, s, t, s1, t1, w1):  # pragma: no cover - compiled
    log_s = math.log(s)
    out[k, at] = m + log_s  # log Σ exp(x)
    out[k, at + 1] = log_s - t / s  # H = −Σ p log p, p = e / s
    out[k, at + 2] = 1.0 / s  # max p = exp(0) / s
    # KL(p restricted to supp u, renormalised ‖ u) = Σ_supp (e/s1)(d − log s1 − log u);
    # no mass on the support: no restriction (NaN).
    out[k, at + 3] = t1 / s1 - math.log(s1) - w1 / s1 if s1 > 0.0 else np.nan
    out[k, at + 4] = max(0.0, 1.0 - s1 / s)


def _numpy(x: torch.Tensor) -> np.ndarray:
    """A contiguous CPU float tensor as numpy without a copy (bf16 as its 16-bit patterns)."""
    x = x.detach().contiguous()
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(np.uint16)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.numpy()


def _unigram(logu: torch.Tensor, support: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(log u with 0 off the support, the support as 1.0/0.0), float64 (V,)."""
    on = support.detach().cpu().to(torch.float64)
    lu = torch.where(support.cpu(), logu.detach().cpu().double(), 0.0)
    return lu.contiguous().numpy(), on.contiguous().numpy()


def pair_stats(
    x: torch.Tensor,
    y: torch.Tensor | None,
    rows: torch.Tensor,
    logu: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """Entropy, top probability, KL to a unigram of ``softmax(x[rows])`` (and of
    ``softmax(y[rows])``), and ``KL(softmax(x) ‖ softmax(y))`` per row, in one fused read.

    Parameters
    ----------
    x : (N, V) float tensor, any float dtype (bf16 read in place on the CPU)
    y : (N, V) float tensor or None
    rows : (n,) int64
        The rows of ``x`` (and ``y``) to reduce.
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
    out = np.full((rows.shape[0], len(PAIR_COLUMNS)), np.nan)
    if not rows.shape[0]:
        return torch.from_numpy(out)
    if x.device.type != "cpu":
        return _pair_stats_torch(x, y, rows.to(x.device), logu, support)
    lu, on = _unigram(logu, support)
    xa = _numpy(x)
    ya = xa if y is None else _numpy(y)
    _pair_kernel(xa, ya, rows.cpu().to(torch.int64).numpy(), y is not None, lu, on, out)
    return torch.from_numpy(out)


def _pair_stats_torch(x, y, rows, logu, support) -> torch.Tensor:
    """:func:`pair_stats` with torch ops in bounded float32 chunks (off the CPU)."""
    out = torch.full((rows.shape[0], len(PAIR_COLUMNS)), math.nan, dtype=torch.float64)
    lu = torch.where(support, logu.double(), 0.0).to(x.device, torch.float32)
    on = support.to(x.device)
    step = max(1, _util.CHUNK_ELEMENTS // max(1, x.shape[-1]))
    for c in range(0, rows.shape[0], step):
        at = rows[c : c + step]
        sides = [x[at].float()] + ([] if y is None else [y[at].float()])
        lps = []
        for j, z in enumerate(sides):
            lognorm = torch.logsumexp(z, -1, keepdim=True)
            lp = z - lognorm  # (c, V) float32
            p = lp.exp()
            lz = torch.logsumexp(lp.masked_fill(~on, -math.inf), -1, keepdim=True)
            pon = torch.where(on, p, 0.0)
            kl_u = torch.where(pon > 0, pon * (lp - lz - lu), 0.0).sum(-1).double() / lz[:, 0].exp()
            cols = [
                lognorm[:, 0].double(),
                -torch.where(p > 0, p * lp, 0.0).sum(-1).double(),
                lp.amax(-1).exp().double(),
                kl_u,
                (1.0 - lz[:, 0].double().exp()).clamp_min(0.0),
            ]
            out[c : c + step, 5 * j : 5 * j + 5] = torch.stack(cols, -1).cpu()
            lps.append(lp)
        if y is not None:
            p = lps[0].exp()
            kl = torch.where(p > 0, p * (lps[0] - lps[1]), 0.0).sum(-1).double()
            out[c : c + step, 10] = kl.cpu()
    return out


# ---------------------------------------------------------------------------------- mean
@njit(cache=True, parallel=True, fastmath=_FAST)
def _mean_kernel(x, w, acc):  # pragma: no cover - compiled
    n, V = x.shape
    T = acc.shape[0]
    for b in prange(T):  # each block of rows has its own accumulator: no write race
        tmp = np.empty(V)
        for r in range(b, n, T):
            if w[r] == 0.0:
                continue
            m = _row_max(x, r)
            s = 0.0
            for v in range(V):
                xv = _widen(x[r, v])
                e = _exp(max(_D_MIN, xv - m)) if xv > -np.inf else 0.0
                tmp[v] = e
                s += e
            coef = w[r] / s
            for v in range(V):
                acc[b, v] += coef * tmp[v]


def softmax_mean(x: torch.Tensor, weights: torch.Tensor, acc: np.ndarray) -> None:
    """``acc += Σ_r weights[r] softmax(x[r])``, in float64.

    Parameters
    ----------
    x : (n, V) float tensor
    weights : (n,) float64
    acc : (V,) float64 numpy array, updated in place
    """
    if not x.shape[0]:
        return
    if x.device.type != "cpu":
        acc += _softmax_mean_torch(x, weights)
        return
    from numba import get_num_threads

    blocks = np.zeros((min(get_num_threads(), x.shape[0]), x.shape[1]))
    w = np.ascontiguousarray(weights.detach().cpu().numpy(), dtype=np.float64)
    _mean_kernel(_numpy(x), w, blocks)
    acc += blocks.sum(0)


def _softmax_mean_torch(x: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """``Σ_r weights[r] softmax(x[r])`` with torch ops (off the CPU), (V,) float64."""
    p = torch.softmax(x.float(), -1)  # (n, V), bounded by the caller's chunk
    return (weights.to(x.device, torch.float32) @ p).double().cpu().numpy()


# ---------------------------------------------------------------------------------- mixture CMI
@njit(cache=True, parallel=True, fastmath=_FAST)
def _cmi_kernel(x, cols, w, out):  # pragma: no cover - compiled
    K, _, V = x.shape
    for k in prange(cols.shape[0]):
        j = cols[k]
        pbar = np.zeros(V)
        tmp = np.empty(V)
        mean_h = 0.0
        for a in range(K):
            m = -np.inf
            for v in range(V):
                m = max(m, _widen(x[a, j, v]))
            s = 0.0
            t = 0.0
            for v in range(V):
                xv = _widen(x[a, j, v])
                d = max(_D_MIN, xv - m)
                e = _exp(d) if xv > -np.inf else 0.0
                tmp[v] = e
                s += e
                t += e * d
            mean_h += w[a] * (math.log(s) - t / s)  # Σ_a w_a H(p_a)
            coef = w[a] / s
            for v in range(V):
                pbar[v] += coef * tmp[v]
        h_bar = 0.0
        for v in range(V):
            pv = pbar[v]
            h_bar -= pv * _log(pv) if pv > 1e-300 else 0.0  # below: ≲ 1e-297 per term
        out[k, 0] = h_bar - mean_h  # I = H(p̄) − Σ_a w_a H(p_a), accumulated in float64
        out[k, 1] = mean_h
        out[k, 2] = h_bar


def mixture_cmi(x: torch.Tensor, cols: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The CMI of a mixture of predictions at the positions ``cols``, one fused pass each.

    Parameters
    ----------
    x : (K, L, V) float tensor
        The logits of K clamped canvases (candidates a of one clamped position).
    cols : (C,) int64
        The positions j to reduce.
    w : (K,) float64
        Candidate weights, summing to 1.

    Returns
    -------
    (C, 3) float64 CPU tensor
        ``H(p̄) − Σ_a w_a H(p_a)`` (= Σ_a w_a KL(p_a ‖ p̄), the CMI), ``Σ_a w_a H(p_a)`` and
        ``H(p̄)`` with ``p̄ = Σ_a w_a softmax(x[a, j])``, in nats. Accumulated in float64, so
        the difference loses nothing to cancellation beyond float64 rounding (~1e-15 H).
    """
    if x.device.type != "cpu":
        return _mixture_cmi_torch(x, cols.to(x.device), w)
    out = np.full((cols.shape[0], 3), np.nan)
    if cols.shape[0]:
        wa = np.ascontiguousarray(w.detach().cpu().numpy(), dtype=np.float64)
        _cmi_kernel(_numpy(x), cols.cpu().to(torch.int64).numpy(), wa, out)
    return torch.from_numpy(out)


def _mixture_cmi_torch(x, cols, w) -> torch.Tensor:
    """:func:`mixture_cmi` with torch ops in bounded float32 chunks (off the CPU)."""
    K, _, V = x.shape
    out = torch.full((cols.shape[0], 3), math.nan, dtype=torch.float64)
    wd = w.to(x.device, torch.float32)
    step = max(1, _util.CHUNK_ELEMENTS // max(1, K * V))
    for c in range(0, cols.shape[0], step):
        lp = torch.log_softmax(x[:, cols[c : c + step]].float(), -1)  # (K, c, V)
        p = lp.exp()
        pbar = torch.einsum("k,kcv->cv", wd, p)
        lbar = pbar.clamp_min(torch.finfo(torch.float32).tiny).log()
        cmi = (wd.double() @ torch.where(p > 0, p * (lp - lbar), 0.0).sum(-1).double()).cpu()
        h = (wd.double() @ -torch.where(p > 0, p * lp, 0.0).sum(-1).double()).cpu()
        out[c : c + step] = torch.stack([cmi, h, cmi + h], -1)
    return out
