"""Backend resolution order, errors and lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import remask.kernels as K
from remask.kernels import _dispatch


def test_import_does_not_load_numba_or_triton():
    code = (
        "import sys, remask.kernels as K, torch; "
        "K.propose(torch.randn(2, 5), backend='torch'); K.uniform(K.split(0, 3)); "
        "K.topk_mask(torch.rand(1, 4), torch.tensor([1]), torch.ones(1, 4, dtype=torch.bool)); "
        "print(sorted(m for m in ('numba', 'triton') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "REMASK_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_resolution_order(monkeypatch):
    monkeypatch.delenv("REMASK_BACKEND", raising=False)
    auto = K.resolve_backend(device="cpu")
    assert auto == K.backends("cpu")[0]
    monkeypatch.setenv("REMASK_BACKEND", "torch")
    assert K.resolve_backend(device="cpu") == "torch"
    if "numba" in K.backends("cpu"):
        with K.use_backend("numba"):  # the context manager beats the environment
            assert K.resolve_backend(device="cpu") == "numba"
            assert K.resolve_backend("torch", device="cpu") == "torch"  # the argument beats both
        assert K.resolve_backend(device="cpu") == "torch"


def test_explicit_unavailable_backend_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="'triton' requested by backend= argument"):
        K.resolve_backend("triton", device="cpu")
    with pytest.raises(RuntimeError, match="use_backend"), K.use_backend("triton"):
        K.propose(torch.randn(2, 3))
    monkeypatch.setenv("REMASK_BACKEND", "triton")
    with pytest.raises(RuntimeError, match="REMASK_BACKEND"):
        K.propose(torch.randn(2, 3))
    monkeypatch.setenv("REMASK_BACKEND", "fortran")
    with pytest.raises(ValueError, match="unknown kernel backend 'fortran'"):
        K.propose(torch.randn(2, 3))
    with pytest.raises(ValueError, match="unknown"), K.use_backend("gpu"):
        pass


def test_auto_falls_back_silently(monkeypatch):
    monkeypatch.delenv("REMASK_BACKEND", raising=False)
    monkeypatch.setitem(_dispatch._loaded, "numba", "numba could not be imported: test")
    assert K.resolve_backend(device="cpu") == "torch"
    assert K.backends("cpu") == ["torch"]
    with pytest.raises(RuntimeError, match="numba could not be imported: test"):
        K.resolve_backend("numba", device="cpu")
    out = K.propose(torch.tensor([[0.0, 1.0]]))
    assert out.tokens.tolist() == [1]


def test_backends_lists_cpu_choices():
    found = K.backends("cpu")
    assert found[-1] == "torch"
    assert set(found) <= {"numba", "torch", "triton"}
    if torch.cuda.is_available():
        assert K.backends("cuda")[-1] == "torch"
