"""Sweep overhead: one process vs ``torchrun`` with 2, and the per-request bookkeeping share.

``python -m remask.bench.sweep [--quick] [--out CSV]`` writes a temporary lm-eval task (a
``generate_until`` task in token ids: ``--docs`` synthetic prompts of 8-24 ids, each row 32
tokens to decode) and a SPEC of 2 samplers x 2 settings (``low_confidence`` steps 8 / 16,
``threshold`` 0.7 / 0.9) on the golden LLaDA checkpoint (``tests/data/golden/llada_tiny``),
then runs the same sweep

- in one process: ``python -m remask.bench.sweep --worker SPEC DIR``, and
- in two: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m remask.bench.sweep --worker ...``

alternately, ``--repeats`` times each, every process pinned to one thread (torch, Numba,
OpenMP): the two-process run has two cores where the single one has one, so a CPU-bound
sweep should approach 2x. Reported per mode: the process wall time (start-up — imports,
task and model loading — included) and the sweep's own wall time (``run_sweep``, the slowest
rank), their ratios, whether both runs wrote identical rows (timings aside), and the
bookkeeping share: the sweep's own per-request work (seeds, costs, building and writing rows)
over the decode time, and apart from it the scoring share (lm-eval's filters and
``process_results``, which any harness pays), from the single-process worker's ``run_sweep``
counters. ``uptime`` before and after goes in
``config``: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden" / "llada_tiny"
RESULTS = Path(__file__).resolve().parent / "results"
TIMINGS = ("seconds", "tokens_per_second", "batch_seconds")

TASK_YAML = """task: bench_sweep_ids
dataset_path: ""
dataset_name: ""
custom_dataset: !function bench_sweep_data.rows
output_type: generate_until
test_split: test
doc_to_text: "{{prompt}}"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["0 0 0"]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

TASK_PY = """import os

def rows(**kwargs):
    import datasets
    return datasets.load_dataset("json", data_files={"test": os.path.join(os.path.dirname(__file__), "rows.jsonl")})
"""

SPEC = """seed = 0
batch_size = 8
[[models]]
spec = "{model}"
name = "llada_tiny"
[[samplers]]
name = "low_confidence"
grid = {{ steps = [8, 16] }}
[[samplers]]
name = "threshold"
grid = {{ threshold = [0.7, 0.9] }}
[[tasks]]
kind = "lm_eval"
name = "bench_sweep_ids"
include_path = "{tasks}"
gen_length = 32
"""


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _write_inputs(folder: Path, docs: int) -> Path:
    tasks = folder / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "bench_sweep.yaml").write_text(TASK_YAML)
    (tasks / "bench_sweep_data.py").write_text(TASK_PY)
    r = random.Random(0)
    with open(tasks / "rows.jsonl", "w") as f:
        for _ in range(docs):
            prompt = [r.randrange(1, 300) for _ in range(r.randrange(8, 25))]
            f.write(
                json.dumps({"prompt": " ".join(map(str, prompt)), "answer": str(prompt[-1])}) + "\n"
            )
    spec = folder / "spec.toml"
    spec.write_text(SPEC.format(model=GOLDEN, tasks=tasks))
    return spec


def _worker(spec_path: str, out: str) -> None:
    """One process of a run: the sweep, then this rank's counters in ``out/bench_rank<r>.json``
    (a file per rank: two ranks printing to one pipe can interleave their lines)."""
    import torch

    torch.set_num_threads(1)
    from remask.eval import load_spec, run_sweep

    start = time.perf_counter()
    result = run_sweep(load_spec(spec_path), out, progress=False, log=lambda m: None)
    counters = {
        "rank": result["rank"],
        "world_size": result["world_size"],
        "sweep_seconds": time.perf_counter() - start,
        "decode_seconds": result["decode_seconds"],
        "bookkeeping_seconds": result["bookkeeping_seconds"],
        "scoring_seconds": result["scoring_seconds"],
        "ran": result["ran"],
    }
    (Path(out) / f"bench_rank{result['rank']}.json").write_text(json.dumps(counters))


def _run(cmd: list[str], env: dict, out: Path) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    ranks = [json.loads(f.read_text()) for f in sorted(out.glob("bench_rank*.json"))]
    return wall, sorted(ranks, key=lambda r: r["rank"])


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def main(
    quick: bool = False,
    out: str | Path | None = None,
    *,
    docs: int | None = None,
    repeats: int | None = None,
) -> Path:
    from remask.bench.common import Result, environment, write_csv

    docs = docs or (16 if quick else 48)
    repeats = repeats or (1 if quick else 2)
    out = (
        Path(out)
        if out is not None
        else RESULTS / ("sweep_cpu_quick.csv" if quick else "sweep_cpu.csv")
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    load_before = _uptime()
    walls = {"single": [], "torchrun2": []}
    sweeps = {"single": [], "torchrun2": []}
    shares, scoring = [], []
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        spec = _write_inputs(Path(tmp), docs)
        for rep in range(repeats):
            outs = {}
            for mode in ("single", "torchrun2"):
                target = Path(tmp) / f"{mode}{rep}"
                worker = ["-m", "remask.bench.sweep", "--worker", str(spec), str(target)]
                cmd = (
                    [sys.executable, *worker]
                    if mode == "single"
                    else [
                        sys.executable,
                        "-m",
                        "torch.distributed.run",
                        "--standalone",
                        "--nproc-per-node",
                        "2",
                        *worker,
                    ]
                )
                wall, ranks = _run(cmd, env, target)
                walls[mode].append(wall)
                sweeps[mode].append(max(r["sweep_seconds"] for r in ranks))
                if mode == "single":
                    shares.append(
                        100 * ranks[0]["bookkeeping_seconds"] / ranks[0]["decode_seconds"]
                    )
                    scoring.append(100 * ranks[0]["scoring_seconds"] / ranks[0]["decode_seconds"])
                outs[mode] = _rows(target / "rows.jsonl")
                print(
                    f"  {mode:<10} rep {rep}: process {wall:6.1f} s, sweep {sweeps[mode][-1]:6.1f} s",
                    flush=True,
                )
            identical = identical and outs["single"] == outs["torchrun2"]
    load_after = _uptime()
    requests = docs * 4
    config = {
        "model": "tests/data/golden/llada_tiny",
        "docs": docs,
        "settings": 4,
        "requests": requests,
        "gen_length": 32,
        "batch_size": 8,
        "threads_per_process": 1,
        "repeats": repeats,
        "rows_identical": identical,
        "uptime_before": load_before,
        "uptime_after": load_after,
    }
    info = environment("cpu")
    info["device"] = info["device"].rsplit(" (", 1)[0] + " (1 torch thread per process)"

    def row(name, variant, values, unit, derived=None, derived_unit=""):
        return Result(
            name=name,
            variant=variant,
            backend="cpu",
            config=json.dumps(config, sort_keys=True),
            repeats=len(values),
            median=statistics.median(values),
            p20=min(values),
            p80=max(values),
            unit=unit,
            derived=derived,
            derived_unit=derived_unit,
            **info,
        )

    results = []
    for mode in ("single", "torchrun2"):
        results.append(
            row(
                "sweep_process_wall",
                mode,
                walls[mode],
                "s",
                requests / statistics.median(walls[mode]),
                "requests/s",
            )
        )
        results.append(
            row(
                "sweep_run_wall",
                mode,
                sweeps[mode],
                "s",
                requests / statistics.median(sweeps[mode]),
                "requests/s",
            )
        )
    results.append(
        row(
            "sweep_speedup",
            "process wall single/torchrun2",
            [a / b for a, b in zip(walls["single"], walls["torchrun2"])],
            "x",
        )
    )
    results.append(
        row(
            "sweep_speedup",
            "run_sweep wall single/torchrun2",
            [a / b for a, b in zip(sweeps["single"], sweeps["torchrun2"])],
            "x",
        )
    )
    results.append(row("sweep_bookkeeping_share", "single", shares, "% of decode time"))
    results.append(
        row("sweep_scoring_share", "single (lm-eval process_results)", scoring, "% of decode time")
    )
    path = write_csv(results, out)
    print(
        f"speed-up (process wall): {statistics.median(walls['single']) / statistics.median(walls['torchrun2']):.2f}x, "
        f"(run_sweep): {statistics.median(sweeps['single']) / statistics.median(sweeps['torchrun2']):.2f}x; "
        f"bookkeeping {statistics.median(shares):.2f}% of decode (scoring {statistics.median(scoring):.2f}%); "
        f"rows identical: {identical}"
    )
    print(f"load before: {load_before}\nload after:  {load_after}\nwrote {path}")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--docs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
    else:
        main(quick=args.quick, out=args.out, docs=args.docs, repeats=args.repeats)
