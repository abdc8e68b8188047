"""Render the README's Results tables from the CSVs under ``bench/results/``.

``python -m remask.bench.report`` prints Markdown; every number it prints is a CSV cell (or a
ratio of two cells of the same run), so the README's tables trace to CSV rows.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

__all__ = [
    "cache_table",
    "gpu_tables",
    "kernels_table",
    "main",
    "samplers_tables",
    "stub_breakdown_plot",
    "stub_breakdown_table",
    "stub_overhead_table",
]

RESULTS = Path(__file__).resolve().parent / "results"


def _read(name: str) -> list[dict]:
    path = RESULTS / name
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _provenance(rows: list[dict]) -> str:
    if not rows:
        return ""
    r = rows[0]
    versions = json.loads(r["versions"])
    lib = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return f"_Device: {r['device']}; {lib}; git {r['sha']}; {r['date']}._"


def kernels_table(file: str = "kernels_cpu.csv") -> str:
    """Median ms per case and dtype, plus the ratios of :data:`remask.bench.kernels.RATIOS`,
    from one side-by-side run."""
    from remask.bench.kernels import RATIOS

    rows = _read(file)
    if not rows:
        return f"(no {file})"
    med = {(r["name"], r["variant"], r["backend"]): float(r["median"]) for r in rows}
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    cases = list(dict.fromkeys((r["name"], r["backend"]) for r in rows))
    lines = [
        "| case | backend | " + " | ".join(f"{v} ms" for v in variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    for name, backend in cases:
        cells = [med.get((name, v, backend)) for v in variants]
        lines.append(
            f"| `{name}` | {backend} | "
            + " | ".join("-" if c is None else f"{c:.1f}" for c in cells)
            + " |"
        )
    fast = "triton" if any(r["backend"] == "triton" for r in rows) else "numba"
    lines += [
        "",
        f"| ratio ({fast}) | target | " + " | ".join(variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    for label, (num, nb), (den, db), target in RATIOS:
        cells = []
        for v in variants:
            a, b = med.get((num, v, nb or fast)), med.get((den, v, db or fast))
            cells.append("-" if a is None or b is None else f"{a / b:.2f}x")
        if any(c != "-" for c in cells):
            lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")
    loads = sorted(
        {json.loads(r["config"]).get("load", "") for r in rows} - {""},
        key=lambda v: float(v.split()[0]),
    )
    note = (
        f"Load average (1/5/15 min) during the run: from {loads[0]} to {loads[-1]} "
        "(sorted by the 1-minute value)."
        if loads
        else ""
    )
    return "\n".join(lines + ["", note, "", _provenance(rows)])


def stub_overhead_table(file: str = "samplers_overhead_stub_cpu.csv") -> str:
    """Overhead outside a stub forward of known cost, per sampler and shape; each cell also in
    units of one plain read of the logits, hot (the same tensor read again and again) and,
    for rows that measured it, fresh (read right after a call of the stub). Rows written
    before the stub had a ``wait`` setting were measured with a sleeping stub."""
    rows = [r for r in _read(file) if r["name"] == "sampler_overhead_stub"]
    if not rows:
        return f"(no {file})"

    shapes = list(dict.fromkeys(_stub_shape(r) for r in rows))
    lines = ["| sampler | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
    by = defaultdict(dict)
    floors = {}  # shape -> ms of one plain read of its logits, hot (read again and again)
    fresh = {}  # shape -> ms of one read right after a stub call (rows measured with it)
    free = {}  # shape -> ms of freeing one stub output (rows measured with it)
    for r in rows:
        column = _stub_shape(r)
        by[r["variant"]][column] = (float(r["median"]), float(r["derived"]))
        config = json.loads(r["config"])
        if config.get("floor_ms"):
            floors[column] = float(config["floor_ms"])
        if config.get("fresh_floor_ms"):
            fresh[column] = float(config["fresh_floor_ms"])
        if config.get("free_ms") is not None:
            free[column] = float(config["free_ms"])

    def cell(c: str, fraction: float, per_step: float) -> str:
        if c in floors and c in fresh:
            reads = f", {per_step / floors[c]:.1f} hot / {per_step / fresh[c]:.1f} fresh reads"
        elif c in floors:
            reads = f", {per_step / floors[c]:.1f} reads"
        else:
            reads = ""
        return f"{fraction:.1%} ({per_step:.2f} ms/step{reads})"

    for sampler, cells in by.items():
        lines.append(
            f"| {sampler} | "
            + " | ".join(cell(c, *cells[c]) if c in cells else "-" for c in shapes)
            + " |"
        )
    for label, values in (
        ("one plain read of the logits (amax over V), hot: the floor", floors),
        ("one plain read of the logits right after a stub call, the fresh floor", fresh),
        ("freeing one stub output (the logits a step lets go)", free),
    ):
        if values:
            lines.append(
                f"| *{label}* | "
                + " | ".join(f"{values[c]:.2f} ms" if c in values else "-" for c in shapes)
                + " |"
            )
    loads = sorted(
        {json.loads(r["config"]).get("load", "") for r in rows} - {""},
        key=lambda v: float(v.split()[0]),
    )
    note = (
        f"Load average (1/5/15 min) during the run: from {loads[0]} to {loads[-1]} "
        "(sorted by the 1-minute value)."
        if loads
        else ""
    )
    return "\n".join(lines + ["", note, "", _provenance(rows)])


def stub_breakdown_table(file: str = "samplers_overhead_stub_breakdown_cpu.csv") -> str:
    """Where each sampler's time outside the stub forward goes, per step, at each shape of a
    stub run whose rows carry the breakdown (:class:`remask.bench.samplers.StepBreakdown`,
    from the run of median overhead, whose total the first column gives):
    the kernel ops that read logits (with the logits they read and their time per logit
    against the exp floor of the same run), the model call around the forward, and the
    rest (selection, commit, schedules, keys, the driver)."""
    rows = [
        r
        for r in _read(file)
        if r["name"] == "sampler_overhead_stub" and "ops_ms_per_step" in json.loads(r["config"])
    ]
    if not rows:
        return f"(no breakdown in {file})"
    out = []
    for shape in dict.fromkeys(_stub_shape(r) for r in rows):
        mine = [r for r in rows if _stub_shape(r) == shape]
        c0 = json.loads(mine[0]["config"])
        exp_ns = c0.get("exp_floor_ns")
        notes = [f"exp floor {exp_ns:.3f} ns per logit"] if exp_ns else []
        if c0.get("small_call_cold_ms") is not None:
            notes.append(
                f"a propose of {c0['B'] * (c0['P'] + c0['G']) * 16} logits: "
                f"{c0['small_call_cold_ms']:.3f} ms right after a stub call, "
                f"{c0['small_call_hot_ms']:.3f} ms in a loop"
            )
        out += [
            f"**{shape}**" + (f" ({'; '.join(notes)})" if notes else ""),
            "",
            "| sampler | outside the forward, ms/step | logit ops, ms/step (M logits; ns per "
            "logit, x the exp floor) | model call | the rest |",
            "|---|---|---|---|---|",
        ]
        for r in mine:
            c = json.loads(r["config"])
            total, ops = c.get("run_ms_per_step", float(r["derived"])), c["ops_ms_per_step"]
            per_logit = ops * 1e6 / c["logits_per_step"] if c["logits_per_step"] else None
            rate = (
                f"; {per_logit:.2f} ns, {per_logit / exp_ns:.1f}x" if per_logit and exp_ns else ""
            )
            out.append(
                f"| {r['variant']} | {total:.2f} | {ops:.2f} "
                f"({c['logits_per_step'] / 1e6:.2f} M{rate}) | {c['call_ms_per_step']:.2f} | "
                f"{c['rest_ms_per_step']:.2f} |"
            )
        out.append("")
    return "\n".join(out + [_provenance(rows)])


def stub_breakdown_plot(
    file: str = "samplers_overhead_stub_breakdown_cpu.csv", path: str | Path | None = None
) -> Path:
    """The breakdown of :func:`stub_breakdown_table` as stacked bars, one panel per shape:
    each sampler's ms per step outside the forward split into logit ops, model call and rest
    (sorted by total), with the issue's budget (10% of the stub's forward) as a dashed line;
    the axis stops at four times the budget (longer bars are labelled with their total).

    Parameters
    ----------
    file : str
        A CSV under ``bench/results`` (or a path) with breakdown rows.
    path : str or PathLike, optional
        Where the PNG goes; default: next to the CSV, same name with ``.png``.

    Returns
    -------
    Path
        The PNG written.
    """
    rows = [
        r
        for r in _read(file)
        if r["name"] == "sampler_overhead_stub" and "ops_ms_per_step" in json.loads(r["config"])
    ]
    if not rows:
        raise ValueError(
            f"no breakdown rows in {file!r} (an overhead_stub CSV of issue 18's seventh pass or later)"
        )
    from remask.analysis.plots import _plt

    plt = _plt("the breakdown plot")
    shapes = list(dict.fromkeys(_stub_shape(r) for r in rows))
    fig, axes = plt.subplots(1, len(shapes), figsize=(6.5 * len(shapes), 0.28 * len(rows) + 1.5))
    axes = [axes] if len(shapes) == 1 else list(axes)
    parts = (
        ("logit ops", "ops_ms_per_step", "tab:blue"),
        ("model call", "call_ms_per_step", "tab:gray"),
        ("rest", "rest_ms_per_step", "tab:orange"),
    )
    for ax, shape in zip(axes, shapes, strict=True):
        mine = [
            json.loads(r["config"]) | {"sampler": r["variant"]}
            for r in rows
            if _stub_shape(r) == shape
        ]
        mine.sort(key=lambda c: sum(c[key] for _, key, _ in parts))
        names = [c["sampler"] for c in mine]
        left = [0.0] * len(mine)
        for label, key, color in parts:
            width = [c[key] for c in mine]
            ax.barh(names, width, left=left, color=color, label=label)
            left = [a + b for a, b in zip(left, width, strict=True)]
        budget = 0.1 * mine[0]["cost_ms"]
        ax.axvline(budget, color="k", linestyle="--", linewidth=1)
        ax.text(budget, len(mine) - 0.4, " 10% of the forward", fontsize=8, va="top")
        # A linear axis (stacked segments keep their proportions) cut at 4x the budget; the
        # bars beyond it carry their total.
        limit = 4 * budget
        ax.set_xlim(0, limit)
        for k, total in enumerate(left):
            if total > limit:
                ax.text(
                    limit, k, f"{total:.1f} ms ", fontsize=7, ha="right", va="center", color="w"
                )
        ax.set_xlabel("ms per step outside the forward")
        ax.set_title(shape, fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(_provenance(rows).strip("_"), fontsize=7)
    fig.tight_layout()
    out = Path(path) if path is not None else (RESULTS / file).with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _stub_shape(r: dict) -> str:
    """The column name of a stub-overhead row: its shape, dtype and forward."""
    d = json.loads(r["config"])
    return (
        f"B={d['B']} L={d['P'] + d['G']} V={d['V']} {d['dtype']}, "
        f"{d['cost_ms']:.0f} ms {d.get('wait', 'sleep')} forward"
    )


def samplers_tables(*files: str) -> str:
    """Quality vs NFE per oracle, and overhead per sampler and shape (rows of all ``files``;
    default the quality and overhead CSVs of a full run)."""
    files = files or ("samplers_cpu.csv", "samplers_overhead_cpu.csv")
    rows = [row for f in files for row in _read(f)]
    if not rows:
        return f"(no {', '.join(files)})"
    quality = defaultdict(dict)  # (oracle, variant) -> unit -> row
    for r in rows:
        if r["name"] == "sampler_quality":
            quality[(json.loads(r["config"])["oracle"], r["variant"])][r["unit"]] = r
    out = []
    for oracle in dict.fromkeys(k[0] for k in quality):
        out += [
            f"**{oracle}**",
            "",
            "| sampler [setting] | NFE (p20–p80) | tokens/step | KL(p‖q̂) nats | TV | valid |",
            "|---|---|---|---|---|---|",
        ]
        floor = None
        for (o, variant), stats in quality.items():
            if o != oracle:
                continue
            nfe, kl = stats["nfe"], stats["kl_nats"]
            floor = (
                (float(kl["p20"]) + float(kl["p80"])) / 2,
                (float(kl["p80"]) - float(kl["p20"])) / 2,
            )
            out.append(
                f"| {variant} | {float(nfe['median']):.2f} ({float(nfe['p20']):.0f}–{float(nfe['p80']):.0f}) | "
                f"{float(stats['tokens_per_step']['median']):.2f} | {float(kl['median']):.3f} | "
                f"{float(stats['tv']['median']):.3f} | {float(stats['validity']['median']):.3f} |"
            )
        if floor:
            out += [
                "",
                f"Noise floor (the same KL for exact samples): {floor[0]:.3f} ± {floor[1]:.3f} nats.",
                "",
            ]
    out += [_provenance([r for r in rows if r["name"] == "sampler_quality"]), ""]
    over = [r for r in rows if r["name"] == "sampler_overhead"]
    if over:

        def shape(r: dict) -> str:
            d = json.loads(r["config"])
            return f"B={d['B']} L={d['G']} V={d['V']}"

        shapes = list(dict.fromkeys(shape(r) for r in over))
        out += [
            "Time outside the model forward, as a fraction of the forward time (median of runs):",
            "",
            "| sampler | " + " | ".join(shapes) + " |",
            "|---|" + "---|" * len(shapes),
        ]
        by = defaultdict(dict)
        for r in over:
            by[r["variant"]][shape(r)] = float(r["median"])
        for sampler, cells in by.items():
            out.append(
                f"| {sampler} | "
                + " | ".join(f"{cells[c]:.0%}" if c in cells else "-" for c in shapes)
                + " |"
            )
        out += ["", _provenance(over)]
    return "\n".join(out)


def cache_table(file: str = "cache_cpu.csv") -> str:
    """Cached vs uncached decoding: ms per step, tokens/s, speedup and token agreement rows."""
    rows = _read(file)
    steps = [r for r in rows if r["name"] == "cache_step"]
    if not steps:
        return f"(no {file})"
    cell = {(r["name"], r["variant"]): float(r["median"]) for r in rows}
    lines = [
        "| variant | ms/step (p20–p80) | tokens/s | speedup (median of runs) | token agreement: bench model / llada_tiny / dream_tiny |",
        "|---|---|---|---|---|",
    ]
    for r in steps:
        v = r["variant"]
        speed = cell.get(("cache_speedup", v))
        agree = [
            cell.get(("cache_agreement", f"{v}{suffix}"))
            for suffix in ("", ":llada_tiny", ":dream_tiny")
        ]
        lines.append(
            f"| {v} | {float(r['median']):.0f} ({float(r['p20']):.0f}–{float(r['p80']):.0f}) | "
            f"{float(r['derived']):.1f} | {'-' if speed is None else f'{speed:.2f}x'} | "
            + " / ".join("-" if a is None else f"{a:.2f}" for a in agree)
            + " |"
        )
    return "\n".join(lines + ["", _provenance(steps)])


def gpu_tables(
    propose: str = "gpu_propose_cuda.csv",
    e2e: str = "gpu_e2e_cuda.csv",
    tests: str = "gpu_kernel_tests_cuda.csv",
) -> str:
    """The GPU run of ``python -m remask.bench.gpu``: kernel tests, propose vs copy, decoding."""
    out = []
    test_rows = _read(tests)
    if test_rows:
        counts = defaultdict(int)
        for r in test_rows:
            counts[r["outcome"]] += 1
        failed = [r["test"] for r in test_rows if r["outcome"] in ("failed", "error")]
        out += [
            "Kernel tests on the GPU (the compiled Triton suite and the kernel tests selected): "
            + ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
            + (f"; failing: {', '.join(failed)}" if failed else "")
            + ".",
            "",
        ]
    rows = _read(propose)
    if rows:

        def shape(r: dict) -> tuple:
            c = json.loads(r["config"])
            return r["variant"], c["B"], c["L"], c["V"]

        copy = {shape(r): float(r["derived"]) for r in rows if r["name"] == "copy"}
        out += [
            "| op | dtype | (B, L, V) | launch (block, warps, splits) | median ms | GB/s "
            "| share of copy bandwidth |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            c = json.loads(r["config"])
            share = float(r["derived"]) / copy[shape(r)]
            launch = c.get("launch")
            launch = (
                "-"
                if launch is None
                else f"({', '.join(str(v) for v in launch[:3])})"
                + (" default" if "default" in launch else "")
            )
            out.append(
                f"| `{r['name']}` ({r['backend']}) | {r['variant']} | ({c['B']}, {c['L']}, {c['V']}) | "
                f"{launch} | {float(r['median']):.3f} | {float(r['derived']):.0f} | "
                + ("-" if r["name"] == "copy" else f"{share:.0%}")
                + " |"
            )
        out += ["", _provenance(rows), ""]
    rows = _read(e2e)
    if rows:
        out += [
            "| model | loop | implementation | NFE | s per run (min–max) | ms/step | tokens/s | "
            "forward ms/step | outside / forward | tokens equal the other side |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            out.append(
                f"| {r['model']} | {r['loop']} [{r['setting']}] | {r['impl']} | {r['nfe']} | "
                f"{float(r['seconds_median']):.3f} ({float(r['seconds_min']):.3f}–{float(r['seconds_max']):.3f}) | "
                f"{float(r['ms_per_step']):.2f} | {float(r['tokens_per_s']):.1f} | "
                f"{float(r['forward_ms_per_step']):.2f} | {float(r['outside_over_forward']):.1%} | "
                f"{r['tokens_equal_other_side']} ({float(r['agreement_other_side']):.3f}) |"
            )
        r = rows[0]
        out += [
            "",
            f"Prompt {r['prompt_length']} + {r['gen_length']} generated tokens, block {r['block_length']}, "
            f"batch {r['batch']}, {r['dtype']}, median of {r['repeats']} runs after a warm-up; load {r['load_1m']}.",
            "",
            _provenance([r]),
        ]
    return "\n".join(out) if out else f"(no {propose}, {e2e} or {tests})"


def _breakdown_figure() -> str:
    """Markdown for the breakdown plot of the committed CSV (written by this call), its path
    relative to the repository where it can be."""
    out = stub_breakdown_plot()
    try:
        out = out.relative_to(RESULTS.parents[1])
    except ValueError:  # pragma: no cover - an unusual install layout
        pass
    return f"![where the time outside the forward goes]({out})"


def main(argv: list[str] | None = None) -> None:
    sections = {
        "kernels": kernels_table,
        "samplers": samplers_tables,
        "overhead_stub": stub_overhead_table,
        "overhead_breakdown": stub_breakdown_table,
        "overhead_breakdown_plot": _breakdown_figure,
        "cache": cache_table,
        "gpu": gpu_tables,
    }
    # The plot writes a file and needs matplotlib: only when asked for by name.
    default = [name for name in sections if not name.endswith("_plot")]
    for name in (argv if argv is not None else sys.argv[1:]) or default:
        print(f"### {name}\n\n{sections[name]()}\n")


if __name__ == "__main__":  # pragma: no cover
    main()
