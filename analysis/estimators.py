"""Clamp-and-rerun estimators that work on any Denoiser: pairwise CMI and the martingale test.

Both estimators mix the model's conditionals of the other positions over values of a
clamped position i:

    p̄_j = Σ_a w_a p_θ(x_j | c, x_i = a)

- :func:`pairwise_cmi`: ``I_θ(i; j | c) = Σ_a w_a KL(p_θ(x_j | c, a) ‖ p̄_j)
  = H(p̄_j) − Σ_a w_a H(p_θ(x_j | c, a))``. One clamped forward pass gives the conditional of
  *every* j, so a whole row I(i; ·) costs one pass per candidate a.
- :func:`marginal_consistency` (the martingale test): ``KL(p̄_j ‖ p_θ(x_j | c))``. For a
  coherent joint (any exact oracle) ``p̄_j = p(x_j | c)`` exactly.

Candidates and weights:

- exact (default): every token of positive probability, ``w_a = p_θ(a | c)`` — exact for an
  oracle; refused above ``max_full_vocab`` tokens (use one of the next two);
- ``top_k``: the k most likely tokens, weights renormalised; the mass they miss is
  reported (biased downward for flat, far-away marginals);
- ``n_samples``: ``a^(m) ~ p_θ(· | c)``, weights 1/M (consistent; O(1/M) plug-in bias, for
  which ``kl_noise`` gives the expected size under consistency).

Scale: the clamped canvases go through the model ``batch_size`` at a time and each batch's
logits (in the model's dtype, on its device) are reduced position chunk by position chunk
to O(B L) float64 summaries (float64 chunks for V ≤ 4096, float32 above with float64
accumulation); the CMI is computed as ``Σ_a w_a KL(p_a ‖ p̄)``, a sum of non-negative terms.
:func:`cmi_matrix` computes the CMI alone, at the requested columns only, each clamped
prediction read once where it lies by a fused float64 kernel (``analysis/_fused.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from remask.analysis import _fused, _util
from remask.analysis._util import (
    as_positions,
    as_tokens,
    call_logits,
    check_model,
    log_probs,
    position_chunks,
    rowdot,
    unit_scale,
    work_log_probs,
)

__all__ = [
    "MarginalConsistency",
    "PairwiseCMI",
    "cmi_matrix",
    "marginal_consistency",
    "one_shot_logits",
    "pairwise_cmi",
]


def _prepare(model, tokens, attention_mask):
    check_model(model)
    tokens = as_tokens(tokens)
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != tokens.shape:
            raise ValueError(
                f"attention_mask must be a bool tensor of shape {tuple(tokens.shape)}, "
                f"got {getattr(attention_mask, 'shape', attention_mask)!r}"
            )
        attention_mask = attention_mask.bool()
    return tokens, attention_mask


def _check_masked(tokens, mask_id, positions, what):
    for p in positions:
        if bool((tokens[:, p] != mask_id).any()):
            raise ValueError(
                f"{what} position {p} must be masked (hold mask_id={mask_id}) in every row"
            )


@dataclass
class _Mixture:
    """O(B L) float64 summaries of the mixture ``p̄_j = Σ_a w_a p(x_j | c, a)`` (no (B, L, V) tensor)."""

    h_pbar: torch.Tensor  # (B, L) H(p̄_j)
    cmi: (
        torch.Tensor
    )  # (B, L) Σ_a w_a KL(p(x_j | c, a) ‖ p̄_j) (= H(p̄_j) − Σ_a w_a H(p_a) when Σ w = 1)
    mean_entropy: torch.Tensor  # (B, L) Σ_a w_a H(p(x_j | c, a))
    demask: torch.Tensor  # (B, L) Σ_a w_a TV(p(x_j | c, a), p(x_j | c))
    kl: torch.Tensor  # (B, L) KL(p̄_j / Σp̄_j ‖ p(x_j | c))
    tv: torch.Tensor  # (B, L) TV(p̄_j / Σp̄_j, p(x_j | c))
    noise: torch.Tensor | None  # (B, L) Σ_v Var_a[p_a(v)] / (2 N p̄(v)) (sampled mode)
    missed_mass: torch.Tensor  # (B,)
    n_candidates: torch.Tensor  # (B,)
    n_draws: int


def one_shot_logits(
    model, tokens, attention_mask=None, batch_size: int | None = 64
) -> torch.Tensor:
    """The one-shot logits of canvases, in row batches: what the clamped rows are compared with.

    Parameters
    ----------
    model : Denoiser
    tokens : (B, L) int64
    attention_mask : (B, L) bool, optional
    batch_size : int, optional
        Rows per forward pass (all at once when None).

    Returns
    -------
    (B, L, V)
        In the model's dtype, on its device. Pass it as ``logits0`` to several
        :func:`pairwise_cmi` calls on the same canvases to run this forward once.
    """
    step = tokens.shape[0] if batch_size is None else max(1, int(batch_size))
    out = []
    for s in range(0, tokens.shape[0], step):
        out.append(
            call_logits(
                model,
                tokens[s : s + step],
                None if attention_mask is None else attention_mask[s : s + step],
            )
        )
    return torch.cat(out, 0) if len(out) > 1 else out[0]


def _candidates(pi: torch.Tensor, *, top_k, n_samples, g, max_full_vocab):
    """The clamped values of one position and their weights (module docstring).

    Parameters
    ----------
    pi : (B, V) float64
        ``p_θ(x_i | c)`` per row.

    Returns
    -------
    rows : (N,) int64
        The row of each clamped canvas (a row's candidates are contiguous).
    cand : (N,) int64
        Its clamped token.
    w : (N,) float64
        Its weight.
    missed : (B,) float64
        Mass of x_i outside the candidates.
    ncand : (B,) int64
        Candidates per row.
    """
    B, V = pi.shape
    if top_k is not None and n_samples is not None:
        raise ValueError("give at most one of top_k and n_samples")
    if n_samples is not None:
        if isinstance(n_samples, bool) or int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
        # M draws of x_i ~ p(x_i | c); equal draws share one clamped pass, weighted by
        # their empirical frequency (the same estimator, at most V passes per row).
        n = int(n_samples)
        draws = torch.multinomial(pi.float(), n, replacement=True, generator=g)  # (B, M)
        counts = torch.zeros(B, V, dtype=torch.float64).scatter_add_(
            1, draws, torch.ones(B, n, dtype=torch.float64)
        )
        cand = torch.arange(V).expand(B, V)
        w = counts / n
        missed = torch.zeros(B, dtype=torch.float64)
    elif top_k is not None:
        k = int(top_k)
        if not 1 <= k <= V:
            raise ValueError(f"top_k must be in [1, {V}], got {top_k!r}")
        vals, cand = pi.topk(k, dim=-1)  # (B, k)
        missed = (1.0 - vals.sum(-1)).clamp_min(0.0)
        w = vals / vals.sum(-1, keepdim=True)
    else:
        if V > max_full_vocab:
            raise ValueError(
                f"exact clamping over the full vocabulary needs {V} forward passes per row "
                f"(max_full_vocab={max_full_vocab}); pass top_k or n_samples"
            )
        cand = torch.arange(V).expand(B, V)
        w = pi
        missed = torch.zeros(B, dtype=torch.float64)
    keep = w > 0
    rows, col = torch.nonzero(keep, as_tuple=True)
    return rows, cand[rows, col], w[rows, col], missed, keep.sum(-1)


def _mixture(
    model,
    tokens,
    attention_mask,
    positions,
    *,
    top_k,
    n_samples,
    seed,
    batch_size,
    max_full_vocab,
    logits0=None,
    bar=None,
) -> _Mixture:
    """Clamp ``positions`` (one exactly/top-k, or several by sampled rollouts) and mix.

    Clamped canvases go through the model ``batch_size`` at a time; the rows whose candidates
    fit in one batch are reduced position chunk by position chunk straight from that batch's
    logits (nothing of size (B, L, V) is accumulated); a row with more candidates than
    ``batch_size`` accumulates its p̄ (L, V) across batches (float64 when L·V ≤ CHUNK_ELEMENTS, else
    float32).
    """
    B, L = tokens.shape
    V = model.vocab_size
    if top_k is not None and n_samples is not None:
        raise ValueError("give at most one of top_k and n_samples")
    if logits0 is None:
        logits0 = one_shot_logits(
            model, tokens, attention_mask, batch_size
        )  # (B, L, V) model dtype
    g = torch.Generator().manual_seed(int(seed))
    if n_samples is not None:
        n = int(n_samples)
        if n < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
    if n_samples is not None and len(positions) > 1:
        # Sequential rollouts: each clamped position is drawn from the model's conditional
        # given the context and the earlier draws.
        canvas = tokens.repeat_interleave(n, 0)  # (B n, L)
        am = None if attention_mask is None else attention_mask.repeat_interleave(n, 0)
        for r, pos in enumerate(positions):
            if r == 0:
                lp = log_probs(logits0[:, pos]).cpu().repeat_interleave(n, 0)  # (B n, V)
            else:
                lp = torch.cat(
                    [
                        log_probs(
                            one_shot_logits(
                                model,
                                canvas[s : s + n],
                                None if am is None else am[s : s + n],
                                batch_size,
                            )[:, pos]
                        ).cpu()
                        for s in range(0, B * n, n)
                    ],
                    0,
                )
            canvas[:, pos] = torch.multinomial(lp.exp().float(), 1, generator=g)[:, 0]
        w = torch.full((B * n,), 1.0 / n, dtype=torch.float64)
        rows = torch.arange(B).repeat_interleave(n)
        missed = torch.zeros(B, dtype=torch.float64)
        ncand = torch.full((B,), n)
    else:
        if len(positions) != 1:
            raise ValueError(
                f"clamping several positions {positions} needs n_samples (sampled rollouts)"
            )
        pos = positions[0]
        pi = log_probs(logits0[:, pos]).exp().cpu()  # (B, V) float64: O(B V)
        rows, cand, w, missed, ncand = _candidates(
            pi, top_k=top_k, n_samples=n_samples, g=g, max_full_vocab=max_full_vocab
        )
        canvas = tokens[rows].clone()
        canvas[:, pos] = cand
        am = None if attention_mask is None else attention_mask[rows]
    sampled = n_samples is not None
    out = {
        k: torch.zeros(B, L, dtype=torch.float64) for k in ("h", "ment", "dem", "kl", "tv", "cmi")
    }
    out["noise"] = torch.zeros(B, L, dtype=torch.float64) if sampled else None
    step = len(rows) if batch_size is None else max(1, int(batch_size))
    counts = torch.bincount(rows, minlength=B).tolist()
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    b = 0
    while b < B:
        if counts[b] > step:  # one row, more candidates than a batch: accumulate p̄ over batches
            _accumulate_row(
                model,
                canvas,
                am,
                w,
                starts[b],
                starts[b + 1],
                step,
                logits0[b],
                out,
                b,
                sampled,
                n_samples,
                bar,
            )
            b += 1
            continue
        e = b  # pack whole rows into one forward pass
        while e < B and counts[e] <= step and starts[e + 1] - starts[b] <= step:
            e += 1
        lo, hi = starts[b], starts[e]
        if hi > lo:
            logits = call_logits(
                model, canvas[lo:hi], None if am is None else am[lo:hi]
            )  # (m, L, V)
            ws = w[lo:hi].to(logits.device)
            for sl in position_chunks(hi - lo, L, V):
                lp = work_log_probs(logits[:, sl])  # (m, c, V), bounded
                p = lp.exp()
                wl = ws.to(p.dtype)
                p0l = work_log_probs(logits0[b:e, sl].to(logits.device))  # (g, c, V)
                c = p.shape[1]
                pbar = torch.empty(e - b, c, V, dtype=p.dtype, device=p.device)
                second = torch.empty_like(pbar) if sampled else None
                ment = torch.empty(e - b, c, dtype=torch.float64, device=p.device)  # O(c) summaries
                dem, cmi = torch.empty_like(ment), torch.empty_like(ment)
                for g in range(e - b):  # the candidates of one row are contiguous
                    r = slice(starts[b + g] - lo, starts[b + g + 1] - lo)
                    pg, lpg, wg = p[r], lp[r], wl[r]  # (n, c, V), (n,)
                    pbar[g] = (wg @ pg.reshape(len(wg), -1)).view(c, V)  # Σ_a w_a p_a, one GEMV
                    if sampled:
                        second[g] = (wg @ (pg * pg).reshape(len(wg), -1)).view(c, V)
                    w64 = wg.double()
                    h = -rowdot(pg, lpg)  # (n, c) entropies, float64
                    ment[g] = w64 @ h
                    dem[g] = w64 @ (0.5 * (pg - p0l[g].exp()).abs().sum(-1).double())
                    # The CMI as Σ_a w_a KL(p_a ‖ p̄): a sum of non-negative terms, free of the
                    # cancellation of H(p̄) − Σ_a w_a H(p_a) in float32 at large V.
                    logpbar = (
                        (pbar[g] / pbar[g].sum(-1, keepdim=True))
                        .clamp_min(torch.finfo(p.dtype).tiny)
                        .log()
                    )
                    cmi[g] = w64 @ rowdot(pg, lpg - logpbar)
                del lp, p
                _summarise(pbar, second, p0l, ment, dem, out, slice(b, e), sl, n_samples, cmi)
            del logits
        if bar is not None:
            bar.update(hi - lo)
        b = e
    return _Mixture(
        out["h"],
        out["cmi"],
        out["ment"],
        out["dem"],
        out["kl"],
        out["tv"],
        out["noise"],
        missed,
        ncand,
        int(n_samples or 0),
    )


def _summarise(
    pbar, second, p0l, ment, dem, out, rows: slice, sl: slice, n_samples, cmi=None
) -> None:
    """Write the O(B L) summaries of one (g, c, V) chunk of p̄ into ``out``."""
    h = _entropy_p(pbar)
    out["h"][rows, sl] = h.cpu()
    out["cmi"][rows, sl] = (h - ment if cmi is None else cmi).cpu()
    out["ment"][rows, sl] = ment.cpu()
    out["dem"][rows, sl] = dem.cpu()
    pn = pbar / pbar.sum(-1, keepdim=True)
    logpn = pn.clamp_min(1e-300).log()
    out["kl"][rows, sl] = (
        torch.where(pn > 0, pn * (logpn - p0l), torch.zeros_like(pn))
        .sum(-1, dtype=torch.float64)
        .cpu()
    )
    out["tv"][rows, sl] = (0.5 * (pn - p0l.exp()).abs().sum(-1, dtype=torch.float64)).cpu()
    if second is not None:
        var = (second - pbar**2).clamp_min(0.0)
        out["noise"][rows, sl] = (
            torch.where(
                pn > 0, var / (2 * int(n_samples) * pn.clamp_min(1e-300)), torch.zeros_like(pn)
            )
            .sum(-1, dtype=torch.float64)
            .cpu()
        )


def _accumulate_row(
    model, canvas, am, w, lo, hi, step, logits0_b, out, b, sampled, n_samples, bar
) -> None:
    """One row whose candidates span several forward passes: p̄ (L, V) accumulated across them."""
    L, V = logits0_b.shape
    dev = logits0_b.device
    acc_dtype = torch.float64 if L * V <= _util.CHUNK_ELEMENTS else torch.float32
    pbar = torch.zeros(L, V, dtype=acc_dtype, device=dev)
    second = torch.zeros_like(pbar) if sampled else None
    ment = torch.zeros(1, L, dtype=torch.float64, device=dev)
    dem = torch.zeros(1, L, dtype=torch.float64, device=dev)
    for s in range(lo, hi, step):
        e = min(hi, s + step)
        logits = call_logits(model, canvas[s:e], None if am is None else am[s:e])  # (m, L, V)
        ws = w[s:e].to(logits.device)
        for sl in position_chunks(e - s, L, V):
            lp = work_log_probs(logits[:, sl])
            p = lp.exp()
            wl = ws.to(p.dtype)
            pbar[sl] += (wl.view(-1, 1, 1) * p).sum(0).to(acc_dtype)
            if second is not None:
                second[sl] += (wl.view(-1, 1, 1) * p * p).sum(0).to(acc_dtype)
            h = -rowdot(p, lp)
            ment[0, sl] += (ws[:, None] * h).sum(0)
            p0 = work_log_probs(logits0_b[sl]).exp()
            dem[0, sl] += (ws[:, None] * 0.5 * (p - p0).abs().sum(-1, dtype=torch.float64)).sum(0)
            del lp, p, h
        del logits
        if bar is not None:
            bar.update(e - s)
    for sl in position_chunks(1, L, V):
        p0l = work_log_probs(logits0_b[sl]).double().unsqueeze(0)
        _summarise(
            pbar[sl].double().unsqueeze(0),
            None if second is None else second[sl].double().unsqueeze(0),
            p0l,
            ment[:, sl],
            dem[:, sl],
            out,
            slice(b, b + 1),
            sl,
            n_samples,
        )


def _entropy_p(p):
    return -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(
        -1, dtype=torch.float64
    )


# ------------------------------------------------------------------------------ CMI
@dataclass(frozen=True)
class PairwiseCMI:
    """Clamp-and-rerun conditional mutual information of the model's conditionals.

    Attributes
    ----------
    cmi : (B, L) or (B,) float64
        ``I_θ(i; j | c)`` for every j (row form; NaN at i and at observed/padding positions),
        or at the requested j.
    reverse : (B,) float64 or None
        ``I_θ(j; i | c)`` (clamping j, reading i), when j is given.
    asymmetry : (B,) float64 or None
        ``|I(i; j) − I(j; i)|``; 0 for a coherent joint with exact clamping.
    demask : (B, L) or (B,) float64
        DEMASK's dependency ``D_ij = Σ_a w_a TV(p(x_j | c, a), p(x_j | c))``.
    missed_mass : (B,) float64
        Probability of x_i outside the candidates (top-k; 0 otherwise).
    missed_mass_reverse : (B,) float64 or None
    n_candidates : (B,) int64
        Clamped forward passes per row.
    unit : str
    """

    cmi: np.ndarray
    reverse: np.ndarray | None
    asymmetry: np.ndarray | None
    demask: np.ndarray
    missed_mass: np.ndarray
    missed_mass_reverse: np.ndarray | None
    n_candidates: np.ndarray
    unit: str


def _cmi_row(m: _Mixture, masked: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    cmi = m.cmi.clamp_min(0.0)  # (B, L)
    nan = torch.full_like(cmi, math.nan)
    valid = masked.clone()
    valid[:, i] = False
    return torch.where(valid, cmi, nan), torch.where(valid, m.demask, nan)


def pairwise_cmi(
    model,
    tokens,
    i: int,
    j: int | None = None,
    *,
    top_k: int | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    attention_mask=None,
    batch_size: int | None = 64,
    unit: str = "nats",
    max_full_vocab: int = 4096,
    progress: bool = False,
    logits0=None,
) -> PairwiseCMI:
    """Conditional mutual information between masked positions by clamping.

    Parameters
    ----------
    model : Denoiser
    tokens : (L,) or (B, L) int64
        Canvases; position i (and j) must be masked in every row.
    i : int
        The clamped position.
    j : int, optional
        A second masked position; when given, the result is at j and the reverse direction
        I(j; i) is computed too (clamping j). Otherwise the whole row I(i; ·).
    top_k, n_samples : int, optional
        Candidate rule (module docstring); exact full-vocabulary clamping by default.
    seed : int
        Seed of the sampled candidates.
    attention_mask : (B, L) bool, optional
    batch_size : int, optional
        Clamped canvases per forward pass.
    unit : {"nats", "bits"}
    max_full_vocab : int
        Largest V clamped exhaustively.
    progress : bool
        A progress bar over the clamped canvases.
    logits0 : (B, L, V) tensor, optional
        :func:`one_shot_logits` of these canvases (same ``attention_mask``), when several
        positions of the same canvases are clamped: the one-shot forward then runs once.

    Returns
    -------
    PairwiseCMI

    Notes
    -----
    Cost for B rows of length L, vocabulary V and K candidates per row (K = k with
    ``top_k``, the distinct draws ≤ M with ``n_samples``, the support ≤ V when exact):

    - forward passes: B (one-shot) + B K clamped canvases, ``batch_size`` per pass (twice
      with ``j``);
    - memory: the one-shot logits (B, L, V) and one batch of clamped logits
      (``batch_size``, L, V), both in the model's dtype; working chunks of at most
      2**21 elements; O(B L) float64 summaries. A row with K > ``batch_size`` also keeps
      its mixture p̄ (L, V) (float32 when L V > 2**21);
    - arithmetic beyond the forwards: O(B K L V).
    """
    tokens, attention_mask = _prepare(model, tokens, attention_mask)
    L = tokens.shape[1]
    (i,) = as_positions([i], L, name="i")
    pos = [i] if j is None else as_positions([i, j], L, name="(i, j)")
    _check_masked(tokens, model.mask_id, pos, "clamped")
    scale = unit_scale(unit)
    masked = tokens == model.mask_id
    if attention_mask is not None:
        masked &= attention_mask
    kw = dict(
        top_k=top_k,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        max_full_vocab=max_full_vocab,
    )
    if logits0 is None:
        logits0 = one_shot_logits(
            model, tokens, attention_mask, batch_size
        )  # (B, L, V) model dtype
    kw["logits0"] = logits0
    from tqdm.auto import tqdm

    bar = tqdm(desc=f"cmi clamp {i}", disable=not progress, leave=False, unit="canvas")
    kw["bar"] = bar
    m = _mixture(model, tokens, attention_mask, [i], **kw)
    row, dem = _cmi_row(m, masked, i)
    if j is None:
        bar.close()
        return PairwiseCMI(
            cmi=(row * scale).numpy(),
            reverse=None,
            asymmetry=None,
            demask=dem.numpy(),
            missed_mass=m.missed_mass.numpy(),
            missed_mass_reverse=None,
            n_candidates=m.n_candidates.numpy(),
            unit=unit,
        )
    mr = _mixture(model, tokens, attention_mask, [j], **{**kw, "seed": seed + 1})
    bar.close()
    rrow, _ = _cmi_row(mr, masked, j)
    fwd, rev = row[:, j] * scale, rrow[:, i] * scale
    return PairwiseCMI(
        cmi=fwd.numpy(),
        reverse=rev.numpy(),
        asymmetry=(fwd - rev).abs().numpy(),
        demask=dem[:, j].numpy(),
        missed_mass=m.missed_mass.numpy(),
        missed_mass_reverse=mr.missed_mass.numpy(),
        n_candidates=m.n_candidates.numpy(),
        unit=unit,
    )


def cmi_matrix(
    model,
    tokens,
    positions=None,
    *,
    columns="masked",
    top_k: int | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    attention_mask=None,
    batch_size: int | None = 64,
    unit: str = "nats",
    max_full_vocab: int = 4096,
    progress: bool = False,
) -> np.ndarray:
    """Matrix ``I_θ(i; j | c)`` over masked positions, one clamped row per i.

    Row i is :func:`pairwise_cmi`'s ``cmi`` for i (the same candidates, weights and seed), but
    only the CMI is computed, and only at the requested columns: each clamped canvas's
    prediction at a column j is read once, in a fused float64 pass over the vocabulary
    (``analysis/_fused.py``), and no DEMASK dependency, martingale KL or (B, L, V) tensor is
    formed.

    Parameters
    ----------
    model : Denoiser
    tokens : (L,) or (B, L) int64
    positions : sequence of int, optional
        Positions to clamp (rows); default every position masked in all rows.
    columns : {"masked", "positions"} or sequence of int
        Columns j to compute: every position masked in some row (default), only the clamped
        ``positions`` (an R × R matrix, the cheapest: the cost scales with the columns), or
        the given ones.
    top_k, n_samples, seed, attention_mask, batch_size, unit, max_full_vocab, progress
        As :func:`pairwise_cmi`.

    Returns
    -------
    (B, L, L) float64
        Row i holds I(i; ·); NaN for rows not computed, columns not requested, the diagonal,
        and columns not masked in that row. Its asymmetry ``|M − Mᵀ|`` measures the
        incoherence of the conditionals.

    Notes
    -----
    Cost for R clamped positions, C columns and K candidates per row (as
    :func:`pairwise_cmi`):

    - forward passes: B (one-shot, shared by the rows) + R B K clamped canvases,
      ``batch_size`` per pass;
    - memory: the one-shot logits at the R positions (B, R, V) and one batch of clamped
      logits (``batch_size``, L, V), both in the model's dtype; working chunks of at most
      2**21 elements widened to float32; a row with K > ``batch_size`` candidates also
      keeps its (K, C, V) clamped logits in the model's dtype; the (B, L, L) float64 result;
    - arithmetic beyond the forwards: O(R B K C V), one ``exp`` per candidate and element
      twice (normaliser, mixture) and one ``log`` per element of the mixture.
    """
    tokens, attention_mask = _prepare(model, tokens, attention_mask)
    B, L = tokens.shape
    if positions is None:
        positions = [p for p in range(L) if bool((tokens[:, p] == model.mask_id).all())]
    positions = as_positions(positions, L)
    _check_masked(tokens, model.mask_id, positions, "clamped")
    scale = unit_scale(unit)
    masked = tokens == model.mask_id
    if attention_mask is not None:
        masked &= attention_mask
    if isinstance(columns, str):
        if columns == "masked":
            cols = masked.any(0).nonzero()[:, 0].tolist()
        elif columns == "positions":
            cols = list(positions)
        else:
            raise ValueError(f"columns must be 'masked', 'positions' or ints, got {columns!r}")
    else:
        cols = as_positions(columns, L, name="columns")
    cols = sorted(cols)
    step = B if batch_size is None else max(1, int(batch_size))
    # The one-shot forward is the same for every clamped row: run it once, keep its R rows.
    sel = torch.tensor(positions)
    logits0 = one_shot_logits(model, tokens, attention_mask, batch_size)
    logits0 = logits0[:, sel.to(logits0.device)]  # (B, R, V) model dtype
    out = torch.full((B, L, L), math.nan, dtype=torch.float64)
    cols_t = torch.tensor(cols, dtype=torch.int64)
    from tqdm.auto import tqdm

    bar = tqdm(desc="cmi_matrix", disable=not progress, leave=False, unit="canvas")
    for r, i in enumerate(positions):
        pi = log_probs(logits0[:, r]).exp().cpu()  # (B, V) float64
        g = torch.Generator().manual_seed(int(seed))  # pairwise_cmi's draws for this row
        rows, cand, w, _, _ = _candidates(
            pi, top_k=top_k, n_samples=n_samples, g=g, max_full_vocab=max_full_vocab
        )
        canvas = tokens[rows].clone()
        canvas[:, i] = cand
        am = None if attention_mask is None else attention_mask[rows]
        cmi = _clamped_cmi(model, canvas, am, rows, w, cols_t, B, step, bar)  # (B, C)
        valid = masked[:, cols_t].clone()
        valid[:, cols_t == i] = False
        out[:, i, cols_t] = torch.where(valid, cmi.clamp_min(0.0) * scale, math.nan)
    bar.close()
    return out.numpy()


def _clamped_cmi(model, canvas, am, rows, w, cols, B: int, step: int, bar) -> torch.Tensor:
    """``Σ_a w_a KL(p_a ‖ p̄)`` at ``cols`` for each row's contiguous candidates, (B, C) float64.

    Whole rows are packed into passes of at most ``step`` canvases; a row with more
    candidates runs alone over several passes, its (K, C, V) logits at ``cols`` kept.
    """
    C = len(cols)
    out = torch.full((B, C), math.nan, dtype=torch.float64)
    counts = torch.bincount(rows, minlength=B).tolist()
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)

    def reduce(b: int, x: torch.Tensor, at: torch.Tensor, wb: torch.Tensor) -> None:
        out[b] = _fused.mixture_cmi(x, at, wb / wb.sum())[:, 0]  # x (K, ·, V), at (C,)

    b = 0
    while b < B:
        if counts[b] > step:  # one row over several passes: keep its columns' logits
            lo, hi = starts[b], starts[b + 1]
            parts = []
            for s in range(lo, hi, step):
                e = min(hi, s + step)
                logits = call_logits(model, canvas[s:e], None if am is None else am[s:e])
                parts.append(logits[:, cols.to(logits.device)])  # (m, C, V) model dtype
                del logits
                bar.update(e - s)
            reduce(b, torch.cat(parts, 0), torch.arange(C), w[lo:hi])
            b += 1
            continue
        e = b  # pack whole rows into one forward pass
        while e < B and counts[e] <= step and starts[e + 1] - starts[b] <= step:
            e += 1
        lo, hi = starts[b], starts[e]
        if hi > lo:
            logits = call_logits(model, canvas[lo:hi], None if am is None else am[lo:hi])
            for g in range(b, e):  # each row's candidates: a (K, L, V) view, read in place
                if counts[g]:
                    r = slice(starts[g] - lo, starts[g + 1] - lo)
                    reduce(g, logits[r], cols, w[starts[g] : starts[g + 1]])
            del logits
            bar.update(hi - lo)
        b = e
    return out


# ------------------------------------------------------------------------------ martingale test
@dataclass(frozen=True)
class MarginalConsistency:
    """The martingale test: one-shot marginals against the mixture of clamped conditionals.

    Attributes
    ----------
    kl : (B, L) or (B,) float64
        ``KL(p̄_j ‖ p_θ(x_j | c))`` (NaN at clamped, observed and padding positions).
    tv : (B, L) or (B,) float64
        ``TV(p̄_j, p_θ(x_j | c))``.
    kl_noise : (B, L) or (B,) float64 or None
        With sampled rollouts: ``Σ_v Var_a[p(v | c, a)] / (2 N p̄_j(v))``, the plug-in KL a
        perfectly consistent model would show on average from N draws (second-order
        estimate). Values well above it indicate incoherence.
    missed_mass : (B,) float64
    unit : str
    """

    kl: np.ndarray
    tv: np.ndarray
    kl_noise: np.ndarray | None
    missed_mass: np.ndarray
    unit: str


def marginal_consistency(
    model,
    tokens,
    i,
    j: int | None = None,
    *,
    n_samples: int | None = None,
    top_k: int | None = None,
    seed: int = 0,
    attention_mask=None,
    batch_size: int | None = 64,
    unit: str = "nats",
    max_full_vocab: int = 4096,
) -> MarginalConsistency:
    """Martingale (marginal-consistency) test of a denoiser's conditionals.

    For a coherent joint, ``p(x_j | c) = E_{x_i ~ p(· | c)} p(x_j | c, x_i)``; more generally
    the one-shot marginal equals the expectation of the conditionals after sequentially
    decoding any positions first. This compares the two.

    Parameters
    ----------
    model : Denoiser
    tokens : (L,) or (B, L) int64
    i : int or sequence of int
        The position(s) decoded first. One position: exact enumeration by default
        (``top_k``/``n_samples`` optional). Several: sequential rollouts in the given order,
        which need ``n_samples``.
    j : int, optional
        Report at j only; default every masked position.
    n_samples, top_k : int, optional
    seed : int
    attention_mask : (B, L) bool, optional
    batch_size : int, optional
    unit : {"nats", "bits"}
    max_full_vocab : int

    Returns
    -------
    MarginalConsistency

    Notes
    -----
    Cost as :func:`pairwise_cmi` for one position; sequential rollouts over R positions add
    (R − 1) B M forward passes to draw them (M = ``n_samples``).
    """
    tokens, attention_mask = _prepare(model, tokens, attention_mask)
    L = tokens.shape[1]
    positions = as_positions(i, L, name="i")
    _check_masked(tokens, model.mask_id, positions, "clamped")
    if j is not None:
        (j,) = as_positions([j], L, name="j")
        if j in positions:
            raise ValueError(f"j={j} must differ from the clamped positions {positions}")
        _check_masked(tokens, model.mask_id, [j], "j")
    scale = unit_scale(unit)
    m = _mixture(
        model,
        tokens,
        attention_mask,
        positions,
        top_k=top_k,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        max_full_vocab=max_full_vocab,
    )
    kl, tvd, noise = m.kl, m.tv, m.noise
    valid = tokens == model.mask_id
    if attention_mask is not None:
        valid &= attention_mask
    valid[:, positions] = False
    nan = torch.full_like(kl, math.nan)
    kl, tvd = torch.where(valid, kl, nan) * scale, torch.where(valid, tvd, nan)
    noise = None if noise is None else torch.where(valid, noise, nan) * scale
    if j is not None:
        kl, tvd = kl[:, j], tvd[:, j]
        noise = None if noise is None else noise[:, j]
    return MarginalConsistency(
        kl=kl.numpy(),
        tv=tvd.numpy(),
        kl_noise=None if noise is None else noise.numpy(),
        missed_mass=m.missed_mass.numpy(),
        unit=unit,
    )
