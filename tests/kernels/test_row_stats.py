"""token_prob() and kl(): torch reference vs direct float64 formulas, every CPU backend vs the
reference, edge rows (-inf lanes, q = 0 under p > 0, bad rows) and argument validation."""

from __future__ import annotations

import math

import pytest
import torch

import remask.kernels as K

BACKENDS = [b for b in K.backends("cpu") if b != "triton"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _case(seed: int, vocab: int, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, vocab, generator=gen) * 3  # (B, L, V)
    y = x + torch.randn(2, 4, vocab, generator=gen) * 0.5  # a nearby distribution
    if vocab > 2:
        x[0, 1, : vocab // 3] = -math.inf  # p = 0 there (q finite): contributes 0
    tokens = torch.randint(0, vocab, (2, 4), generator=gen)
    rows = torch.rand(2, 4, generator=gen) < 0.7
    return x.to(dtype), y.to(dtype), tokens, rows


def _direct_kl(x, y):
    log_p = x.double().log_softmax(-1)
    log_q = y.double().log_softmax(-1)
    return torch.where(log_p == -math.inf, 0.0, log_p.exp() * (log_p - log_q)).sum(-1)


@pytest.mark.parametrize("vocab", [1, 5, 9000])
def test_reference_matches_direct_formulas(vocab):
    x, y, tokens, rows = _case(vocab, vocab)
    want = x.double().softmax(-1).gather(-1, tokens[..., None])[..., 0]
    got = K.token_prob(x, tokens, backend="torch")
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-9)
    got = K.kl(x, y, rows, backend="torch")
    torch.testing.assert_close(
        got.double(), torch.where(rows, _direct_kl(x, y), 0.0), rtol=1e-6, atol=1e-7
    )
    assert bool((K.token_prob(x, tokens, rows, backend="torch")[~rows] == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vocab", [1, 33, 4097, 9000])
def test_backend_matches_reference(backend, dtype, vocab, warm_numba):
    x, y, tokens, rows = _case(vocab + 1, vocab, dtype)
    for r in (None, rows):
        got = K.token_prob(x, tokens, r, backend=backend)
        ref = K.token_prob(x, tokens, r, backend="torch")
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-8)
        got = K.kl(x, y, r, backend=backend)
        ref = K.kl(x, y, r, backend="torch")
        # The KL is a difference of O(log V) terms: absolute tolerance ~ float32 rounding of
        # those, relative for large divergences.
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-6)
        assert got.dtype == torch.float32 and got.shape == x.shape[:-1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dx,dy",
    [(a, b) for a in DTYPES for b in DTYPES if a != b],
    ids=lambda d: str(d).replace("torch.", ""),
)
def test_kl_of_two_dtypes_matches_reference(backend, dx, dy, warm_numba):
    """p and q in different dtypes (a bf16 model against float32 kept logits): each row is
    read in its own format (the fast backend has one tile path per pair of formats)."""
    x, y, _, rows = _case(11, 4097 + 5000)
    got = K.kl(x.to(dx), y.to(dy), rows, backend=backend)
    ref = K.kl(x.to(dx), y.to(dy), rows, backend="torch")
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_edge_rows(backend, warm_numba):
    x = torch.tensor([[0.0, 1.0, -math.inf], [0.0, 1.0, 2.0], [5.0, 5.0, 5.0]])
    y = torch.tensor([[3.0, -2.0, 7.0], [0.0, -math.inf, 2.0], [1.0, 1.0, 1.0]])
    out = K.kl(x, y, backend=backend)
    assert out[1].item() == math.inf  # q = 0 where p > 0
    assert out[2].item() == pytest.approx(0.0, abs=1e-6)  # same distribution, shifted logits
    assert out[0].item() == pytest.approx(_direct_kl(x[0], y[0]).item(), rel=1e-5)
    assert K.kl(x, x, backend=backend).abs().max().item() < 1e-6
    # huge shifts between p and q cancel exactly in the softmax
    assert K.kl(x[1:2] + 1e4, x[1:2], backend=backend).abs().item() < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vocab", [4096, 9000])
def test_kl_of_a_dominant_token_and_a_long_tail(backend, vocab, warm_numba):
    """p: one token at e = 1 and a tail whose e lies just under half a float32 ulp of 1; q:
    the tail one nat lower. A float32 lane that sums the dominant term with ~256 tail terms
    drops them all, and the KL (a difference of sums of size 1) lost 2.9e-5 of 2.7e-4; the
    Numba sums now run in blocks of 256 logits. Within the tolerance of the other tests."""
    x = torch.full((2, vocab), math.log(1.7653e-7))
    x[0, 0] = 0.0
    x[1, vocab // 2] = 0.0  # the dominant token in another tile and lane
    y = x.clone()
    y[x != 0.0] -= 1.0
    torch.testing.assert_close(
        K.kl(x, y, backend=backend).double(), _direct_kl(x, y), rtol=1e-5, atol=2e-6
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_is_inf_where_q_misses_a_token_whose_p_underflows(backend, warm_numba):
    """p > 0 at every finite logit, even where exp underflows float64 (x - max x = -800): q = 0
    there is +inf (the reference's 0 * inf gave NaN)."""
    q = torch.tensor([[0.0, -math.inf]])
    for x in (-100.0, -800.0):
        assert K.kl(torch.tensor([[0.0, x]]), q, backend=backend).item() == math.inf


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_keeps_huge_finite_gaps(backend, warm_numba):
    """q masks tokens with a huge finite logit gap, as ``finfo.min``-style masking does: the KL
    is that gap times p's mass there (the Numba sums clamped the gap at 1e30)."""
    p = torch.zeros(1, 4)
    for gap in (1e29, 3e30, 1e35):
        q = torch.tensor([[0.0, 0.0, -gap, -gap]])
        assert K.kl(p, q, backend=backend).item() == pytest.approx(gap / 2, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_rows_raise_and_rows_outside_are_not_read(backend, warm_numba):
    x = torch.zeros(3, 6)
    x[1, 2] = math.nan
    tokens = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"row \(1,\) contains NaN"):
        K.token_prob(x, tokens, backend=backend)
    with pytest.raises(ValueError, match="NaN"):
        K.kl(torch.zeros(3, 6), x, backend=backend)
    rows = torch.tensor([True, False, True])
    assert K.token_prob(x, tokens, rows, backend=backend).tolist() == pytest.approx(
        [1 / 6, 0, 1 / 6]
    )
    assert K.kl(x, x, rows, backend=backend).tolist() == pytest.approx([0, 0, 0], abs=1e-6)
    x[0] = -math.inf
    with pytest.raises(ValueError, match="no finite logit"):
        K.token_prob(x, tokens, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_argument_validation(backend):
    x = torch.zeros(2, 3, 5)
    tokens = torch.zeros(2, 3, dtype=torch.int64)
    cases = [
        (lambda: K.token_prob(x, tokens.float(), backend=backend), TypeError, "tokens"),
        (lambda: K.token_prob(x, tokens[:, :2], backend=backend), ValueError, "tokens"),
        (lambda: K.token_prob(x, tokens + 5, backend=backend), ValueError, "= 5 is outside"),
        (lambda: K.token_prob(x, tokens - 1, backend=backend), ValueError, "= -1 is outside"),
        (lambda: K.token_prob(x, tokens, tokens, backend=backend), TypeError, "rows"),
        (
            lambda: K.token_prob(x, tokens, torch.ones(3, 2, dtype=torch.bool), backend=backend),
            ValueError,
            "rows",
        ),
        (lambda: K.token_prob(x.long(), tokens, backend=backend), TypeError, "logits"),
        (lambda: K.kl(x, torch.zeros(2, 3, 6), backend=backend), ValueError, "same shape"),
        (lambda: K.kl(x, x.int(), backend=backend), TypeError, "q_logits"),
        (lambda: K.kl(x, x, torch.ones(2, 3), backend=backend), TypeError, "rows"),
    ]
    for call, error, text in cases:
        with pytest.raises(error, match=text):
            call()
    # a token out of range outside `rows` is never read, so it is allowed
    rows = torch.zeros(2, 3, dtype=torch.bool)
    rows[0, 0] = True
    bad = tokens.clone()
    bad[1, 1] = 99
    assert K.token_prob(x, bad, rows, backend=backend)[0, 0].item() == pytest.approx(0.2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_computed_row_reads_nothing(backend, warm_numba):
    """Rows all False: zeros out, on every backend, however bad the logits (no row is read;
    the Numba wrappers return without a kernel)."""
    x = torch.full((2, 3, 7), math.nan)
    tokens = torch.full((2, 3), 99)  # outside the vocabulary: allowed outside `rows`
    rows = torch.zeros(2, 3, dtype=torch.bool)
    for out in (K.token_prob(x, tokens, rows, backend=backend), K.kl(x, x, rows, backend=backend)):
        assert out.dtype == torch.float32 and out.shape == (2, 3)
        assert bool((out == 0).all())


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not available")
def test_numba_serial_and_parallel_stats_builds_agree(warm_numba):
    """A call above the serial cut runs the thread-pool builds of token_prob and kl; each of
    its rows alone runs the serial builds: the same outputs, bit for bit."""
    from remask.kernels._numba.propose import SERIAL_ELEMENTS

    gen = torch.Generator().manual_seed(5)
    vocab = 4099
    n = SERIAL_ELEMENTS // vocab + 3  # (n, V) computed together is above the cut
    x = (torch.randn(n, vocab, generator=gen) * 3).to(torch.bfloat16)
    y = torch.randn(n, vocab, generator=gen) * 3
    tokens = torch.randint(0, vocab, (n,), generator=gen)
    prob = K.token_prob(x, tokens, backend="numba")
    div = K.kl(x, y, backend="numba")
    for i in (0, n // 2, n - 1):
        assert torch.equal(
            K.token_prob(x[i : i + 1], tokens[i : i + 1], backend="numba")[0], prob[i]
        )
        assert torch.equal(K.kl(x[i : i + 1], y[i : i + 1], backend="numba")[0], div[i])
