"""The Numba pick inside a sampled tile: float32 weights with an error bound, float64 walk
as the fallback. The pick must be the float64 walk's pick for every target, on flat, peaked,
far-below-the-row-max and -inf tiles, at any temperature, including targets placed exactly on
(and one ulp around) the float64 cumulative sums, where only the fallback can decide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from remask.kernels._numba import propose as nb  # noqa: E402
from remask.kernels.propose import SAMPLE_TILE  # noqa: E402


def _slow(x, m, t, u):
    w = np.empty(x.shape[0])
    nb._tile_weights64(x, x.shape[0], m, t, w)
    return nb._pick_blocked(w, x.shape[0], u), w


def _bits(x, dtype):
    """The tile as the kernel reads it: float32 bits, or bf16 bits (the row max then is the
    max of the rounded values)."""
    if dtype == "float32":
        return x.view(np.uint32)
    return torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def _tiles(rng):
    """(name, tile float32 logits, row max m) — m >= every logit, as in a row."""
    n = SAMPLE_TILE
    for scale in (0.5, 3.0, 10.0, 30.0):
        x = (rng.standard_normal(n) * scale).astype(np.float32)
        yield f"randn*{scale}", x, float(x.max())
        yield f"randn*{scale}, row max 6 above", x, float(np.float32(x.max() + 6.0))
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[rng.choice(n, 8, replace=False)] = 25.0  # peaked: a tie group holding most of the mass
    yield "peaked ties", x, 25.0
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[rng.random(n) < 0.3] = -np.inf
    yield "-inf lanes", x, float(x.max())
    x = (rng.standard_normal(1000) * 3).astype(np.float32)  # the row's last, partial tile
    yield "partial tile", x, float(x.max())
    x = np.full(n, -np.inf, dtype=np.float32)
    x[[17, 2000]] = [0.0, -1.0]
    yield "two finite", x, 0.0
    x = (rng.standard_normal(n) - 80.0).astype(np.float32)  # weights ~e^-80: the bound is loose
    yield "far below the row max", x, 0.0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_fast_pick_is_the_float64_pick(temperature, dtype):
    rng = np.random.default_rng(0)
    fast_used = fallback_used = 0
    for name, x32, m in _tiles(rng):
        x = _bits(x32, dtype)
        if dtype == "bfloat16":  # the row max of the rounded values, never below a logit
            m = float(torch.tensor(m).to(torch.bfloat16).float()) + (0.0 if m == x32.max() else 0.5)
        n = x.shape[0]
        wbuf = np.empty(SAMPLE_TILE)
        cbuf = np.empty(SAMPLE_TILE)
        w32 = np.empty(2 * n, dtype=np.float32)
        _, w = _slow(x, m, temperature, 0.5)
        cum = np.cumsum(w)
        total = w.sum()
        # Uniform targets, and targets on every 37th float64 cumulative sum and one ulp beside.
        us = list(rng.random(300))
        for c in cum[::37]:
            base = c / total
            us += [base, np.nextafter(base, 0.0), np.nextafter(base, 1.0)]
        for u in us:
            if not 0.0 <= u < 1.0:
                continue
            want, _ = _slow(x, m, temperature, u)
            got = nb._sample_in_tile(x, n, m, temperature, u, wbuf, cbuf)
            assert got == want, (name, temperature, u)
            k = nb._fast_pick(x, n, m, temperature, u, w32[:n], w32[n:])
            if k >= 0:
                assert k == want, (name, temperature, u)
                fast_used += 1
            else:
                fallback_used += 1
    # Both paths ran: most uniform targets stand on the float32 weights, the boundary ones not.
    assert fast_used > 1000 and fallback_used > 50, (fast_used, fallback_used)


def test_float32_weights_meet_their_error_bound():
    """|w32 - exp(d)| <= w (6e-7 + 2.5e-7 |d|) + 4e-35, the bound the fast pick relies on."""
    rng = np.random.default_rng(1)
    n = 2_000_000
    x = np.concatenate(
        [
            rng.uniform(-100.0, 0.0, n).astype(np.float32),
            -np.logspace(-8, 2, n).astype(np.float32),
            np.zeros(1, dtype=np.float32),
        ]
    )
    for m, t in ((0.0, 1.0), (13.25, 1.0), (13.25, 0.37), (-4.0, 3.0)):
        xs = (x + np.float32(m)).astype(np.float32)
        w32 = np.empty(xs.shape[0], dtype=np.float32)
        a32 = np.empty_like(w32)
        nb._tile_weights32(
            xs.view(np.uint32), xs.shape[0], np.float32(m), np.float32(1.0 / t), w32, a32
        )
        d = (xs.astype(np.float64) - m) / t
        exact = np.exp(d)
        bound = exact * (nb._W32_REL + nb._W32_PER_D * np.abs(d)) + nb._W32_ABS
        assert np.all(np.abs(w32.astype(np.float64) - exact) <= bound), (m, t)
        # a32 is the |d|-weighted weight the bound sums
        ok = d > -80
        np.testing.assert_allclose(a32[ok], w32[ok] * np.abs(d[ok]), rtol=1e-5, atol=1e-30)
