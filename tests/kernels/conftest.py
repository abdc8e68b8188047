"""Shared fixtures of the kernel tests: which backends run here, and a warm numba cache."""

from __future__ import annotations

import pytest
import torch

import remask.kernels as K


def cpu_backends() -> list[str]:
    """Backends that run CPU tensors in this process (triton only runs in its own suite)."""
    return [b for b in K.backends("cpu") if b != "triton"]


@pytest.fixture(scope="session", autouse=True)
def _single_thread_torch():
    # Two vCPUs: keep torch from oversubscribing alongside numba's pool (both spin threads).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def warm_numba():
    """Compile (or load from cache=True) every numba specialization once per session."""
    if "numba" not in cpu_backends():
        pytest.skip("numba is not available")
    x = torch.randn(2, 5)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        K.propose(x.to(dtype), temperature=1.0, key=K.split(0, 2), backend="numba")
    return True
