"""DPad suffix dropout: the pruned forward vs the hidden-keys forward vs no dropout, on a CPU.

Run ``python -m remask.bench.dpad [--quick] [--threads N] [--repeats N] [--out FILE]``. A
random-weight LLaDA-shaped model (:class:`remask.models.llada.LLaDAModelLM`; preset ``cpu``:
d_model 256, 4 layers, 4 heads, MLP 1024, vocab 4096) decodes 512 tokens after a 64-token
prompt with greedy ``low_confidence`` (block length 32, 2 tokens per step) three ways:

* ``none``    the plain model: every step is a forward over the whole canvas (L = 576);
* ``hidden``  :class:`~remask.models.dpad.DPad` (reference defaults W = 256, k = 4, a = 2)
              with ``pruned=False``: one forward over the whole canvas, the dropped suffix
              masks hidden as keys (the same result as the pruned forward, at full cost);
* ``pruned``  ``DPad(pruned=True)``: only the kept columns (prefix, active block, about 64
              kept suffix masks) go through the model, at their original positions.

Variants run interleaved within each repeat, so load drifts hit all alike. Rows
(``bench/common.py`` schema): ``dpad_run`` seconds per run (wall; ``derived`` = generated
tokens/s) and ``dpad_run_cpu`` (process CPU time); ``dpad_forward`` / ``dpad_forward_cpu``
milliseconds per forward spent inside the model (run time in the model / NFE);
``dpad_speedup`` / ``dpad_speedup_cpu`` (whole run) and ``dpad_forward_speedup`` /
``dpad_forward_speedup_cpu`` baseline time / pruned time, paired per repeat, against
``none`` and ``hidden``; ``dpad_agreement`` the fraction of generated tokens equal between
two variants (pruned vs hidden must be 1.0; the dropout itself changes tokens on random
weights, so the agreement with ``none`` is a smoke value, not a quality estimate);
``dpad_nfe`` forward passes per run. ``config`` records the shape, the mean forward length
of each variant, the pinned thread counts and the machine load (``uptime`` and the 1-minute
load average) before and after the run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import remask
from remask.bench.blockcache import _uptime
from remask.bench.cache import _load_average
from remask.bench.common import (
    Result,
    environment,
    pin_numba,
    random_llada,
    row_collector,
    write_csv,
)
from remask.models.dpad import DPad

__all__ = ["PRESETS", "build_model", "main"]

RESULTS = Path(__file__).resolve().parent / "results"

#: Model shapes: "cpu" is big enough that a step's cost is the transformer, not Python
#: overhead; "tiny" is for the quick run (seconds).
PRESETS: dict[str, dict] = {
    "cpu": {"d_model": 256, "n_layers": 4, "n_heads": 4, "mlp_hidden_size": 1024, "vocab": 4096},
    "tiny": {"d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_hidden_size": 64, "vocab": 512},
}


def build_model(preset: str = "cpu", *, seed: int = 0):
    """A random-weight LLaDA denoiser of a preset shape (float32, LLaDA's normal init).

    ``mask_id`` = vocab - 96, ``eos_id`` = ``pad_id`` = vocab - 95 (ids of the random model,
    not of any tokenizer).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    shape = dict(PRESETS[preset])
    vocab = shape.pop("vocab")
    return random_llada(shape, vocab, seed=seed)


class _Counted:
    """Forwards every call to a denoiser (its capabilities included) and adds up the wall and
    process-CPU seconds spent inside it and the sequence lengths it was given."""

    def __init__(self, inner) -> None:
        self.inner = inner
        for name in ("mask_id", "vocab_size", "eos_id", "pad_id", "shift", "device"):
            setattr(self, name, getattr(inner, name))
        self.accepts_attention_bias = inner.accepts_attention_bias
        self.accepts_gathered = inner.accepts_gathered
        self.wall = self.cpu = 0.0
        self.lengths: list[int] = []

    def __call__(self, tokens, attention_mask=None, **extra):
        start, cpu_start = time.perf_counter(), time.process_time()
        out = self.inner(tokens, attention_mask, **extra)
        self.wall += time.perf_counter() - start
        self.cpu += time.process_time() - cpu_start
        self.lengths.append(tokens.shape[1])
        return out


def main(
    quick: bool = False,
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    threads: int = 1,
    repeats: int | None = None,
    gen_length: int | None = None,
) -> list[Result]:
    """Time no dropout / DPad hidden keys / DPad pruned decoding and write the CSV.

    Parameters
    ----------
    quick : bool
        The ``tiny`` preset, 64 tokens after an 8-token prompt, block 8, window 16, one repeat
        (seconds); the default is the ``cpu`` preset, 512 tokens after 64, block 32, the
        reference window 256, 2 repeats.
    out : path, optional
        Default ``bench/results/dpad_cpu.csv`` (``dpad_cpu_quick.csv`` when quick).
    preset : str, optional
        Overrides the shape (a key of :data:`PRESETS`).
    threads : int
        torch intra-op threads, and Numba's, pinned for the run (OpenMP follows torch).
    repeats : int, optional
        Timed repeats (each runs the three variants, interleaved).
    gen_length : int, optional
        Overrides the number of generated tokens (a multiple of the block length).
    """
    for name, value in (("threads", threads), ("repeats", repeats), ("gen_length", gen_length)):
        if value is None and name != "threads":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(quick, out, preset, threads, repeats, gen_length)
    finally:
        torch.set_num_threads(previous)  # the caller's setting, e.g. inside a test session


def _run(quick, out, preset, threads, repeats, gen_length) -> list[Result]:
    preset = preset or ("tiny" if quick else "cpu")
    prompt_length, block, window = (8, 8, 16) if quick else (64, 32, 256)
    gen_length = gen_length or (64 if quick else 512)
    if gen_length % block:
        raise ValueError(f"gen_length must be a multiple of the block length {block}")
    repeats = repeats or (1 if quick else 2)
    steps = gen_length // 2
    env = environment("cpu")
    load_before, uptime_before = _load_average(), _uptime()
    base = build_model(preset)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, base.vocab_size - 128, (1, prompt_length), generator=g)
    sampler = remask.samplers.build("low_confidence", block_length=block, steps=steps)
    variants = {
        "none": lambda inner: inner,
        "hidden": lambda inner: DPad(inner, window=window, pruned=False),
        "pruned": lambda inner: DPad(inner, window=window, pruned=True),
    }
    walls = {name: [] for name in variants}
    cpus = {name: [] for name in variants}
    forward_walls = {name: [] for name in variants}
    forward_cpus = {name: [] for name in variants}
    lengths: dict[str, list[int]] = {}
    outputs = {}
    backend = remask.kernels.resolve_backend(device="cpu")
    pin_numba(threads)
    with torch.inference_mode():
        for make in variants.values():  # warm-up: kernels (Numba compiles once), allocator
            remask.generate(make(base), prompt, sampler, gen_length=block, seed=0)
        for _ in range(repeats):
            for name, make in variants.items():  # interleaved: load drifts hit all alike
                counted = _Counted(base)
                model = make(counted)
                start, cpu_start = time.perf_counter(), time.process_time()
                outputs[name] = remask.generate(
                    model, prompt, sampler, gen_length=gen_length, seed=0
                )
                walls[name].append(time.perf_counter() - start)
                cpus[name].append(time.process_time() - cpu_start)
                forward_walls[name].append(counted.wall)
                forward_cpus[name].append(counted.cpu)
                lengths[name] = counted.lengths
    load_after, uptime_after = _load_average(), _uptime()
    config = {
        "preset": preset,
        **PRESETS[preset],
        "family": "llada (random weights)",
        "B": 1,
        "prompt": prompt_length,
        "gen_length": gen_length,
        "L": prompt_length + gen_length,
        "sampler": "low_confidence",
        "block_length": block,
        "steps": steps,
        "temperature": 0.0,
        "dpad": {"window": window, "sigma": 4.0, "scale": 2.0, "seed": 0},
        "mean_forward_length": {
            name: round(statistics.mean(values), 1) for name, values in lengths.items()
        },
        "threads": threads,
        "kernel_backend": backend,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_after,
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
    }

    results: list[Result] = []

    row = row_collector(results, config=config, env=env)

    for name in variants:
        nfe = int(outputs[name].nfe.max())
        row("dpad_run", name, walls[name], "s/run", gen_length / statistics.median(walls[name]))
        row("dpad_run_cpu", name, cpus[name], "cpu-s/run")
        row("dpad_forward", name, [1e3 * t / nfe for t in forward_walls[name]], "ms/forward")
        row("dpad_forward_cpu", name, [1e3 * t / nfe for t in forward_cpus[name]], "cpu-ms/fwd")
        row("dpad_nfe", name, [float(nfe)], "forwards")
    for base_name in ("none", "hidden"):
        for label, table in (
            ("dpad_speedup", walls),
            ("dpad_speedup_cpu", cpus),
            ("dpad_forward_speedup", forward_walls),
            ("dpad_forward_speedup_cpu", forward_cpus),
        ):
            ratios = [b / p for b, p in zip(table[base_name], table["pruned"])]
            row(label, f"pruned_vs_{base_name}", ratios, "x")
    for a, b in (("pruned", "hidden"), ("hidden", "none"), ("pruned", "none")):
        same = outputs[a].tokens[:, -gen_length:] == outputs[b].tokens[:, -gen_length:]
        row("dpad_agreement", f"{a}_vs_{b}", [float(same.float().mean())], "fraction")

    path = write_csv(results, out or RESULTS / f"dpad_cpu{'_quick' if quick else ''}.csv")
    for r in results:
        derived = f"  {r.derived} {r.derived_unit}" if r.derived is not None else ""
        print(
            f"{r.name:24s} {r.variant:16s} median {r.median:10.4f} {r.unit:10s} "
            f"[p20 {r.p20:.4f}, p80 {r.p80:.4f}]{derived}",
            flush=True,
        )
    print(
        f"mean forward length {config['mean_forward_length']}; load {load_before} -> {load_after}"
    )
    print(f"wrote {path}")
    return results


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 64 tokens, 1 repeat")
    parser.add_argument("--out", default=None, help="CSV path")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=1, help="torch/Numba threads [1]")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats")
    parser.add_argument("--gen-length", type=int, default=None, help="generated tokens")
    args = parser.parse_args()
    main(
        args.quick,
        args.out,
        preset=args.preset,
        threads=args.threads,
        repeats=args.repeats,
        gen_length=args.gen_length,
    )


if __name__ == "__main__":
    _cli()
