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

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)


def _run_suite(device: str, interpret: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "REMASK_BACKEND")}
    env["REMASK_TEST_DEVICE"] = device
    if interpret:
        env["TRITON_INTERPRET"] = "1"  # before triton is imported: hence the subprocess
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
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


def _hopper_compile(
    kernel, signature: dict, constexprs: dict, tmp_path, monkeypatch, num_warps: int = 8
) -> None:
    """Compile ``kernel`` ahead of time for sm_90 (Hopper) to a cubin; no GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's current default, said explicitly
    signature = {**signature, **{name: "constexpr" for name in constexprs}}
    src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(
        src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps}
    )
    assert compiled.asm["cubin"]


@needs_triton
@pytest.mark.parametrize("mode", ["greedy", "sample", "sample_t1"])
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_triton_propose_stream_compiles_for_hopper_without_a_gpu(
    mode, dtype, monkeypatch, tmp_path
):
    # The interpreter accepts code that the compiler rejects (a non-constexpr global, a
    # `.to` on an argument specialised to the constant 1): both reached an H200 unnoticed.
    from remask.kernels._triton import propose as TP

    kernel = TP._stream_kernel
    assert _unspecialised(kernel) >= {"tiles_per_split", "temp_bits"}
    signature = {
        "x_ptr": f"*{dtype}",
        "stride_row": "i64",
        "V": "i32",
        "tiles_per_split": "i32",
        "rows_ptr": "*i1",
        "temp_bits": "i32" if mode == "greedy" else "i64",  # 0.0's bits arrive as int32
        "part_ptr": "*fp64",
        "mass_ptr": "*fp64",
    }
    constexprs = {
        "HAS_ROWS": True,
        "SAMPLING": mode != "greedy",
        "UNIT_T": mode == "sample_t1",
        "BLOCK": 1024,
        "G": 8 if dtype == "bf16" else 4,  # logits per 16-byte load
        "SPAN": 4096,
        "NT": 32,
    }
    _hopper_compile(kernel, signature, constexprs, tmp_path, monkeypatch, num_warps=4)


@needs_triton
@pytest.mark.parametrize("mode", ["greedy", "sample", "top_p", "top_p_strict", "top_k_sampled"])
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_triton_propose_finish_compiles_for_hopper_without_a_gpu(
    mode, dtype, monkeypatch, tmp_path
):
    from remask.kernels._triton import propose as TP

    kernel = TP._finish_kernel
    # Arguments that can equal 1 at run time must never be specialised into constants
    # (the per-row keys are read from memory; the temperature's and top-p's float64 bits,
    # top_k, min-p's cut bits and the tiles per split are such arguments).
    assert _unspecialised(kernel) >= {
        "temp_bits",
        "top_p_bits",
        "top_k",
        "min_bits",
        "tiles_per_split",
    }
    signature = {
        "x_ptr": f"*{dtype}",
        "stride_row": "i64",
        "V": "i32",
        "rows_ptr": "*i1",
        "temp_bits": "i32" if mode == "greedy" else "i64",  # 0.0's bits arrive as int32
        "top_p_bits": "i64",
        "key_ptr": "*i64",
        "top_k": "i64",
        "min_bits": "i32",
        "tiles_per_split": "i32",
        "part_ptr": "*fp64",
        "mass_ptr": "*fp64",
        "tok_ptr": "*i64",
        "prob_ptr": "*fp32",
        "margin_ptr": "*fp32",
        "ent_ptr": "*fp32",
        "status_ptr": "*i32",
    }
    constexprs = {
        "HAS_ROWS": True,
        "SAMPLING": mode != "greedy",
        "BLOCK": 4096,
        "NT": 32,
        "NS": 4,
        "FILTER": mode.startswith("top"),
        "STRICT": mode == "top_p_strict",
        "SAMPLED": mode == "top_k_sampled",
    }
    _hopper_compile(kernel, signature, constexprs, tmp_path, monkeypatch)


def _unspecialised(kernel) -> set[str]:
    names = kernel.arg_names
    return {names[i] if isinstance(i, int) else i for i in kernel.do_not_specialize}


@needs_triton
@pytest.mark.parametrize("op", ["token_prob", "kl"])
def test_triton_row_statistics_compile_for_hopper_without_a_gpu(op, monkeypatch, tmp_path):
    from remask.kernels._triton import stats as TS

    rows = {"rows_ptr": "*i1", "out_ptr": "*fp32", "status_ptr": "*i32"}
    if op == "token_prob":
        kernel = TS._token_prob_kernel
        signature = {"x_ptr": "*bf16", "stride_row": "i64", "V": "i32", "tok_ptr": "*i64", **rows}
    else:
        kernel = TS._kl_kernel
        signature = {
            "x_ptr": "*bf16",
            "y_ptr": "*bf16",
            "stride_x": "i64",
            "stride_y": "i64",
            "V": "i32",
            **rows,
        }
    _hopper_compile(kernel, signature, {"HAS_ROWS": True, "BLOCK": 2048}, tmp_path, monkeypatch)
