"""Fused row statistics beside :func:`~remask.kernels.propose` (docs/design.md §4).

* :func:`token_prob` — ``softmax(logits)[token]`` per row: the leave-one-out and verifier
  checks of WINO, Gibbs and APD, which would otherwise materialise a float64 (B, L, V)
  log-softmax for one number per row;
* :func:`kl` — ``KL(softmax(p) ‖ softmax(q))`` per row: KLASS's step-to-step divergence.

Both read each row once (online max, sums accumulated in float64 on every backend) and use
O(rows) extra memory. This file holds the public functions (validation, dispatch) and the
**torch reference** (float64, in chunks of rows), which defines the semantics:

* ``token_prob = exp(x[t] - m) / Σ exp(x - m)`` with ``m = max x`` (logits rounded to float32
  first, like ``propose``);
* ``kl = Σ_v p_v (log p_v - log q_v)`` in nats; terms with ``p_v = 0`` contribute 0, a token
  with ``p_v > 0 = q_v`` makes it ``+inf``. Computed as ``A / s_p - log s_p + log s_q`` with
  ``A = Σ exp(x - m_x)((x - m_x) - (y - m_y))``, ``s_p = Σ exp(x - m_x)``,
  ``s_q = Σ exp(y - m_y)``.

Rows outside ``rows`` are not read and give 0. A computed row with a NaN, a +inf or no finite
logit raises ValueError naming it (the op's one host synchronisation).
"""

from __future__ import annotations

import math

import torch

from remask.kernels import _dispatch
from remask.kernels.propose import raise_on_bad_rows

__all__ = ["kl", "kl_rows", "token_prob", "token_prob_rows"]

_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_REFERENCE_CHUNK_ELEMENTS = 1 << 22


def _check_logits(logits, name: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dtype not in _DTYPES:
        raise TypeError(f"{name} dtype must be one of {_DTYPES}, got {logits.dtype}")
    if logits.dim() not in (2, 3):
        raise ValueError(f"{name} must be (B, L, V) or (N, V), got shape {tuple(logits.shape)}")
    if logits.shape[-1] < 1:
        raise ValueError(f"{name} need at least one column, got shape {tuple(logits.shape)}")


def _check_rows(rows, lead: torch.Size, device: torch.device) -> torch.Tensor | None:
    if rows is None:
        return None
    if not isinstance(rows, torch.Tensor) or rows.dtype != torch.bool:
        raise TypeError(f"rows must be a bool tensor, got {getattr(rows, 'dtype', rows)!r}")
    if rows.shape != lead:
        raise ValueError(f"rows must have shape {tuple(lead)}, got {tuple(rows.shape)}")
    if rows.device != device:
        raise ValueError(f"rows is on {rows.device} but logits on {device}")
    return rows.reshape(-1).contiguous()  # (N,)


def _flat(logits: torch.Tensor) -> torch.Tensor:
    x = logits.reshape(-1, logits.shape[-1])  # (N, V), a view for contiguous input
    return x if x.stride(-1) == 1 else x.contiguous()


def token_prob(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    rows: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Probability of ``tokens`` under ``softmax(logits)``, one read per row.

    Parameters
    ----------
    logits : (B, L, V) or (N, V) float32, bfloat16 or float16 (float64 is rounded to float32)
    tokens : (B, L) or (N,) integer tensor
        Token per row; must lie in ``[0, V)`` on the computed rows (anything elsewhere).
    rows : (B, L) or (N,) bool, optional
        Rows to compute; 0 elsewhere.
    backend : {"torch", "numba", "triton"}, optional

    Returns
    -------
    (B, L) or (N,) float32

    Raises
    ------
    TypeError
        Logits not a float tensor, tokens not integer, rows not bool.
    ValueError
        Shapes that do not match, a token outside ``[0, V)`` on a computed row (checked
        before any kernel runs, one host sync), or a computed row with NaN/+inf/no finite
        logit.

    Examples
    --------
    >>> import torch, remask.kernels as K
    >>> round(float(K.token_prob(torch.tensor([[0.0, 2.0, 1.0]]), torch.tensor([1]))[0]), 4)
    0.6652
    """
    _check_logits(logits, "logits")
    lead = logits.shape[:-1]
    vocab = logits.shape[-1]
    if (
        not isinstance(tokens, torch.Tensor)
        or tokens.dtype.is_floating_point
        or tokens.dtype == torch.bool
        or tokens.is_complex()
    ):
        raise TypeError(
            f"tokens must be an integer tensor, got {getattr(tokens, 'dtype', tokens)!r}"
        )
    if tokens.shape != lead:
        raise ValueError(f"tokens must have shape {tuple(lead)}, got {tuple(tokens.shape)}")
    if tokens.device != logits.device:
        raise ValueError(f"tokens is on {tokens.device} but logits on {logits.device}")
    flat_rows = _check_rows(rows, lead, logits.device)
    t = tokens.reshape(-1).to(torch.int64)  # (N,)
    outside = (t < 0) | (t >= vocab)  # (N,)
    if flat_rows is not None:
        outside &= flat_rows
    if bool(outside.any()):
        first = int(outside.nonzero()[0, 0])
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), lead))
        raise ValueError(
            f"tokens{list(where)} = {int(t[first])} is outside the vocabulary [0, {vocab})"
        )
    name, impl = _dispatch.get_impl("token_prob_rows", backend, logits.device)
    if t.numel() == 0:
        return torch.zeros(lead, dtype=torch.float32, device=logits.device)
    prob, status = impl(_flat(logits), t.contiguous(), flat_rows)
    raise_on_bad_rows(status, lead, name)
    return prob.reshape(lead)


def kl(
    p_logits: torch.Tensor,
    q_logits: torch.Tensor,
    rows: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """``KL(softmax(p_logits) ‖ softmax(q_logits))`` per row in nats, one read of each row.

    Parameters
    ----------
    p_logits, q_logits : (B, L, V) or (N, V) float tensors of the same shape (dtypes may differ)
    rows : (B, L) or (N,) bool, optional
        Rows to compute; 0 elsewhere.
    backend : {"torch", "numba", "triton"}, optional

    Returns
    -------
    (B, L) or (N,) float32, ``+inf`` where ``q`` gives 0 to a token ``p`` does not.

    Raises
    ------
    TypeError, ValueError
        As :func:`token_prob`; ValueError also when the shapes (e.g. the vocabularies) of
        ``p_logits`` and ``q_logits`` differ.

    Examples
    --------
    >>> import torch, remask.kernels as K
    >>> p = torch.tensor([[0.0, 1.0]]); float(K.kl(p, p)[0])
    0.0
    """
    _check_logits(p_logits, "p_logits")
    _check_logits(q_logits, "q_logits")
    if p_logits.shape != q_logits.shape:
        raise ValueError(
            f"p_logits and q_logits must have the same shape, got "
            f"{tuple(p_logits.shape)} and {tuple(q_logits.shape)}"
        )
    if p_logits.device != q_logits.device:
        raise ValueError(f"q_logits is on {q_logits.device} but p_logits on {p_logits.device}")
    lead = p_logits.shape[:-1]
    flat_rows = _check_rows(rows, lead, p_logits.device)
    name, impl = _dispatch.get_impl("kl_rows", backend, p_logits.device)
    if math.prod(lead) == 0:
        return torch.zeros(lead, dtype=torch.float32, device=p_logits.device)
    value, status = impl(_flat(p_logits), _flat(q_logits), flat_rows)
    raise_on_bad_rows(status, lead, name)
    return value.reshape(lead)


# ---------------------------------------------------------------------------------------------
# torch reference


def _status(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(status (n,) int32, max (n,) float32) of float32 rows (see STATUS_MESSAGES)."""
    has_nan = torch.isnan(x).any(-1)
    m = torch.nan_to_num(x, nan=-math.inf, posinf=math.inf, neginf=-math.inf).amax(-1)
    status = torch.where(
        has_nan, 1, torch.where(m == math.inf, 2, torch.where(m == -math.inf, 3, 0))
    ).to(torch.int32)
    return status, m


def _chunks(n_rows: int, vocab: int) -> range:
    return range(0, n_rows, max(1, _REFERENCE_CHUNK_ELEMENTS // vocab))


def token_prob_rows(
    x: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference on 2-D input: x (N, V), tokens (N,) int64, rows (N,) bool or None.

    Returns prob (N,) float32 and status (N,) int32 (0 outside ``rows``).
    """
    n_rows, vocab = x.shape
    probs, statuses = [], []
    for start in _chunks(n_rows, vocab):
        xc = x[start : start + (_REFERENCE_CHUNK_ELEMENTS // vocab or 1)].float()  # (n, V)
        status, m = _status(xc)
        ok = status == 0
        xd = torch.where(ok[:, None], xc, 0.0).double()  # (n, V) unusable rows -> zeros
        md = torch.where(ok, m, 0.0).double()  # (n,)
        s = torch.exp(xd - md[:, None]).sum(-1)  # (n,)
        tok = tokens[start : start + xc.shape[0]].clamp(0, vocab - 1)  # (n,) rows outside: any
        probs.append(torch.exp(xd.gather(-1, tok[:, None])[:, 0] - md) / s)
        statuses.append(status)
    prob, status = torch.cat(probs).float(), torch.cat(statuses)
    if rows is not None:
        prob = torch.where(rows, prob, 0.0)
        status = torch.where(rows, status, 0)
    return prob, status


def kl_rows(
    x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference on 2-D input: x, y (N, V), rows (N,) bool or None.

    Returns kl (N,) float32 and status (N,) int32 (the first bad of p, else q; 0 outside rows).
    """
    n_rows, vocab = x.shape
    values, statuses = [], []
    for start in _chunks(n_rows, vocab):
        stop = start + (_REFERENCE_CHUNK_ELEMENTS // vocab or 1)
        xc, yc = x[start:stop].float(), y[start:stop].float()  # (n, V) each
        sx, mx = _status(xc)
        sy, my = _status(yc)
        status = torch.where(sx != 0, sx, sy)
        ok = status == 0
        log_p = torch.where(ok[:, None], xc, 0.0).double().log_softmax(-1)  # (n, V)
        log_q = torch.where(ok[:, None], yc, 0.0).double().log_softmax(-1)  # (n, V)
        terms = log_p.exp() * (log_p - log_q)  # (n, V); 0 * (-inf - ...) = NaN where p = 0
        terms = torch.where(log_p == -math.inf, 0.0, terms)
        # q = 0 where p > 0 is +inf, also where p underflows float64 (x - max x < -745: its
        # exp is 0 and 0 * inf would be NaN), as the fast backends count such a hole.
        hole = (log_q == -math.inf) & (log_p > -math.inf)  # (n, V)
        values.append(torch.where(hole, math.inf, terms).sum(-1))
        statuses.append(status)
    value, status = torch.cat(values).float(), torch.cat(statuses)
    if rows is not None:
        value = torch.where(rows, value, 0.0)
        status = torch.where(rows, status, 0)
    return value, status
