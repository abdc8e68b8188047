"""``remask sweep-report DIR``: cost-quality Pareto fronts and the AUP / TPF table of a sweep.

AUP (Accuracy Under Parallelism, d3LLM, arXiv 2601.07568) scores one method's curve of
(parallelism, accuracy) points, parallelism being TPF (tokens per forward). We follow the
definition of the d3LLM authors' published reference code (``aup_utils.py`` of their
leaderboard; we could not read the paper's own text here): with the points sorted by TPF
``ρ_1 < ρ_2 < ...`` and accuracies ``y_i`` in percent,

- points more than ``y_min_offset`` (5) points below ``y_1`` (the accuracy at the lowest
  parallelism) are dropped;
- ``W(y) = min(exp(-α (1 - y / y_max)), 1)`` with ``α = 3`` and ``y_max`` the best accuracy of
  *all* methods on the task;
- ``AUP = ρ_1 y_1 + Σ_{i≥2} ½ (ρ_i - ρ_{i-1}) (y_i W(y_i) + y_{i-1} W(y_{i-1}))``.

(The reference code also refuses — asserts on — a curve whose lowest-accuracy point lies
more than 5 points below ``y_1``; we drop such points and say how many in the table.)
Higher is better: a method that keeps its accuracy while decoding more tokens per forward
gets a larger area.

For an oracle task the accuracy is the fraction of valid samples (p(x) > 0), which is 100%
for a full-support oracle such as the Markov chain (its AUP then only rewards parallelism):
there the informative quality is ``nll_gap`` (``summary.csv``: the samples' mean ``-log p(x)``
minus the entropy H(p); 0 for an exact sampler, negative for a mode-seeking one, positive
for one that breaks the dependence between tokens), and the Pareto plots show ``|nll_gap|``
(lower is better). A gap of 0 is necessary for exactness, not sufficient.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict

__all__ = ["aup", "aup_table", "pareto_front", "read_summary", "sweep_report"]

ALPHA = 3.0
Y_MIN_OFFSET = 5.0


def aup(
    rho, y, y_max: float, *, alpha: float = ALPHA, y_min_offset: float = Y_MIN_OFFSET
) -> tuple[float, int]:
    """Accuracy Under Parallelism of one method (see the module docstring).

    Parameters
    ----------
    rho : sequence of float
        Parallelism (TPF) of each setting, > 0.
    y : sequence of float
        Accuracy of each setting, in percent [0, 100].
    y_max : float
        Best accuracy of all methods on the task (percent, > 0).
    alpha, y_min_offset : float

    Returns
    -------
    (aup, dropped): the score and how many points fell below ``y_1 - y_min_offset``.

    Examples
    --------
    >>> aup([1.0, 2.0], [80.0, 80.0], 80.0)
    (160.0, 0)
    """
    rho, y = [float(r) for r in rho], [float(v) for v in y]
    if len(rho) != len(y) or not rho:
        raise ValueError(
            f"aup needs as many parallelism values as accuracies (>= 1), got {len(rho)} and {len(y)}"
        )
    if any(not r > 0 for r in rho):
        raise ValueError(f"aup: every parallelism (TPF) must be > 0, got {rho}")
    if any(not 0 <= v <= 100 for v in y):
        raise ValueError(f"aup: accuracies must be percentages in [0, 100], got {y}")
    if not y_max > 0:
        raise ValueError(f"aup: y_max must be > 0, got {y_max}")
    points = sorted(zip(rho, y))
    floor = points[0][1] - y_min_offset
    kept = [(r, v) for r, v in points if v >= floor]

    def weight(v: float) -> float:
        return min(math.exp(-alpha * (1 - v / y_max)), 1.0)

    area = kept[0][0] * kept[0][1]
    for (r0, v0), (r1, v1) in zip(kept, kept[1:]):
        area += 0.5 * (r1 - r0) * (v1 * weight(v1) + v0 * weight(v0))
    return area, len(points) - len(kept)


def pareto_front(points, *, lower_x: bool, lower_y: bool) -> list[int]:
    """Indices of the points no other point beats on both axes, sorted by x."""

    def better(a, b):  # a at least as good as b everywhere and strictly somewhere
        ax, ay = (-a[0] if lower_x else a[0]), (-a[1] if lower_y else a[1])
        bx, by = (-b[0] if lower_x else b[0]), (-b[1] if lower_y else b[1])
        return ax >= bx and ay >= by and (ax > bx or ay > by)

    front = [
        i
        for i, p in enumerate(points)
        if not any(better(q, p) for j, q in enumerate(points) if j != i)
    ]
    return sorted(front, key=lambda i: points[i][0])


def _num(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_summary(directory) -> list[dict]:
    """The rows of ``DIR/summary.csv`` with numbers parsed (``ValueError`` when it is missing)."""
    path = os.path.join(os.fspath(directory), "summary.csv")
    if not os.path.isfile(path):
        raise ValueError(
            f"{directory!r} holds no summary.csv: give the --out directory of a finished `remask sweep`"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in (
            "requests",
            "accuracy",
            "nfe_mean",
            "tokens_per_forward",
            "tokens_per_second",
            "nll_gap",
            "nll_gap_se",
            "valid_rate",
        ):
            row[key] = _num(row.get(key))
    return rows


def _label(row: dict) -> str:
    settings = json.loads(row["settings"]) if row["settings"] else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))


def aup_table(rows: list[dict]) -> list[dict]:
    """One entry per (model, task, sampler): its AUP over its settings and each setting's TPF."""
    by_task = defaultdict(list)
    for row in rows:
        if row["accuracy"] is not None and row["tokens_per_forward"]:
            by_task[(row["model"], row["task"])].append(row)
    out = []
    for (model, task), group in by_task.items():
        y_max = max(r["accuracy"] for r in group) * 100
        samplers = defaultdict(list)
        for r in group:
            samplers[r["sampler"]].append(r)
        for sampler, points in samplers.items():
            score, dropped = (
                aup(
                    [p["tokens_per_forward"] for p in points],
                    [p["accuracy"] * 100 for p in points],
                    y_max,
                )
                if y_max > 0
                else (0.0, 0)
            )
            out.append(
                {
                    "model": model,
                    "task": task,
                    "sampler": sampler,
                    "aup": score,
                    "dropped": dropped,
                    "y_max": y_max,
                    "settings": [
                        {
                            "settings": _label(p),
                            "tpf": p["tokens_per_forward"],
                            "accuracy": p["accuracy"] * 100,
                        }
                        for p in sorted(points, key=lambda p: p["tokens_per_forward"])
                    ],
                }
            )
    return out


def format_table(table: list[dict]) -> str:
    lines = [
        "| model | task | sampler | AUP | settings: TPF → accuracy % |",
        "|---|---|---|---|---|",
    ]
    for t in sorted(table, key=lambda t: (t["model"], t["task"], -t["aup"])):
        pts = "; ".join(
            f"{p['settings']}: {p['tpf']:.2f} → {p['accuracy']:.1f}" for p in t["settings"]
        )
        drop = f" ({t['dropped']} below y₁−5 dropped)" if t["dropped"] else ""
        lines.append(
            f"| {t['model']} | {t['task']} | {t['sampler']} | {t['aup']:.1f}{drop} | {pts} |"
        )
    return "\n".join(lines)


def _quality(group: list[dict]) -> tuple[str, str, bool]:
    """(column, axis label, lower is better) of a task's quality."""
    if any(r.get("nll_gap") is not None for r in group):
        for r in group:
            r["abs_nll_gap"] = None if r.get("nll_gap") is None else abs(r["nll_gap"])
        return "abs_nll_gap", "|mean NLL − entropy| (nats / sequence, lower is better)", True
    return "accuracy", "accuracy", False


def plot_task(group: list[dict], title: str, path: str) -> str:
    """Quality vs mean NFE and vs tokens/s, one marker per sampler, the Pareto front dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column, ylabel, lower = _quality(group)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (xcol, xlabel, lower_x) in zip(
        axes,
        (
            ("nfe_mean", "mean NFE per request (lower is cheaper)", True),
            ("tokens_per_second", "generated tokens / s", False),
        ),
    ):
        pts = [r for r in group if r.get(xcol) is not None and r.get(column) is not None]
        samplers = sorted({r["sampler"] for r in pts})
        markers = "os^Dvx*P"
        for k, name in enumerate(samplers):
            mine = [r for r in pts if r["sampler"] == name]
            ax.scatter(
                [r[xcol] for r in mine],
                [r[column] for r in mine],
                marker=markers[k % len(markers)],
                label=name,
                s=40,
            )
            for r in mine:
                ax.annotate(
                    _label(r),
                    (r[xcol], r[column]),
                    fontsize=6,
                    alpha=0.7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        if pts:
            xy = [(r[xcol], r[column]) for r in pts]
            front = pareto_front(xy, lower_x=lower_x, lower_y=lower)
            ax.plot(
                [xy[i][0] for i in front],
                [xy[i][1] for i in front],
                "k--",
                lw=1,
                alpha=0.6,
                label="Pareto front",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if pts:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_report(directory, *, out=None, plots: bool = True) -> dict:
    """Read ``DIR/summary.csv``; write ``aup.json`` and one ``pareto_<model>_<task>.png`` per
    (model, task) into ``out`` (default ``DIR``); return the table and the plot paths."""
    directory = os.fspath(directory)
    rows = read_summary(directory)
    out = os.fspath(out) if out is not None else directory
    os.makedirs(out, exist_ok=True)
    table = aup_table(rows)
    with open(os.path.join(out, "aup.json"), "w") as f:
        json.dump(table, f, indent=2)
    paths = []
    if plots:
        groups = defaultdict(list)
        for row in rows:
            groups[(row["model"], row["task"])].append(row)
        for (model, task), group in groups.items():
            if not any(r.get("tokens_per_forward") for r in group):
                continue  # a loglikelihood task: nothing is decoded, there is no cost curve
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model}_{task}")[-80:]
            paths.append(
                plot_task(group, f"{task} — {model}", os.path.join(out, f"pareto_{safe}.png"))
            )
    return {"table": table, "markdown": format_table(table), "plots": paths}
