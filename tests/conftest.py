"""Shared fixtures: tiny models, exact oracles and a counting denoiser wrapper."""

from __future__ import annotations

import os
import subprocess
import sys

# Tests use tiny tensors: one thread is as fast and avoids thread-pool thrashing when the
# machine is shared (numba reads this at its first import, which happens after conftest).
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from remask.models import MarkovChainOracle, TinyTransformer


class CountingDenoiser:
    """Wraps a denoiser and counts calls and sequence evaluations (rows seen)."""

    def __init__(self, inner):
        self.inner = inner
        self.mask_id = inner.mask_id
        self.vocab_size = inner.vocab_size
        for name in ("eos_id", "eot_id", "pad_id"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))
        self.calls = 0
        self.rows = 0

    def __call__(self, tokens, attention_mask=None):
        self.calls += 1
        self.rows += tokens.shape[0]
        return self.inner(tokens, attention_mask)


@pytest.fixture
def counting():
    return CountingDenoiser


@pytest.fixture
def fresh_python():
    """``run(code, env=None)``: run ``code`` in a fresh interpreter (this one may have imported
    anything already, and pins Numba to one thread), with ``env`` added to the environment;
    check that it exits 0, and return its stripped standard output."""

    def run(code: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            env=None if env is None else {**os.environ, **env},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    return run


@pytest.fixture(scope="session")
def tiny64():
    """A float64 TinyTransformer: bit-stable enough that greedy ties never flip."""
    return TinyTransformer(vocab_size=24, width=32, depth=2, heads=4, seed=7, dtype=torch.float64)


@pytest.fixture(scope="session")
def markov():
    return MarkovChainOracle(vocab_size=3, seq_len=4, seed=0, concentration=2.0)
