"""Output folders and JSON summaries shared by the applications."""

from __future__ import annotations

import json
import math
import os
import tempfile

__all__ = ["check_out_dir", "environment", "to_json", "write_summary"]


def check_out_dir(out) -> str:
    """Create the output directory ``out`` and prove it writable, before any computing.

    Raises ``ValueError`` naming the path and the cause (a file in the way, no permission,
    ...), so a long analysis never ends in a failed write.
    """
    path = os.fspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"output directory {path!r} is an existing file")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(
            f"output directory {path!r} is not writable: {error.strerror or error}"
        ) from None
    return path


def to_json(x):
    """JSON-ready copy: arrays and tensors to lists, non-finite floats to None, 6 decimals."""
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if hasattr(x, "tolist"):  # numpy arrays and scalars, torch tensors: to Python values
        return to_json(x.tolist())
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, 6)
    return x


def write_summary(out, summary: dict) -> dict:
    """Write :func:`to_json` of ``summary`` to ``out/summary.json``; return what was written."""
    summary = to_json(summary)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def environment() -> dict:
    """Library versions, git sha and date, recorded in every summary."""
    from remask.bench.common import environment as bench_environment

    env = bench_environment("cpu")
    return {"versions": json.loads(env["versions"]), "sha": env["sha"], "date": env["date"]}
