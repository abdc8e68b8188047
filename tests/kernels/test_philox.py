"""Philox4x32-10 known answers and the uniform() contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import remask.kernels as K
from remask.kernels._philox import _compiled, _philox_torch, philox4x32, row_uniforms
from remask.kernels._reference import philox4x32_py

# Known-answer vectors: Random123 distribution, file tests/kat_vectors
# (https://github.com/DEShawResearch/random123), the three "philox4x32 10" lines;
# columns: counter (4 words), key (2 words), expected output (4 words).
KAT = [
    (
        (0x00000000, 0x00000000, 0x00000000, 0x00000000),
        (0x00000000, 0x00000000),
        (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8),
    ),
    (
        (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_python_oracle_known_answers(counter, key, expected):
    assert philox4x32_py(counter, key) == expected


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_torch_known_answers(counter, key, expected):
    # philox4x32 on CPU goes through Numba when it is there; the torch ops (every other
    # device) are checked on their own.
    words = philox4x32(*(torch.tensor([c]) for c in counter), *key)
    assert tuple(int(w) for w in words) == expected
    words = _philox_torch(*(torch.tensor([c]) for c in counter), *key)
    assert tuple(int(w) for w in words) == expected


@pytest.mark.parametrize(
    "counter_shape, key_shape", [((5, 7), (5, 7)), ((4, 1), (1, 9)), ((), ()), ((0, 3), (1,))]
)
def test_cpu_fast_path_equals_the_torch_ops(counter_shape, key_shape):
    """Per-element keys and broadcasting: the compiled CPU path gives the torch ops' words."""
    gen = torch.Generator().manual_seed(sum(counter_shape) + 7)
    counter = [torch.randint(0, 2**32, counter_shape, generator=gen) for _ in range(4)]
    key = [torch.randint(0, 2**32, key_shape, generator=gen) for _ in range(2)]
    pytest.importorskip("remask.kernels._numba.propose")  # loaded: the fast path is taken
    assert _compiled() is not None
    got = philox4x32(*counter, *key)
    want = _philox_torch(*torch.broadcast_tensors(*counter), *key)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and torch.equal(g, w)


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_numba_known_answers(counter, key, expected):
    nb = pytest.importorskip("remask.kernels._numba.propose")
    out = nb.philox4x32(np.array([counter], dtype=np.uint64), key)
    assert tuple(int(w) for w in out[0]) == expected


def test_backends_agree_on_random_counters():
    """Beyond the three vectors: 2000 random counters/keys, torch vs numba vs Python."""
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(2000, 4), dtype=np.uint64)
    key = (int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32)))
    words = philox4x32(*(torch.from_numpy(ctr[:, i].astype(np.int64)) for i in range(4)), *key)
    got = np.stack([w.numpy() for w in words], axis=1).astype(np.uint64)
    for i in range(0, 2000, 97):
        assert tuple(int(v) for v in got[i]) == philox4x32_py(tuple(int(c) for c in ctr[i]), key)
    nb = pytest.importorskip("remask.kernels._numba.propose")
    assert np.array_equal(nb.philox4x32(ctr, key), got)


def test_uniform_open_interval_shape_and_reproducibility():
    key = K.split(123, (3, 1000))
    u = K.uniform(key)
    assert u.shape == (3, 1000) and u.dtype == torch.float32
    assert torch.equal(u, K.uniform(key.clone()))
    assert (u > 0).all() and (u < 1).all()
    d = K.uniform(key, dtype=torch.float64)
    assert d.dtype == torch.float64 and (d > 0).all() and (d < 1).all()
    # float32 keeps the top 24 of the same 53 bits
    assert torch.allclose(d.float(), u, atol=2**-24)
    assert not torch.equal(u, K.uniform(K.split(124, (3, 1000))))


@pytest.mark.statistical
def test_uniform_is_uniform():
    """Kolmogorov-Smirnov on 200k values; the fixed seed makes the p-value deterministic."""
    u = K.uniform(K.split(2024, 200_000), dtype=torch.float64).numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_uniform_stream_differs_from_propose_stream():
    """Same key: uniform() and propose()'s row uniforms use other counter words."""
    key = K.split(5, 256)
    u1, _ = row_uniforms(key)
    assert not torch.isclose(u1, K.uniform(key, dtype=torch.float64)).any()


def test_uniform_validation():
    with pytest.raises(TypeError, match="key"):
        K.uniform(3)
    with pytest.raises(TypeError, match="int64"):
        K.uniform(torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="dtype"):
        K.uniform(K.split(0, 3), dtype=torch.float16)


def test_fold_is_philox_of_the_data_under_the_key():
    """fold(key, data) = words (0, 1) of Philox4x32-10 at counter (data_lo, data_hi, 0, 2)."""
    for key, data in [(0, 0), (7, 1), (2**64 - 1, 2**63 + 5), (0x0123456789ABCDEF, 2**32)]:
        w0, w1, _, _ = philox4x32_py(
            (data & 0xFFFFFFFF, data >> 32, 0, K.STREAM_FOLD), (key & 0xFFFFFFFF, key >> 32)
        )
        want = (w1 << 32) | w0
        got = int(K.fold(key, data)) % 2**64  # int64 bits -> unsigned
        assert got == want, (key, data)
    # tensors broadcast; negative int64 values are keys >= 2**63
    keys = torch.tensor([-1, 3])
    assert torch.equal(K.fold(keys, 5), torch.stack([K.fold(2**64 - 1, 5), K.fold(3, 5)]))
    with pytest.raises(ValueError, match="2\\*\\*64"):
        K.fold(2**64, 0)
    with pytest.raises(TypeError, match="int64"):
        K.fold(torch.zeros(2, dtype=torch.int32), 0)


def test_fold_rejects_shapes_that_do_not_broadcast(monkeypatch):
    """A ValueError naming both shapes, on the compiled path and on the torch ops alike."""
    pytest.importorskip("numba")
    import remask.kernels._numba.propose  # noqa: F401  (loads the compiled path)

    assert _compiled() is not None
    a, b = torch.zeros(3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"shapes \[\(3,\), \(2,\)\] do not broadcast"):
        K.fold(a, b)
    monkeypatch.setattr("remask.kernels._philox._compiled", lambda: None)
    with pytest.raises(ValueError, match=r"shapes \[\(3,\), \(2,\)\] do not broadcast"):
        K.fold(a, b)


def test_folding_a_block_of_keys_does_not_import_sympy(fresh_python):
    """``torch.broadcast_shapes`` imports sympy on its first call in a process (~0.4 s, which
    the second ``generate`` of a session paid when the compiled Philox first folded a block
    of step keys); fold broadcasts with numpy. In a fresh interpreter, since this one may
    have sympy already."""
    pytest.importorskip("numba")
    code = (
        "import sys, torch\n"
        "import remask.kernels as K\n"
        "import remask.kernels._numba.propose\n"
        "assert K._philox._compiled() is not None\n"
        "K.fold(torch.zeros(1, 4, dtype=torch.int64), torch.arange(3).unsqueeze(-1))\n"
        "print('sympy' in sys.modules)\n"
    )
    assert fresh_python(code) == "False"


def test_split_and_row_uniforms_follow_the_spec():
    keys = K.split(9, 5)
    assert torch.equal(keys, torch.stack([K.fold(9, i) for i in range(5)]))
    u1, u2 = row_uniforms(keys)
    for i in range(5):
        k = int(keys[i]) % 2**64
        w0, w1, w2, w3 = philox4x32_py((0, 0, 0, K.STREAM_PROPOSE), (k & 0xFFFFFFFF, k >> 32))
        assert float(u1[i]) == ((((w1 << 32) | w0) >> 11) + 0.5) / 2.0**53
        assert float(u2[i]) == ((((w3 << 32) | w2) >> 11) + 0.5) / 2.0**53


def test_position_keys_ignore_padding_and_batch_index():
    """A row's keys depend on its key and the rank of each real token, nothing else."""
    key = K.split(1, 2)
    real = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    keys = K.position_keys(key, real, K.Purpose.PROPOSE)  # (2, 5)
    alone = K.position_keys(key[:1], torch.ones(1, 3, dtype=torch.bool), K.Purpose.PROPOSE)
    assert torch.equal(keys[0, 2:], alone[0])
    swapped = K.position_keys(key.flip(0), real.flip(0), K.Purpose.PROPOSE)
    assert torch.equal(swapped.flip(0)[:, 2:], keys[:, 2:])
    assert not torch.equal(keys, K.position_keys(key, real, K.Purpose.SCORE))
    assert len(set(keys[1].tolist())) == 5


@pytest.mark.parametrize("shape", [(3, 17), (1, 1), (2, 0), (0, 4)])
def test_compiled_position_keys_equal_the_two_folds(shape):
    """The compiled loop of position_keys gives fold(fold(key, purpose), rank) bit for bit,
    left padding and padding inside a row included."""
    pytest.importorskip("remask.kernels._numba.propose")  # loaded: the compiled loop is taken
    gen = torch.Generator().manual_seed(shape[1])
    key = torch.randint(-(2**63), 2**63 - 1, shape[:1], generator=gen)  # (B,)
    real = torch.rand(shape, generator=gen) < 0.7  # (B, L)
    if shape[0] and shape[1] > 3:
        real[0, :3] = False  # left padding: rank 0 until the first real token
    rank = (real.long().cumsum(-1) - 1).clamp_min(0)  # (B, L)
    for purpose in (K.Purpose.PROPOSE, K.Purpose.POSITIONS):
        want = K.fold(K.fold(key, int(purpose)).unsqueeze(-1), rank)  # (B, L)
        got = K.position_keys(key, real, purpose)
        assert got.shape == want.shape and torch.equal(got, want)


def test_uniform_never_reaches_one():
    """The top 24 bits k = 2**24 - 1 gave (k + 0.5)·2**-24, rounded to even in float32: 1.0
    (about once in 2**24 draws; fold(0, 31460755) is such a key). From 1/2 on the value is
    k·2**-24, exact; below, (k + 0.5)·2**-24, exact. The same in float64 at 2**53 - 1."""
    from remask.kernels import _philox

    key = K.fold(0, 31460755).reshape(1)
    for u in (K.uniform(key), _philox._to_unit32(_philox._draw(key, K.STREAM_UNIFORM)[1])):
        assert u.item() == 1.0 - 2**-24
    words = torch.tensor([0xFFFFFF00, 0x7FFFFF00, 0x80000000, 0x00000000], dtype=torch.int64)
    k = (words >> 8).double()
    want = torch.where(k < 2**23, k + 0.5, k) * 2**-24
    assert torch.equal(_philox._to_unit32(words).double(), want)  # every value exact
    ones = torch.tensor([0xFFFFFFFF], dtype=torch.int64)
    assert _philox._open_unit64(ones, ones).item() == 1.0 - 2**-53
    # the compiled path and the torch path agree value for value, both dtypes
    keys = K.split(11, 5000)
    w0, w1, _, _ = _philox._draw(keys, K.STREAM_UNIFORM)
    assert torch.equal(K.uniform(keys), _philox._to_unit32(w1))
    assert torch.equal(K.uniform(keys, dtype=torch.float64), _philox._open_unit64(w0, w1))


def test_position_keys_and_split_validate_their_arguments():
    real = torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"attention_mask must be a \(1, L\) bool"):
        K.position_keys(K.split(0, 1), real, K.Purpose.PROPOSE)  # one key for three rows
    with pytest.raises(TypeError, match=r"key must be a \(B,\) int64 tensor"):
        K.position_keys(K.split(0, (3, 1)), real, K.Purpose.PROPOSE)
    with pytest.raises(ValueError, match="purpose must be an int >= 0, got -1"):
        K.position_keys(K.split(0, 3), real, -1)
    with pytest.raises(ValueError, match=r"split needs one key.*got shape \(3,\)"):
        K.split(K.split(0, 3), 3)
    assert torch.equal(K.split(torch.tensor(5), 3), K.split(5, 3))
