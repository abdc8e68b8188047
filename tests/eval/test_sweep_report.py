"""remask sweep-report: the AUP definition, Pareto fronts, the CLI on a finished sweep."""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

from remask.cli import main
from remask.eval.report import aup, pareto_front


def test_aup_flat_curve_at_the_best_accuracy_is_the_rectangle():
    # W(y_max) = 1: ρ1·y + ½(ρ2-ρ1)(y + y) + ½(ρ3-ρ2)(y + y) = ρ3·y
    assert aup([1.0, 2.0, 3.5], [80.0, 80.0, 80.0], 80.0) == (pytest.approx(3.5 * 80.0), 0)


def test_aup_weights_and_the_five_point_floor():
    # second point 2 points below y_max: W = exp(-3 * (1 - 78/80)); third point 6 below y_1: dropped.
    w = math.exp(-3 * (1 - 78 / 80))
    expected = 1.0 * 80 + 0.5 * (3.0 - 1.0) * (78 * w + 80 * 1.0)
    score, dropped = aup([3.0, 1.0, 5.0], [78.0, 80.0, 74.0], 80.0)
    assert score == pytest.approx(expected) and dropped == 1
    # the first term is not weighted (as the reference code): a lone point scores ρ1·y1
    assert aup([2.0], [50.0], 90.0) == (pytest.approx(100.0), 0)


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.0], [50.0], 50.0), "must be > 0"),
        (([1.0], [0.5e3], 50.0), r"percentages in \[0, 100\]"),
        (([1.0, 2.0], [50.0], 50.0), "as many"),
    ],
)
def test_aup_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        aup(*args)


def test_pareto_front():
    points = [(1, 0.5), (2, 0.9), (3, 0.8), (4, 0.95), (2, 0.4)]
    assert pareto_front(points, lower_x=True, lower_y=False) == [0, 1, 3]
    assert pareto_front(points, lower_x=False, lower_y=False) == [3]


def test_report_cli_on_a_summary(tmp_path):
    pytest.importorskip("matplotlib")
    fields = [
        "model",
        "sampler",
        "settings",
        "task",
        "requests",
        "accuracy",
        "nfe_mean",
        "tokens_per_forward",
        "tokens_per_second",
    ]
    rows = [
        ("m", "a", {"k": 1}, "t", 10, 0.80, 8, 1.0, 100),
        ("m", "a", {"k": 2}, "t", 10, 0.78, 4, 2.0, 180),
        ("m", "b", {"k": 1}, "t", 10, 0.70, 2, 4.0, 300),
    ]
    with open(tmp_path / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in rows:
            writer.writerow([r[0], r[1], json.dumps(r[2]), *r[3:]])
    result = CliRunner().invoke(main, ["sweep-report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "aup.json").read_text())
    a = next(t for t in table if t["sampler"] == "a")
    w = math.exp(-3 * (1 - 78 / 80))
    assert a["aup"] == pytest.approx(1.0 * 80 + 0.5 * 1.0 * (78 * w + 80))
    assert "| m | t | a |" in result.output
    assert (tmp_path / "pareto_m_t.png").read_bytes()[:4] == b"\x89PNG"
    missing = CliRunner().invoke(main, ["sweep-report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(main, ["sweep-report", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "no summary.csv" in empty.output
