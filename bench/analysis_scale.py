"""The analysis estimators at LLaDA's vocabulary: peak memory and time, fused vs older code.

Run ``python -m remask.bench.analysis_scale [--quick] [--shapes full,large]
[--parts profile,cmi] [--variants new,prev,old] [--append] [--out FILE]`` from a git checkout.

A random-weight LLaDA-shaped model (:class:`remask.models.llada.LLaDAModelLM`, bf16, the real
vocabulary V = 126,464) of one of two sizes: ``full`` (d_model 256, 2 layers, 4 heads, MLP
1024: one (1, 1024, V) forward takes about a second on a 2-core CPU, nearly all of it the
LM head) or ``large`` (d_model 1024, 4 layers, 8 heads, MLP 2816: ~5x the FLOPs per token,
still far from LLaDA-8B's), is probed on one canvas of L = 1,024 tokens (random ids; the
middle half masked; L = 128 for ``cmi``: the old code holds float64 (8, L, V) clamped
batches, 8.3 GB each at L = 1,024, which would not fit this machine's 23 GB beside the other
jobs, and its 32 × 8 clamped forwards took minutes per 64 tokens on the shared 2-core
machine) by

* ``profile``: :func:`remask.analysis.homogenization_profile` (``pairwise=False``: pairwise JS
  costs O(M² V), hours at this size in any version), and
* ``cmi``: :func:`remask.analysis.cmi_matrix` over 32 evenly spaced masked positions with
  ``top_k=8`` and 8 clamped canvases per forward (``batch_size=8``); this tree computes the
  32 × 32 matrix (``columns="positions"``), older code every column,

each in a fresh subprocess per variant: ``new`` (this tree), ``prev`` (the streamed code of
commit :data:`PREV_REV`, before the fused kernels) and ``old`` (commit :data:`OLD_REV`,
which upcast whole (B, L, V) tensors to float64), the older ones read with ``git show``.
Each subprocess first runs the call on a 16-token slice of the canvas, untimed (the model's
code paths, and Numba's compiled kernels loaded from its cache or compiled), then measures,
around the one call,

* wall time and the time spent inside the model's forward passes (their share is
  ``forward_share``),
* peak resident memory above the resident memory just before the call (the kernel's
  high-water mark, reset through ``/proc/self/clear_refs``), and that peak minus the
  logits the call must hold (``peak_extra_mb``, in units of one (1, L, V) bf16 logits
  tensor in ``peak_extra_x_logits``): 1 tensor for ``profile`` (the control is another
  forward, counted as extra), 1 + 8 for ``cmi`` (one-shot + one batch of clamped canvases),

and writes its outputs so the parent checks every variant against ``old`` on the entries
both computed (``max_abs_diff_vs_old``, ``compared_entries``). Rows (``bench/common.py``
schema, ``median`` = the single run's wall time in ms, ``derived`` = ``forward_share``; the
1-minute load average before and after is in ``config``; torch, OpenMP, MKL and Numba
threads pinned to ``--threads``). Results go to ``bench/results/analysis_scale_cpu.csv``
(``--append`` adds to it, so that parts can be run one at a time).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from remask.bench.common import Result, environment, write_csv

__all__ = ["OLD_REV", "build_model", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
#: The last commit before the streamed estimators (issue 16).
OLD_REV = "f04aa7f"
#: The streamed estimators before the fused kernels (analysis/_fused.py).
PREV_REV = "db13778"
#: Which code each variant runs: this tree, or the analysis modules of a commit.
REVS = {"new": None, "prev": PREV_REV, "old": OLD_REV}
VOCAB = 126464
SHAPES = {
    "full": {
        "d_model": 256,
        "n_layers": 2,
        "n_heads": 4,
        "mlp_hidden_size": 1024,
        "L": {"profile": 1024, "cmi": 128},
    },
    # Heavier, still CPU-sized: d_model 1024, 4 layers (LLaDA-8B: 4096, 32); the LM head
    # (1024 x V) is still most of its FLOPs, where LLaDA-8B's 32 layers are ~94 % of its.
    "large": {
        "d_model": 1024,
        "n_layers": 4,
        "n_heads": 8,
        "mlp_hidden_size": 2816,
        "L": {"profile": 1024, "cmi": 128},
    },
    "quick": {
        "d_model": 64,
        "n_layers": 1,
        "n_heads": 2,
        "mlp_hidden_size": 128,
        "L": {"profile": 64, "cmi": 64},
    },
}
CMI_POSITIONS, TOP_K, CMI_BATCH = 32, 8, 8


def build_model(shape: dict, *, vocab: int = VOCAB, seed: int = 0):
    """A random-weight bf16 LLaDA denoiser of ``shape`` (mask id vocab − 96, as LLaDA's 126336)."""
    from remask.models.llada import LLaDAConfig, LLaDADenoiser, LLaDAModelLM

    mask_id, eos_id = vocab - 96, vocab - 95
    config = LLaDAConfig(
        d_model=shape["d_model"],
        n_layers=shape["n_layers"],
        n_heads=shape["n_heads"],
        n_kv_heads=shape["n_heads"],
        mlp_hidden_size=shape["mlp_hidden_size"],
        vocab_size=vocab,
        embedding_size=vocab,
        max_sequence_length=4096,
        mask_token_id=mask_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        init_device="cpu",
    )
    torch.manual_seed(seed)
    model = LLaDAModelLM(config).to(dtype=torch.bfloat16)
    return LLaDADenoiser(
        model, mask_id=mask_id, vocab_size=vocab, embedding_rows=vocab, eos_id=eos_id, pad_id=eos_id
    )


class _Timed:
    """Delegates to a denoiser and adds up the wall time of its forward passes."""

    def __init__(self, model):
        self.model = model
        self.mask_id, self.vocab_size = model.mask_id, model.vocab_size
        self.eos_id, self.pad_id = model.eos_id, model.pad_id
        self.seconds, self.calls = 0.0, 0

    def __call__(self, tokens, attention_mask=None):
        start = time.perf_counter()
        out = self.model(tokens, attention_mask)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def _old_module(name: str, rev: str = OLD_REV):
    """``remask.analysis.<name>`` as of ``rev`` (its imports from ``_util`` still exist)."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "show", f"{rev}:analysis/{name}.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"_{rev}_{name}")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(src, f"{rev}:analysis/{name}.py", "exec"), module.__dict__)
    return module


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _canvas(model, L: int) -> tuple[torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.vocab_size - 200, (1, L), generator=g)
    lo, hi = L // 4, L // 4 + L // 2
    tokens[:, lo:hi] = model.mask_id
    positions = sorted({int(round(x)) for x in np.linspace(lo, hi - 1, CMI_POSITIONS)})
    return tokens, positions


def _child(part: str, variant: str, shape_name: str, out: str) -> None:
    shape = SHAPES[shape_name]
    model = _Timed(build_model(shape))
    tokens, positions = _canvas(model, shape["L"][part])
    if REVS[variant] is None:
        from remask.analysis import cmi_matrix, homogenization_profile

        # The R x R matrix over the clamped positions (older code computes every column).
        cmi_kw = {"columns": "positions"}
    else:
        homogenization_profile = _old_module("homogenization", REVS[variant]).homogenization_profile
        cmi_matrix = _old_module("estimators", REVS[variant]).cmi_matrix
        cmi_kw = {}
    # Warm every code path (the model's, Numba's compiled kernels: loaded from its cache or
    # compiled, seconds, once per machine) on a short slice of the canvas: not timed.
    lo = shape["L"][part] // 4
    with torch.no_grad():
        short = tokens[:, lo - 8 : lo + 8]
        if part == "profile":
            homogenization_profile(model, short, pairwise=False, batch_size=1)
        else:
            cmi_matrix(model, short, positions=[8, 9], top_k=2, batch_size=2, **cmi_kw)
    model.seconds, model.calls = 0.0, 0
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
        reset = True
    except OSError:
        reset = False
    base = _kib("VmRSS")
    start = time.perf_counter()
    if part == "profile":
        prof = homogenization_profile(model, tokens, pairwise=False, batch_size=1)
        result = {"kl_unigram": prof.kl_unigram, "entropy": prof.entropy}
    else:
        result = {
            "cmi": cmi_matrix(
                model, tokens, positions=positions, top_k=TOP_K, batch_size=CMI_BATCH, **cmi_kw
            )
        }
    wall = time.perf_counter() - start
    peak = _kib("VmHWM")
    np.savez(out + ".npz", **result)
    Path(out + ".json").write_text(
        json.dumps(
            {
                "wall_s": wall,
                "forward_s": model.seconds,
                "forwards": model.calls,
                "peak_above_start_mb": (peak - base) / 1024,
                "hwm_reset": reset,
            }
        )
    )


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A tiny shape (a pipeline check).")
    parser.add_argument(
        "--shapes",
        default="full",
        help="Comma-separated model shapes: full (d_model 256), large (d_model 1024).",
    )
    parser.add_argument(
        "--append", action="store_true", help="Add the rows to the CSV instead of replacing it."
    )
    parser.add_argument(
        "--out", default=None, help="CSV path (default bench/results/analysis_scale_cpu.csv)."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="profile,cmi")
    parser.add_argument("--variants", default="new,prev,old")
    parser.add_argument(
        "--child", nargs=4, metavar=("PART", "VARIANT", "SHAPE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        _child(*args.child)
        return Path(args.child[3])
    shape_names = ["quick"] if args.quick else args.shapes.split(",")
    for name in shape_names:
        if name not in SHAPES:
            parser.error(f"unknown shape {name!r}; choose from {sorted(SHAPES)}")
    for variant in args.variants.split(","):
        if variant not in REVS:
            parser.error(f"unknown variant {variant!r}; choose from {sorted(REVS)}")
    env = environment("cpu")
    held = {"profile": 1, "cmi": 1 + CMI_BATCH}
    rows, outputs = [], {}
    threads = {
        k: str(args.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    }
    with tempfile.TemporaryDirectory() as tmp:
        for shape_name in shape_names:
            shape = SHAPES[shape_name]
            for part in args.parts.split(","):
                for variant in args.variants.split(","):
                    stem = os.path.join(tmp, f"{shape_name}_{part}_{variant}")
                    L = shape["L"][part]
                    logits_mb = L * VOCAB * 2 / 2**20  # one (1, L, V) bf16 tensor
                    load_before = _load()
                    subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "remask.bench.analysis_scale",
                            "--threads",
                            str(args.threads),
                            "--child",
                            part,
                            variant,
                            shape_name,
                            stem,
                        ],
                        check=True,
                        env={**os.environ, **threads},
                    )
                    info = json.loads(Path(stem + ".json").read_text())
                    outputs[shape_name, part, variant] = dict(np.load(stem + ".npz"))
                    extra = info["peak_above_start_mb"] - held[part] * logits_mb
                    config = {
                        "shape": shape_name,
                        "part": part,
                        "code": REVS[variant] or "this tree",
                        "L": L,
                        "V": VOCAB,
                        **{k: v for k, v in shape.items() if k != "L"},
                        "dtype": "bfloat16",
                        "B": 1,
                        "threads": args.threads,
                        "forwards": info["forwards"],
                        "forward_s": round(info["forward_s"], 3),
                        "peak_above_start_mb": round(info["peak_above_start_mb"], 1),
                        "logits_bf16_mb": round(logits_mb, 1),
                        "logits_held": held[part],
                        "peak_extra_mb": round(extra, 1),
                        "peak_extra_x_logits": round(extra / logits_mb, 3),
                        "hwm_reset": info["hwm_reset"],
                        "load_avg_1m_before": load_before,
                        "load_avg_1m_after": _load(),
                    }
                    if part == "cmi":
                        config.update(
                            positions=CMI_POSITIONS,
                            top_k=TOP_K,
                            batch_size=CMI_BATCH,
                            columns="positions" if REVS[variant] is None else "all",
                        )
                    rows.append((shape_name, part, variant, config, info))
                    print(shape_name, part, variant, json.dumps(config), flush=True)
    for shape_name, part, variant, config, _info in rows:
        # Each variant against the old code (the old one against this tree), on the entries
        # both computed (the new cmi_matrix computes only the clamped positions' columns).
        other = outputs.get((shape_name, part, "old" if variant != "old" else "new"))
        if other is not None:
            mine = outputs[shape_name, part, variant]
            both = [np.isfinite(mine[k]) & np.isfinite(other[k]) for k in mine]
            config["compared_entries"] = int(sum(b.sum() for b in both))
            config["max_abs_diff_vs_" + ("old" if variant != "old" else "new")] = float(
                max(np.max(np.abs(mine[k] - other[k])[b], initial=0.0) for k, b in zip(mine, both))
            )
    results = [
        Result(
            name="analysis_scale",
            variant=variant,
            backend="torch-cpu",
            config=json.dumps(config),
            repeats=1,
            median=info["wall_s"] * 1e3,
            p20=info["wall_s"] * 1e3,
            p80=info["wall_s"] * 1e3,
            unit="ms",
            derived=round(info["forward_s"] / info["wall_s"], 4),
            derived_unit="forward_share",
            **env,
        )
        for _shape, _part, variant, config, info in rows
    ]
    path = (
        Path(args.out)
        if args.out
        else RESULTS / f"analysis_scale_{'quick_' if args.quick else ''}cpu.csv"
    )
    if args.append and path.exists():
        with path.open(newline="") as handle:
            results = [Result(**row) for row in csv.DictReader(handle)] + results
    write_csv(results, path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
