"""remask sweep: the SPEC's checks, rows and summary, resume after a kill, torchrun == one process."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from _eval_paths import MARKOV, TASKS_DIR
from click.testing import CliRunner

from remask.cli import main
from remask.eval import load_spec, request_seed, run_sweep
from remask.eval.spec import parse_spec
from remask.eval.sweep import read_rows
from remask.models import load_model
from remask.samplers import build, generate

ISSUE_SPEC = f"""
seed = 0
[[models]]
spec = "{MARKOV}"
[[samplers]]
name = "low_confidence"
grid = {{ steps = [4, 8], temperature = [1.0] }}
[[samplers]]
name = "threshold"
grid = {{ threshold = [0.7, 0.9], temperature = [1.0] }}
[[tasks]]
kind = "oracle"        # unconditional samples from the model; scored by the exact joint
samples = 64
gen_length = 8
"""

SMALL_SPEC = f"""
seed = 7
batch_size = 4
[[models]]
spec = "{MARKOV}"
name = "markov"
[[samplers]]
name = "low_confidence"
grid = {{ steps = [2, 4], temperature = [1.0] }}
[[tasks]]
kind = "oracle"
samples = 10
gen_length = 4
"""

TIMINGS = ("seconds", "tokens_per_second", "batch_seconds")


def _write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _rows(path):
    rows, bad = read_rows(str(path))
    assert bad == 0
    return rows


def _untimed(rows):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def test_issue_spec_runs_as_written(tmp_path):
    """The SPEC of the issue, through the CLI: 4 settings x 64 samples; every row scored by the
    exact joint and decoded with its request's own seed."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["sweep", _write(tmp_path, ISSUE_SPEC), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    rows = _rows(out / "rows.jsonl")
    assert len(rows) == 4 * 64
    chain = load_model(MARKOV)
    tokens = torch.tensor([r["tokens"] for r in rows])
    assert [r["log_prob"] for r in rows] == pytest.approx(
        chain.log_prob(tokens).tolist(), abs=1e-12
    )
    for key in (
        "model",
        "sampler",
        "settings",
        "task",
        "request_id",
        "tokens",
        "nfe",
        "seconds",
        "accuracy",
    ):
        assert key in rows[0]
    # A row is what the sampler gives that request alone with request_seed(seed, "task/id").
    row = next(r for r in rows if r["sampler"] == "threshold" and r["request_id"] == "5")
    sampler = build("threshold", **row["settings"])
    alone = generate(chain, [[]], sampler, gen_length=8, seed=[request_seed(0, "oracle/5")])
    assert alone.tokens[0].tolist() == row["tokens"] and int(alone.nfe[0]) == row["nfe"]
    assert (
        (out / "summary.csv")
        .read_text()
        .startswith("model,sampler,settings,task,requests,accuracy")
    )
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 4 and {s["requests"] for s in summary} == {"64"}
    # low_confidence with steps=4 on 8 tokens: 4 forwards, 2 tokens per forward, exactly.
    four = next(s for s in summary if json.loads(s["settings"]) == {"steps": 4, "temperature": 1.0})
    assert float(four["nfe_mean"]) == 4.0 and float(four["tokens_per_forward"]) == 2.0


def test_dry_run_counts_and_computes_nothing(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["sweep", _write(tmp_path, ISSUE_SPEC), "--out", str(out), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert (
        "256 request(s); 256 to run" in result.output
        and "threshold(temperature=1.0, threshold=0.9)" in result.output
    )
    assert not (out / "rows.jsonl").exists()


def test_killed_sweep_resumes_with_every_row_once(tmp_path):
    spec = load_spec(_write(tmp_path, SMALL_SPEC))
    whole = run_sweep(spec, tmp_path / "whole", progress=False, log=lambda m: None)["rows"]
    assert len(whole) == 2 * 10

    out = tmp_path / "killed"
    seen = []

    def kill_after_two(unit, rows):
        seen.append(unit.index)
        if len(seen) == 2:
            raise KeyboardInterrupt  # the process dies after two batches

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, progress=False, on_unit=kill_after_two, log=lambda m: None)
    shard = out / "shards" / "rank0.jsonl"
    assert len(_rows(shard)) == 8  # two batches of 4 survived
    with open(shard, "a") as f:
        f.write('{"model": "markov", "sampler": "low_con')  # a line cut by the kill
    messages = []
    again = run_sweep(spec, out, progress=False, log=messages.append)
    assert again["skipped"] == 2 and again["ran"] == 6 - 2
    assert any("partial line" in m for m in messages)
    rows = _rows(out / "rows.jsonl")
    keys = [(r["sampler"], json.dumps(r["settings"]), r["request_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 20
    assert _untimed(rows) == _untimed(whole)
    assert not list((out / "shards").glob("*.jsonl"))
    # A third run has nothing left to do and changes nothing.
    third = run_sweep(spec, out, progress=False, log=lambda m: None)
    assert third["ran"] == 0 and _untimed(third["rows"]) == _untimed(whole)


def test_torchrun_two_processes_equal_one(tmp_path):
    """`torchrun --nproc-per-node 2 -m remask sweep` (gloo on CPU) writes exactly the rows of a
    single process (same tokens and metrics per request; timings aside)."""
    path = _write(tmp_path, SMALL_SPEC)
    single = run_sweep(load_spec(path), tmp_path / "one", progress=False, log=lambda m: None)[
        "rows"
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "remask",
        "sweep",
        path,
        "--out",
        str(tmp_path / "two"),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    assert _untimed(_rows(tmp_path / "two" / "rows.jsonl")) == _untimed(single)


def test_world_size_larger_than_the_requests(tmp_path, monkeypatch):
    import remask.eval.sweep as sweep

    spec = load_spec(
        _write(tmp_path, SMALL_SPEC.replace("samples = 10", "samples = 1").replace("[2, 4]", "[2]"))
    )
    monkeypatch.setattr(sweep, "_dist", lambda: (0, 3, None))
    with pytest.raises(ValueError, match="world size 3 is larger than the sweep's 1 request"):
        run_sweep(spec, tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out" / "rows.jsonl").exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (('name = "low_confidence"', 'name = "nope"'), "unknown sampler 'nope'"),
        (("seed = 7", "seed = 7\nspeed = 1"), r"unknown key\(s\) \['speed'\] in the top level"),
        (("grid = { steps = [2, 4], temperature = [1.0] }", "grid = {}"), "has an empty grid"),
        (("steps = [2, 4]", "steps = []"), r"grid steps = \[\] is empty"),
        (("steps = [2, 4]", "steps = 2"), "grid value steps = 2 is not a list"),
        (
            ("steps = [2, 4]", 'steps = ["two"]'),
            r"setting \{'steps': 'two', 'temperature': 1.0\} is rejected",
        ),
        (('kind = "oracle"', 'kind = "oracles"'), "kind must be"),
        (("samples = 10", "samples = 0"), "samples must be >= 1"),
        (
            ("gen_length = 4", "gen_length = 4\nsteps = 3"),
            r"unknown key\(s\) \['steps'\] in tasks\[0\]",
        ),
        (
            ("gen_length = 4", 'gen_length = 4\nmodels = ["other"]'),
            r"names unknown model\(s\) \['other'\]",
        ),
    ],
)
def test_malformed_spec(tmp_path, edit, match):
    path = _write(tmp_path, SMALL_SPEC.replace(*edit))
    with pytest.raises(ValueError, match=match):
        load_spec(path)
    result = CliRunner().invoke(main, ["sweep", path, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_bad_out_and_model_checked_before_compute(tmp_path):
    path = _write(tmp_path, SMALL_SPEC)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["sweep", path, "--out", str(blocker)])
    assert result.exit_code == 2 and "is a file" in result.output
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = CliRunner().invoke(main, ["sweep", path, "--out", str(locked / "out")])
        assert result.exit_code == 2 and "not writable" in result.output
    not_oracle = SMALL_SPEC.replace(MARKOV, "tiny:transformer?vocab=8")
    with pytest.raises(ValueError, match="needs an exact oracle"):
        run_sweep(
            load_spec(_write(tmp_path, not_oracle, "t.toml")), tmp_path / "t", log=lambda m: None
        )
    assert not (tmp_path / "t" / "rows.jsonl").exists()
    wrong_length = SMALL_SPEC.replace(MARKOV, "oracle:hmm?vocab=4&length=6")
    with pytest.raises(ValueError, match="gen_length=4 must equal the seq_len 6"):
        run_sweep(
            load_spec(_write(tmp_path, wrong_length, "h.toml")), tmp_path / "h", log=lambda m: None
        )


def test_spec_from_a_dict_checks_types():
    with pytest.raises(ValueError, match="seed must be an integer"):
        parse_spec(
            {
                "seed": "0",
                "models": [{"spec": MARKOV}],
                "samplers": [{"name": "ancestral"}],
                "tasks": [{"kind": "oracle", "samples": 1, "gen_length": 2}],
            }
        )
    with pytest.raises(ValueError, match=r"no \[\[models\]\] entries"):
        parse_spec(
            {
                "samplers": [{"name": "ancestral"}],
                "tasks": [{"kind": "oracle", "samples": 1, "gen_length": 2}],
            }
        )


def test_lm_eval_tasks_in_a_sweep_on_the_golden_llada(tmp_path, llada_tiny_dir):
    pytest.importorskip("lm_eval")
    spec = f"""
seed = 1
batch_size = 4
[[models]]
spec = "{llada_tiny_dir}"
name = "llada_tiny"
[[samplers]]
name = "low_confidence"
grid = {{ steps = [2, 4] }}
[[tasks]]
kind = "lm_eval"
name = "remask_copy"
include_path = "{TASKS_DIR}"
limit = 3
gen_length = 4
[[tasks]]
kind = "lm_eval"
name = "remask_choice"
include_path = "{TASKS_DIR}"
limit = 2
mc_num = 8
loglikelihood_batch_size = 8
"""
    result = run_sweep(
        load_spec(_write(tmp_path, spec)), tmp_path / "out", progress=False, log=lambda m: None
    )
    rows = result["rows"]
    gen = [r for r in rows if r["task"] == "remask_copy"]
    ll = [r for r in rows if r["task"] == "remask_choice"]
    assert len(gen) == 2 * 3 and len(ll) == 2  # the likelihood task runs once, not once per setting
    assert all(r["generated_tokens"] == 4 and r["nfe"] == r["settings"]["steps"] for r in gen)
    assert all("exact_match" in r and r["accuracy"] == r["exact_match"] for r in gen)
    assert all(
        r["sampler"] == "loglikelihood" and r["estimator"] == "elbo" and r["acc"] in (0.0, 1.0)
        for r in ll
    )
    assert all(len(r["loglikelihoods"]) == 2 for r in ll)
