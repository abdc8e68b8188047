"""Pareto plots join only settings that differ in one numeric knob."""

from __future__ import annotations

from remask.bench.samplers import QualityRow, one_knob_groups


def _row(label, config, nfe):
    return QualityRow(
        "markov", "s", label, config, nfe, nfe, nfe, 1.0, 0.1, 0.1, 1.0, 0.01, 0.001, 0.0
    )


def test_one_knob_groups():
    t = {"temperature": 1.0}
    rows = [
        _row("1 tok", dict(t), 8),
        _row("2 tok", dict(t, steps=4), 4),
        _row("4 tok", dict(t, steps=2), 2),
        _row("random", dict(t, remasking="random"), 8),
        _row("origin", dict(t, alg="origin"), 7),
        _row("two knobs", dict(t, steps=3, threshold=0.5), 3),
        _row("floor off", dict(t, floor=None), 5),
    ]
    groups = [[r.label for r in g] for g in one_knob_groups(rows)]
    assert groups == [["4 tok", "2 tok", "1 tok"]]
