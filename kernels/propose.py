"""The proposal/scoring op: one pass over each row of logits (docs/design.md §4).

This file holds the public :func:`propose` (validation, backend dispatch, output layout) and
the **torch reference** :func:`propose_rows` that defines the semantics every backend must
reproduce. Semantics, per row ``x`` of V logits (``m = max x``):

* ``s = Σ exp(x - m)`` and everything else is computed from logits rounded to float32
  (bf16/fp16 are exact in float32; float64 logits are rounded);
* ``tokens``: at ``temperature == 0`` the argmax, ties to the lowest index (as
  ``torch.argmax``); at ``temperature = T > 0`` an exact sample from ``softmax(x / T)``
  drawn by the two-level inverse-CDF rule below;
* ``prob = exp(x[token] - m) / s`` (untempered softmax, LLaDA's confidence);
* ``margin = (1 - exp(x2 - m)) / s`` with ``x2`` the second largest logit counting
  duplicates (a tied maximum gives margin 0); for V = 1 there is no runner-up, its
  probability is taken as 0, so ``margin = prob = 1``;
* ``entropy = log s - Σ exp(x - m)(x - m) / s`` in nats (``-inf`` logits contribute 0).

Sampling rule (``temperature = T > 0``; ``TILE = 4096``). Weights ``w_i = exp((x_i - m) / T)``;
the row is cut into tiles ``[j·TILE, (j+1)·TILE)`` with masses ``W_j = Σ_tile w_i``. Two float64
uniforms ``u1, u2`` (53-bit, Philox stream 0 under the row's own key, see
:mod:`remask.kernels._philox`) pick the tile ``j`` = first index with ``cumsum(W)_j > u1·ΣW``
and then, inside it, the element ``i`` = first index with ``cumsum(w)_i > u2·Σ_tile w``
(weights of the chosen tile recomputed in float64; both picks clamp to the last positive
weight, against rounding). So ``P(i) = W_j/ΣW · w_i/W_j = softmax(x/T)_i``: exact up to the
floating-point rounding of the masses, with no truncated noise tail (no Gumbel noise at all;
CDF resolution 2**-53). Fast backends re-read one tile of the chosen row, so a sampled row
costs one read plus ``TILE`` elements.

Filtering (``top_p``, ``top_k``, ``min_p``; all optional, applied to the same row). Let ``T_f = T`` for
``T > 0`` and ``T_f = 1`` at ``T = 0`` (the filter and the sampled statistics then use the
untempered softmax, as Dream's ``sample_tokens`` does), ``e_i = exp((x_i - m) / T_f)`` and
``S = Σ e``. Kept set ``K``:

* top-p, ``nucleus="crossing"`` (Holtzman et al.; HF / Dream): walking the tokens by
  decreasing ``e``, keep a token while the mass *before* it is ``<= top_p · S``, so the
  token whose mass crosses ``top_p`` is kept. As a threshold: with the crossing value
  ``w = max{v : Σ_{e_j >= v} e_j > top_p · S}``, ``K = {e_i >= w}``.
* top-p, ``nucleus="strict"`` (ReMDM's ``_nucleus_sample``): keep the tokens whose
  cumulative mass *including themselves* is ``<= top_p · S``, plus the top-1:
  ``K = {e_i > w} ∪ {argmax}``.
* top-k: keep the tokens whose logit is ``>=`` the k-th largest (ties at the k-th all kept).
* min-p (Nguyen et al. 2024; HF ``MinPLogitsWarper``): keep the tokens whose probability is
  at least ``min_p`` times the top probability, ``K = {e_i >= min_p}`` (``e`` is 1 at the max,
  so the top-1 is always kept). No selection is needed: the cut is known before the pass.

Each filter is computed on the full (tempered) distribution and ``K`` is the intersection of
the kept sets (not HF's sequence of warpers, where top-p sees the top-k-renormalised mass).

Ties at a cut are all kept (a sorting implementation keeps an arbitrary subset of them).
The fast backends decide membership on float32 ``e`` without sorting (threshold search by
selection), so a token whose ``e`` lies within float32 rounding of the cut may fall on the
other side than in this float64 reference. That includes top-k and the strict convention's
top-1, which they too decide on ``e``: at very high temperatures (``T`` around 10⁶ for
logits of unit spread) ``e`` rounds to 1 for whole groups of tokens, which then tie at the
cut and are all kept. Tokens are then the argmax (``T = 0``; always
in ``K``) or an exact sample of ``softmax(x / T)`` restricted to ``K`` by the same
two-level rule (weights outside ``K`` are 0). ``stats="untempered"`` (default) reports the
untempered full-vocabulary ``prob``/``margin``/``entropy`` above; ``stats="sampled"``
reports those of the distribution the token is drawn from, ``q = e / Σ_K e`` on ``K``
(0 elsewhere): ``prob = q[token]``, ``margin = q_top1 - q_top2`` (runner-up in ``K``, else
0), ``entropy = -Σ_K q log q`` (Dream's and ReMDM's confidences).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch

from remask.kernels import _dispatch
from remask.kernels._philox import check_key, row_uniforms

__all__ = [
    "MIN_TEMPERATURE",
    "NUCLEUS",
    "SAMPLE_TILE",
    "STATS",
    "STATUS_MESSAGES",
    "Proposal",
    "propose",
    "propose_rows",
]

#: Nucleus conventions of ``propose(top_p=...)`` (see the module docstring).
NUCLEUS = ("crossing", "strict")
#: What ``prob``/``margin``/``entropy`` describe (see the module docstring).
STATS = ("untempered", "sampled")

#: Smallest positive temperature: the fast backends scale logits by ``1 / T`` in float32, which
#: overflows below the smallest normal float32 (T -> 0 is temperature 0, the argmax).
MIN_TEMPERATURE = float(np.finfo(np.float32).tiny)

#: Tile width of the two-level sampling rule (part of the RNG spec: changing it changes tokens).
SAMPLE_TILE = 4096

#: Row status codes written by every backend (0 = fine or not computed).
STATUS_MESSAGES = {1: "contains NaN", 2: "contains +inf", 3: "has no finite logit (all -inf)"}

_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
# Rows per chunk of the reference so that its float64 temporaries stay near 32 MB.
_REFERENCE_CHUNK_ELEMENTS = 1 << 22


class Proposal(NamedTuple):
    """Per-position outputs of :func:`propose`.

    Attributes
    ----------
    tokens : (B, L) int64
        Proposed token: argmax at temperature 0, otherwise a sample from softmax(logits / T).
        -1 outside ``rows``.
    prob : (B, L) float32
        Probability of ``tokens`` under the untempered softmax (LLaDA's confidence); 0 outside
        ``rows``.
    margin : (B, L) float32
        Top-1 minus top-2 probability (0 for a tied maximum; 1 when V = 1, whose runner-up
        probability is taken as 0); 0 outside ``rows``.
    entropy : (B, L) float32
        Shannon entropy of the untempered softmax in nats; 0 outside ``rows``.
    """

    tokens: torch.Tensor
    prob: torch.Tensor
    margin: torch.Tensor
    entropy: torch.Tensor


def propose(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    key: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    backend: str | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    nucleus: str = "crossing",
    stats: str = "untempered",
    min_p: float | None = None,
) -> Proposal:
    """Propose a token per position and score it, reading each row of logits once.

    Parameters
    ----------
    logits : (B, L, V) or (N, V) float32, bfloat16 or float16 (float64 is rounded to float32)
        Rows must be contiguous along V (other layouts are copied).
    temperature : float
        0 for argmax; T > 0 samples exactly from softmax(logits / T). A positive T must be at
        least :data:`MIN_TEMPERATURE` (1.2e-38, the smallest normal float32).
    key : (B, L) or (N,) int64, optional
        One Philox key per logits row (see :mod:`remask.kernels._philox`; e.g.
        ``remask.kernels.split(seed, logits.shape[:-1])``), on the device of ``logits``;
        required when ``temperature > 0``. A row's draw depends only on its own key, never
        on its index or on the other rows.
    rows : (B, L) or (N,) bool, optional
        Only these rows are read and computed (e.g. the masked positions of the active
        block). Outside them ``tokens = -1`` and ``prob = margin = entropy = 0``, and NaN
        there is not detected. A row's random draw depends only on its key, so it is the
        same whatever ``rows`` holds.
    backend : {"torch", "numba", "triton"}, optional
        Overrides :func:`remask.kernels.use_backend` and ``REMASK_BACKEND``.
    top_p : float, optional
        Nucleus filter in (0, 1] on ``softmax(logits / T)`` (``softmax(logits)`` at T = 0);
        None or 1 disables. Convention chosen by ``nucleus``.
    top_k : int, optional
        Keep the ``top_k >= 1`` largest logits (ties at the k-th kept); None disables.
    min_p : float, optional
        Keep the tokens whose probability under ``softmax(logits / T)`` (``softmax(logits)``
        at T = 0) is at least ``min_p`` times the top token's, ``min_p`` in [0, 1]; None or 0
        disables, 1 keeps only the (tied) top tokens.
    nucleus : {"crossing", "strict"}
        "crossing" keeps the token whose cumulative mass crosses ``top_p`` (HF, Dream, APD);
        "strict" keeps only tokens whose cumulative mass is ``<= top_p``, plus the top-1
        (ReMDM). Example: probabilities [0.5, 0.3, 0.15, 0.05] at ``top_p=0.9`` keep three
        tokens ("crossing") or two ("strict").
    stats : {"untempered", "sampled"}
        "untempered": ``prob``/``margin``/``entropy`` of ``softmax(logits)`` over the whole
        vocabulary (LLaDA's confidence). "sampled": those of the (tempered, filtered)
        distribution the token is drawn from (Dream's confidence); see the module docstring.

    Returns
    -------
    Proposal
        ``tokens`` (B, L) int64, ``prob``/``margin``/``entropy`` (B, L) float32 (``(N,)`` for
        2-D input), on the device of ``logits``. See the module docstring for the exact
        definitions.

    Raises
    ------
    ValueError
        For a NaN, a +inf or no finite logit in a computed row (this check is the op's one
        host synchronisation), a negative or non-finite temperature, one in
        (0, ``MIN_TEMPERATURE``), ``temperature > 0`` without a key, or shapes (of ``rows``,
        ``key``) that do not match.
        Also for ``top_p`` outside (0, 1], ``top_k < 1``, ``min_p`` outside [0, 1] or an
        unknown ``nucleus``/``stats``;
        every argument is checked before any kernel runs.
    TypeError
        For a logits dtype that is not floating point, ``rows`` that is not bool, a ``key``
        that is not an int64 tensor, a non-real (or bool) ``temperature``/``top_p``/``min_p``
        or a non-integer ``top_k``.

    Examples
    --------
    >>> import torch, remask.kernels as K
    >>> out = K.propose(torch.tensor([[0.0, 2.0, 1.0]]), backend="torch")
    >>> out.tokens.tolist(), round(float(out.prob[0]), 4)
    ([1], 0.6652)
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dtype not in _DTYPES:
        raise TypeError(f"logits dtype must be one of {_DTYPES}, got {logits.dtype}")
    if logits.dim() not in (2, 3):
        raise ValueError(f"logits must be (B, L, V) or (N, V), got shape {tuple(logits.shape)}")
    if logits.shape[-1] < 1:
        raise ValueError(f"logits need at least one column, got shape {tuple(logits.shape)}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, got {temperature!r}")
    temperature = float(temperature)
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be finite and >= 0, got {temperature!r}")
    if 0 < temperature < MIN_TEMPERATURE:
        raise ValueError(
            f"temperature must be 0 or at least {MIN_TEMPERATURE:.4g} (the smallest normal "
            f"float32: the fast backends divide by it in float32), got {temperature!r}"
        )
    if temperature > 0 and key is None:
        raise ValueError(
            "a key is required when temperature > 0 (got key=None); "
            "e.g. key=remask.kernels.split(seed, logits.shape[:-1])"
        )
    top_p, top_k, strict, sampled = check_filter(top_p, top_k, nucleus, stats, logits.shape[-1])
    min_p = check_min_p(min_p)
    lead = logits.shape[:-1]  # (B, L) or (N,)
    if rows is not None:
        if not isinstance(rows, torch.Tensor) or rows.dtype != torch.bool:
            raise TypeError(f"rows must be a bool tensor, got {getattr(rows, 'dtype', rows)!r}")
        if rows.shape != lead:
            raise ValueError(f"rows must have shape {tuple(lead)}, got {tuple(rows.shape)}")
        if rows.device != logits.device:
            raise ValueError(f"rows is on {rows.device} but logits on {logits.device}")
    if key is not None:
        key = check_key(key, lead, logits.device)
    name, impl = _dispatch.get_impl("propose_rows", backend, logits.device)
    if logits.numel() == 0:  # N = 0 rows (V >= 1 was checked)
        empty = torch.empty(lead, dtype=torch.float32, device=logits.device)
        return Proposal(
            torch.empty(lead, dtype=torch.int64, device=logits.device),
            empty,
            empty.clone(),
            empty.clone(),
        )
    # A backend that declares ``any_lead`` takes the (..., V) logits and the (...) rows and
    # keys as they are and returns (...)-shaped outputs (the Numba one reshapes through
    # numpy); the others get (N, V) and (N,) tensors.
    flat = not getattr(impl, "any_lead", False) and len(lead) != 1
    x = logits
    if flat:
        x = logits.reshape(-1, logits.shape[-1])  # (N, V), a view if it can be
        if rows is not None:
            rows = rows.reshape(-1)  # (N,)
        if key is not None:
            key = key.reshape(-1)  # (N,)
    if x.stride(-1) != 1:
        x = x.contiguous()
    if rows is not None and not rows.is_contiguous():
        rows = rows.contiguous()
    if min_p > 0.0:  # only then the backends see the argument (older signatures work)
        tokens, prob, margin, entropy, status = impl(
            x, rows, temperature, key, top_p, top_k, strict, sampled, min_p
        )
    elif top_p < 1.0 or top_k > 0 or sampled:
        tokens, prob, margin, entropy, status = impl(
            x, rows, temperature, key, top_p, top_k, strict, sampled
        )
    else:  # the plain op keeps its four-argument backend signature
        tokens, prob, margin, entropy, status = impl(x, rows, temperature, key)
    raise_on_bad_rows(status, lead, name)
    if not flat:  # the outputs already have the shape
        return Proposal(tokens, prob, margin, entropy)
    return Proposal(
        tokens.reshape(lead), prob.reshape(lead), margin.reshape(lead), entropy.reshape(lead)
    )


def check_filter(top_p, top_k, nucleus, stats, vocab: int) -> tuple[float, int, bool, bool]:
    """Validate the filter arguments of :func:`propose`.

    Returns ``(top_p, top_k, strict, sampled)`` in the backends' form: ``top_p = 1.0`` and
    ``top_k = 0`` mean "off" (a ``top_k >= vocab`` keeps everything, so it is off too).
    """
    if top_p is None:
        top_p = 1.0
    else:
        if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real):
            raise TypeError(f"top_p must be a real number in (0, 1], got {top_p!r}")
        top_p = float(top_p)
        if not 0.0 < top_p <= 1.0:  # also rejects NaN
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if top_k is None:
        top_k = 0
    else:
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
            raise TypeError(f"top_k must be an int >= 1, got {top_k!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k!r}")
        top_k = 0 if top_k >= vocab else int(top_k)
    if nucleus not in NUCLEUS:
        raise ValueError(f"nucleus must be one of {NUCLEUS}, got {nucleus!r}")
    if stats not in STATS:
        raise ValueError(f"stats must be one of {STATS}, got {stats!r}")
    return top_p, top_k, nucleus == "strict", stats == "sampled"


def check_min_p(min_p) -> float:
    """Validate ``min_p`` of :func:`propose`; returns it as a float, 0.0 meaning "off"."""
    if min_p is None:
        return 0.0
    if isinstance(min_p, bool) or not isinstance(min_p, numbers.Real):
        raise TypeError(f"min_p must be a real number in [0, 1], got {min_p!r}")
    min_p = float(min_p)
    if not 0.0 <= min_p <= 1.0:  # also rejects NaN
        raise ValueError(f"min_p must be in [0, 1], got {min_p!r}")
    return min_p


def raise_on_bad_rows(status: torch.Tensor, lead: torch.Size, backend: str) -> None:
    """Raise ValueError naming the first computed row whose logits are unusable.

    ``status`` : (N,) or ``lead``-shaped int32 from a backend. On CPU the check reads the
    status through numpy (the same answer, a fraction of the cost of two torch ops at a
    small N).
    """
    if status.device.type == "cpu":
        if not np.count_nonzero(status.numpy()):
            return
    elif not bool((status != 0).any()):  # the op's single host sync
        return
    status = status.reshape(-1)  # (N,): flat, whatever shape the backend returned
    bad = status != 0  # (N,)
    if bool(bad.any()):
        flat = int(bad.nonzero()[0, 0])
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), lead))
        code = int(status[flat])
        raise ValueError(
            f"logits row {where} {STATUS_MESSAGES.get(code, code)} (backend {backend!r})"
        )


# ---------------------------------------------------------------------------------------------
# torch reference


def propose_rows(
    x: torch.Tensor,
    rows: torch.Tensor | None,
    temperature: float,
    key: torch.Tensor | None,
    top_p: float = 1.0,
    top_k: int = 0,
    strict: bool = False,
    sampled: bool = False,
    min_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference implementation on 2-D input (every backend exposes this signature).

    Parameters
    ----------
    x : (N, V) float tensor, contiguous rows
    rows : (N,) bool or None
    temperature : float
        Already validated by :func:`propose`.
    key : (N,) int64 or None
        One Philox key per row (None only at temperature 0).
    top_p, top_k, strict, sampled
        The filter in the form returned by :func:`check_filter` (1.0 / 0 = off; ``strict``
        for ``nucleus="strict"``, ``sampled`` for ``stats="sampled"``).
    min_p : float
        Validated by :func:`check_min_p` (0.0 = off).

    Returns
    -------
    tokens (N,) int64, prob (N,) float32, margin (N,) float32, entropy (N,) float32,
    status (N,) int32 (see :data:`STATUS_MESSAGES`; 0 outside ``rows``)

    Notes
    -----
    Written for clarity, in float64 and in chunks of rows; it computes every row (no host
    sync to gather the selected ones) and masks the result with ``rows``.
    """
    n_rows, vocab = x.shape
    chunk = max(1, _REFERENCE_CHUNK_ELEMENTS // vocab)
    filt = (top_p, top_k, strict, sampled, min_p)
    parts = [
        _reference_chunk(
            x[start : start + chunk],
            None if key is None else key[start : start + chunk],
            temperature,
            filt,
        )
        for start in range(0, n_rows, chunk)
    ]
    tokens, prob, margin, entropy, status = (torch.cat(p) for p in zip(*parts, strict=True))
    if rows is not None:
        tokens = torch.where(rows, tokens, -1)
        prob = torch.where(rows, prob, 0.0)
        margin = torch.where(rows, margin, 0.0)
        entropy = torch.where(rows, entropy, 0.0)
        status = torch.where(rows, status, 0)
    return tokens, prob, margin, entropy, status


def _reference_chunk(
    xc: torch.Tensor,
    key: torch.Tensor | None,
    temperature: float,
    filt: tuple[float, int, bool, bool, float] = (1.0, 0, False, False, 0.0),
) -> tuple[torch.Tensor, ...]:
    n, vocab = xc.shape
    x = xc.float()  # (n, V): the precision every backend computes from
    has_nan = torch.isnan(x).any(-1)  # (n,)
    m = torch.nan_to_num(x, nan=-math.inf, posinf=math.inf, neginf=-math.inf).amax(-1)  # (n,)
    status = torch.where(
        has_nan, 1, torch.where(m == math.inf, 2, torch.where(m == -math.inf, 3, 0))
    ).to(torch.int32)
    ok = status == 0
    # Unusable rows are computed on zeros so that they produce finite garbage, not errors;
    # propose() raises for them (or masks them when they are outside `rows`).
    x = torch.where(ok[:, None], x, 0.0)  # (n, V)
    m = torch.where(ok, m, 0.0).double()  # (n,)
    xd = x.double()  # (n, V)
    d = xd - m[:, None]  # (n, V) ≤ 0, -inf for -inf logits
    e = torch.exp(d)  # (n, V)
    s = e.sum(-1)  # (n,) ≥ 1: the maximum contributes exp(0)
    # e·d is 0·(-inf) = NaN for -inf logits; their contribution to the entropy is 0.
    t = torch.where(e > 0, e * d, 0.0).sum(-1)  # (n,)
    entropy = torch.log(s) - t / s
    if vocab > 1:
        x2 = x.topk(2, dim=-1).values[:, 1].double()  # (n,) counts a tied maximum twice
        margin = (1.0 - torch.exp(x2 - m)) / s
    else:
        margin = 1.0 / s  # no runner-up: its probability is taken as 0
    top_p, top_k, strict, sampled, min_p = filt
    keep = None
    if top_p < 1.0 or top_k > 0 or sampled or min_p > 0.0:
        keep, z, ez = _kept_set(x, d, temperature, top_p, top_k, strict, min_p)  # (n, V) each
    if temperature == 0:
        tokens = x.argmax(-1)  # (n,) first maximal index
    else:
        u1, u2 = row_uniforms(key)  # (n,) each
        tokens = _sample_two_level(d, temperature, u1, u2, keep)
    prob = torch.exp(xd.gather(-1, tokens[:, None])[:, 0] - m) / s
    if sampled:
        # Statistics of q = ez / Σ_K ez on K (ez = exp((x - m) / T_f); 0 outside K).
        ek = torch.where(keep, ez, 0.0)  # (n, V)
        sk = ek.sum(-1)  # (n,) >= 1: the top-1 (ez = 1) is always kept
        tk = torch.where(ek > 0, ek * z, 0.0).sum(-1)
        entropy = torch.log(sk) - tk / sk
        prob = ek.gather(-1, tokens[:, None])[:, 0] / sk
        second = ek.topk(2, dim=-1).values[:, 1] if vocab > 1 else torch.zeros_like(sk)  # (n,)
        margin = (1.0 - second) / sk
    return tokens, prob.float(), margin.float(), entropy.float(), status


def _kept_set(
    x: torch.Tensor,
    d: torch.Tensor,
    temperature: float,
    top_p: float,
    top_k: int,
    strict: bool,
    min_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept set K of the filter, by sorting (the definition; fast backends select).

    x : (n, V) float32 logits (finite rows); d = x - max, (n, V) float64.
    Returns keep (n, V) bool, z = d / T_f and ez = exp(z), (n, V) float64.
    """
    z = d / (temperature if temperature > 0 else 1.0)  # (n, V)
    ez = torch.exp(z)  # (n, V), 1 at the maximum
    keep = torch.ones_like(ez, dtype=torch.bool)  # (n, V)
    if top_p < 1.0:
        ordered = ez.sort(dim=-1, descending=True).values  # (n, V)
        cum = ordered.cumsum(-1)  # (n, V)
        target = top_p * cum[:, -1:]  # (n, 1)
        # The crossing value: the first sorted entry whose cumulative mass exceeds the target.
        first = (cum <= target).sum(-1, keepdim=True).clamp_max(ez.shape[-1] - 1)  # (n, 1)
        crossing = ordered.gather(-1, first)  # (n, 1)
        crossed = cum[:, -1:] > target  # (n, 1) False only through rounding at p ~ 1
        if strict:
            cut = (ez > crossing) | (d == 0)  # ReMDM: strictly above the crossing, plus top-1
        else:
            cut = ez >= crossing  # Dream / HF: the crossing token stays
        keep &= cut | ~crossed
    if top_k > 0:
        kth = x.topk(top_k, dim=-1).values[:, -1:]  # (n, 1)
        keep &= x >= kth
    if min_p > 0.0:
        keep &= ez >= min_p  # p_i / p_max = ez_i (ez = 1 at the max)
    return keep, z, ez


def _first_above(cum: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """First index ``i`` with ``cum[i] > target`` per row, clamped to the last positive weight.

    cum, weights : (n, K) float64; target : (n,) float64. Returns (n,) int64.
    """
    first = (cum <= target[:, None]).sum(-1)  # (n,) cum is non-decreasing
    ar = torch.arange(weights.shape[-1], device=weights.device)
    last_positive = torch.where(weights > 0, ar, 0).amax(-1)  # (n,)
    return torch.minimum(first, last_positive)


def _sample_two_level(
    d: torch.Tensor,
    temperature: float,
    u1: torch.Tensor,
    u2: torch.Tensor,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Two-level inverse-CDF sample from softmax(d / T) (restricted to ``keep`` if given).

    d = x - max, (n, V) float64; keep (n, V) bool or None.
    """
    n, vocab = d.shape
    n_tiles = -(-vocab // SAMPLE_TILE)
    w = torch.exp(d / temperature)  # (n, V) float64
    if keep is not None:
        w = torch.where(keep, w, 0.0)
    w = torch.nn.functional.pad(w, (0, n_tiles * SAMPLE_TILE - vocab))  # zeros past V
    w = w.reshape(n, n_tiles, SAMPLE_TILE)  # (n, tiles, TILE)
    tile_mass = w.sum(-1)  # (n, tiles)
    tile_cum = tile_mass.cumsum(-1)
    tile = _first_above(tile_cum, u1 * tile_cum[:, -1], tile_mass)  # (n,)
    inner_w = w[torch.arange(n, device=d.device), tile]  # (n, TILE)
    inner_cum = inner_w.cumsum(-1)
    inner = _first_above(inner_cum, u2 * inner_cum[:, -1], inner_w)  # (n,)
    return tile * SAMPLE_TILE + inner
