"""The Numba kernels on two threads (the suite pins Numba to one, see conftest.py): the rows a
call computes are shared out among the threads (``_computed_rows``), and every output matches
the torch reference whatever rows are computed — here a contiguous run at the end of each row
(a block's masks behind a prompt) plus a stray one, the layout that once left a thread idle."""

from __future__ import annotations

import pytest

CODE = """
import numba, torch
import remask.kernels as K
assert numba.get_num_threads() == 2
g = torch.Generator().manual_seed(0)
for dtype in (torch.float32, torch.bfloat16):
    x = (torch.randn(2, 96, 9000, generator=g) * 3).to(dtype)  # (B, L, V): three tiles a row
    y = (torch.randn(2, 96, 9000, generator=g) * 3).to(dtype)
    rows = torch.zeros(2, 96, dtype=torch.bool)
    rows[:, 64:] = True
    rows[0, 3] = True
    key = K.split(0, (2, 96))
    tokens = torch.randint(0, 9000, (2, 96), generator=g)
    for t in (0.0, 1.0):
        a = K.propose(x, rows=rows, temperature=t, key=key, backend="numba")
        b = K.propose(x, rows=rows, temperature=t, key=key, backend="torch")
        assert torch.equal(a.tokens, b.tokens), (dtype, t)
        assert torch.allclose(a.prob, b.prob, rtol=1e-5, atol=1e-7), (dtype, t)
        assert torch.allclose(a.entropy, b.entropy, rtol=1e-4, atol=1e-5), (dtype, t)
        assert bool((a.tokens[~rows] == -1).all()) and bool((a.prob[~rows] == 0).all())
    a = K.token_prob(x, tokens, rows, backend="numba")
    b = K.token_prob(x, tokens, rows, backend="torch")
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-7) and bool((a[~rows] == 0).all())
    a = K.kl(x, y, rows, backend="numba")
    b = K.kl(x, y, rows, backend="torch")
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-5) and bool((a[~rows] == 0).all())
print("ok")
"""


def test_kernels_on_two_threads_match_the_reference(fresh_python):
    pytest.importorskip("numba")
    assert fresh_python(CODE, env={"NUMBA_NUM_THREADS": "2"}) == "ok"
