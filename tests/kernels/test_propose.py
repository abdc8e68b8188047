"""propose(): torch reference vs the float64 oracle, every CPU backend vs the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remask.kernels as K
from remask.kernels._reference import propose_oracle

BACKENDS = [b for b in K.backends("cpu") if b != "triton"]
FAST_BACKENDS = [b for b in BACKENDS if b != "torch"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Tolerances against the reference: probabilities 1e-5 relative (the task's bound for float32
# logits), entropy 1e-5 relative plus an absolute floor for near-zero entropies.
PROB_RTOL, PROB_ATOL = 1e-5, 1e-7
ENT_RTOL, ENT_ATOL = 1e-5, 2e-6


@st.composite
def cases(draw, vocab_sizes=(1, 2, 7, 33, 1000, 4097, 9000, 32000)):
    """Random logits with optional -inf lanes, tied maxima and a rows subset."""
    b = draw(st.integers(1, 3))
    seq = draw(st.integers(1, 4))
    vocab = draw(st.sampled_from(vocab_sizes))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from([0.1, 3.0, 20.0]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(b, seq, vocab, generator=gen) * scale  # (B, L, V)
    if vocab > 1 and draw(st.booleans()):
        # -inf lanes, keeping at least one finite logit per row
        dead = torch.rand(b, seq, vocab, generator=gen) < 0.5
        dead[..., torch.randint(vocab, (1,), generator=gen)] = False
        x = x.masked_fill(dead, -math.inf)
    if vocab > 1 and draw(st.booleans()):
        # a tied maximum at a random later position
        top = x.argmax(-1, keepdim=True)  # (B, L, 1)
        other = (top + 1 + torch.randint(vocab - 1, top.shape, generator=gen)) % vocab
        x.scatter_(-1, other, x.gather(-1, top))
    rows = None
    if draw(st.booleans()):
        rows = torch.rand(b, seq, generator=gen) < 0.6
    temperature = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    # Arbitrary 64-bit keys, one per row (negative int64 = keys >= 2**63).
    key = torch.randint(-(2**63), 2**63 - 1, (b, seq), generator=gen)
    return x.to(dtype), rows, temperature, key


def assert_matches(out: K.Proposal, ref: K.Proposal, what: str) -> None:
    """Tokens exact, float outputs within the tolerances; verbose message on failure."""
    bad = (out.tokens != ref.tokens).nonzero().tolist()
    assert not bad, (
        f"{what}: tokens differ at {bad[:5]}: {out.tokens.flatten()[:8]} vs "
        f"{ref.tokens.flatten()[:8]}"
    )
    torch.testing.assert_close(out.prob, ref.prob, rtol=PROB_RTOL, atol=PROB_ATOL, msg=what)
    torch.testing.assert_close(out.margin, ref.margin, rtol=PROB_RTOL, atol=PROB_ATOL, msg=what)
    torch.testing.assert_close(out.entropy, ref.entropy, rtol=ENT_RTOL, atol=ENT_ATOL, msg=what)
    for name, t, dtype in zip(
        Proposal_fields, out, (torch.int64,) + (torch.float32,) * 3, strict=True
    ):
        assert t.dtype == dtype, f"{what}: {name} has dtype {t.dtype}"


Proposal_fields = K.Proposal._fields


def oracle(x: torch.Tensor, rows, temperature, key) -> K.Proposal:
    v = x.shape[-1]
    flat_rows = None if rows is None else rows.reshape(-1).numpy()
    keys = None if key is None else key.reshape(-1).tolist()
    toks, prob, margin, ent = propose_oracle(
        x.float().reshape(-1, v).numpy(), temperature, keys, flat_rows
    )
    shape = x.shape[:-1]
    return K.Proposal(
        torch.from_numpy(toks).reshape(shape),
        torch.from_numpy(prob).float().reshape(shape),
        torch.from_numpy(margin).float().reshape(shape),
        torch.from_numpy(ent).float().reshape(shape),
    )


# ------------------------------------------------------------------------- reference vs oracle


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(vocab_sizes=(1, 2, 7, 33, 1000, 4097, 9000)))
def test_reference_matches_float64_oracle(case):
    x, rows, temperature, key = case
    out = K.propose(x, temperature=temperature, key=key, rows=rows, backend="torch")
    assert_matches(out, oracle(x, rows, temperature, key), "torch vs oracle")


# ----------------------------------------------------------------------- backends vs reference


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_backend_matches_reference(backend, case, warm_numba):
    x, rows, temperature, key = case
    kwargs = {"temperature": temperature, "key": key, "rows": rows}
    out = K.propose(x, backend=backend, **kwargs)
    ref = K.propose(x, backend="torch", **kwargs)
    assert_matches(out, ref, f"{backend} vs torch ({x.dtype}, V={x.shape[-1]}, T={temperature})")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_llada_vocab_rows_against_oracle(backend, temperature, warm_numba):
    """V = 126464 (LLaDA) on a few rows: all 31 sampling tiles, last one partial."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 126464, generator=gen) * 4  # (N, V)
    x[1, 126463] = 40.0  # the max in the last, partial tile
    x[2] = x[2] * 0.01  # nearly uniform: the draw spreads over all tiles
    x = x.bfloat16()
    key = K.split(11, 3)
    out = K.propose(x, temperature=temperature, key=key, backend=backend)
    assert_matches(out, oracle(x, None, temperature, key), f"{backend} V=126464")
    if temperature == 0:
        assert int(out.tokens[1]) == 126463


# ------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_single_finite_logit(backend, temperature, warm_numba):
    """Rows of -inf except one: that token, prob 1, margin 1, entropy 0, at any T."""
    x = torch.full((4, 5000), -math.inf)
    hot = torch.tensor([0, 4095, 4096, 4999])
    x[torch.arange(4), hot] = torch.tensor([-3.0, 0.0, 1e30, -1e30])
    out = K.propose(x, temperature=temperature, key=K.split(1, 4), backend=backend)
    assert out.tokens.tolist() == hot.tolist()
    assert out.prob.tolist() == [1.0] * 4
    assert out.margin.tolist() == [1.0] * 4
    assert out.entropy.tolist() == [0.0] * 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_vocab_of_one(backend, warm_numba):
    out = K.propose(
        torch.tensor([[[2.5], [-7.0]]]), temperature=1.0, key=K.split(0, (1, 2)), backend=backend
    )
    assert out.tokens.tolist() == [[0, 0]]
    assert out.prob.tolist() == [[1.0, 1.0]]
    assert out.margin.tolist() == [[1.0, 1.0]]  # documented: no runner-up, its prob is 0
    assert out.entropy.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_magnitudes(backend, warm_numba):
    """Logits near ±float32 max: differences overflow to -inf and must not produce NaN."""
    big = 3.0e38
    x = torch.tensor([[big, -big, big * 0.5, -big], [-big, -big, -big * 0.99, 0.0]])
    out = K.propose(x, backend=backend)
    assert out.tokens.tolist() == [0, 3]
    assert torch.isfinite(torch.stack(out[1:])).all()
    assert out.prob.tolist() == [1.0, 1.0]
    assert out.entropy.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_pick_lowest_index(backend, warm_numba):
    x = torch.zeros(2, 9000, dtype=torch.bfloat16)
    x[0, [17, 4100, 8999]] = 3.0
    x[1, [8999, 5000]] = 1.0
    out = K.propose(x, backend=backend)
    assert out.tokens.tolist() == [17, 5000]
    assert out.margin.tolist() == [0.0, 0.0]  # a tied maximum has margin 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad, message", [(math.nan, "NaN"), (math.inf, r"\+inf")])
def test_nan_and_posinf_rows_raise(backend, bad, message, warm_numba):
    x = torch.randn(2, 3, 50)
    x[1, 2, 7] = bad
    with pytest.raises(ValueError, match=rf"row \(1, 2\) contains {message}"):
        K.propose(x, backend=backend)
    rows = torch.ones(2, 3, dtype=torch.bool)
    rows[1, 2] = False  # the bad row is not computed, so it is not an error
    out = K.propose(x, rows=rows, backend=backend)
    assert int(out.tokens[1, 2]) == -1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_computed_row_reads_nothing(backend, dtype, warm_numba):
    """Rows all False (e.g. an early exit that no row takes): tokens -1 and zero statistics,
    however bad the logits (no row is read; the Numba wrapper returns without a kernel)."""
    x = torch.full((2, 3, 50), math.nan, dtype=dtype)
    rows = torch.zeros(2, 3, dtype=torch.bool)
    key = K.split(0, (2, 3))
    for kw in ({}, {"temperature": 1.0, "key": key, "top_p": 0.9}):
        out = K.propose(x, rows=rows, backend=backend, **kw)
        assert out.tokens.tolist() == [[-1] * 3] * 2
        for stat in (out.prob, out.margin, out.entropy):
            assert stat.dtype == torch.float32 and bool((stat == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.7])
def test_bf16_tiles_across_max_jumps_and_neg_inf_tiles(backend, temperature, warm_numba):
    """bf16 rows of three sampling tiles (the numba kernel sweeps a bf16 tile twice: 16-bit
    keys for the max, then the sums): a max that jumps by far more than the rebase limit in a
    later tile, an all -inf middle tile, a row whose max is ±0 in several tiles, a row that
    only falls -- against the float64 oracle."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 9000, generator=gen)  # (N, V), tiles [0, 4096), [4096, 8192), rest
    x[0, 8500] = 60.0  # a jump of ~57 in the last tile
    x[1, 4096:8192] = -math.inf
    x[1, 30] = 9.0
    x[2] = -torch.rand(9000, generator=gen) - 0.5
    x[2, [100, 5000, 8999]] = torch.tensor([-0.0, 0.0, -0.0])  # the max: first index wins
    x[3] = torch.linspace(30.0, -30.0, 9000)
    x = x.bfloat16()
    key = K.split(4, 4)
    out = K.propose(x, temperature=temperature, key=key, backend=backend)
    assert_matches(out, oracle(x, None, temperature, key), f"{backend} bf16 T={temperature}")
    if temperature == 0:
        assert out.tokens.tolist() == [8500, 30, 100, 0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits, message", [(0x7FC0, "NaN"), (-64, "NaN"), (0x7F80, r"\+inf")])
def test_bf16_nan_and_posinf_in_a_later_tile_raise(backend, bits, message, warm_numba):
    """NaN of either sign (bits 0x7FC0, 0xFFC0) and +inf found by the 16-bit key sweep."""
    x = torch.randn(2, 9000).bfloat16()
    x.view(torch.int16)[1, 8400] = bits
    with pytest.raises(ValueError, match=rf"row \(1,\) contains {message}"):
        K.propose(x, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_neg_inf_row_raises(backend, warm_numba):
    x = torch.randn(3, 10)
    x[2] = -math.inf
    with pytest.raises(ValueError, match="no finite logit"):
        K.propose(x, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_subset_and_defaults(backend, warm_numba):
    """Computed rows equal the full computation (the draw depends on the row's key only)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 300, generator=gen)
    rows = torch.tensor(
        [[True, False, True, False, False, True], [False, False, False, True, True, False]]
    )
    key = K.split(9, (2, 6))
    full = K.propose(x, temperature=1.0, key=key, backend=backend)
    part = K.propose(x, temperature=1.0, key=key, rows=rows, backend=backend)
    assert torch.equal(part.tokens[rows], full.tokens[rows])
    assert torch.equal(part.prob[rows], full.prob[rows])
    assert (part.tokens[~rows] == -1).all()
    for t in part[1:]:
        assert (t[~rows] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_key_decides_the_draw(backend, warm_numba):
    x = torch.zeros(64, 50)  # uniform rows: every token equally likely
    key = K.split(1, 64)
    a = K.propose(x, temperature=1.0, key=key, backend=backend).tokens
    assert torch.equal(a, K.propose(x, temperature=1.0, key=key.clone(), backend=backend).tokens)
    assert not torch.equal(
        a, K.propose(x, temperature=1.0, key=K.split(2, 64), backend=backend).tokens
    )
    # A row's draw follows its key, not its index: permuting rows and keys permutes tokens.
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    y = torch.randn(64, 50, generator=torch.Generator().manual_seed(1))
    b = K.propose(y, temperature=1.0, key=key, backend=backend).tokens
    assert torch.equal(
        b[perm], K.propose(y[perm], temperature=1.0, key=key[perm], backend=backend).tokens
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_dim_and_non_contiguous_input(backend, warm_numba):
    x = torch.randn(7, 40, 3)[:, :, 1]  # (7, 40) with stride 3 along V
    out = K.propose(x, backend=backend)
    assert out.tokens.shape == (7,)
    assert torch.equal(out.tokens, x.argmax(-1))
    empty = K.propose(torch.zeros(0, 5), backend=backend)
    assert empty.tokens.shape == (0,)


def test_argument_validation():
    x = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="key is required"):
        K.propose(x, temperature=0.5)
    with pytest.raises(ValueError, match="temperature"):
        K.propose(x, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        K.propose(x, temperature=math.inf, key=K.split(0, (2, 3)))
    with pytest.raises(ValueError, match=r"rows must have shape \(2, 3\)"):
        K.propose(x, rows=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="rows must be a bool"):
        K.propose(x, rows=torch.ones(2, 3))
    with pytest.raises(TypeError, match="dtype"):
        K.propose(x.long())
    with pytest.raises(ValueError, match="shape"):
        K.propose(torch.zeros(5))
    with pytest.raises(TypeError, match="key must be an int64 tensor"):
        K.propose(x, temperature=1.0, key=3)
    with pytest.raises(TypeError, match="int64"):
        K.propose(x, temperature=1.0, key=torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"key must have shape \(2, 3\).*got \(6,\)"):
        K.propose(x, temperature=1.0, key=K.split(0, 6))
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        K.propose(x, backend="cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_temperatures_below_the_smallest_normal_float32_are_refused(backend, warm_numba):
    """The fast backends scale by 1 / T in float32, which overflows below the smallest normal
    float32 (it used to turn the weights into NaN and draw token 0: a wrong token, silently).
    Refused before any kernel runs, on every backend; T = MIN_TEMPERATURE itself works."""
    x = torch.randn(3, 9000)
    x[:, 17] = 40.0  # the argmax, far ahead: a tiny T draws it
    key = K.split(0, (3,))
    for temperature in (1e-40, math.nextafter(K.MIN_TEMPERATURE, 0.0)):
        with pytest.raises(ValueError, match=f"at least 1.175e-38.*got {temperature!r}"):
            K.propose(x, temperature=temperature, key=key, backend=backend)
    with pytest.raises(TypeError, match="temperature must be a real number, got True"):
        K.propose(x, temperature=True, key=key, backend=backend)
    for kw in ({}, {"top_p": 0.9}, {"top_k": 3}, {"min_p": 0.1}, {"stats": "sampled"}):
        for dtype in (torch.float32, torch.bfloat16):
            out = K.propose(
                x.to(dtype), temperature=K.MIN_TEMPERATURE, key=key, backend=backend, **kw
            )
            assert out.tokens.tolist() == [17, 17, 17], (kw, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_peaked_row_with_a_long_tail_stays_within_the_documented_bound(backend, dtype, warm_numba):
    """The Numba sums run in float32 lanes: a lane holding the dominant e = 1 drops tail terms
    under half its ulp. Its module docstring bounds the loss at ~4e-6 of s; checked here at
    1e-5 (prob relative, entropy absolute) on rows built to hit it (tails just under 6e-8)."""
    rows = []
    for tail in (5.9e-8, 3e-8, 1e-7):
        for vocab_pos in (0, 5000):  # the dominant token in the first tile or the second
            x = torch.full((9000,), math.log(tail))
            x[vocab_pos] = 0.0
            rows.append(x)
    x = torch.stack(rows).to(dtype)  # (6, 9000)
    out = K.propose(x, backend=backend)
    ref = K.propose(x, backend="torch")
    assert torch.equal(out.tokens, ref.tokens)
    torch.testing.assert_close(out.prob, ref.prob, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(out.entropy, ref.entropy, rtol=0.0, atol=1e-5)
    tokens = torch.full((6,), 3)
    torch.testing.assert_close(
        K.token_prob(x, tokens, backend=backend),
        K.token_prob(x, tokens, backend="torch"),
        rtol=1e-5,
        atol=0.0,
    )


def test_oracle_is_not_the_reference():
    """The oracle itself: hand-computed values for a 3-token row."""
    toks, prob, margin, ent = propose_oracle(np.array([[0.0, math.log(2.0), -math.inf]]))
    assert toks.tolist() == [1]
    assert prob[0] == pytest.approx(2 / 3, rel=1e-12)
    assert margin[0] == pytest.approx(1 / 3, rel=1e-12)
    assert ent[0] == pytest.approx(
        -(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3), rel=1e-12
    )


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not available")
def test_fast_exp_relative_error():
    """The Numba kernels' float32 polynomial exp and the float64 one of the sampled tile,
    against numpy's exp on a dense grid (bounds documented in kernels/_numba/propose.py)."""
    from numba import njit

    from remask.kernels._numba.propose import _D_MIN, _FAST, _exp64, _exp_neg

    @njit(fastmath=_FAST)  # the kernels' flags: the range reduction is one contracted FMA
    def ev32(d, out):
        for i in range(d.shape[0]):
            out[i] = _exp_neg(max(_D_MIN, d[i]))

    @njit
    def ev64(y, out):
        for i in range(y.shape[0]):
            out[i] = _exp64(y[i])

    d = np.linspace(-87.0, 0.0, 400_001).astype(np.float32)
    got = np.empty_like(d)
    ev32(d, got)
    rel = np.abs(got / np.exp(d.astype(np.float64)) - 1.0)
    assert rel[d > -10].max() < 2.5e-7 and rel.max() < 4e-7, rel.max()
    assert got[-1] == 1.0  # exp(0) is exactly 1: the maximum's weight
    ev32(np.array([-88.0, -np.inf], dtype=np.float32), got[:2])
    assert got[0] == 0.0 and got[1] == 0.0
    y = np.concatenate([-np.geomspace(1e-12, 700.0, 200_001), [0.0, -709.0, -np.inf]])
    got64 = np.empty_like(y)
    ev64(y, got64)
    rel64 = np.abs(got64[:-3] / np.exp(y[:-3]) - 1.0)
    assert rel64.max() < 4.5e-16, rel64.max()  # within 2 ulp
    assert got64[-3] == 1.0 and got64[-2] == 0.0 and got64[-1] == 0.0


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not available")
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("top_p", [None, 0.9])
def test_numba_serial_and_parallel_builds_agree(temperature, top_p, warm_numba):
    """A call above the serial cut runs the thread-pool build; each of its rows alone runs the
    serial build: the same outputs, bit for bit."""
    from remask.kernels._numba.propose import SERIAL_ELEMENTS

    gen = torch.Generator().manual_seed(4)
    vocab = 4099
    n = SERIAL_ELEMENTS // vocab + 3  # (n, V) computed together is above the cut
    x = torch.randn(n, vocab, generator=gen) * 3
    key = K.split(11, (n,))
    kw = dict(temperature=temperature, top_p=top_p, backend="numba")
    together = K.propose(x, key=key, **kw)
    for i in (0, n // 2, n - 1):
        alone = K.propose(x[i : i + 1], key=key[i : i + 1], **kw)
        for a, b in zip(alone, together):
            assert torch.equal(a[0], b[i])


def test_serial_and_parallel_builds_do_not_share_a_cache_entry():
    """Numba keys its on-disk cache by qualified name, line and signature, not by compile
    flags: the serial build of each kernel (propose, token_prob, kl) must live under its own
    name, or the parallel kernel loads whichever build compiled first (it then ran on one
    thread)."""
    pytest.importorskip("numba")
    from remask.kernels._numba import propose as nb
    from remask.kernels._numba import stats as ns

    for parallel, serial in [
        (nb._propose_kernel, nb._propose_kernel_serial),
        (ns._token_prob_kernel, ns._token_prob_kernel_serial),
        (ns._kl_kernel, ns._kl_kernel_serial),
    ]:
        index = parallel._cache._cache_file._index_path
        assert index != serial._cache._cache_file._index_path
        assert parallel.targetoptions.get("parallel")
        assert not serial.targetoptions.get("parallel")


def test_stale_kernel_caches_are_dropped_when_a_source_changes(tmp_path):
    """The package keys its Numba caches by a digest of every source compiled into them: a
    change to any one source deletes them all; unchanged sources keep them."""
    from remask.kernels._numba import _drop_stale_caches

    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    entries = [cache / "a.f-1.py311.nbi", cache / "a.f-1.py311.1.nbc", cache / "b.g-3.py311.nbi"]
    for path in entries:
        path.write_bytes(b"compiled")
    keep = cache / "a.cpython-311.pyc"
    keep.write_bytes(b"bytecode")
    assert _drop_stale_caches(cache, (a, b))  # no stamp yet: the caches may be stale
    assert not any(p.exists() for p in entries) and keep.exists()
    for path in entries:
        path.write_bytes(b"compiled")
    assert not _drop_stale_caches(cache, (a, b))  # same sources: kept
    assert all(p.exists() for p in entries)
    b.write_text("y = 3\n")  # the callee's file alone changes
    assert _drop_stale_caches(cache, (a, b))
    assert not any(p.exists() for p in entries)


def test_stale_cache_guard_follows_numba_cache_dir(fresh_python, tmp_path):
    """With ``NUMBA_CACHE_DIR`` set Numba caches the kernels there, not in ``__pycache__``:
    the guard finds that folder (the one a kernel's own cache reports) and drops stale
    entries in it."""
    pytest.importorskip("numba")
    code = """
import pathlib
from remask.kernels._numba import _cache_dir, _drop_stale_caches
from remask.kernels._numba import propose as nb
where = _cache_dir()
assert where == pathlib.Path(nb._propose_kernel._cache._cache_path), where
stale = where / "propose._propose_kernel-1.py311.nbi"
stale.write_bytes(b"compiled")
(where / "remask-kernel-sources.txt").write_text("a digest of other sources")
assert _drop_stale_caches() and not stale.exists()
assert not _drop_stale_caches()  # the stamp is current now
print(where.parent)
"""
    out = fresh_python(code, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert out == str(tmp_path)
