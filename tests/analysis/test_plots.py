"""The plotting module draws every result type (smoke test; matplotlib is the `plot` extra)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("matplotlib")

from remask.analysis import (
    TraceRecorder,
    cmi_matrix,
    decode_order_metrics,
    homogenization_profile,
    partition_error,
    plots,
)
from remask.models import MarkovChainOracle
from remask.samplers import build, generate


def test_every_plot_writes_a_png(tmp_path):
    oracle = MarkovChainOracle(3, 6, seed=0, concentration=0.3)
    tokens = torch.tensor([[0] + [oracle.mask_id] * 5])
    plots.plot_homogenization(
        homogenization_profile(oracle, tokens, reference=oracle), path=tmp_path / "h.png"
    )
    errs = {
        "ar": partition_error(oracle, [[i] for i in range(6)]),
        "one step": partition_error(oracle, [list(range(6))]),
    }
    plots.plot_partition_errors(errs, path=tmp_path / "p.png")
    rec = TraceRecorder()
    out = generate(
        oracle, [[1]], build("low_confidence", steps=3), gen_length=5, seed=0, callbacks=[rec]
    )
    plots.plot_decode_order(decode_order_metrics(rec.trace(out)), path=tmp_path / "o.png")
    plots.plot_cmi_matrix(cmi_matrix(oracle, tokens), path=tmp_path / "c.png")
    for name in ("h", "p", "o", "c"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
