"""Triton (GPU) backend of :mod:`remask.kernels.stats` (``token_prob``, ``kl``).

One program per row, streamed in ``BLOCK``-wide tiles widened to float32 after the load;
``token_prob`` keeps an online max (one read), ``kl`` takes both maxima in a first pass and
the sums in a second (the row is then in L2). Tile sums are accumulated in float64. Tested
on CPU through ``TRITON_INTERPRET=1`` and compiled on a GPU when one exists.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from remask.kernels._triton.propose import unavailable_reason  # noqa: F401 (same condition)

__all__ = ["kl_rows", "token_prob_rows"]


@triton.jit
def _row_max(row_ptr, V, n_loop, BLOCK: tl.constexpr):
    """(max with NaN lanes as -inf, number of NaN lanes) of one row."""
    offs = tl.arange(0, BLOCK)
    m = tl.full([], float("-inf"), tl.float32)
    n_nan = tl.zeros([], tl.int32)
    for j in range(n_loop):
        idx = j * BLOCK + offs
        xv = tl.load(row_ptr + idx, mask=idx < V, other=float("-inf")).to(tl.float32)
        is_nan = xv != xv  # noqa: PLR0124  (the NaN test)
        n_nan += tl.sum(is_nan.to(tl.int32))
        m = tl.maximum(m, tl.max(tl.where(is_nan, float("-inf"), xv), 0))
    return m, n_nan


@triton.jit
def _status(m, n_nan):
    return tl.where(
        n_nan > 0, 1, tl.where(m == float("inf"), 2, tl.where(m == float("-inf"), 3, 0))
    )


@triton.jit
def _token_prob_kernel(
    x_ptr,
    stride_row,
    V,
    tok_ptr,
    rows_ptr,
    out_ptr,
    status_ptr,
    HAS_ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    r = tl.program_id(0)
    row_ptr = x_ptr + r.to(tl.int64) * stride_row
    computed = tl.full([], 1, tl.int32) != 0
    if HAS_ROWS:
        computed = tl.load(rows_ptr + r).to(tl.int32) != 0
    n_loop = tl.where(computed, tl.cdiv(V, BLOCK), 0)
    m, n_nan = _row_max(row_ptr, V, n_loop, BLOCK)
    status = tl.where(computed, _status(m, n_nan), 0)
    good = computed & (status == 0)
    m_safe = tl.where(good, m, 0.0)
    offs = tl.arange(0, BLOCK)
    s = tl.zeros([], tl.float64)
    for j in range(tl.where(good, n_loop, 0)):
        idx = j * BLOCK + offs
        xv = tl.load(row_ptr + idx, mask=idx < V, other=float("-inf")).to(tl.float32)
        s += tl.sum(tl.exp(xv - m_safe), 0).to(tl.float64)
    tok = tl.load(tok_ptr + r)
    x_tok = tl.load(row_ptr + tl.where(good, tok, 0)).to(tl.float64)
    prob = tl.exp(x_tok - m_safe.to(tl.float64)) / tl.where(good, s, 1.0)
    tl.store(out_ptr + r, tl.where(good, prob, 0.0).to(tl.float32))
    tl.store(status_ptr + r, status.to(tl.int32))


@triton.jit
def _kl_kernel(
    x_ptr,
    y_ptr,
    stride_x,
    stride_y,
    V,
    rows_ptr,
    out_ptr,
    status_ptr,
    HAS_ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    r = tl.program_id(0)
    xrow = x_ptr + r.to(tl.int64) * stride_x
    yrow = y_ptr + r.to(tl.int64) * stride_y
    computed = tl.full([], 1, tl.int32) != 0
    if HAS_ROWS:
        computed = tl.load(rows_ptr + r).to(tl.int32) != 0
    n_loop = tl.where(computed, tl.cdiv(V, BLOCK), 0)
    mx, nx = _row_max(xrow, V, n_loop, BLOCK)
    my, ny = _row_max(yrow, V, n_loop, BLOCK)
    sx_ = _status(mx, nx)
    status = tl.where(computed, tl.where(sx_ != 0, sx_, _status(my, ny)), 0)
    good = computed & (status == 0)
    mx = tl.where(good, mx, 0.0)
    my = tl.where(good, my, 0.0)
    offs = tl.arange(0, BLOCK)
    sx = tl.zeros([], tl.float64)
    sy = tl.zeros([], tl.float64)
    a = tl.zeros([], tl.float64)
    holes = tl.zeros([], tl.int32)
    for j in range(tl.where(good, n_loop, 0)):
        idx = j * BLOCK + offs
        inside = idx < V
        xv = tl.load(xrow + idx, mask=inside, other=float("-inf")).to(tl.float32)
        yv = tl.load(yrow + idx, mask=inside, other=float("-inf")).to(tl.float32)
        dx = xv - mx
        dy = yv - my
        ex = tl.exp(dx)
        sx += tl.sum(ex, 0).to(tl.float64)
        sy += tl.sum(tl.exp(dy), 0).to(tl.float64)
        holes += tl.sum(((xv > float("-inf")) & (yv == float("-inf"))).to(tl.int32), 0)
        # ex = 0 on -inf lanes of x; clamping keeps 0 * (finite) instead of NaN. dy's clamp
        # is near -FLT_MAX, so that a huge finite gap of q (a finfo.min-style mask) counts.
        a += tl.sum(ex * (tl.maximum(dx, -3.0e38) - tl.maximum(dy, -3.4e38)), 0).to(tl.float64)
    sx_safe = tl.where(good, sx, 1.0)
    sy_safe = tl.where(good, sy, 1.0)
    value = a / sx_safe - tl.log(sx_safe) + tl.log(sy_safe)
    value = tl.where(holes > 0, float("inf"), value)
    tl.store(out_ptr + r, tl.where(good, value, 0.0).to(tl.float32))
    tl.store(status_ptr + r, status.to(tl.int32))


def _block(vocab: int) -> int:
    return 4096 if vocab > 4096 else triton.next_power_of_2(vocab)


def token_prob_rows(x: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor | None):
    """Triton implementation of :func:`remask.kernels.stats.token_prob_rows`."""
    n_rows, vocab = x.shape
    out = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    status = torch.empty(n_rows, dtype=torch.int32, device=x.device)
    block = _block(vocab)
    _token_prob_kernel[(n_rows,)](
        x,
        x.stride(0),
        vocab,
        tokens,
        rows if rows is not None else status,
        out,
        status,
        HAS_ROWS=rows is not None,
        BLOCK=block,
        num_warps=8 if block >= 2048 else 4,
    )
    return out, status


def kl_rows(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None):
    """Triton implementation of :func:`remask.kernels.stats.kl_rows`."""
    n_rows, vocab = x.shape
    out = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    status = torch.empty(n_rows, dtype=torch.int32, device=x.device)
    block = _block(vocab)
    _kl_kernel[(n_rows,)](
        x,
        y,
        x.stride(0),
        y.stride(0),
        vocab,
        rows if rows is not None else status,
        out,
        status,
        HAS_ROWS=rows is not None,
        BLOCK=block,
        num_warps=8 if block >= 2048 else 4,
    )
    return out, status
