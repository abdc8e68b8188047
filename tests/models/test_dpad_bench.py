"""The DPad benchmark runs (quick preset, shortened) and writes the shared CSV schema."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("transformers")

from remask.bench import dpad
from remask.bench.common import CSV_FIELDS


def test_quick_run_writes_rows_and_pruned_equals_hidden(tmp_path):
    path = tmp_path / "d.csv"
    dpad.main(quick=True, out=path, gen_length=24)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_FIELDS
    names = {(r["name"], r["variant"]) for r in rows}
    for variant in ("none", "hidden", "pruned"):
        assert ("dpad_forward", variant) in names and ("dpad_run_cpu", variant) in names
    assert ("dpad_speedup", "pruned_vs_hidden") in names
    agreement = {r["variant"]: float(r["median"]) for r in rows if r["name"] == "dpad_agreement"}
    assert agreement["pruned_vs_hidden"] == 1.0
    nfe = {r["variant"]: float(r["median"]) for r in rows if r["name"] == "dpad_nfe"}
    assert nfe["none"] == nfe["hidden"] == nfe["pruned"] == 12  # 24 tokens, 2 per step
    config = json.loads(rows[0]["config"])
    lengths = config["mean_forward_length"]
    assert lengths["pruned"] < lengths["hidden"] == lengths["none"] == config["L"]
    assert "load_avg_1m_before" in config and "uptime_after" in config


def test_bad_arguments():
    for kwargs, match in (
        ({"threads": 0}, "threads"),
        ({"repeats": 0}, "repeats"),
        ({"gen_length": 12}, "multiple"),
        ({"preset": "huge"}, "preset"),
    ):
        with pytest.raises(ValueError, match=match):
            dpad.main(quick=True, **kwargs)
    with pytest.raises(ValueError, match="preset"):
        dpad.build_model("huge")
