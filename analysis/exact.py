"""Exact quantities on oracles: step total correlation, partition error, entropy profile,
and the distance of a sampler's output distribution to the true joint.

Notation: ``c`` the observed context, ``S`` a set of masked
positions, ``TC(S | c) = Σ_{i∈S} H(x_i | c) − H(x_S | c) = KL(p(x_S|c) ‖ Π_i p(x_i|c))`` and
the dual ``DTC(S | c) = H(x_S | c) − Σ_{i∈S} H(x_i | c, x_{S∖i})``. For a fixed partition
``S_1 … S_T`` unmasked with exact marginals (each step samples its set from the product of
the exact conditional marginals), the chain rule gives

    KL(p ‖ q) = Σ_t E_{x ~ p}[ TC(S_t | x_{S_<t}) ]

(ParallelBench Thm 1 equality case, arXiv 2510.04767; Huang et al. 2206.05975).

Every function enumerates exactly: the support of a conditional law is grown as a tree, one
position at a time, keeping only branches of positive probability, so the cost is the
support size (not V^L). ``max_states`` bounds it and a ValueError names the size when the
bound is hit.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from remask.analysis._util import (
    as_positions,
    as_tokens,
    call_log_probs,
    check_oracle,
    code_rows,
    compact_ids,
    group_sum,
    unit_scale,
)

__all__ = [
    "PartitionError",
    "SamplerError",
    "TotalCorrelation",
    "conditional_joint",
    "empirical_error",
    "entropy_profile",
    "exact_samples",
    "partition_error",
    "sampler_error",
    "schedule_error",
    "total_correlation",
]

DEFAULT_MAX_STATES = 2**21


# ---------------------------------------------------------------------------- tree expansion
def _expand(
    canvas: torch.Tensor,
    logq: torch.Tensor,
    pos: int,
    logm: torch.Tensor,
    extra: torch.Tensor | None,
    max_states: int,
):
    """Branch every state on the positive-probability values of one position.

    canvas (N, L) int64, logq (N,) float64, logm (N, V) float64 log-probs of position ``pos``,
    extra (N, ...) carried along. Returns the expanded (canvas, logq, extra).
    """
    rows, vals = torch.nonzero(logm > -math.inf, as_tuple=True)
    if rows.numel() > max_states:
        raise ValueError(
            f"exact enumeration needs {rows.numel()} partial states (max_states={max_states}); "
            "use a smaller vocabulary or fewer positions, or raise max_states"
        )
    canvas = canvas[rows].clone()
    canvas[:, pos] = vals
    logq = logq[rows] + logm[rows, vals]
    return canvas, logq, (None if extra is None else extra[rows])


def conditional_joint(oracle, tokens, positions, *, max_states: int = DEFAULT_MAX_STATES):
    """Exact joint law of a set of positions given the other observed tokens of one canvas.

    The joint is built by the chain rule from the oracle's exact conditionals,
    ``p(x_S | c) = Π_r p(x_{s_r} | c, x_{s_<r})``, clamping one position at a time; masked
    positions outside ``positions`` are marginalised out.

    Parameters
    ----------
    oracle : exact oracle
        A Denoiser whose conditionals are exact (see :mod:`remask.models.oracles`).
    tokens : (L,) or (1, L) int64
        The canvas; values at ``positions`` are ignored (treated as masked).
    positions : sequence of int
        The k positions whose joint is wanted.
    max_states : int
        Bound on the enumerated partial assignments.

    Returns
    -------
    values : (N, k) int64
        Every assignment of positive probability.
    log_p : (N,) float64
        Its exact conditional log-probability (sums to 1 in probability).
    """
    check_oracle(oracle)
    tokens = as_tokens(tokens)
    if tokens.shape[0] != 1:
        raise ValueError(f"conditional_joint takes one canvas, got {tokens.shape[0]} rows")
    positions = as_positions(positions, tokens.shape[1])
    canvas = tokens.clone()
    canvas[:, positions] = oracle.mask_id
    logq = torch.zeros(1, dtype=torch.float64)
    for pos in positions:
        logm = call_log_probs(oracle, canvas)[:, pos]  # (N, V)
        canvas, logq, _ = _expand(canvas, logq, pos, logm, None, max_states)
    return canvas[:, positions], logq


# ---------------------------------------------------------------------------- total correlation
@dataclass(frozen=True)
class TotalCorrelation:
    """Exact total correlation of masked sets (one entry per canvas row).

    Attributes
    ----------
    tc : (B,) float64
        ``TC(S | c) = Σ_i H(x_i | c) − H(x_S | c)``.
    dtc : (B,) float64
        Dual total correlation ``H(x_S | c) − Σ_i H(x_i | c, x_{S∖i})``.
    joint_entropy : (B,) float64
        ``H(x_S | c)``.
    marginal_entropies : (B, k) float64
        ``H(x_i | c)`` for i in ``positions`` order.
    positions : list of int
    unit : str
    """

    tc: np.ndarray
    dtc: np.ndarray
    joint_entropy: np.ndarray
    marginal_entropies: np.ndarray
    positions: list[int]
    unit: str


def _entropy_of_table(values: torch.Tensor, p: torch.Tensor, cols: Sequence[int]) -> float:
    """Entropy (nats) of the marginal of ``values[:, cols]`` under the table ``p``."""
    pm = group_sum(p, code_rows(values[:, list(cols)]))  # (N,) marginal prob of each row's value
    return float(-(p * pm.log()).sum())


def total_correlation(
    oracle, tokens, positions, *, unit: str = "nats", max_states: int = DEFAULT_MAX_STATES
) -> TotalCorrelation:
    """Exact total correlation (and dual total correlation) of a set of masked positions.

    Parameters
    ----------
    oracle : exact oracle
    tokens : (L,) or (B, L) int64
        Canvases; the context ``c`` is every non-mask token outside ``positions`` (other masks
        are marginalised out); values at ``positions`` are ignored.
    positions : sequence of int
        The set S (same for every row).
    unit : {"nats", "bits"}
    max_states : int
        Bound on the enumerated joint support.

    Returns
    -------
    TotalCorrelation

    Examples
    --------
    >>> from remask.models import FiniteSupportOracle
    >>> tc = total_correlation(FiniteSupportOracle.cities(), [2, 2], [0, 1], unit="bits")
    >>> round(float(tc.tc[0]), 6)
    1.0
    """
    check_oracle(oracle)
    tokens = as_tokens(tokens)
    positions = as_positions(positions, tokens.shape[1])
    scale = unit_scale(unit)
    k = len(positions)
    tcs, dtcs, hj, hm = [], [], [], []
    for row in tokens:
        values, logp = conditional_joint(oracle, row, positions, max_states=max_states)
        p = logp.exp()
        h_joint = float(-(p * logp).sum())
        h_marg = [_entropy_of_table(values, p, [r]) for r in range(k)]
        # H(x_i | c, x_{S∖i}) = H(x_S) − H(x_{S∖i}), so DTC = Σ_i H(x_{S∖i}) − (k−1) H(x_S).
        h_minus = [_entropy_of_table(values, p, [c for c in range(k) if c != r]) for r in range(k)]
        tcs.append(sum(h_marg) - h_joint)
        dtcs.append(sum(h_minus) - (k - 1) * h_joint)
        hj.append(h_joint)
        hm.append(h_marg)
    return TotalCorrelation(
        tc=np.asarray(tcs) * scale,
        dtc=np.asarray(dtcs) * scale,
        joint_entropy=np.asarray(hj) * scale,
        marginal_entropies=np.asarray(hm) * scale,
        positions=positions,
        unit=unit,
    )


# ---------------------------------------------------------------------------- partitions
@dataclass(frozen=True)
class PartitionError:
    """Exact error of unmasking a fixed partition with exact marginals.

    Attributes
    ----------
    kl : float
        ``KL(p ‖ q)``, p the true conditional law of the generated positions, q the law of the
        parallel decoder (each step samples its set from the product of exact marginals).
    tv : float
        ``TV(p, q)``.
    tc_per_step : (T,) float64
        ``E_{x~p}[TC(S_t | x_{S_<t}, prompt)]``, computed from the true joint alone (not from
        q); the identity ``kl == tc_per_step.sum()`` is the chain rule.
    validity : float
        ``q(supp p)``: the probability that the decoder emits a sequence the truth allows.
    reverse_kl : float
        ``KL(q ‖ p)``; ``inf`` when ``validity < 1``.
    reverse_kl_support : float
        ``KL(q(· | supp p) ‖ p)``: reverse KL of the decoder restricted to valid outputs.
    support_p : int
        Size of supp p.
    support_q : int
        Sequences of supp p that the decoder can emit (q > 0); its mass off supp p is
        ``1 − validity``.
    partition : list of list of int
    unit : str
    """

    kl: float
    tv: float
    tc_per_step: np.ndarray
    validity: float
    reverse_kl: float
    reverse_kl_support: float
    support_p: int
    support_q: int
    partition: list[list[int]]
    unit: str


def _prompt_canvas(oracle, prompt) -> tuple[torch.Tensor, int]:
    L = oracle.seq_len
    if prompt is None:
        P = 0
        canvas = torch.full((1, L), oracle.mask_id, dtype=torch.int64)
    else:
        pr = as_tokens(prompt, name="prompt")
        if pr.shape[0] != 1:
            raise ValueError(f"prompt must be one sequence, got {pr.shape[0]} rows")
        P = pr.shape[1]
        if P >= L:
            raise ValueError(f"prompt of length {P} leaves nothing to generate (seq_len={L})")
        canvas = torch.full((1, L), oracle.mask_id, dtype=torch.int64)
        canvas[0, :P] = pr[0]
        if bool((pr == oracle.mask_id).any()):
            raise ValueError("prompt must not contain the mask id")
    return canvas, P


def _check_partition(partition, P: int, L: int) -> list[list[int]]:
    if isinstance(partition, (str, bytes)) or not isinstance(partition, Sequence) or not partition:
        raise TypeError(
            f"partition must be a non-empty sequence of position sets, got {partition!r}"
        )
    steps = [as_positions(list(s), L, name="partition step") for s in partition]
    flat = [p for s in steps for p in s]
    want = set(range(P, L))
    if len(flat) != len(set(flat)) or set(flat) != want:
        raise ValueError(
            f"partition must cover the generated positions {P}..{L - 1} exactly once, got {partition!r}"
        )
    return steps


# Truth tables per oracle and prompt: oracles are immutable distributions, and several
# partitions/samplers are usually compared on the same one.
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _true_table(oracle, canvas: torch.Tensor, P: int, max_states: int):
    """Exact conditional support of the generated positions and its log-probs (N, L), (N,)."""
    key = (tuple(canvas[0, :P].tolist()), oracle.seq_len)
    try:
        cached = _TABLES.setdefault(oracle, {})
    except TypeError:  # not weak-referenceable or not hashable: no cache
        cached = {}
    if key in cached:
        pc, logp = cached[key]
        if len(pc) <= max_states:
            return pc, logp
    pc, logp = _compute_true_table(oracle, canvas, P, max_states)
    cached[key] = (pc, logp)
    return pc, logp


def _compute_true_table(oracle, canvas: torch.Tensor, P: int, max_states: int):
    gen = list(range(P, oracle.seq_len))
    values, logp = conditional_joint(oracle, canvas, gen, max_states=max_states)
    full = canvas.expand(values.shape[0], -1).clone()
    full[:, gen] = values
    return full, logp


def partition_error(
    oracle, partition, prompt=None, *, unit: str = "nats", max_states: int = DEFAULT_MAX_STATES
) -> PartitionError:
    """Exact error of decoding a fixed sequence of position sets with exact marginals.

    Step t samples every position of ``S_t`` independently from the oracle's exact marginal
    given the prompt and the tokens of ``S_<t``. The decoder's law q is enumerated as a tree
    over its support; the true law p by the chain rule; then KL, TV, validity and reverse KL
    are exact, and ``E[TC(S_t | ·)]`` is computed separately from p alone.

    Parameters
    ----------
    oracle : exact oracle
    partition : sequence of sequences of int
        Canvas positions unmasked at each step; together they must cover every non-prompt
        position exactly once.
    prompt : (P,) int64, optional
        Tokens at positions ``0 .. P-1``; the rest is generated.
    unit : {"nats", "bits"}
    max_states : int
        Bound on the enumerated supports.

    Returns
    -------
    PartitionError

    Examples
    --------
    Decoding every position in one step with exact marginals costs exactly the total
    correlation TC(x): on "New York / Mexico City" one bit.

    >>> from remask.models import FiniteSupportOracle
    >>> err = partition_error(FiniteSupportOracle.cities(), [[0, 1]], unit="bits")
    >>> round(err.kl, 6), round(err.validity, 6)
    (1.0, 0.5)
    """
    check_oracle(oracle)
    scale = unit_scale(unit)
    canvas, P = _prompt_canvas(oracle, prompt)
    L = oracle.seq_len
    steps = _check_partition(partition, P, L)

    # --- p: the truth, by the chain rule (exact conditionals, one position at a time).
    pc, logp = _true_table(oracle, canvas, P, max_states)
    # --- q: the parallel decoder, enumerated step by step. A branch whose revealed tokens
    # already have probability 0 under p can only end outside supp p; every reported
    # statistic depends on such branches only through their total mass, so they are pruned
    # into ``invalid`` (this also keeps the oracle's convention for impossible evidence out).
    qc = canvas.clone()
    logq = torch.zeros(1, dtype=torch.float64)
    invalid = 0.0
    revealed: list[int] = list(range(P))
    # With a full support (every completion possible) no branch is ever invalid.
    prune = len(pc) < oracle.vocab_size ** (L - P)
    for S in steps:
        logm = call_log_probs(oracle, qc)[:, S]  # (N, |S|, V): one forward per state and step
        idx = torch.arange(qc.shape[0])
        for r, pos in enumerate(S):
            qc, logq, idx = _expand(qc, logq, pos, logm[idx, r], idx, max_states)
            revealed.append(pos)
            if not prune:
                continue
            ids = code_rows(torch.cat([pc[:, revealed], qc[:, revealed]], 0))
            ok = torch.from_numpy(np.isin(ids[len(pc) :].numpy(), ids[: len(pc)].numpy()))
            invalid += float(logq[~ok].exp().sum())
            qc, logq, idx = qc[ok], logq[ok], idx[ok]
    # Align the two supports by row identity (every surviving q leaf lies in supp p).
    both = torch.cat([pc, qc], 0)
    ids = code_rows(both)
    n_id = int(ids.max()) + 1
    p_all = torch.zeros(n_id, dtype=torch.float64).index_add_(0, ids[: len(pc)], logp.exp())
    q_all = torch.zeros(n_id, dtype=torch.float64).index_add_(0, ids[len(pc) :], logq.exp())
    lp_all = torch.where(
        p_all > 0, p_all.clamp_min(1e-300).log(), torch.full_like(p_all, -math.inf)
    )
    lq_all = torch.where(
        q_all > 0, q_all.clamp_min(1e-300).log(), torch.full_like(q_all, -math.inf)
    )
    on_p = p_all > 0
    kl_pq = float((p_all[on_p] * (lp_all[on_p] - lq_all[on_p])).sum())
    tv = 0.5 * (float((p_all - q_all).abs().sum()) + invalid)
    validity = float(q_all[on_p].sum())
    on_q = (q_all > 0) & on_p
    rev = (
        float((q_all[on_q] * (lq_all[on_q] - lp_all[on_q])).sum()) if invalid <= 1e-12 else math.inf
    )
    qv = q_all[on_q] / max(validity, 1e-300)
    rev_support = float((qv * (qv.log() - lp_all[on_q])).sum()) if validity > 0 else math.nan

    # --- Σ_t E_p[TC(S_t | x_{S<t})] from the true table alone.
    p = logp.exp()
    known: list[int] = list(range(P))
    tcs = []
    for S in steps:
        logp_known = group_sum(p, code_rows(pc[:, known])).log()
        logp_joint = group_sum(p, code_rows(pc[:, known + S])).log()
        term = logp_joint - logp_known  # log p(x_S | x_known)
        for pos in S:
            term = term - (group_sum(p, code_rows(pc[:, known + [pos]])).log() - logp_known)
        tcs.append(float((p * term).sum()))
        known = known + S
    return PartitionError(
        kl=kl_pq * scale,
        tv=tv,
        tc_per_step=np.asarray(tcs) * scale,
        validity=validity,
        reverse_kl=rev * scale,
        reverse_kl_support=rev_support * scale,
        support_p=int(on_p.sum()),
        support_q=int(on_q.sum()),
        partition=steps,
        unit=unit,
    )


# ---------------------------------------------------------------------------- entropy profile
def entropy_profile(
    oracle, prompt=None, *, unit: str = "nats", max_states: int = DEFAULT_MAX_STATES
) -> np.ndarray:
    """Exact entropy profile ``h(m) = E_{|S|=m, i∉S} H(x_i | x_S, prompt)``: uncertainty left
    at a position after m random others are revealed.

    The average is uniform over subsets S of the n generated positions of size m and over
    i ∉ S. With ``Z_{m+1} = h(0) − h(m)``, ``Σ_m Z_m = TC(x)``, and the expected error of a
    uniformly random order with step sizes k_1..k_T is :func:`schedule_error`.

    Parameters
    ----------
    oracle : exact oracle
    prompt : (P,) int64, optional
    unit : {"nats", "bits"}
    max_states : int

    Returns
    -------
    (n,) float64
        h(0) … h(n−1).
    """
    check_oracle(oracle)
    canvas, P = _prompt_canvas(oracle, prompt)
    n = oracle.seq_len - P
    if n > 16:
        raise ValueError(
            f"entropy_profile enumerates 2**n subsets; n={n} generated positions is too many"
        )
    pc, logp = _true_table(oracle, canvas, P, max_states)
    p = logp.exp()
    gen = list(range(P, oracle.seq_len))
    H: dict[tuple[int, ...], float] = {}
    for m in range(n + 1):
        for S in itertools.combinations(gen, m):
            H[S] = float(-(p * group_sum(p, code_rows(pc[:, list(S)])).log()).sum()) if S else 0.0
    h = np.zeros(n)
    for m in range(n):
        vals = [
            H[tuple(sorted(S + (i,)))] - H[S]
            for S in itertools.combinations(gen, m)
            for i in gen
            if i not in S
        ]
        h[m] = np.mean(vals)
    return h * unit_scale(unit)


def schedule_error(h, sizes) -> float:
    """Expected KL of a uniformly random order with step sizes ``sizes`` (exact marginals).

    ``E_σ KL(p ‖ q_σ) = Σ_t Σ_{r<k_t} [h(s_t) − h(s_t + r)]`` with s_t the tokens revealed
    before step t (Chen, Cong, Li, arXiv 2511.04647). The realised
    random-order sampler is a mixture over orders, whose KL is at most this by convexity.

    Parameters
    ----------
    h : (n,) float
        Entropy profile from :func:`entropy_profile` (its unit is the result's).
    sizes : sequence of int
        Step sizes summing to n.

    Returns
    -------
    float
    """
    h = np.asarray(h, dtype=np.float64)
    sizes = [int(k) for k in sizes]
    if any(k < 1 for k in sizes) or sum(sizes) != len(h):
        raise ValueError(f"sizes must be positive and sum to n={len(h)}, got {sizes!r}")
    total, s = 0.0, 0
    for k in sizes:
        total += sum(h[s] - h[s + r] for r in range(k))
        s += k
    return float(total)


# ---------------------------------------------------------------------------- sampler error
@dataclass(frozen=True)
class SamplerError:
    """A sampler's output distribution against the exact joint (:func:`sampler_error`).

    Every statistic ``x`` comes with ``x_floor``: the same statistic computed on ``n_samples``
    exact samples of the oracle (mean over ``floor_repeats`` draws) — what sampling noise
    alone produces. A sampler is biased when its value exceeds the floor by several
    ``x_floor_std``.

    Attributes
    ----------
    n_samples : int
    validity : float
        Fraction of samples with positive true probability.
    nll : float
        Mean ``−log p(x | prompt)`` over valid samples (true model's cross-entropy).
    entropy : float
        ``H(p(· | prompt))`` when enumerable, else nan; ``nll − entropy`` estimates
        ``KL(q‖p) + H(q) − H(p)``.
    tv : float
        Plug-in ``TV(p, q̂)`` with q̂ the empirical law (nan unless enumerable).
    kl : float
        ``KL(p ‖ q̂_KT)`` with the Krichevsky–Trofimov (add-½) estimate
        ``q̂_KT(x) = (count(x) + ½) / (n + ½ N)`` over the N sequences of the true support
        plus the distinct invalid samples (nan unless enumerable).
    reverse_kl_support : float
        Plug-in ``KL(q̂(· | valid) ‖ p)`` over the valid samples (finite always).
    exact_match : float
        Fraction of samples equal to the oracle's most likely completion.
    *_floor, *_floor_std : float
        Noise floors (see above).
    enumerable : bool
        Whether the true support was enumerated.
    unit : str
    samples : (n, L) int64 tensor
    """

    n_samples: int
    validity: float
    nll: float
    entropy: float
    tv: float
    kl: float
    reverse_kl_support: float
    exact_match: float
    floors: dict = field(default_factory=dict)
    enumerable: bool = False
    unit: str = "nats"
    samples: torch.Tensor | None = None

    def __getattr__(self, name: str):
        if name.endswith("_floor_std") and name[: -len("_floor_std")] in _STATS:
            return self.floors[name[: -len("_floor_std")]][1]
        if name.endswith("_floor") and name[: -len("_floor")] in _STATS:
            return self.floors[name[: -len("_floor")]][0]
        raise AttributeError(name)

    def summary(self) -> dict:
        """Plain dict of every statistic and its floor (JSON-ready)."""
        out = {"n_samples": self.n_samples, "enumerable": self.enumerable, "unit": self.unit}
        for s in _STATS:
            out[s] = getattr(self, s)
            out[s + "_floor"], out[s + "_floor_std"] = self.floors.get(s, (math.nan, math.nan))
        out["entropy"] = self.entropy
        return out


_STATS = ("validity", "nll", "tv", "kl", "reverse_kl_support", "exact_match")


def exact_samples(
    oracle, n: int, prompt=None, *, seed: int = 0, batch_size: int = 4096
) -> torch.Tensor:
    """Exact samples of ``p(x | prompt)`` by ancestral decoding with the exact conditionals.

    Left to right, each position is drawn from the oracle's exact marginal given everything
    before it; with exact conditionals this is an exact sample of the joint (chain rule).

    Parameters
    ----------
    oracle : exact oracle
    n : int
    prompt : (P,) int64, optional
    seed : int
    batch_size : int

    Returns
    -------
    (n, seq_len) int64
    """
    check_oracle(oracle)
    canvas, P = _prompt_canvas(oracle, prompt)
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for s in range(0, n, batch_size):
        x = canvas.expand(min(batch_size, n - s), -1).clone()
        for pos in range(P, oracle.seq_len):
            probs = call_log_probs(oracle, x)[:, pos].exp()
            x[:, pos] = torch.multinomial(probs, 1, generator=g)[:, 0]
        out.append(x)
    return torch.cat(out, 0)


def _stats(
    x: torch.Tensor, oracle, table, mode: torch.Tensor | None, log_norm: float, scale: float
) -> dict:
    """All sample statistics of one set of samples x (n, L)."""
    n = x.shape[0]
    logp = oracle.log_prob(x) - log_norm  # (n,) log p(x | prompt)
    valid = torch.isfinite(logp)
    out = {"validity": float(valid.double().mean())}
    out["nll"] = float(-logp[valid].mean()) * scale if bool(valid.any()) else math.nan
    # Reverse KL on the support, plug-in over the distinct valid samples.
    xv, lv = x[valid], logp[valid]
    if xv.shape[0]:
        ids = compact_ids(code_rows(xv))
        counts = torch.bincount(ids).double()
        first = torch.zeros(len(counts), dtype=torch.int64).scatter_(0, ids, torch.arange(len(ids)))
        qv = counts / counts.sum()
        out["reverse_kl_support"] = float((qv * (qv.log() - lv[first])).sum()) * scale
    else:
        out["reverse_kl_support"] = math.nan
    out["exact_match"] = (
        float((x == mode).all(-1).double().mean()) if mode is not None else math.nan
    )
    if table is None:
        out["tv"] = out["kl"] = math.nan
        return out
    tx, tlogp = table
    both = torch.cat([tx, x], 0)
    ids = compact_ids(code_rows(both))
    N = int(ids.max()) + 1  # distinct sequences: the support plus distinct invalid samples
    p = torch.zeros(N, dtype=torch.float64).index_add_(0, ids[: len(tx)], tlogp.exp())
    c = torch.bincount(ids[len(tx) :], minlength=N).double()
    out["tv"] = 0.5 * float((p - c / n).abs().sum())
    q_kt = (c + 0.5) / (n + 0.5 * N)
    on = p > 0
    out["kl"] = float((p[on] * (p[on].log() - q_kt[on].log())).sum()) * scale
    return out


def sampler_error(
    oracle,
    sampler,
    *,
    gen_length: int,
    prompt=None,
    n_samples: int,
    seed: int = 0,
    batch_size: int = 1024,
    floor_repeats: int = 3,
    unit: str = "nats",
    exact_limit: int = 2**17,
    sampler_config: dict | None = None,
) -> SamplerError:
    """Distance between a sampler's output distribution (with the oracle as denoiser) and the truth.

    Runs ``remask.samplers.generate(oracle, prompt, sampler, gen_length=...)`` for
    ``n_samples`` rows and compares the samples with the exact conditional law
    ``p(x | prompt)`` through :func:`empirical_error` (which see for the statistics and
    their noise floors).

    Parameters
    ----------
    oracle : exact oracle
    sampler : Sampler or str
        A built sampler, or a registry name built with ``sampler_config``.
    gen_length : int
        Generated tokens; ``len(prompt) + gen_length`` must equal ``oracle.seq_len``.
    prompt : (P,) int64, optional
    n_samples : int
    seed : int
        Seeds both the sampler runs (``seed + chunk``) and the floor draws.
    batch_size : int
        Rows per ``generate`` call.
    floor_repeats : int
        Independent exact-sample sets for the floors' mean and standard deviation.
    unit : {"nats", "bits"}
    exact_limit : int
        Largest support enumerated for TV and KL.
    sampler_config : dict, optional
        Config for a sampler given by name.

    Returns
    -------
    SamplerError
    """
    from remask import samplers as _samplers

    check_oracle(oracle)
    unit_scale(unit)  # a bad unit fails before any decoding
    if isinstance(sampler, str):
        sampler = _samplers.build(sampler, **(sampler_config or {}))
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
    canvas, P = _prompt_canvas(oracle, prompt)
    if P + gen_length != oracle.seq_len:
        raise ValueError(
            f"prompt length {P} + gen_length {gen_length} must equal the oracle's seq_len {oracle.seq_len}"
        )
    prompt_row = canvas[0, :P]
    chunks = []
    for c, s in enumerate(range(0, n_samples, batch_size)):
        b = min(batch_size, n_samples - s)
        pr = prompt_row.unsqueeze(0).expand(b, -1).clone() if P else [[] for _ in range(b)]
        out = _samplers.generate(oracle, pr, sampler, gen_length=gen_length, seed=int(seed) + c)
        chunks.append(out.tokens.cpu())
    return empirical_error(
        oracle,
        torch.cat(chunks, 0),
        prompt_row if P else None,
        seed=seed,
        floor_repeats=floor_repeats,
        unit=unit,
        exact_limit=exact_limit,
    )


def empirical_error(
    oracle,
    samples,
    prompt=None,
    *,
    seed: int = 0,
    floor_repeats: int = 3,
    unit: str = "nats",
    exact_limit: int = 2**17,
) -> SamplerError:
    """The empirical law of given samples against the exact conditional law ``p(x | prompt)``.

    When that law's support has at most ``exact_limit`` sequences it is enumerated and the
    plug-in TV and a KT-smoothed forward KL are reported; validity, the true NLL, the reverse
    KL on the valid support and the exact-match rate are always reported. Every statistic
    comes with its noise floor: the same statistic on as many exact samples
    (:func:`exact_samples`), so bias can be told from noise. :func:`sampler_error` is this
    applied to a sampler's output.

    Parameters
    ----------
    oracle : exact oracle
    samples : (n, seq_len) int64
        Complete sequences (no mask id), each beginning with ``prompt``.
    prompt : (P,) int64, optional
    seed : int
        Seeds the floor draws.
    floor_repeats : int
        Independent exact-sample sets for the floors' mean and standard deviation.
    unit : {"nats", "bits"}
    exact_limit : int
        Largest support enumerated for TV and KL.

    Returns
    -------
    SamplerError
    """
    check_oracle(oracle)
    scale = unit_scale(unit)
    canvas, P = _prompt_canvas(oracle, prompt)
    x = as_tokens(samples, name="samples").cpu()
    if x.shape[1] != oracle.seq_len:
        raise ValueError(
            f"samples have length {x.shape[1]}, the oracle models seq_len={oracle.seq_len}"
        )
    if bool((x == oracle.mask_id).any()):
        raise ValueError("samples must be complete sequences: they contain the mask id")
    prompt_row = canvas[0, :P]
    if P and not bool((x[:, :P] == prompt_row).all()):
        raise ValueError("every sample must begin with the prompt")
    n_samples = x.shape[0]
    # The truth: enumerated when small enough.
    table = None
    try:
        table = _true_table(oracle, canvas, P, exact_limit)
    except ValueError:
        table = None
    if table is not None:
        tx, tlogp = table
        entropy = float(-(tlogp.exp() * tlogp).sum()) * scale
        mode = tx[int(tlogp.argmax())]
        log_norm = float(torch.logsumexp(oracle.log_prob(tx), 0))
    else:
        entropy = math.nan
        mode = None
        if P == 0:
            log_norm = 0.0
        else:
            raise ValueError(
                f"the support given the prompt exceeds exact_limit={exact_limit}; the prompt's "
                "marginal probability (needed for log p(x | prompt)) cannot be enumerated"
            )
    stats = _stats(x, oracle, table, mode, log_norm, scale)
    reps = []
    for r in range(int(floor_repeats)):
        if table is not None:
            g = torch.Generator().manual_seed(int(seed) * 7919 + 104729 + r)
            xs = table[0][
                torch.multinomial(table[1].exp(), n_samples, replacement=True, generator=g)
            ]
        else:
            xs = exact_samples(
                oracle, n_samples, prompt_row if P else None, seed=int(seed) * 7919 + 104729 + r
            )
        reps.append(_stats(xs, oracle, table, mode, log_norm, scale))
    floors = {}
    for s in _STATS:
        vals = np.array([rep[s] for rep in reps], dtype=np.float64)
        floors[s] = (
            float(vals.mean()) if len(vals) else math.nan,
            float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
        )
    return SamplerError(
        n_samples=n_samples,
        entropy=entropy,
        floors=floors,
        enumerable=table is not None,
        unit=unit,
        samples=x,
        **stats,
    )
