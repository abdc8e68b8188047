"""Decode traces and decode-order metrics: in which order a sampler commits, and at what cost.

:class:`TraceRecorder` is a ``generate`` callback that copies what each step did to the CPU;
:meth:`TraceRecorder.trace` stacks it into a :class:`Trace`. Every metric below is a pure
function of a trace (and, for the certificates, of the model that produced it).

Definitions (τ(i) the step at which position i was finalised, i.e. last committed):

- ``kendall_tau``: Kendall's τ-b between τ(i) and i over generated positions (1: strictly
  left to right; arXiv 2601.15593);
- ``afp``: generated tokens / steps that finalised at least one token (2601.15593);
- ``global_ar@k``: fraction of commits whose position is among the k left-most positions
  still masked before the step;
- ``local_ar@k``: fraction of commits whose k left neighbours were all known before the step
  (prompt or earlier commits) — the commit extends a known left-to-right span by one;
- ``frontier distance``: distance of each commit to the nearest token known before the step,
  and on which side that token lies; "effectively AR" decoding has distance 1 on the left;
- ``mean_jump``: mean |Δ position| between consecutive commits (ordered by step, then position).

The AR-ness@k definitions follow our reading of DiffuCoder (arXiv 2506.20639); they were
written from memory of the paper, not checked against its text, so compare numbers with
DiffuCoder's own only after checking the definitions there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from remask.analysis._util import call_log_probs, check_model

__all__ = [
    "DecodeOrder",
    "StepCertificates",
    "Trace",
    "TraceRecorder",
    "commit_steps",
    "decode_order_metrics",
    "step_certificates",
    "step_total_correlation",
]


@dataclass(frozen=True)
class Trace:
    """A recorded decode.

    Attributes
    ----------
    committed : (T, B, L) bool
        Positions written at each step.
    score : (T, B, L) float32 or None
    proposal : (T, B, L) int64 or None
    tokens : (T, B, L) int64 or None
        Canvas after each step.
    editable : (B, L) bool
        Positions the sampler was given to decode (masked at the start).
    attention_mask : (B, L) bool
        False on padding.
    final_tokens : (B, L) int64 or None
    nfe : (B,) int64 or None
    extra : dict
        Any other recorded info fields, stacked (T, ...).
    """

    committed: torch.Tensor
    editable: torch.Tensor
    attention_mask: torch.Tensor
    score: torch.Tensor | None = None
    proposal: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    final_tokens: torch.Tensor | None = None
    nfe: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.committed.shape[0]

    def canvas_before(self, t: int, mask_id: int) -> torch.Tensor:
        """The (B, L) canvas the model saw at step t (needs recorded ``tokens``)."""
        if self.tokens is None:
            raise ValueError("the trace has no tokens; record with TraceRecorder(tokens=True)")
        if t == 0:
            return torch.where(
                self.editable, torch.full_like(self.tokens[0], mask_id), self.tokens[0]
            )
        return self.tokens[t - 1]


class TraceRecorder:
    """Callback for ``remask.generate(..., callbacks=[recorder])`` that records each step.

    Parameters
    ----------
    fields : sequence of str
        Info fields to record every step (``committed`` is always recorded). A field the
        sampler's info lacks raises ValueError on the first step.
    tokens : bool
        Also record the canvas after each step (needed for :func:`step_certificates`).
    every : int
        Record every ``every``-th step only (``committed`` is then OR-ed over the skipped
        steps, so commit times are coarsened but no commit is lost).

    Examples
    --------
    >>> rec = TraceRecorder()
    >>> out = remask.generate(model, prompt, sampler, gen_length=32, callbacks=[rec])  # doctest: +SKIP
    >>> metrics = decode_order_metrics(rec.trace(out))  # doctest: +SKIP
    """

    def __init__(
        self,
        fields: Sequence[str] = ("committed", "score", "proposal"),
        *,
        tokens: bool = True,
        every: int = 1,
    ):
        if isinstance(fields, str):
            raise TypeError(f"fields must be a sequence of field names, got the string {fields!r}")
        self.fields = tuple(dict.fromkeys(("committed", *fields)))
        self.record_tokens = bool(tokens)
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.every = every
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded (to reuse the recorder for another run)."""
        self._rows: dict[str, list[torch.Tensor]] = {f: [] for f in self.fields}
        self._tokens: list[torch.Tensor] = []
        self._editable = self._attention = None
        self._pending: torch.Tensor | None = None
        self._count = 0

    def __call__(self, state, info) -> None:
        canvas = (
            state[0] if isinstance(state, tuple) and not hasattr(state, "canvas") else state.canvas
        )
        if self._editable is None:
            self._editable = canvas.editable.detach().cpu().clone()
            self._attention = canvas.attention_mask.detach().cpu().clone()
        committed = info.committed.detach().cpu()
        self._pending = committed.clone() if self._pending is None else self._pending | committed
        self._count += 1
        self._last = (state, canvas, info)
        if self._count % self.every:
            return
        self._flush(state, canvas, info)

    def _flush(self, state, canvas, info) -> None:
        for f in self.fields:
            if f == "committed":
                self._rows[f].append(self._pending)
                continue
            value = getattr(info, f, None)
            if value is None:
                raise ValueError(
                    f"the sampler's step info has no field {f!r}; it has {list(getattr(info, '_fields', []))}"
                )
            self._rows[f].append(value.detach().cpu().clone())
        if self.record_tokens:
            self._tokens.append(canvas.tokens.detach().cpu().clone())
        self._pending = None

    def trace(self, output=None) -> Trace:
        """Stack the recorded steps.

        Parameters
        ----------
        output : GenerateOutput, optional
            The result of the run, for final tokens, NFE and the attention mask.

        Returns
        -------
        Trace
        """
        if self._pending is not None and self._count:  # skipped tail steps under every > 1
            self._flush(*self._last)
        if not self._rows["committed"]:
            raise ValueError(
                "nothing was recorded: pass the recorder in generate(..., callbacks=[recorder])"
            )
        stacked = {f: torch.stack(v) for f, v in self._rows.items()}
        attention = self._attention
        final = nfe = None
        if output is not None:
            final = output.tokens.detach().cpu()
            nfe = output.nfe.detach().cpu()
            attention = output.attention_mask.detach().cpu()
        extra = {f: v for f, v in stacked.items() if f not in ("committed", "score", "proposal")}
        return Trace(
            committed=stacked["committed"],
            editable=self._editable,
            attention_mask=attention,
            score=stacked.get("score"),
            proposal=stacked.get("proposal"),
            tokens=torch.stack(self._tokens) if self._tokens else None,
            final_tokens=final,
            nfe=nfe,
            extra=extra,
        )


# ------------------------------------------------------------------------------ metrics
def commit_steps(trace: Trace) -> torch.Tensor:
    """Step at which each position was finalised (last committed), (B, L) int64; -1 if never."""
    T = trace.steps
    steps = torch.arange(T).view(T, 1, 1).expand_as(trace.committed)
    last = torch.where(trace.committed, steps, torch.full_like(steps, -1)).max(0).values
    return last


@dataclass(frozen=True)
class DecodeOrder:
    """Decode-order metrics of a trace (per row unless noted).

    Attributes
    ----------
    commit_step : (B, L) int64
        τ(i), -1 for positions never committed (prompt, padding).
    tokens_per_step : (T, B) int64
    kendall_tau : (B,) float64
    afp : (B,) float64
    global_ar : dict of int to (B,) float64
        ``global_ar[k]`` = global AR-ness@k.
    local_ar : dict of int to (B,) float64
    mean_jump : (B,) float64
    frontier_distance : list of (n_commits,) int arrays, one per row
        Distance of each commit to the nearest known token before its step (inf as -1 when
        nothing was known).
    frontier_left : (B,) float64
        Fraction of commits whose nearest known token lies on the left (ties count left).
    mean_frontier_distance : (B,) float64
    edit_rate : (B,) float64
        Extra commits per generated position (0 for samplers that never rewrite).
    """

    commit_step: np.ndarray
    tokens_per_step: np.ndarray
    kendall_tau: np.ndarray
    afp: np.ndarray
    global_ar: dict
    local_ar: dict
    mean_jump: np.ndarray
    frontier_distance: list
    frontier_left: np.ndarray
    mean_frontier_distance: np.ndarray
    edit_rate: np.ndarray

    def summary(self) -> dict:
        """Batch means (JSON-ready)."""
        out = {
            "kendall_tau": float(np.nanmean(self.kendall_tau)),
            "afp": float(np.nanmean(self.afp)),
            "mean_jump": float(np.nanmean(self.mean_jump)),
            "mean_frontier_distance": float(np.nanmean(self.mean_frontier_distance)),
            "frontier_left": float(np.nanmean(self.frontier_left)),
            "edit_rate": float(np.nanmean(self.edit_rate)),
            "tokens_per_step": float(self.tokens_per_step[self.tokens_per_step > 0].mean())
            if (self.tokens_per_step > 0).any()
            else math.nan,
        }
        for k, v in self.global_ar.items():
            out[f"global_ar@{k}"] = float(np.nanmean(v))
        for k, v in self.local_ar.items():
            out[f"local_ar@{k}"] = float(np.nanmean(v))
        return out


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x)
    if n < 2:
        return math.nan
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(n, 1)
    dx, dy = dx[iu], dy[iu]
    num = float((dx * dy).sum())
    den = math.sqrt(float((dx != 0).sum()) * float((dy != 0).sum()))
    return num / den if den > 0 else math.nan


def decode_order_metrics(trace: Trace, *, ks: Sequence[int] = (1, 2, 4)) -> DecodeOrder:
    """AR-ness and decode-order metrics of a recorded trace (module docstring).

    Parameters
    ----------
    trace : Trace
    ks : sequence of int
        The k of AR-ness@k.

    Returns
    -------
    DecodeOrder
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace, got {type(trace).__name__}")
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive, got {ks!r}")
    C = trace.committed.numpy()  # (T, B, L)
    T, B, L = C.shape
    tau = commit_steps(trace).numpy()
    editable = trace.editable.numpy()
    real = trace.attention_mask.numpy()
    known0 = real & ~editable
    kt, afp, jump, fl, mfd, edits = (np.full(B, np.nan) for _ in range(6))
    gar = {k: np.full(B, np.nan) for k in ks}
    lar = {k: np.full(B, np.nan) for k in ks}
    fdist = []
    for b in range(B):
        gen = np.nonzero(editable[b])[0]
        if len(gen) >= 2:
            kt[b] = _kendall_tau_b(tau[b, gen].astype(np.float64), gen.astype(np.float64))
        finalising = set(tau[b, gen][tau[b, gen] >= 0].tolist())
        afp[b] = len(gen) / len(finalising) if finalising else np.nan
        edits[b] = (C[:, b, gen].sum() - len(gen)) / len(gen) if len(gen) else np.nan
        known = known0[b].copy()
        order, dists, left = [], [], []
        hits_g = {k: 0 for k in ks}
        hits_l = {k: 0 for k in ks}
        n_commits = 0
        for t in range(T):
            pos = np.nonzero(C[t, b])[0]
            if not len(pos):
                continue
            kidx = np.nonzero(known & real[b])[0]
            still = np.nonzero(~known & editable[b])[0]  # masked before the step, in order
            for p in pos:
                n_commits += 1
                order.append(p)
                if len(kidx):
                    dl = p - kidx[kidx < p].max() if (kidx < p).any() else np.inf
                    dr = kidx[kidx > p].min() - p if (kidx > p).any() else np.inf
                    dists.append(min(dl, dr))
                    left.append(dl <= dr)
                else:
                    dists.append(-1)
                for k in ks:
                    if p in still[:k]:
                        hits_g[k] += 1
                    if p - k >= 0 and known[p - k : p].all():
                        hits_l[k] += 1
            known[pos] = True
        fdist.append(np.asarray([d if np.isfinite(d) else -1 for d in dists], dtype=np.int64))
        if n_commits:
            for k in ks:
                gar[k][b] = hits_g[k] / n_commits
                lar[k][b] = hits_l[k] / n_commits
            valid = [d for d in dists if d > 0 and np.isfinite(d)]
            mfd[b] = float(np.mean(valid)) if valid else np.nan
            fl[b] = float(np.mean(left)) if left else np.nan
            jump[b] = float(np.mean(np.abs(np.diff(order)))) if len(order) > 1 else np.nan
    return DecodeOrder(
        commit_step=tau,
        tokens_per_step=C.sum(-1),
        kendall_tau=kt,
        afp=afp,
        global_ar=gar,
        local_ar=lar,
        mean_jump=jump,
        frontier_distance=fdist,
        frontier_left=fl,
        mean_frontier_distance=mfd,
        edit_rate=edits,
    )


# ------------------------------------------------------------------------------ certificates
@dataclass(frozen=True)
class StepCertificates:
    """Per-step coherence certificates of the committed sets: upper bounds on what committing
    each step's set from the product of its marginals can cost (its total correlation).

    All arrays are (T, B) float64; NaN where a step committed nothing in that row.

    Attributes
    ----------
    n : (T, B) int64
        Tokens committed.
    eb_proxy : (T, B)
        ``Σ H_i − max H_i`` (nats): the EB-sampler bound, ≥ TC of the committed set.
    fast_dllm_factor : (T, B)
        ``(n + 1)(1 − c_(n))`` with c_(n) the smallest confidence committed.
    frechet : (T, B)
        ``max(0, Σ c_i − (n − 1))``: lower bound on the probability that all committed
        argmaxes are jointly right.
    min_gap : (T, B)
        Smallest distance between two committed positions (DUS spacing); inf for n = 1.
    """

    n: np.ndarray
    eb_proxy: np.ndarray
    fast_dllm_factor: np.ndarray
    frechet: np.ndarray
    min_gap: np.ndarray


@torch.no_grad()
def step_certificates(trace: Trace, model, *, batch_size: int | None = 64) -> StepCertificates:
    """Recompute the model's marginals at every step of a trace and certify each committed set.

    Confidence c_i is the model's probability of the token finally committed at i in that
    step, entropy H_i that of its marginal; both from one forward pass on the canvas the
    model saw (reconstructed from the recorded tokens).

    Parameters
    ----------
    trace : Trace
        Recorded with ``tokens=True``.
    model : Denoiser
        The denoiser that produced it.
    batch_size : int, optional

    Returns
    -------
    StepCertificates
    """
    check_model(model)
    T, B, L = trace.committed.shape
    shape = (T, B)
    n = trace.committed.sum(-1).numpy()
    eb, fac, fre, gap = (np.full(shape, np.nan) for _ in range(4))
    for t in range(T):
        if not bool(trace.committed[t].any()):
            continue
        canvas = trace.canvas_before(t, model.mask_id)
        logp = call_log_probs(
            model, canvas, trace.attention_mask, batch_size=batch_size
        )  # (B, L, V)
        H = -(torch.where(logp > -math.inf, logp.exp() * logp, torch.zeros_like(logp))).sum(
            -1
        )  # (B, L)
        chosen = trace.tokens[t].clamp(0, model.vocab_size - 1)
        conf = logp.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).exp()  # (B, L)
        for b in range(B):
            sel = trace.committed[t, b]
            k = int(sel.sum())
            if not k:
                continue
            h, c = H[b, sel], conf[b, sel]
            eb[t, b] = float(h.sum() - h.max())
            fac[t, b] = float((k + 1) * (1 - c.min()))
            fre[t, b] = max(0.0, float(c.sum()) - (k - 1))
            pos = torch.nonzero(sel).flatten()
            gap[t, b] = float(pos.diff().min()) if k > 1 else math.inf
    return StepCertificates(n=n, eb_proxy=eb, fast_dllm_factor=fac, frechet=fre, min_gap=gap)


def step_total_correlation(
    trace: Trace, oracle, *, unit: str = "nats", max_states: int = 2**20
) -> np.ndarray:
    """Exact TC of each committed set given the canvas before its step, (T, B) float64.

    Only for exact oracles (and small committed sets); pairs with :func:`step_certificates`
    to calibrate the EB proxy and the Fréchet bound against the truth.
    """
    from remask.analysis.exact import total_correlation

    T, B, L = trace.committed.shape
    out = np.full((T, B), np.nan)
    for t in range(T):
        canvas = trace.canvas_before(t, oracle.mask_id)
        for b in range(B):
            pos = torch.nonzero(trace.committed[t, b]).flatten().tolist()
            if len(pos) >= 1:
                out[t, b] = total_correlation(
                    oracle, canvas[b], pos, unit=unit, max_states=max_states
                ).tc[0]
    return out
