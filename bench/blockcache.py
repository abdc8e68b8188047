"""Block-diffusion decoding: the exact block cache vs recomputing the prefix, on a CPU.

Run ``python -m remask.bench.blockcache [--quick] [--threads N] [--out FILE]``. A random-weight
SDAR-shaped block-diffusion model (Qwen3 layout: QK-norm, GQA; preset ``cpu``: hidden 384,
6 layers, 6 heads / 2 KV heads of 64, MLP 1024, vocab 8192, block 32) decodes 256 tokens
after a 64-token prompt with greedy ``low_confidence`` (block length 32, 2 tokens per step)
three ways through :class:`~remask.models.block_diffusion.BlockDiffusionDenoiser`:

* ``cached``   the exact cache of finished blocks: each step runs the active block (and, at a
               block's first step, the block just finished) against cached keys and values;
* ``prefix``   no cache, the forward covers the prompt, every finished block and the active
               block (``x[:, :block_end]``), as LLaDA 2.x's / SDAR's cache-free ``generate()``
               loops do;
* ``full``     no cache, the whole canvas (``cache=False``; the masked suffix cannot affect
               the active block under the block-causal mask, so this only adds work).

Rows (``bench/common.py`` schema): ``blockcache_step`` ms per step (wall time / steps; median,
p20, p80 over repeats; ``derived`` = generated tokens/s); ``blockcache_step_cpu`` the same in
process CPU time; ``blockcache_forward_cpu`` the CPU time spent inside the denoiser per step
(the rest is the sampler, the same for all variants); ``blockcache_speedup`` /
``_speedup_cpu`` / ``blockcache_forward_speedup`` / ``_forward_speedup_cpu`` baseline time /
cached time, paired per repeat, for both baselines; ``blockcache_tokens_equal`` 1.0 when the
cached run's tokens equal the baseline's exactly. ``config`` records the shape, the torch thread count and
the machine load (``uptime`` and 1-minute load average) before and after the run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import torch

import remask
from remask.bench.cache import _load_average
from remask.bench.common import Result, environment, pin_numba, row_collector, write_csv

__all__ = ["PRESETS", "PrefixRecompute", "build_model", "main"]

RESULTS = Path(__file__).resolve().parent / "results"

#: Model shapes: "cpu" is a small real-width model a 2-core CPU decodes in minutes.
PRESETS: dict[str, dict] = {
    "cpu": {
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 1024,
        "vocab_size": 8192,
        "block_size": 32,
    },
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "vocab_size": 512,
        "block_size": 8,
    },
}


def build_model(preset: str = "cpu", *, cache: bool = True, seed: int = 0):
    """A random-weight SDAR-shaped :class:`BlockDiffusionDenoiser` of a preset shape.

    ``mask_id`` = vocab - 1, ``eos_id`` = ``pad_id`` = vocab - 2 (ids of the random model, not
    of any tokenizer). Weights follow the family's init (normal, std 0.02).
    """
    from remask.models.block_diffusion import BlockDiffusionDenoiser
    from remask.models.sdar import SDARConfig, SDARForCausalLM

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    shape = dict(PRESETS[preset])
    block_size = shape.pop("block_size")
    vocab = shape["vocab_size"]
    config = SDARConfig(**shape, max_position_embeddings=4096, rope_theta=1e6)
    torch.manual_seed(seed)
    model = SDARForCausalLM(config)
    return BlockDiffusionDenoiser(
        model,
        block_size=block_size,
        cache=cache,
        family="sdar",
        mask_id=vocab - 1,
        vocab_size=vocab,
        embedding_rows=vocab,
        eos_id=vocab - 2,
        pad_id=vocab - 2,
    )


class _Timed:
    """Forwards to a denoiser and adds up the wall / process-CPU seconds spent inside it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.wall = self.cpu = 0.0
        for name in (
            "mask_id",
            "vocab_size",
            "eos_id",
            "pad_id",
            "block_size",
            "shift",
            "device",
            "accepts_active",
        ):
            setattr(self, name, getattr(inner, name))

    def __call__(self, tokens, attention_mask=None, active=None):
        start, cpu_start = time.perf_counter(), time.process_time()
        out = self.inner(tokens, attention_mask, active=active)
        self.wall += time.perf_counter() - start
        self.cpu += time.process_time() - cpu_start
        return out


class PrefixRecompute:
    """Baseline denoiser: no cache, a forward over the canvas up to the active block's end.

    Wraps an uncached :class:`BlockDiffusionDenoiser` (``cache=False``); rows past the active
    block are returned as zeros (the sampler reads only its active block).
    """

    accepts_active = True

    def __init__(self, inner) -> None:
        self.inner = inner
        for name in ("mask_id", "vocab_size", "eos_id", "pad_id", "block_size", "shift", "device"):
            setattr(self, name, getattr(inner, name))

    def __call__(self, tokens, attention_mask=None, active=None):
        if active is None or not bool(active.any()):
            return self.inner(tokens, attention_mask)
        last = int(active.any(0).nonzero()[-1, 0])
        stop = min(tokens.shape[1], (last // self.block_size + 1) * self.block_size)
        mask = None if attention_mask is None else attention_mask[:, :stop]
        head = self.inner(tokens[:, :stop], mask)  # (B, stop, V)
        out = head.new_zeros(tokens.shape[0], tokens.shape[1], head.shape[-1])
        out[:, :stop] = head
        out[..., self.mask_id] = float("-inf")
        return out


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(
    quick: bool = False,
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    threads: int = 1,
    repeats: int | None = None,
) -> list[Result]:
    """Time cached / prefix-recompute / full decoding and write the CSV.

    Parameters
    ----------
    quick : bool
        The ``tiny`` preset, 16 tokens after an 8-token prompt, one repeat (seconds); the
        default is the ``cpu`` preset, 256 tokens after 64, 2 repeats.
    out : path, optional
        Default ``bench/results/blockcache_cpu.csv`` (``blockcache_cpu_quick.csv`` when quick).
    preset : str, optional
        Overrides the shape (a key of :data:`PRESETS`).
    threads : int
        torch intra-op threads (pinned for the run; OpenMP follows torch's setting).
    repeats : int, optional
        Timed repeats (each runs all three variants, interleaved).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(quick, out, preset, threads, repeats)
    finally:
        torch.set_num_threads(previous)  # the caller's setting, e.g. inside a test session


def _run(quick, out, preset, threads, repeats) -> list[Result]:
    preset = preset or ("tiny" if quick else "cpu")
    prompt_length, gen_length = (8, 16) if quick else (64, 256)
    repeats = repeats or (1 if quick else 2)
    block = PRESETS[preset]["block_size"]
    env = environment("cpu")
    load_before, uptime_before = _load_average(), _uptime()
    cached = build_model(preset, cache=True)
    full = build_model(preset, cache=False)
    full.model = cached.model  # the same weights
    variants = {"cached": cached, "prefix": PrefixRecompute(full), "full": full}
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, cached.vocab_size - 8, (1, prompt_length), generator=g)
    steps = gen_length // 2
    sampler = remask.samplers.build("low_confidence", block_length=block, steps=steps)

    walls = {name: [] for name in variants}
    cpus = {name: [] for name in variants}
    forward_walls = {name: [] for name in variants}
    forward_cpus = {name: [] for name in variants}
    outputs = {}
    backend = remask.kernels.resolve_backend(device="cpu")
    pin_numba(threads)
    with torch.inference_mode():
        for model in variants.values():  # warm-up: kernels (Numba compiles once), allocator
            remask.generate(model, prompt, sampler, gen_length=block, seed=0)
        for _ in range(repeats):
            for name, model in variants.items():  # interleaved: load drifts hit all alike
                if hasattr(model, "reset"):
                    model.reset()
                timed = _Timed(model)
                start, cpu_start = time.perf_counter(), time.process_time()
                outputs[name] = remask.generate(
                    timed, prompt, sampler, gen_length=gen_length, seed=0
                )
                walls[name].append(time.perf_counter() - start)
                cpus[name].append(time.process_time() - cpu_start)
                forward_walls[name].append(timed.wall)
                forward_cpus[name].append(timed.cpu)
    load_after, uptime_after = _load_average(), _uptime()
    config = {
        "preset": preset,
        **PRESETS[preset],
        "family": "sdar (random weights)",
        "B": 1,
        "prompt": prompt_length,
        "gen_length": gen_length,
        "sampler": "low_confidence",
        "block_length": block,
        "steps": steps,
        "temperature": 0.0,
        "threads": threads,
        "kernel_backend": backend,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_after,
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "cached_stats": cached.stats,
    }

    results: list[Result] = []

    row = row_collector(results, config=config, env=env)

    for name in variants:
        n = outputs[name].steps
        row(
            "blockcache_step",
            name,
            [1e3 * t / n for t in walls[name]],
            "ms/step",
            gen_length / statistics.median(walls[name]),
            "tokens/s",
        )
        row(
            "blockcache_step_cpu",
            name,
            [1e3 * t / n for t in cpus[name]],
            "cpu-ms/step",
            gen_length / statistics.median(cpus[name]),
            "tokens/cpu-s",
        )
        row(
            "blockcache_forward_cpu", name, [1e3 * t / n for t in forward_cpus[name]], "cpu-ms/step"
        )
    for base in ("prefix", "full"):
        row(
            "blockcache_speedup",
            f"cached_vs_{base}",
            [b / c for b, c in zip(walls[base], walls["cached"])],
            "x",
        )
        row(
            "blockcache_speedup_cpu",
            f"cached_vs_{base}",
            [b / c for b, c in zip(cpus[base], cpus["cached"])],
            "x",
        )
        row(
            "blockcache_forward_speedup",
            f"cached_vs_{base}",
            [b / c for b, c in zip(forward_walls[base], forward_walls["cached"])],
            "x",
        )
        row(
            "blockcache_forward_speedup_cpu",
            f"cached_vs_{base}",
            [b / c for b, c in zip(forward_cpus[base], forward_cpus["cached"])],
            "x",
        )
        equal = torch.equal(outputs["cached"].tokens, outputs[base].tokens)
        row("blockcache_tokens_equal", f"cached_vs_{base}", [float(equal)], "bool")

    path = write_csv(results, out or RESULTS / f"blockcache_cpu{'_quick' if quick else ''}.csv")
    for r in results:
        derived = f"  {r.derived} {r.derived_unit}" if r.derived is not None else ""
        print(
            f"{r.name:24s} {r.variant:18s} median {r.median:10.4f} {r.unit:11s} "
            f"[p20 {r.p20:.4f}, p80 {r.p80:.4f}]{derived}",
            flush=True,
        )
    print(f"load before {load_before}, after {load_after}; wrote {path}")
    return results


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, seconds")
    parser.add_argument("--out", default=None, help="CSV path")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    main(args.quick, args.out, preset=args.preset, threads=args.threads, repeats=args.repeats)


if __name__ == "__main__":
    _cli()
