"""What a new user meets first: CLI start-up, the demo's thread setting, cache agreement.

Three measurements, each side by side in one run (the machine is shared: compare ratios, and
read the load average recorded in every row's config):

* ``cli_startup``     wall time of a fresh interpreter that imports the CLI (``remask --help``
                      imports nothing more) against one that also imports the samplers (torch
                      and numba: what every start-up paid before the imports became lazy);
* ``demo_threads``    wall time of the demo as ``remask demo`` runs it now (Numba pinned to one
                      thread) and as it ran before (Numba's pool at one thread per core), runs
                      alternated;
* ``cache_agreement`` fraction of generated tokens equal to uncached decoding for prefix and
                      dual KV caches on the two golden tiny checkpoints, greedy and at
                      temperature 1 (same seed), with a single block and with blocks of 8.
                      Greedy decoding of these random tiny checkpoints writes the same token id
                      at every position, so the greedy agreement is trivially 1; the sampled
                      one is the informative number.

``python -m remask.bench.usability [--quick] [--out CSV] [--part startup|demo|cache]``

With 3-5 runs per variant, the ``p20``/``p80`` columns of these rows hold the fastest and the
slowest run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

import remask
from remask.bench.common import Result, environment, write_csv

__all__ = ["main"]

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "results", "usability_cpu.csv")


def _load() -> float:
    return os.getloadavg()[0]


def _row(env, name, variant, values, unit, config) -> Result:
    ordered = sorted(values)
    mid = ordered[len(ordered) // 2]
    return Result(
        name=name,
        variant=variant,
        backend="-",
        config=json.dumps(config, sort_keys=True),
        repeats=len(values),
        median=round(mid, 4),
        p20=round(ordered[0], 4),
        p80=round(ordered[-1], 4),
        unit=unit,
        derived=None,
        derived_unit="",
        device=env["device"],
        versions=env["versions"],
        sha=env["sha"],
        date=env["date"],
    )


def _wall(command: list[str], extra_env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, check=True, capture_output=True, env={**os.environ, **(extra_env or {})}
    )
    return time.perf_counter() - start


def cli_startup(env, repeats: int) -> list[Result]:
    variants = {
        "lazy (import remask.cli)": "import remask.cli",
        "eager (import remask.cli, remask.samplers)": "import remask.cli, remask.samplers",
    }
    times: dict[str, list[float]] = {v: [] for v in variants}
    load = _load()
    for _ in range(repeats):  # alternated, so load drifts hit both alike
        for variant, code in variants.items():
            times[variant].append(_wall([sys.executable, "-c", code]))
    config = {"load_before": round(load, 2), "load_after": round(_load(), 2)}
    return [_row(env, "cli_startup", v, t, "s", config) for v, t in times.items()]


# The demo as `remask demo` runs it now (Numba pinned to one thread), and as it ran before:
# Numba's pool at one thread per core, nothing pinned but torch.
_DEMO_NOW = "from remask.cli import main; main(['demo', '--samples', '{n}'])"
_DEMO_BEFORE = (
    "import os; os.environ.pop('NUMBA_NUM_THREADS', None)\n"
    "import remask.app.demo as demo\n"
    "demo._numba_threads = lambda threads: None\n"
    "print(demo.format_table(*demo.run_demo(n_samples={n}), {n}))"
)


def demo_threads(env, repeats: int, samples: int) -> list[Result]:
    variants = {
        "now: Numba pinned to 1 thread": _DEMO_NOW,
        "before: Numba pool of one thread per core": _DEMO_BEFORE,
    }
    times: dict[str, list[float]] = {v: [] for v in variants}
    load = _load()
    for _ in range(repeats):  # alternated
        for variant, code in variants.items():
            times[variant].append(_wall([sys.executable, "-c", code.format(n=samples)]))
    config = {
        "samples": samples,
        "load_before": round(load, 2),
        "load_after": round(_load(), 2),
        "cpus": os.cpu_count(),
    }
    return [_row(env, "demo_threads", v, t, "s", config) for v, t in times.items()]


def cache_agreement(env) -> list[Result]:
    from remask.bench.cache import GOLDEN, token_agreement
    from remask.models import CachedDenoiser, load_model

    prompts = [[1, 2, 3], [5, 6, 7, 8, 9, 10], [11, 12]]
    gen_length = 32
    results = []
    for name in ("llada_tiny", "dream_tiny"):
        if not (GOLDEN / name).is_dir():
            continue
        base = load_model(str(GOLDEN / name))
        for block_length in (None, 8):
            for temperature in (0.0, 1.0):
                sampler = remask.samplers.build(
                    "low_confidence", block_length=block_length, temperature=temperature
                )
                reference = remask.generate(
                    base, prompts, sampler, gen_length=gen_length, seed=0
                ).tokens
                distinct = int(reference[:, -gen_length:].unique().numel())
                for mode in ("prefix", "dual"):
                    cached = remask.generate(
                        CachedDenoiser(base, mode=mode),
                        prompts,
                        sampler,
                        gen_length=gen_length,
                        seed=0,
                    ).tokens
                    config = {
                        "checkpoint": name,
                        "block_length": block_length,
                        "temperature": temperature,
                        "mode": mode,
                        "gen_length": gen_length,
                        "B": len(prompts),
                        "distinct_reference_tokens": distinct,
                        "load": round(_load(), 2),
                    }
                    value = token_agreement(cached, reference, gen_length)
                    results.append(
                        _row(
                            env,
                            "cache_agreement",
                            f"{mode}:{name}:block={block_length}:T={temperature}",
                            [value],
                            "fraction",
                            config,
                        )
                    )
    return results


PARTS = ("startup", "demo", "cache")


def main(*, quick: bool = False, out: str | None = None, parts=PARTS) -> list[Result]:
    torch.set_num_threads(1)
    env = environment("cpu")
    results = []
    if "startup" in parts:
        results += cli_startup(env, repeats=3 if quick else 5)
    if "demo" in parts:
        results += demo_threads(env, repeats=1 if quick else 3, samples=2000 if quick else 20000)
    if "cache" in parts:
        results += cache_agreement(env)
    path = write_csv(results, out or DEFAULT_OUT)
    for r in results:
        print(
            f"{r.name:<16} {r.variant:<48} {r.median:>9.4f} {r.unit:<8} (min {r.p20}, max {r.p80})"
        )
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--part", action="append", choices=PARTS, help="only this part (repeatable)"
    )
    args = parser.parse_args()
    main(quick=args.quick, out=args.out, parts=args.part or PARTS)
