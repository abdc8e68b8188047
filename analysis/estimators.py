"""Clamp-and-rerun estimators that work on any Denoiser (coherence.md §3.4 E1b, E2).

Both estimators mix the model's conditionals of the other positions over values of a
clamped position i:

    p̄_j = Σ_a w_a p_θ(x_j | c, x_i = a)

- :func:`pairwise_cmi` (E2): ``I_θ(i; j | c) = Σ_a w_a KL(p_θ(x_j | c, a) ‖ p̄_j)
  = H(p̄_j) − Σ_a w_a H(p_θ(x_j | c, a))``. One clamped forward pass gives the conditional of
  *every* j, so a whole row I(i; ·) costs one pass per candidate a.
- :func:`marginal_consistency` (E1b, the martingale test): ``KL(p̄_j ‖ p_θ(x_j | c))``. For a
  coherent joint (any exact oracle) ``p̄_j = p(x_j | c)`` exactly.

Candidates and weights:

- exact (default): every token of positive probability, ``w_a = p_θ(a | c)`` — exact for an
  oracle; refused above ``max_full_vocab`` tokens (use one of the next two);
- ``top_k``: the k most likely tokens, weights renormalised; the mass they miss is
  reported (biased downward for flat, far-away marginals);
- ``n_samples``: ``a^(m) ~ p_θ(· | c)``, weights 1/M (consistent; O(1/M) plug-in bias, for
  which ``kl_noise`` gives the expected size under consistency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from remask.analysis._util import as_positions, as_tokens, call_log_probs, check_model, unit_scale

__all__ = ["MarginalConsistency", "PairwiseCMI", "cmi_matrix", "marginal_consistency", "pairwise_cmi"]


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
            raise ValueError(f"{what} position {p} must be masked (hold mask_id={mask_id}) in every row")


@dataclass
class _Mixture:
    logp0: torch.Tensor  # (B, L, V) one-shot log-marginals
    pbar: torch.Tensor  # (B, L, V) mixture of clamped conditionals
    mean_entropy: torch.Tensor  # (B, L) Σ_a w_a H(p(x_j | c, a))
    demask: torch.Tensor  # (B, L) Σ_a w_a TV(p(x_j | c, a), p(x_j | c))
    second: torch.Tensor | None  # (B, L, V) Σ_a w_a p_a² (sampled mode)
    missed_mass: torch.Tensor  # (B,)
    n_candidates: torch.Tensor  # (B,)
    n_draws: int


def _mixture(model, tokens, attention_mask, positions, *, top_k, n_samples, seed, batch_size,
             max_full_vocab) -> _Mixture:
    """Clamp ``positions`` (one exactly/top-k, or several by sampled rollouts) and mix."""
    B, L = tokens.shape
    V = model.vocab_size
    logp0 = call_log_probs(model, tokens, attention_mask, batch_size=batch_size)  # (B, L, V)
    if top_k is not None and n_samples is not None:
        raise ValueError("give at most one of top_k and n_samples")
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
            lp = logp0.repeat_interleave(n, 0)[:, pos] if r == 0 else \
                call_log_probs(model, canvas, am, batch_size=batch_size)[:, pos]
            canvas[:, pos] = torch.multinomial(lp.exp().float().cpu(), 1, generator=g)[:, 0].to(canvas.device)
        w = torch.full((B * n,), 1.0 / n, dtype=torch.float64)
        rows = torch.arange(B).repeat_interleave(n)
        missed = torch.zeros(B, dtype=torch.float64)
        ncand = torch.full((B,), n)
    else:
        if len(positions) != 1:
            raise ValueError(f"clamping several positions {positions} needs n_samples (sampled rollouts)")
        pos = positions[0]
        pi = logp0[:, pos].exp()  # (B, V)
        if n_samples is not None:
            # M draws of x_i ~ p(x_i | c); equal draws share one clamped pass, weighted by
            # their empirical frequency (the same estimator, at most V passes per row).
            draws = torch.multinomial(pi.float().cpu(), n, replacement=True, generator=g)  # (B, M)
            counts = torch.zeros(B, V, dtype=torch.float64).scatter_add_(1, draws, torch.ones(B, n, dtype=torch.float64))
            cand = torch.arange(V).expand(B, V)
            w = counts / n
            missed = torch.zeros(B, dtype=torch.float64)
        elif top_k is not None:
            k = int(top_k)
            if not 1 <= k <= V:
                raise ValueError(f"top_k must be in [1, {V}], got {top_k!r}")
            vals, cand = pi.topk(k, dim=-1)  # (B, k)
            missed = 1.0 - vals.sum(-1)
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
        canvas = tokens[rows].clone()
        canvas[:, pos] = cand[rows, col].to(canvas.device)
        am = None if attention_mask is None else attention_mask[rows]
        w = w[rows, col]
        ncand = keep.sum(-1)
    pbar = torch.zeros(B, L, V, dtype=torch.float64)
    second = torch.zeros(B, L, V, dtype=torch.float64) if n_samples is not None else None
    ment = torch.zeros(B, L, dtype=torch.float64)
    dem = torch.zeros(B, L, dtype=torch.float64)
    p0 = logp0.exp()
    step = len(rows) if batch_size is None else max(1, int(batch_size))
    for s in range(0, len(rows), step):
        r = rows[s:s + step]
        lp = call_log_probs(model, canvas[s:s + step], None if am is None else am[s:s + step])  # (b, L, V)
        p = lp.exp()
        ws = w[s:s + step].view(-1, 1, 1)
        pbar.index_add_(0, r, ws * p)
        if second is not None:
            second.index_add_(0, r, ws * p * p)
        h = -torch.where(p > 0, p * lp, torch.zeros_like(p)).sum(-1)  # (b, L)
        ment.index_add_(0, r, w[s:s + step, None] * h)
        dem.index_add_(0, r, w[s:s + step, None] * 0.5 * (p - p0[r]).abs().sum(-1))
    return _Mixture(logp0, pbar, ment, dem, second, missed, ncand, int(n_samples or 0))


def _entropy_p(p):
    return -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(-1)


# ------------------------------------------------------------------------------ E2: CMI
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
    cmi = (_entropy_p(m.pbar) - m.mean_entropy).clamp_min(0.0)  # (B, L)
    nan = torch.full_like(cmi, math.nan)
    valid = masked.clone()
    valid[:, i] = False
    return torch.where(valid, cmi, nan), torch.where(valid, m.demask, nan)


def pairwise_cmi(model, tokens, i: int, j: int | None = None, *, top_k: int | None = None,
                 n_samples: int | None = None, seed: int = 0, attention_mask=None,
                 batch_size: int | None = 64, unit: str = "nats",
                 max_full_vocab: int = 4096) -> PairwiseCMI:
    """Conditional mutual information between masked positions by clamping (E2).

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

    Returns
    -------
    PairwiseCMI
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
    kw = dict(top_k=top_k, n_samples=n_samples, seed=seed, batch_size=batch_size, max_full_vocab=max_full_vocab)
    m = _mixture(model, tokens, attention_mask, [i], **kw)
    row, dem = _cmi_row(m, masked, i)
    if j is None:
        return PairwiseCMI(cmi=(row * scale).numpy(), reverse=None, asymmetry=None, demask=dem.numpy(),
                           missed_mass=m.missed_mass.numpy(), missed_mass_reverse=None,
                           n_candidates=m.n_candidates.numpy(), unit=unit)
    mr = _mixture(model, tokens, attention_mask, [j], **{**kw, "seed": seed + 1})
    rrow, _ = _cmi_row(mr, masked, j)
    fwd, rev = row[:, j] * scale, rrow[:, i] * scale
    return PairwiseCMI(cmi=fwd.numpy(), reverse=rev.numpy(), asymmetry=(fwd - rev).abs().numpy(),
                       demask=dem[:, j].numpy(), missed_mass=m.missed_mass.numpy(),
                       missed_mass_reverse=mr.missed_mass.numpy(), n_candidates=m.n_candidates.numpy(),
                       unit=unit)


def cmi_matrix(model, tokens, positions=None, **kwargs) -> np.ndarray:
    """Matrix ``I_θ(i; j | c)`` over masked positions, one clamped row per i.

    Parameters
    ----------
    model : Denoiser
    tokens : (L,) or (B, L) int64
    positions : sequence of int, optional
        Positions to clamp (rows); default every position masked in all rows.
    **kwargs
        Passed to :func:`pairwise_cmi`.

    Returns
    -------
    (B, L, L) float64
        Row i holds I(i; ·); NaN for rows not computed, the diagonal, and observed columns.
        Its asymmetry ``|M − Mᵀ|`` measures the incoherence of the conditionals.
    """
    tokens = as_tokens(tokens)
    B, L = tokens.shape
    if positions is None:
        positions = [p for p in range(L) if bool((tokens[:, p] == model.mask_id).all())]
    positions = as_positions(positions, L)
    out = np.full((B, L, L), np.nan)
    for i in positions:
        out[:, i, :] = pairwise_cmi(model, tokens, i, **kwargs).cmi
    return out


# ------------------------------------------------------------------------------ E1b
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


def marginal_consistency(model, tokens, i, j: int | None = None, *, n_samples: int | None = None,
                         top_k: int | None = None, seed: int = 0, attention_mask=None,
                         batch_size: int | None = 64, unit: str = "nats",
                         max_full_vocab: int = 4096) -> MarginalConsistency:
    """Martingale (marginal-consistency) test of a denoiser's conditionals (E1b).

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
    m = _mixture(model, tokens, attention_mask, positions, top_k=top_k, n_samples=n_samples, seed=seed,
                 batch_size=batch_size, max_full_vocab=max_full_vocab)
    pbar = m.pbar / m.pbar.sum(-1, keepdim=True)
    p0 = m.logp0.exp()
    logpbar = pbar.clamp_min(1e-300).log()
    kl = torch.where(pbar > 0, pbar * (logpbar - m.logp0), torch.zeros_like(pbar)).sum(-1)  # (B, L)
    tvd = 0.5 * (pbar - p0).abs().sum(-1)
    noise = None
    if m.second is not None:
        var = (m.second - m.pbar**2).clamp_min(0.0)
        noise = torch.where(pbar > 0, var / (2 * m.n_draws * pbar.clamp_min(1e-300)), torch.zeros_like(pbar)).sum(-1)
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
    return MarginalConsistency(kl=kl.numpy(), tv=tvd.numpy(), kl_noise=None if noise is None else noise.numpy(),
                               missed_mass=m.missed_mass.numpy(), unit=unit)
