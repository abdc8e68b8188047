"""Kernel benchmarks: ``propose`` per backend against LLaDA's step and plain torch.

Run ``python -m remask.bench.kernels [--quick] [--out FILE]`` (or ``remask bench kernels``).
Shape: one LLaDA step, (B, L, V) = (1, 256, 126464), float32 and bfloat16 logits. Rows:

* ``floor``            one plain read of the logits (``amax`` over V): the memory floor;
* ``llada_t0``         LLaDA's T = 0 step: argmax + softmax in the logits dtype + gather;
* ``llada_gumbel_t1``  LLaDA's T = 1 step: float64 cast, float64 uniforms,
                       ``exp(logits) / (-log u) ** T``, argmax, softmax + gather
                       (``add_gumbel_noise`` of ML-GSAI/LLaDA generate.py, samplers.md §2.4);
* ``torch_fp32``       the best plain-torch float32 code for the same four outputs as
                       ``propose`` (token, prob, margin, entropy) at T = 0;
* ``propose_t0`` / ``propose_t1``  ``remask.kernels.propose`` on each available backend.

Results go to ``bench/results/kernels_cpu.csv`` (or ``kernels_cuda.csv`` on a GPU); a ratio
table against the targets of the kernel issue is printed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import remask.kernels as K
import torch
import torch.nn.functional as F
from remask.bench.common import Result, environment, time_cpu, time_gpu, write_csv

__all__ = ["llada_greedy_step", "llada_gumbel_step", "main", "torch_fp32_step"]

SHAPE = (1, 256, 126464)
RESULTS = Path(__file__).resolve().parent / "results"


def llada_greedy_step(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA at T = 0: argmax, softmax in the logits dtype, gather."""
    x0 = logits.argmax(-1)  # (B, L)
    p = F.softmax(logits, dim=-1)  # (B, L, V) in the logits dtype
    return x0, p.gather(-1, x0.unsqueeze(-1)).squeeze(-1)


def llada_gumbel_step(logits: torch.Tensor, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA at T > 0: float64 Gumbel-max in the exp(l) / (-log u)^T form, then confidence."""
    logits64 = logits.to(torch.float64)  # (B, L, V) float64
    noise = torch.rand(logits64.shape, dtype=torch.float64, generator=generator)
    gumbel_noise = (-torch.log(noise)) ** temperature
    x0 = (logits64.exp() / gumbel_noise).argmax(-1)  # (B, L)
    p = F.softmax(logits, dim=-1)  # (B, L, V)
    return x0, p.gather(-1, x0.unsqueeze(-1)).squeeze(-1)


def torch_fp32_step(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Plain torch float32: token, prob, margin, entropy with as few full passes as possible."""
    x = logits.float()  # (B, L, V)
    top = x.topk(2, dim=-1)  # (B, L, 2)
    lse = torch.logsumexp(x, dim=-1)  # (B, L)
    p = torch.exp(x - lse.unsqueeze(-1))  # (B, L, V)
    entropy = lse - (p * x.clamp_min(torch.finfo(torch.float32).min)).sum(-1)
    top_p = torch.exp(top.values - lse.unsqueeze(-1))  # (B, L, 2)
    return top.indices[..., 0], top_p[..., 0], top_p[..., 0] - top_p[..., 1], entropy


def _cases(logits: torch.Tensor, backends: list[str],
           quick: bool) -> list[tuple[str, str, Callable[[], object], bool]]:
    """(name, backend, fn, slow) for one logits tensor (--quick skips the float64 reference)."""
    gen = torch.Generator(device=logits.device).manual_seed(0)
    cases = [
        ("floor", "torch", lambda: logits.amax(-1), False),
        ("llada_t0", "torch", lambda: llada_greedy_step(logits), False),
        ("llada_gumbel_t1", "torch", lambda: llada_gumbel_step(logits, 1.0, gen), True),
        ("torch_fp32", "torch", lambda: torch_fp32_step(logits), False),
    ]
    for b in backends:
        slow = b == "torch"
        if quick and slow:
            continue
        cases.append(("propose_t0", b, lambda b=b: K.propose(logits, backend=b), slow))
        cases.append(("propose_t1", b, lambda b=b: K.propose(logits, temperature=1.0, seed=0,
                                                              offset=1, backend=b), slow))
    return cases


def main(quick: bool = False, out: str | Path | None = None) -> list[Result]:
    """Time every case side by side, write the CSV and print ratios against the targets.

    Parameters
    ----------
    quick : bool
        Fewer repeats (well under 3 minutes on a 2-core CPU).
    out : path, optional
        CSV path; default ``bench/results/kernels_<device>.csv`` (``..._quick.csv`` when quick).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = environment(device)
    backends = K.backends(device.type)
    timer = time_gpu if device.type == "cuda" else time_cpu
    gen = torch.Generator().manual_seed(0)
    base = (torch.randn(SHAPE, generator=gen) * 3).to(device)  # LLaDA-like logit spread
    results: list[Result] = []
    for dtype in (torch.float32, torch.bfloat16):
        logits = base.to(dtype)
        nbytes = logits.numel() * logits.element_size()
        for name, backend, fn, slow in _cases(logits, backends, quick):
            if device.type == "cuda":
                stats = timer(fn)
            elif slow:
                stats = timer(fn, warmup=1, repeats=2 if quick else 5)
            else:
                stats = timer(fn, warmup=2, repeats=5 if quick else 15)
            config = json.dumps({"B": SHAPE[0], "L": SHAPE[1], "V": SHAPE[2],
                                 "dtype": str(dtype).replace("torch.", "")})
            results.append(Result(
                name=name, variant=str(dtype).replace("torch.", ""), backend=backend,
                config=config, repeats=int(stats["repeats"]), median=round(stats["median"], 4),
                p20=round(stats["p20"], 4), p80=round(stats["p80"], 4), unit="ms",
                derived=round(nbytes / (stats["median"] * 1e-3) / 1e9, 3), derived_unit="GB/s",
                device=env["device"], versions=env["versions"], sha=env["sha"],
                date=env["date"]))
            print(f"{name:16s} {results[-1].variant:9s} {backend:7s} median {stats['median']:9.2f} ms"
                  f"  [p20 {stats['p20']:.2f}, p80 {stats['p80']:.2f}]", flush=True)
    # A quick run never replaces the committed full results.
    path = write_csv(results, out or RESULTS / f"kernels_{device.type}{'_quick' if quick else ''}.csv")
    print(f"wrote {path}")
    _print_ratios(results, "numba" if device.type == "cpu" else "triton")
    return results


def _print_ratios(results: list[Result], fast: str) -> None:
    med = {(r.name, r.variant, r.backend): r.median for r in results}
    for variant in ("float32", "bfloat16"):
        def get(name: str, backend: str = "torch", variant: str = variant) -> float | None:
            return med.get((name, variant, backend))
        t0, t1 = get("propose_t0", fast), get("propose_t1", fast)
        if t0 is None or t1 is None:
            print(f"[{variant}] backend {fast} not available: no ratios")
            continue
        rows = [
            ("llada_t0 / propose_t0", get("llada_t0") / t0, ">= 3"),
            ("torch_fp32 / propose_t0", get("torch_fp32") / t0, ">= 5"),
            ("propose_t0 / floor", t0 / get("floor"), "<= 3"),
            ("llada_gumbel_t1 / propose_t1", get("llada_gumbel_t1") / t1, ">= 25"),
        ]
        for label, value, target in rows:
            print(f"[{variant}] {label:30s} {value:8.2f}x   target {target}")


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", default=None, help="CSV path")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)


if __name__ == "__main__":
    _cli()
