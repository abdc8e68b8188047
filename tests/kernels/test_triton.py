"""Runs the Triton suite: in interpreter mode on CPU, compiled on a GPU when CUDA exists."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SUITE = Path(__file__).with_name("_triton_suite.py")
REPO = Path(__file__).resolve().parents[2]

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                  reason="triton is not installed")


def _run_suite(device: str, interpret: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "REMASK_BACKEND")}
    env["REMASK_TEST_DEVICE"] = device
    if interpret:
        env["TRITON_INTERPRET"] = "1"  # before triton is imported: hence the subprocess
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(SUITE)], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout


@needs_triton
def test_triton_in_interpreter_mode():
    _run_suite("cpu", interpret=True)


@pytest.mark.gpu
@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_compiled_on_gpu():
    _run_suite("cuda", interpret=False)
