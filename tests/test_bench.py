"""Benchmark harness: the CSV schema on a tiny run (speed itself is never asserted)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from remask.bench import report
from remask.bench import samplers as bench_samplers
from remask.bench.common import CSV_FIELDS


def test_every_registered_sampler_is_in_the_quality_grid():
    # The grid is read from each class's bench_configs: no sampler is silently skipped.
    from remask.samplers import available, build

    grid = bench_samplers.settings(8)
    assert set(grid) == set(available())
    for name, pairs in grid.items():
        assert pairs, f"{name} has no benchmark settings"
        for _label, config in pairs:
            build(name, **config)  # every setting is a valid config


def test_quick_quality_runs_wino_and_apd_with_a_verifier():
    # Both used to be missing from the central table. APD gets the Markov oracle's exact
    # verifier; an oracle without exact left-to-right conditionals skips it, saying why.
    rows, skipped = bench_samplers.quality(
        quick=True, n_samples=200, samplers=["wino", "apd"], log=lambda *a: None
    )
    assert {r.sampler for r in rows} == {"wino", "apd"} and not skipped
    assert all(r.validity == 1.0 and math.isfinite(r.kl) for r in rows)
    _, skipped = bench_samplers.quality(
        quick=True, n_samples=200, oracles=["hmm"], samplers=["apd"], log=lambda *a: None
    )
    assert skipped == ["hmm/apd: the oracle has no exact left-to-right conditionals to verify with"]


def test_sampler_benchmark_writes_the_shared_schema(tmp_path):
    path = bench_samplers.main(
        quick=True,
        out=tmp_path / "s.csv",
        samplers=["low_confidence", "threshold"],
        n_samples=300,
        log=lambda *a: None,
    )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_FIELDS
    quality = [r for r in rows if r["name"] == "sampler_quality"]
    overhead = [r for r in rows if r["name"] == "sampler_overhead"]
    # one setting each in quick mode, five statistics per setting
    assert len(quality) == 2 * 1 * 5 and {r["unit"] for r in quality} == {
        "nfe",
        "tokens_per_step",
        "kl_nats",
        "tv",
        "validity",
    }
    assert {r["variant"].split(" [")[0] for r in overhead} == {"low_confidence", "threshold"}
    for r in rows:
        json.loads(r["config"]) and json.loads(r["versions"])
        assert r["device"] and r["sha"] and r["date"]
        assert math.isfinite(float(r["median"]))
    nfe = {r["variant"]: float(r["median"]) for r in quality if r["unit"] == "nfe"}
    assert nfe["low_confidence [1 tok/step]"] == 8.0  # one token per step over gen_length 8
    assert 1.0 <= nfe["threshold [tau=0.9]"] <= 8.0
    for r in overhead:
        assert r["unit"] == "overhead/forward" and float(r["p20"]) <= float(r["median"]) <= float(
            r["p80"]
        )
        assert float(r["derived"]) > 0 and r["derived_unit"] == "ms per run"

    # The README's tables are rendered from these rows.
    table = report.samplers_tables(str(path))
    assert "low_confidence [1 tok/step]" in table and "| 8.00 (8–8) | 1.00 |" in table
    assert "Noise floor" in table and "Time outside the model forward" in table


def test_kernel_floors_compute_what_they_claim():
    """The floors of the kernel benchmark do the work they stand for (nothing optimised away):
    the read is a max over each row's raw bits, the exp floor Σ exp(x - max) per row."""
    import pytest
    import torch

    pytest.importorskip("numba")
    from remask.bench.kernels import _exp_floor, _read_floor

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 1000, generator=gen) * 3  # (B, L, V)
    x[0, 1, 7] = float("-inf")
    for dtype in (torch.float32, torch.bfloat16):
        logits = x.to(dtype)
        flat = logits.reshape(-1, 1000).float()  # (R, V)
        want = torch.exp(flat - flat.amax(-1, keepdim=True)).sum(-1)  # (R,)
        got = torch.from_numpy(_exp_floor(logits)())
        # float32 sums of a polynomial exp (relative error < 5e-7 per term) over 1000 terms
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=0)
        bits = logits.reshape(-1, 1000).view(
            torch.int16 if dtype == torch.bfloat16 else torch.int32
        )
        assert torch.equal(torch.from_numpy(_read_floor(logits)()), bits.amax(-1).long())


def test_lm_like_rows_have_a_small_nucleus():
    """The bench's LM-like rows are what their name claims: the top-p = 0.95 nucleus of the
    randn * 3 rows shrinks from thousands of tokens to a few tens."""
    import torch

    from remask.bench.kernels import lm_like

    gen = torch.Generator().manual_seed(0)
    flat = torch.randn(2, 8, 126464, generator=gen) * 3  # (B, L, V), the bench's distribution
    hot = lm_like(flat)
    assert hot.shape == flat.shape and hot.dtype == flat.dtype

    def nucleus(x):
        p = x.softmax(-1).sort(-1, descending=True).values  # (B, L, V)
        return ((p.cumsum(-1) - p) < 0.95).sum(-1)  # (B, L) Dream's convention

    assert int(nucleus(flat).min()) > 1000
    assert int(nucleus(hot).max()) <= 64


def test_fresh_floors_read_each_stub_output_once_right_after_its_wait_then_free_it():
    """The fresh floors are what they claim: every timed read is one ``amax`` over V of the
    tensor the stub call just returned, after that call's wait, with no other call between;
    and that tensor is released right after its read, before the next call."""
    import time
    import weakref

    import torch

    events = []

    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            out = super().__torch_function__(func, types, args, kwargs or {})
            if func is torch.Tensor.amax:
                events.append(
                    ("read", id(args[0]), args[1:], tuple(out.shape), time.perf_counter())
                )
            return out

    class Recording(bench_samplers.StubDenoiser):
        def __call__(self, tokens, attention_mask=None, **kwargs):
            start = time.perf_counter()
            out = super().__call__(tokens, attention_mask).as_subclass(Logged)
            events.append(("call", id(out), tuple(out.shape), start))
            weakref.finalize(out, events.append, ("freed", id(out)))
            return out

    model = Recording(64, 8, 0.002)
    model.seconds = 1.5
    read_ms, free_ms = bench_samplers.fresh_logits_floors(
        model, torch.ones(2, 5, dtype=torch.int64), repeats=3
    )
    assert math.isfinite(read_ms) and read_ms > 0 and math.isfinite(free_ms) and free_ms >= 0
    assert model.seconds == 1.5  # the floor's calls are not charged to the run
    assert [e[0] for e in events] == ["call", "read", "freed"] * 5  # two warm-ups, three timed
    for call, read, freed in zip(events[::3], events[1::3], events[2::3]):
        assert read[1] == call[1] == freed[1]  # the tensor that call returned
        assert call[2] == (2, 5, 64) and read[2] == (-1,) and read[3] == (2, 5)
        assert read[4] - call[3] >= 0.002  # read after the stub's wait


def test_small_call_floors_time_a_tiny_propose_right_after_each_stub_call(monkeypatch):
    """The cold small-call floor times one propose of (B, L, 16) logits right after each stub
    call (nothing between), the hot one the same call again and again; neither is charged
    to the run."""
    import torch

    from remask import kernels

    events = []
    propose = kernels.propose

    def logged(logits, **kwargs):
        events.append(("propose", tuple(logits.shape)))
        return propose(logits, **kwargs)

    class Recording(bench_samplers.StubDenoiser):
        def __call__(self, tokens, attention_mask=None, **kwargs):
            events.append(("call", tuple(tokens.shape)))
            return super().__call__(tokens, attention_mask)

    monkeypatch.setattr(kernels, "propose", logged)
    model = Recording(64, 8, 0.001)
    model.seconds = 1.5
    cold, hot = bench_samplers.small_call_floors(model, torch.ones(2, 5, dtype=torch.int64), 3)
    assert math.isfinite(cold) and cold > 0 and math.isfinite(hot) and hot > 0
    assert model.seconds == 1.5
    after = [("call", (2, 5)), ("propose", (2, 5, 16))] * 5  # two warm-ups, three timed
    assert events == after + [("propose", (2, 5, 16))] * 3


def test_stub_table_shows_both_floors(tmp_path):
    """The stub table puts each cell in hot and fresh reads and prints the floor rows."""
    from remask.bench.common import Result, environment, write_csv

    config = dict(B=4, G=128, P=0, V=8192, dtype="float32", steps=64, cost_ms=10.0, load="0.5")
    rows = [
        Result(
            name="sampler_overhead_stub",
            variant="threshold",
            backend="numba",
            config=json.dumps(dict(config, floor_ms=0.2, fresh_floor_ms=0.5, free_ms=0.03)),
            repeats=3,
            median=0.12,
            p20=0.11,
            p80=0.13,
            unit="overhead/forward",
            derived=1.5,
            derived_unit="ms per step",
            **environment("cpu"),
        )
    ]
    path = tmp_path / "stub.csv"
    write_csv(rows, path)
    table = report.stub_overhead_table(str(path))
    assert "| threshold | 12.0% (1.50 ms/step, 7.5 hot / 3.0 fresh reads) |" in table
    assert "the floor* | 0.20 ms |" in table and "the fresh floor* | 0.50 ms |" in table
    assert "lets go)* | 0.03 ms |" in table


def test_stub_materialises_fresh_logits_at_every_batch_size():
    """The stub's logits are a new tensor at every call, also at B = 1 (where a slice of its
    bank is already contiguous): a model's forward allocates and writes its output."""
    import torch

    stub = bench_samplers.StubDenoiser(16, 6, 0.0)
    for B in (1, 3):
        tokens = torch.ones(B, 5, dtype=torch.int64)
        a, b = stub(tokens), stub(tokens)
        assert a.shape == (B, 5, 16) and a.is_contiguous()
        assert a.data_ptr() != b.data_ptr() and a.data_ptr() != stub.bank.data_ptr()
        assert torch.equal(a, stub.bank[:, :5].expand(B, 5, 16))


def test_busy_stub_computes_then_writes_its_logits_and_lasts_its_cost():
    """wait="busy": the call lasts its cost, spent computing (thread CPU time close to wall
    time, unlike the sleeping stub), and still returns a fresh copy of its bank."""
    import time

    import pytest
    import torch

    tokens = torch.ones(2, 5, dtype=torch.int64)
    cpu = {}
    for wait in bench_samplers.STUB_WAITS:
        stub = bench_samplers.StubDenoiser(16, 6, 0.02, wait=wait)
        stub(tokens)  # first call: no write time known yet
        wall, thread = time.perf_counter(), time.thread_time()
        out = stub(tokens)
        wall, thread = time.perf_counter() - wall, time.thread_time() - thread
        assert wall >= 0.02 and stub.seconds >= 0.04
        assert torch.equal(out, stub.bank[:, :5].expand(2, 5, 16))
        cpu[wait] = thread / wall
    assert cpu["busy"] > 0.5 > cpu["sleep"], cpu
    with pytest.raises(ValueError, match="wait must be one of"):
        bench_samplers.StubDenoiser(16, 6, 0.0, wait="spin")


def test_step_breakdown_times_the_logit_ops_and_counts_what_they_read(tmp_path):
    """StepBreakdown charges propose to the logit ops with the rows it computed, the model call
    around the stub to the call, and restores the wrapped functions; the report renders it.

    LLaDA's one-token-per-step rule on 8 masks (B = 2, V = 16) proposes at the masked rows
    only: 8 + 7 + ... + 1 = 36 rows per sequence, so 2 * 36 * 16 logits in all.
    """

    from remask import kernels
    from remask.bench.common import Result, environment, write_csv
    from remask.models import protocol
    from remask.samplers import LowConfidence, generate

    propose, call = kernels.propose, protocol.call
    stub = bench_samplers.StubDenoiser(16, 9, 0.001, wait="sleep")  # prompt 1 + 8
    with bench_samplers.StepBreakdown() as part:
        assert kernels.propose is not propose and protocol.call is not call
        result = generate(stub, [[1]] * 2, LowConfidence(steps=8), gen_length=8, seed=0)
    assert kernels.propose is propose and protocol.call is call
    assert result.steps == 8 and part.logits == 2 * 36 * 16
    assert part.ops_s > 0 and part.call_s >= stub.seconds >= 8 * 0.001

    config = dict(B=2, G=8, P=0, V=16, dtype="float32", steps=8, cost_ms=1.0, wait="sleep")
    config.update(
        exp_floor_ns=0.1,
        small_call_cold_ms=0.4,
        small_call_hot_ms=0.1,
        ops_ms_per_step=0.5,
        run_ms_per_step=1.2,
        call_ms_per_step=0.1,
        rest_ms_per_step=0.4,
        logits_per_step=1e6,
    )
    path = tmp_path / "stub.csv"
    row = dict(name="sampler_overhead_stub", variant="low_confidence", backend="numba")
    row.update(repeats=3, median=0.5, p20=0.4, p80=0.6, unit="overhead/forward")
    row.update(derived=1.0, derived_unit="ms per step", config=json.dumps(config))
    write_csv([Result(**row, **environment("cpu"))], path)
    table = report.stub_breakdown_table(str(path))
    assert (
        "**B=2 L=8 V=16 float32, 1 ms sleep forward** (exp floor 0.100 ns per logit; a propose "
        "of 256 logits: 0.400 ms right after a stub call, 0.100 ms in a loop)" in table
    )
    assert "| low_confidence | 1.20 | 0.50 (1.00 M; 0.50 ns, 5.0x) | 0.10 | 0.40 |" in table


def test_stub_breakdown_plot_writes_a_png_next_to_its_csv(tmp_path):
    """The breakdown as stacked bars: a PNG beside the CSV (or at ``path``), a bar beyond the
    axis's end included; a CSV without breakdown rows is a ValueError naming it."""
    from remask.bench.common import Result, environment, write_csv

    rows = []
    for name, ops, rest in (("threshold", 0.5, 0.4), ("gibbs", 1.5, 9.0)):  # gibbs past 4 ms
        config = dict(B=2, G=8, P=0, V=16, dtype="float32", steps=8, cost_ms=10.0, wait="busy")
        config.update(ops_ms_per_step=ops, call_ms_per_step=0.1, rest_ms_per_step=rest)
        row = dict(name="sampler_overhead_stub", variant=name, backend="numba")
        row.update(repeats=3, median=0.1, p20=0.1, p80=0.1, unit="overhead/forward")
        row.update(derived=ops + rest + 0.1, derived_unit="ms per step", config=json.dumps(config))
        rows.append(Result(**row, **environment("cpu")))
    path = tmp_path / "stub.csv"
    write_csv(rows, path)
    out = report.stub_breakdown_plot(str(path))
    assert out == tmp_path / "stub.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = report.stub_breakdown_plot(str(path), tmp_path / "elsewhere.png")
    assert other.stat().st_size > 1000
    write_csv(rows[:0], tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="empty.csv"):
        report.stub_breakdown_plot(str(tmp_path / "empty.csv"))
