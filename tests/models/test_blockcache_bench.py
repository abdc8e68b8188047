"""The block-cache benchmark runs (quick preset) and writes the shared CSV schema."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("transformers")

from remask.bench import blockcache
from remask.bench.common import CSV_FIELDS


def test_quick_run_writes_rows_and_tokens_equal(tmp_path):
    path = tmp_path / "b.csv"
    blockcache.main(quick=True, out=path)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_FIELDS
    names = {(r["name"], r["variant"]) for r in rows}
    for variant in ("cached", "prefix", "full"):
        assert ("blockcache_step", variant) in names
    equal = [r for r in rows if r["name"] == "blockcache_tokens_equal"]
    assert len(equal) == 2 and all(float(r["median"]) == 1.0 for r in equal)
    assert "load_avg_1m_before" in rows[0]["config"] and "uptime_before" in rows[0]["config"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="threads"):
        blockcache.main(quick=True, threads=0)
    with pytest.raises(ValueError, match="preset"):
        blockcache.build_model("huge")
