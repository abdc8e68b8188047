"""Philox4x32-10 known answers and the uniform() contract."""

from __future__ import annotations

import numpy as np
import pytest
import remask.kernels as K
import torch
from remask.kernels._philox import philox4x32, row_uniforms
from remask.kernels._reference import philox4x32_py
from scipy import stats

# Known-answer vectors: Random123 distribution, file tests/kat_vectors
# (https://github.com/DEShawResearch/random123), the three "philox4x32 10" lines;
# columns: counter (4 words), key (2 words), expected output (4 words).
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_python_oracle_known_answers(counter, key, expected):
    assert philox4x32_py(counter, key) == expected


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_torch_known_answers(counter, key, expected):
    words = philox4x32(*(torch.tensor([c]) for c in counter), *key)
    assert tuple(int(w) for w in words) == expected


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
    u = K.uniform((3, 1000), seed=123, offset=4)
    assert u.shape == (3, 1000) and u.dtype == torch.float32
    assert torch.equal(u, K.uniform((3, 1000), seed=123, offset=4))
    assert (u > 0).all() and (u < 1).all()
    d = K.uniform(5000, seed=123, offset=4, dtype=torch.float64)
    assert d.dtype == torch.float64 and (d > 0).all() and (d < 1).all()
    # float32 keeps the top 24 of the same 53 bits
    assert torch.allclose(d[:3000].float(), u.flatten()[:3000], atol=2**-24)
    assert not torch.equal(u, K.uniform((3, 1000), seed=124, offset=4))
    assert not torch.equal(u, K.uniform((3, 1000), seed=123, offset=5))


@pytest.mark.statistical
def test_uniform_is_uniform():
    """Kolmogorov-Smirnov on 200k values; the fixed seed makes the p-value deterministic."""
    u = K.uniform(200_000, seed=2024, dtype=torch.float64).numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_uniform_stream_differs_from_propose_stream():
    """Same seed/offset/index: uniform() and propose()'s row uniforms use other words."""
    idx = torch.arange(256)
    u1, _ = row_uniforms(idx, 5, 9)
    assert not torch.isclose(u1, K.uniform(256, seed=5, offset=9, dtype=torch.float64)).any()


def test_uniform_validation():
    with pytest.raises(ValueError, match="seed"):
        K.uniform(3, seed=2**64)
    with pytest.raises(TypeError, match="seed"):
        K.uniform(3, seed=1.5)
    with pytest.raises(ValueError, match="offset"):
        K.uniform(3, seed=0, offset=-1)
    with pytest.raises(ValueError, match="dtype"):
        K.uniform(3, seed=0, dtype=torch.float16)
