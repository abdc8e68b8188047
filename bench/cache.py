"""Fast-dLLM KV caches: per-step time and tokens/s, cached vs uncached, and token agreement.

Run ``python -m remask.bench.cache [--quick] [--out FILE]``. A random-weight LLaDA-shaped model
(:class:`remask.models.llada.LLaDAModelLM`; default preset ``cpu``: d_model 256, 4 layers,
4 heads, MLP 1024, vocab 4096, canvas L = 256 = 64 prompt + 192 generated tokens) decodes
greedily with ``low_confidence`` (one token per step, ``block_length`` 32, Fast-dLLM's paper
setting) three ways: uncached, :class:`~remask.models.cache.Cached` ``mode="prefix"``
and ``mode="dual"`` (refresh at each block start). Rows written (``bench/common.py`` schema):

* ``cache_step``       ms per sampler step (run wall time / steps; median, p20, p80 over
                       repeats); ``derived`` = generated tokens/s;
* ``cache_speedup``    uncached run time / cached run time, paired per repeat (unit ``x``);
* ``cache_step_cpu``, ``cache_speedup_cpu``  the same from process CPU time (CPU only): on a
                       shared machine wall time mostly measures the neighbours' load, which
                       ``config.load_avg_1m`` records;
* ``cache_agreement``  fraction of generated tokens equal to uncached greedy decoding, on the
                       benchmark model and on the two golden tiny checkpoints (LLaDA, Dream).

Random weights make the agreement a smoke value, not a quality estimate: real checkpoints
have far more peaked predictions (Fast-dLLM, arXiv 2505.22618, reports near-unchanged
accuracy with both caches). Results go to ``bench/results/cache_cpu.csv`` (``cache_cuda.csv`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import remask
from remask.bench.common import Result, environment, random_llada, row_collector, write_csv
from remask.models.cache import Cached

__all__ = ["PRESETS", "build_model", "main", "token_agreement"]

RESULTS = Path(__file__).resolve().parent / "results"
GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden"

#: Model shapes. "cpu": big enough that a step's cost is the transformer, not Python
#: overhead; "8b": LLaDA-8B's shape (for a GPU run with bf16; not measured on CPU).
PRESETS: dict[str, dict] = {
    "cpu": {
        "d_model": 256,
        "n_layers": 4,
        "n_heads": 4,
        "mlp_hidden_size": 1024,
        "vocab_size": 4096,
        "dtype": "float32",
    },
    "8b": {
        "d_model": 4096,
        "n_layers": 32,
        "n_heads": 32,
        "mlp_hidden_size": 12288,
        "vocab_size": 126464,
        "dtype": "bfloat16",
    },
}


def build_model(preset: str = "cpu", *, device: str | torch.device = "cpu", seed: int = 0):
    """A random-weight LLaDA denoiser of the given preset shape.

    Parameters
    ----------
    preset : str
        Key of :data:`PRESETS`.
    device : str or torch.device
    seed : int
        Seed of the weight initialisation (LLaDA's ``init_std`` 0.02 normal init).

    Returns
    -------
    LLaDADenoiser
        ``mask_id`` = vocab - 96 (inside the vocabulary, as in LLaDA), ``eos_id`` =
        ``pad_id`` = vocab - 95.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    shape = dict(PRESETS[preset])
    dtype = getattr(torch, shape.pop("dtype"))
    vocab = shape.pop("vocab_size")
    return random_llada(shape, vocab, dtype=dtype, device=device, seed=seed)


def _load_average() -> float | None:
    """1-minute load average (how busy a shared machine was), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def token_agreement(tokens: torch.Tensor, reference: torch.Tensor, gen_length: int) -> float:
    """Fraction of the last ``gen_length`` positions of (B, L) ``tokens`` equal to ``reference``."""
    return float((tokens[:, -gen_length:] == reference[:, -gen_length:]).float().mean())


def _prompts(batch: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab - 128, (batch, length), generator=g)  # avoids mask/EOS ids


def _timed_run(model, prompt, sampler, gen_length: int, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    out = remask.generate(model, prompt, sampler, gen_length=gen_length, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start, time.process_time() - cpu_start


def main(
    quick: bool = False,
    out: str | Path | None = None,
    *,
    preset: str = "cpu",
    device: str | None = None,
) -> list[Result]:
    """Time uncached / prefix / dual decoding, measure agreement, write the CSV.

    Parameters
    ----------
    quick : bool
        One timed repeat and a shorter canvas (L = 128: 32 prompt + 96 generated), well under
        a minute on a 2-core CPU; otherwise 5 repeats at L = 256.
    out : path, optional
        CSV path; default ``bench/results/cache_<device>.csv`` (``..._quick.csv`` when quick).
    preset : str
        Model shape, a key of :data:`PRESETS`.
    device : str, optional
        Default: CUDA when available, else CPU.

    Returns
    -------
    list of Result
        The rows written.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    env = environment(dev)
    prompt_length, gen_length, block_length = (32, 96, 32) if quick else (64, 192, 32)
    repeats = 1 if quick else 5
    base = build_model(preset, device=dev)
    prompt = _prompts(1, prompt_length, base.vocab_size, seed=1).to(dev)
    sampler = remask.samplers.build("low_confidence", block_length=block_length)
    config = {
        "preset": preset,
        **PRESETS[preset],
        "B": 1,
        "L": prompt_length + gen_length,
        "prompt": prompt_length,
        "gen_length": gen_length,
        "block_length": block_length,
        "sampler": "low_confidence",
        "steps": gen_length,
        "temperature": 0.0,
        "threads": torch.get_num_threads(),
        "kernel_backend": remask.kernels.resolve_backend(device=dev),
        "load_avg_1m": _load_average(),
    }
    variants = {
        "uncached": lambda: base,
        "prefix": lambda: Cached(base, mode="prefix"),
        "dual": lambda: Cached(base, mode="dual"),
    }

    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu_times: dict[str, list[float]] = {name: [] for name in variants}
    outputs, passes = {}, {}
    with torch.inference_mode():
        _timed_run(base, prompt, sampler, block_length, dev)  # warm-up: kernels, allocator
        for _ in range(repeats):
            for name, make in variants.items():  # interleaved: load drifts hit all alike
                model = make()
                result, seconds, cpu_seconds = _timed_run(model, prompt, sampler, gen_length, dev)
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)
                outputs[name] = result
                passes[name] = getattr(model, "stats", {"full_passes": result.steps})

    results: list[Result] = []

    row = row_collector(results, config=config, env=env)

    reference = outputs["uncached"].tokens
    for name in variants:
        steps = outputs[name].steps
        per_step = [1e3 * t / steps for t in times[name]]
        tokens_per_s = gen_length / statistics.median(times[name])
        stats = passes[name]
        extra = {
            "mode": name,
            "full_passes": stats.get("full_passes"),
            "window_passes": stats.get("window_passes", 0),
        }
        row("cache_step", name, per_step, "ms/step", tokens_per_s, "tokens/s", extra)
        if dev.type == "cpu":
            # Process CPU time: robust to other load on a shared machine, where wall time
            # mostly measures the neighbours.
            cpu_step = [1e3 * t / steps for t in cpu_times[name]]
            row(
                "cache_step_cpu",
                name,
                cpu_step,
                "cpu-ms/step",
                gen_length / statistics.median(cpu_times[name]),
                "tokens/cpu-s",
                extra,
            )
        if name != "uncached":
            ratios = [u / c for u, c in zip(times["uncached"], times[name])]
            row("cache_speedup", name, ratios, "x", extra=extra)
            if dev.type == "cpu":
                ratios = [u / c for u, c in zip(cpu_times["uncached"], cpu_times[name])]
                row("cache_speedup_cpu", name, ratios, "x", extra=extra)
            agreement = token_agreement(outputs[name].tokens, reference, gen_length)
            row("cache_agreement", name, [agreement], "fraction", extra=extra)
    results += _golden_agreement(env, quick)

    # A quick run never replaces the committed full results.
    path = write_csv(results, out or RESULTS / f"cache_{dev.type}{'_quick' if quick else ''}.csv")
    for r in results:
        derived = f"  {r.derived} {r.derived_unit}" if r.derived is not None else ""
        print(
            f"{r.name:16s} {r.variant:22s} median {r.median:9.4f} {r.unit:8s} "
            f"[p20 {r.p20:.4f}, p80 {r.p80:.4f}]{derived}",
            flush=True,
        )
    print(f"wrote {path}")
    return results


def _golden_agreement(env: dict[str, str], quick: bool) -> list[Result]:
    """Token agreement of prefix / dual caching on the golden tiny LLaDA and Dream checkpoints."""
    from remask.models import load_model

    results = []
    prompts = [[1, 2, 3], [5, 6, 7, 8, 9, 10], [11, 12]]
    gen_length, block_length = (16, 4) if quick else (32, 8)
    sampler = remask.samplers.build("low_confidence", block_length=block_length)
    for name in ("llada_tiny", "dream_tiny"):
        if not (GOLDEN / name).is_dir():
            continue  # installed without the test data
        base = load_model(str(GOLDEN / name))
        reference = remask.generate(base, prompts, sampler, gen_length=gen_length, seed=0).tokens
        for mode in ("prefix", "dual"):
            cached = remask.generate(
                Cached(base, mode=mode), prompts, sampler, gen_length=gen_length, seed=0
            ).tokens
            value = token_agreement(cached, reference, gen_length)
            config = {
                "checkpoint": name,
                "B": len(prompts),
                "gen_length": gen_length,
                "block_length": block_length,
                "sampler": "low_confidence",
                "mode": mode,
            }
            results.append(
                Result(
                    name="cache_agreement",
                    variant=f"{mode}:{name}",
                    backend="torch",
                    config=json.dumps(config, sort_keys=True),
                    repeats=1,
                    median=round(value, 4),
                    p20=round(value, 4),
                    p80=round(value, 4),
                    unit="fraction",
                    derived=None,
                    derived_unit="",
                    device=env["device"],
                    versions=env["versions"],
                    sha=env["sha"],
                    date=env["date"],
                )
            )
    return results


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, L = 128")
    parser.add_argument("--out", default=None, help="CSV path")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    main(args.quick, args.out, preset=args.preset, device=args.device)


if __name__ == "__main__":
    _cli()
