"""Triton backend checks, run in a subprocess by test_triton.py.

Not collected by default (no ``test_`` prefix): ``TRITON_INTERPRET=1`` must be set before
triton is imported, so the suite runs in its own interpreter, either in interpreter mode on
CPU tensors (``REMASK_TEST_DEVICE=cpu``) or compiled on a GPU (``REMASK_TEST_DEVICE=cuda``).
Shapes are tiny: the interpreter costs a few ms per program instance.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from scipy import stats

import remask.kernels as K

DEVICE = os.environ.get("REMASK_TEST_DEVICE", "cpu")
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run through test_triton.py (needs TRITON_INTERPRET=1)", allow_module_level=True)

from remask.kernels._triton import propose as TP

# -inf - -inf in the kernels is NaN by design (sent to -FLT_MAX before any exp2); the
# interpreter computes it with numpy, which warns.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

KAT = [  # Random123 tests/kat_vectors, philox4x32 10 (see test_philox.py)
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_triton_philox_known_answers(counter, key, expected):
    out = TP.philox4x32(torch.tensor([counter], dtype=torch.int64, device=DEVICE), key)
    assert tuple(int(v) for v in out[0]) == expected


def _case(vocab: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, vocab, generator=gen) * 3  # (B, L, V)
    if vocab > 2:
        x[0, 1, : vocab // 2] = -math.inf  # -inf lanes
        x[1, 0, vocab - 1] = x[1, 0].max()  # tied maximum
    rows = torch.tensor([[True, True, False], [True, True, True]])
    return x.to(dtype).to(DEVICE), rows.to(DEVICE)


@pytest.mark.parametrize("vocab", [1, 33, 5000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_triton_matches_reference(vocab, dtype, temperature):
    x, rows = _case(vocab, dtype, seed=vocab)
    # keys >= 2**63 (negative int64) and ordinary ones
    key = torch.tensor([[2**63 - 1, -5, 7], [-(2**63), 0, 1]], device=DEVICE)
    kwargs = {"temperature": temperature, "key": key, "rows": rows}
    out = K.propose(x, backend="triton", **kwargs)
    ref = K.propose(x, backend="torch", **kwargs)
    assert torch.equal(out.tokens, ref.tokens), (out.tokens, ref.tokens)
    for got, want in zip(out[1:], ref[1:], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("value", [1, 2**32, 2**32 + 1])
def test_triton_key_words_of_one(value):
    # Compiled Triton specialises integer arguments equal to 1 as constants (a kernel that
    # called `.to` on one failed to compile on an H200); keys are read from memory now, and
    # key words equal to 1 must still give the reference's draw.
    x, rows = _case(33, torch.float32, seed=3)
    key = torch.full(rows.shape, value, dtype=torch.int64, device=DEVICE)
    kwargs = {"temperature": 1.0, "key": key, "rows": rows}
    out = K.propose(x, backend="triton", **kwargs)
    ref = K.propose(x, backend="torch", **kwargs)
    assert torch.equal(out.tokens, ref.tokens)


@pytest.mark.parametrize("config", [(1024, 4, 1), (256, 2, 2), (512, 4, 3)])
@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.0])
def test_triton_split_rows_match_reference(config, temperature):
    # Pass 1 reads a row as several programs (splits) of per-lane states; any (block, warps,
    # splits) must give the reference's tokens and statistics. 9,000 logits = 3 sampling tiles,
    # the last one partial; block 256 reads each tile in 16 blocks.
    x, rows = _case(9000, torch.bfloat16, seed=9)
    x[1, 2, 100] = x[1, 2].max() + 5  # a peak after the row's early max: lanes must rescale
    # The max and the runner-up in the same lane (offset 3 of block 0, offset 2 of tile 1):
    # the margin needs the lane's second largest group max.
    top = x[0, 0].max()
    x[0, 0, 3], x[0, 0, 4096 + 2] = top + 6, top + 5
    key = K.split(99, rows.shape).to(DEVICE)
    out = TP.propose_rows(
        x.reshape(6, -1), rows.reshape(-1), temperature, key.reshape(-1), config=config
    )
    ref = K.propose(x, temperature=temperature, key=key, rows=rows, backend="torch")
    assert torch.equal(out[0], ref.tokens.reshape(-1)), (out[0], ref.tokens)
    for got, want in zip(out[1:4], ref[1:], strict=True):
        torch.testing.assert_close(got, want.reshape(-1), rtol=1e-5, atol=2e-6)
    assert not out[4].any()


def test_triton_edge_cases():
    x = torch.full((3, 4200), -math.inf)
    x[0, 4100] = 1e30
    x[1, 0] = -3.0e38
    x[2, :] = 0.0
    out = K.propose(x.to(DEVICE), backend="triton")
    assert out.tokens.tolist() == [4100, 0, 0]
    assert out.prob[:2].tolist() == [1.0, 1.0]
    assert out.entropy[2].item() == pytest.approx(math.log(4200), rel=1e-5)
    bad = torch.zeros(2, 9)
    bad[1, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        K.propose(bad.to(DEVICE), backend="triton")


@pytest.mark.statistical
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_triton_frequencies(temperature):
    logits = torch.tensor([1.0, 0.0, -math.inf, 0.5])
    # The interpreter runs ~50 ms per program: 150 draws there (χ² adapts to n), many on a GPU.
    n = 150 if DEVICE == "cpu" else 100_000
    x = logits.expand(n, -1).contiguous().to(DEVICE)
    key = K.split(77, n).to(DEVICE)
    toks = K.propose(x, temperature=temperature, key=key, backend="triton").tokens.cpu().numpy()
    counts = np.bincount(toks, minlength=4)
    assert counts[2] == 0
    probs = torch.softmax(logits.double() / temperature, -1).numpy()
    keep = probs > 0
    assert stats.chisquare(counts[keep], probs[keep] * n).pvalue > 1e-3


FILTERS = [  # (top_p, top_k, nucleus, stats)
    (0.9, None, "crossing", "sampled"),
    (0.9, None, "strict", "sampled"),
    (0.5, 3, "strict", "untempered"),
    (None, 3, "crossing", "sampled"),
    (0.95, 50, "crossing", "sampled"),
]


@pytest.mark.parametrize("top_p,top_k,nucleus,stats", FILTERS)
@pytest.mark.parametrize(
    "vocab,dtype,temperature",
    [(33, torch.float32, 0.0), (33, torch.float16, 0.7), (5000, torch.bfloat16, 0.7)],
)
def test_triton_filter_matches_reference(top_p, top_k, nucleus, stats, vocab, dtype, temperature):
    x, rows = _case(vocab, dtype, seed=vocab + 1)
    kwargs = {
        "temperature": temperature,
        "key": K.split(12345, rows.shape).to(DEVICE),
        "rows": rows,
        "top_p": top_p,
        "top_k": top_k,
        "nucleus": nucleus,
        "stats": stats,
    }
    out = K.propose(x, backend="triton", **kwargs)
    ref = K.propose(x, backend="torch", **kwargs)
    assert torch.equal(out.tokens, ref.tokens), (out.tokens, ref.tokens)
    for got, want in zip(out[1:], ref[1:], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.statistical
def test_triton_issue_example_law():
    # probs [0.5, 0.3, 0.15, 0.05], top_p = 0.9: "strict" (ReMDM) never draws the third token,
    # "crossing" (Dream) draws it with probability 0.15 / 0.95.
    # The interpreter spends ~1 s per filtered program (31 bisection passes): there only the
    # support is checked on a few draws (the exact tokens are checked against the reference
    # above); the chi-square runs on a GPU.
    n = 12 if DEVICE == "cpu" else 100_000
    x = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(n, -1).contiguous().to(DEVICE)
    key = K.split(5, n).to(DEVICE)
    strict = K.propose(x, temperature=1.0, key=key, top_p=0.9, nucleus="strict", backend="triton")
    counts = np.bincount(strict.tokens.cpu().numpy(), minlength=4)
    assert counts[2] == 0 and counts[3] == 0
    crossing = K.propose(x, temperature=1.0, key=key, top_p=0.9, backend="triton")
    counts3 = np.bincount(crossing.tokens.cpu().numpy(), minlength=4)
    assert counts3[3] == 0
    if DEVICE != "cpu":
        assert stats.chisquare(counts[:2], np.array([0.5, 0.3]) / 0.8 * n).pvalue > 1e-3
        assert stats.chisquare(counts3[:3], np.array([0.5, 0.3, 0.15]) / 0.95 * n).pvalue > 1e-3


@pytest.mark.parametrize(
    "vocab,dtype", [(1, torch.float32), (33, torch.float16), (5000, torch.bfloat16)]
)
def test_triton_row_stats_match_reference(vocab, dtype):
    x, rows = _case(vocab, dtype, seed=vocab + 2)
    gen = torch.Generator().manual_seed(vocab)
    y = (x.float().cpu() + torch.randn(x.shape, generator=gen)).to(dtype).to(DEVICE)
    if vocab > 1:
        y[1, 2, 0] = -math.inf  # q = 0 where p > 0: +inf
    tokens = torch.randint(0, vocab, rows.shape, generator=gen).to(DEVICE)
    for r in (None, rows):
        got = K.token_prob(x, tokens, r, backend="triton")
        want = K.token_prob(x, tokens, r, backend="torch")
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)
        got = K.kl(x, y, r, backend="triton")
        want = K.kl(x, y, r, backend="torch")
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)
    bad = torch.zeros(2, 9)
    bad[1, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        K.kl(torch.zeros(2, 9).to(DEVICE), bad.to(DEVICE), backend="triton")
    # a huge finite gap of q (a finfo.min-style mask) counts in full (it was clamped at 1e30)
    q = torch.tensor([[0.0, 0.0, -3e30, -3e30]]).to(DEVICE)
    got = K.kl(torch.zeros(1, 4).to(DEVICE), q, backend="triton").item()
    assert got == pytest.approx(1.5e30, rel=1e-5)


@pytest.mark.parametrize(
    "vocab,dtype,min_p,top_k", [(33, torch.float32, 0.2, None), (5000, torch.bfloat16, 0.05, 40)]
)
def test_triton_min_p_matches_reference(vocab, dtype, min_p, top_k):
    x, rows = _case(vocab, dtype, seed=vocab + 3)
    kwargs = {
        "temperature": 0.7,
        "key": K.split(321, rows.shape).to(DEVICE),
        "rows": rows,
        "min_p": min_p,
        "top_k": top_k,
        "stats": "sampled",
    }
    out = K.propose(x, backend="triton", **kwargs)
    ref = K.propose(x, backend="torch", **kwargs)
    assert torch.equal(out.tokens, ref.tokens), (out.tokens, ref.tokens)
    for got, want in zip(out[1:], ref[1:], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)
