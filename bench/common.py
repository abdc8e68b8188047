"""Shared benchmark harness: timers, environment capture, one CSV schema.

Speed is measured here, never by timed asserts in tests (docs/design.md §6).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["CSV_FIELDS", "Result", "environment", "time_cpu", "time_gpu", "write_csv"]

CSV_FIELDS = (
    "name",
    "variant",
    "backend",
    "config",
    "repeats",
    "median",
    "p20",
    "p80",
    "unit",
    "derived",
    "derived_unit",
    "device",
    "versions",
    "sha",
    "date",
)


@dataclass(frozen=True)
class Result:
    """One CSV row (times in ``unit``; ``derived`` is GB/s or tokens/s as ``derived_unit``)."""

    name: str
    variant: str
    backend: str
    config: str  # JSON
    repeats: int
    median: float
    p20: float
    p80: float
    unit: str
    derived: float | None
    derived_unit: str
    device: str
    versions: str  # JSON
    sha: str
    date: str


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def sample_row(
    name: str,
    variant: str,
    values: Sequence[float],
    unit: str,
    *,
    config: dict,
    env: dict[str, str],
    backend: str = "torch",
    derived: float | None = None,
    derived_unit: str = "",
) -> Result:
    """A CSV row from repeated measurements ``values``: their median and p20/p80 spread."""
    return Result(
        name=name,
        variant=variant,
        backend=backend,
        config=json.dumps(config, sort_keys=True),
        repeats=len(values),
        median=round(statistics.median(values), 4),
        p20=round(_quantile(values, 0.2), 4),
        p80=round(_quantile(values, 0.8), 4),
        unit=unit,
        derived=None if derived is None else round(derived, 3),
        derived_unit=derived_unit,
        device=env["device"],
        versions=env["versions"],
        sha=env["sha"],
        date=env["date"],
    )


def pin_numba(threads: int) -> None:
    """Pin Numba's thread pool to ``threads`` (at most its configured maximum); nothing
    without Numba. Torch's threads are each benchmark's own business (some restore them)."""
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def load_averages() -> str:
    """The 1/5/15-minute load averages as ``uptime`` prints them, or "unknown"."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def row_collector(results: list[Result], *, config: dict, env: dict[str, str]) -> Callable:
    """``row(name, variant, values, unit, derived=None, derived_unit="", extra=None)``: append
    :func:`sample_row` of the measurements to ``results`` (``extra`` adds config keys to that
    row only)."""

    def row(name, variant, values, unit, derived=None, derived_unit="", extra=None) -> None:
        results.append(
            sample_row(
                name,
                variant,
                values,
                unit,
                config={**config, **(extra or {})},
                env=env,
                derived=derived,
                derived_unit=derived_unit,
            )
        )

    return row


def random_llada(
    shape: dict, vocab: int, *, dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0
):
    """A random-weight LLaDA denoiser (LLaDA's ``init_std`` 0.02 normal init) of ``shape``
    (``d_model``, ``n_layers``, ``n_heads``, ``mlp_hidden_size``) and vocabulary ``vocab``:
    ``mask_id`` = vocab - 96 (inside the vocabulary, as in LLaDA), ``eos_id`` = ``pad_id`` =
    vocab - 95 (benchmark ids, not of any tokenizer)."""
    from remask.models.llada import LLaDAConfig, LLaDADenoiser, LLaDAModelLM

    mask_id, eos_id = vocab - 96, vocab - 95
    config = LLaDAConfig(
        **shape,
        vocab_size=vocab,
        embedding_size=vocab,
        n_kv_heads=shape["n_heads"],
        max_sequence_length=4096,
        mask_token_id=mask_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(seed)
    model = LLaDAModelLM(config).to(device=device, dtype=dtype)
    return LLaDADenoiser(
        model, mask_id=mask_id, vocab_size=vocab, embedding_rows=vocab, eos_id=eos_id, pad_id=eos_id
    )


def time_cpu(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 10) -> dict[str, float]:
    """Median / p20 / p80 wall time of ``fn()`` in ms (perf_counter, after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "median": statistics.median(times),
        "p20": _quantile(times, 0.2),
        "p80": _quantile(times, 0.8),
        "repeats": repeats,
    }


def time_gpu(fn: Callable[[], Any], *, warmup: int = 25, repeats: int = 100) -> dict[str, float]:
    """GPU time in ms: ``triton.testing.do_bench`` (L2 flushed per rep) or CUDA events."""
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        q = do_bench(fn, warmup=warmup, rep=repeats, quantiles=[0.5, 0.2, 0.8])
        return {"median": q[0], "p20": q[1], "p80": q[2], "repeats": repeats}
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return {
        "median": statistics.median(times),
        "p20": _quantile(times, 0.2),
        "p80": _quantile(times, 0.8),
        "repeats": repeats,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_sha() -> str:
    """Short sha (``+dirty`` with uncommitted changes); ``REMASK_GIT_SHA`` where the tree was
    copied without its ``.git`` (a benchmark run on another machine)."""
    if os.environ.get("REMASK_GIT_SHA"):
        return os.environ["REMASK_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            check=False,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
        sha = out.stdout.strip() or "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device | str = "cpu") -> dict[str, str]:
    """Device name, CPU model, library versions, git sha and date for the CSV rows."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("numba", "triton", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "absent"
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = f"{_cpu_model()} ({torch.get_num_threads()} torch threads)"
    return {
        "device": name,
        "versions": json.dumps(versions, sort_keys=True),
        "sha": _git_sha(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_csv(results: Sequence[Result], path: str | Path) -> Path:
    """Write ``results`` (header included) to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in results:
            writer.writerow(asdict(row))
    return path
