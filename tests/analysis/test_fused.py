"""The fused reductions (analysis/_fused.py) against float64 torch written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from remask.analysis import _fused, cmi_matrix, pairwise_cmi
from remask.models.tiny import TinyTransformer


def _xlogy(p, lq):
    return torch.where(p > 0, p * lq, torch.zeros_like(p))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_pair_stats_match_the_definitions(dtype):
    g = torch.Generator().manual_seed(0)
    V = 300
    x = (torch.randn(7, V, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = (torch.randn(7, V, generator=g, dtype=torch.float64) * 3).to(dtype)
    x[0, 3] = -math.inf  # a probability-0 token (a mask column)
    y[1, 4] = -math.inf  # q = 0 < p: KL(p ‖ q) = inf
    x[2, 5] = y[2, 5] = -math.inf  # 0 on both sides: contributes nothing
    u = torch.rand(V, generator=g, dtype=torch.float64)
    u[:40] = 0.0  # zeros: the KL to u is on its support
    u /= u.sum()
    support = u > 0
    logu = u.clamp_min(1e-300).log()
    rows = torch.arange(7)
    out = _fused.pair_stats(x, y, rows, logu, support)
    col = dict(zip(_fused.PAIR_COLUMNS, out.unbind(-1)))
    for pre, z in (("x_", x), ("y_", y)):
        z = z.double()  # the exact values the kernel reads
        lp = torch.log_softmax(z, -1)
        p = lp.exp()
        on = lp.masked_fill(~support, -math.inf)
        lz = torch.logsumexp(on, -1, keepdim=True)
        pon = (on - lz).exp()
        want = {
            "lognorm": torch.logsumexp(z, -1),
            "entropy": -_xlogy(p, lp).sum(-1),
            "max_prob": p.max(-1).values,
            "kl_unigram": _xlogy(pon, on - lz - logu).sum(-1),
            "missed": 1.0 - lz[:, 0].exp(),
        }
        for name, value in want.items():
            np.testing.assert_allclose(col[pre + name], value, rtol=1e-12, atol=1e-12)
    lp, lq = torch.log_softmax(x.double(), -1), torch.log_softmax(y.double(), -1)
    kl = torch.where(lp.exp() > 0, lp.exp() * (lp - lq), torch.zeros_like(lp)).sum(-1)
    assert math.isinf(col["kl_xy"][1]) and math.isinf(kl[1])
    np.testing.assert_allclose(col["kl_xy"], kl, rtol=1e-12, atol=1e-12)
    assert torch.all(col["x_missed"] > 1e-3)  # the support restriction was exercised
    alone = _fused.pair_stats(x, None, rows, logu, support)
    np.testing.assert_array_equal(alone[:, :5], out[:, :5])
    assert torch.isnan(alone[:, 5:]).all()


def test_mixture_cmi_and_softmax_mean_match_the_definitions():
    g = torch.Generator().manual_seed(1)
    K, C, V = 5, 4, 257
    x = torch.randn(K, C, V, generator=g) * 2  # float32, as a batch of widened logits
    x[0, 0, 7] = -math.inf
    w = torch.rand(K, generator=g, dtype=torch.float64)
    w /= w.sum()
    out = _fused.mixture_cmi(x, torch.arange(C), w)
    p = torch.softmax(x.double(), -1)  # (K, C, V)
    pbar = torch.einsum("k,kcv->cv", w, p)
    kl = _xlogy(p, p.clamp_min(1e-300).log() - pbar.log()).sum(-1)  # (K, C) KL(p_a ‖ p̄)
    np.testing.assert_allclose(out[:, 0], w @ kl, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(out[:, 2], -_xlogy(pbar, pbar.log()).sum(-1), rtol=1e-12)
    assert float(out[:, 0].min()) > 1e-3  # not a comparison of zeros
    acc = np.zeros(V)
    rows = x[:, 0]
    weights = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    _fused.softmax_mean(rows, weights, acc)
    np.testing.assert_allclose(acc, weights @ torch.softmax(rows.double(), -1), rtol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"top_k": 3},
        {"n_samples": 5, "seed": 2},
        {"top_k": 3, "batch_size": 2},
        {"batch_size": 4},
    ],
)
def test_cmi_matrix_rows_equal_pairwise_cmi(kw):
    # cmi_matrix's fused columns against pairwise_cmi's full rows: same candidates, weights
    # and seed (whole rows packed in one pass, or a row split over several passes).
    model = TinyTransformer(vocab_size=9, seed=1, logit_scale=3.0)
    M = model.mask_id
    tokens = torch.tensor([[0, M, M, M, 3, M, M, M], [M, 1, M, M, M, M, 2, M]])
    pos = [2, 3, 5]
    got = cmi_matrix(model, tokens, positions=pos, **kw)
    want = np.full_like(got, np.nan)
    for i in pos:
        want[:, i] = pairwise_cmi(model, tokens, i, **kw).cmi
    np.testing.assert_allclose(got, want, atol=1e-12, equal_nan=True)
    assert np.nanmax(want) > 1e-3
    square = cmi_matrix(model, tokens, positions=pos, columns="positions", **kw)
    keep = np.zeros_like(got, dtype=bool)
    keep[:, np.ix_(pos, pos)[0], np.ix_(pos, pos)[1]] = True
    np.testing.assert_allclose(square[keep], got[keep], atol=1e-15, equal_nan=True)
    assert np.all(np.isnan(square[~keep]))
    assert np.isfinite(square).sum() == 2 * len(pos) * (len(pos) - 1)


def test_cmi_matrix_rejects_bad_columns():
    model = TinyTransformer(vocab_size=5, seed=0)
    M = model.mask_id
    tokens = torch.tensor([[0, M, M, M]])
    with pytest.raises(ValueError, match="columns"):
        cmi_matrix(model, tokens, columns="all")
    with pytest.raises(ValueError, match="columns"):
        cmi_matrix(model, tokens, columns=[9])
    with pytest.raises(ValueError, match="n_samples"):
        cmi_matrix(model, tokens, n_samples=0)


def test_torch_fallbacks_off_the_cpu_track_the_kernels():
    # The torch versions (used on CUDA) run here on CPU tensors: float32, so ~1e-5 nats.
    g = torch.Generator().manual_seed(3)
    V = 300
    x = torch.randn(6, V, generator=g) * 3
    y = torch.randn(6, V, generator=g) * 3
    x[0, 3] = -math.inf
    y[1, 4] = -math.inf
    u = torch.rand(V, generator=g, dtype=torch.float64)
    u[:40] = 0.0
    u /= u.sum()
    rows = torch.tensor([0, 1, 2, 5])
    want = _fused.pair_stats(x, y, rows, u.clamp_min(1e-300).log(), u > 0)
    got = _fused._pair_stats_torch(x, y, rows, u.clamp_min(1e-300).log(), u > 0)
    assert math.isinf(got[1, 10]) and math.isinf(want[1, 10])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    z = torch.randn(3, 5, V, generator=g) * 2
    cols = torch.tensor([0, 2, 4])
    np.testing.assert_allclose(
        _fused._mixture_cmi_torch(z, cols, w), _fused.mixture_cmi(z, cols, w), atol=2e-5
    )
    acc = np.zeros(V)
    _fused.softmax_mean(x, w.repeat(2), acc)
    np.testing.assert_allclose(_fused._softmax_mean_torch(x, w.repeat(2)), acc, atol=1e-6)
