"""``remask sweep SPEC --out DIR``: every (model, sampler setting, task, request), data-parallel.

Plan
    The SPEC (:mod:`remask.eval.spec`) expands to work units: for each model, task and
    sampler setting, the task's requests in chunks of ``batch_size`` (a loglikelihood task
    does not depend on the sampler: it runs once per model, as the pseudo-sampler
    ``"loglikelihood"``, its rows' ``estimator`` saying ``"elbo"`` or, on an exact oracle,
    ``"exact"``). The plan is the same on every rank.
Sharding
    Under ``torch.distributed`` (``torchrun --nproc-per-node N -m remask sweep ...``; gloo on
    CPU, NCCL on CUDA, ``accelerate launch`` equally) unit ``u`` runs on rank ``u mod N``.
    Each request is always decoded in the same batch with the same seed
    (``request_seed(seed, "task/request_id")``), so the rows do not depend on N.
Output
    Rank r appends finished rows to ``DIR/shards/rank{r}.jsonl`` as each batch finishes;
    after a barrier rank 0 merges every shard and the previous ``DIR/rows.jsonl`` (one row
    per key, in plan order), writes it atomically, writes ``DIR/summary.csv`` and removes the
    shards.
Resume
    A rerun reads the rows already in ``DIR`` and skips units whose rows all exist. A shard
    whose last line is partial (a killed process) is cut back to its last complete line
    before appending; a unit with some rows missing is decoded again and only its missing
    rows are written. A killed sweep loses at most the units in flight.

Rows (one JSON object per line): ``model``, ``sampler``, ``settings``, ``task``,
``request_id``, ``seed``, ``tokens`` (generated ids), ``nfe``, ``generated_tokens``,
``tokens_per_forward``, ``seconds`` (the request's share of its batch's wall time),
``tokens_per_second``, ``batch_rows``, ``accuracy`` and the task's score fields: for an
oracle task ``log_prob`` (exact ``log p(x)``), ``valid`` (p(x) > 0), ``entropy`` (H(p) of the
generated window; ``entropy_exact`` tells a closed form from a Monte-Carlo value); for an
lm-eval task its metrics (and ``text`` for generations).
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import sys
import time
from dataclasses import dataclass

from remask.eval.seeds import request_seed
from remask.eval.spec import SamplerSetting, SweepSpec, TaskEntry

__all__ = ["Unit", "check_out_dir", "plan", "run_sweep", "summarize", "read_rows"]

TIMING_FIELDS = ("seconds", "tokens_per_second", "batch_seconds")


@dataclass(frozen=True)
class Unit:
    """One batch of requests of one (model, setting, task)."""

    index: int
    model: int  # index into spec.models
    task: int  # index into spec.tasks
    setting: SamplerSetting
    request_ids: tuple


def row_key(model: str, setting: SamplerSetting, task: str, request_id: str) -> str:
    return json.dumps([model, setting.name, setting.settings, task, request_id], sort_keys=True)


def _key_of(row: dict) -> str:
    return json.dumps(
        [row["model"], row["sampler"], row["settings"], row["task"], row["request_id"]],
        sort_keys=True,
    )


def check_out_dir(out) -> str:
    """Create ``out`` and prove it writable before anything is computed (``ValueError`` names it)."""
    import tempfile

    path = os.fspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {path!r} is an existing file, not a directory")
    try:
        os.makedirs(os.path.join(path, "shards"), exist_ok=True)
        for where in (path, os.path.join(path, "shards")):
            with tempfile.TemporaryFile(dir=where):
                pass
    except OSError as error:
        raise ValueError(f"--out {path!r} is not writable: {error.strerror or error}") from None
    return path


# ---------------------------------------------------------------------------- reading rows
def read_rows(path: str) -> tuple[list[dict], int]:
    """Complete JSON rows of a JSONL file and the number of broken lines skipped (a partial
    last line of a killed writer)."""
    rows, bad = [], 0
    if not os.path.exists(path):
        return rows, 0
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            _key_of(row)
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if n == len(lines) - 1 and not data.endswith(b"\n"):
            bad += 1  # complete JSON but no newline: the writer died before finishing the line
            continue
        rows.append(row)
    return rows, bad


def _repair(path: str) -> int:
    """Cut ``path`` back to its last complete line; returns the bytes removed."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        return len(data) - keep


def _existing(out: str) -> tuple[dict, int]:
    rows = {}
    bad = 0
    for path in [os.path.join(out, "rows.jsonl")] + sorted(
        glob.glob(os.path.join(out, "shards", "rank*.jsonl"))
    ):
        found, broken = read_rows(path)
        bad += broken
        for row in found:
            rows.setdefault(_key_of(row), row)
    return rows, bad


# ---------------------------------------------------------------------------- planning
class _Tasks:
    """lm-eval tasks loaded once per process (data only; requests are built per model)."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.loaded = {}
        lm_tasks = [t for t in spec.tasks if t.kind == "lm_eval"]
        if lm_tasks:
            try:
                import lm_eval  # noqa: F401
            except ImportError:
                raise ValueError("lm_eval tasks need lm-eval: pip install 'remask[eval]'") from None
            from remask.eval.tasks import load_tasks, task_manager

            managers = {}  # one index per include path (indexing lm-eval's own tasks takes seconds)
            for path in dict.fromkeys(t.include_path for t in lm_tasks):
                names = [t.name for t in lm_tasks if t.include_path == path]
                managers[path] = task_manager(names, path)
            for t in lm_tasks:
                self.loaded[t.name] = load_tasks(
                    [t.name],
                    t.include_path,
                    num_fewshot=t.num_fewshot,
                    manager=managers[t.include_path],
                )[t.name]

    def kind(self, task: TaskEntry) -> str:
        if task.kind == "oracle":
            return "generate_until"
        output = self.loaded[task.name].OUTPUT_TYPE
        if output == "loglikelihood_rolling":
            raise ValueError(
                f"lm-eval task {task.name!r} needs loglikelihood_rolling (perplexity), which remask does "
                "not implement for masked diffusion models"
            )
        return "generate_until" if output == "generate_until" else "loglikelihood"

    def request_ids(self, task: TaskEntry) -> list[str]:
        if task.kind == "oracle":
            return [str(i) for i in range(task.samples)]
        lm_task = self.loaded[task.name]
        docs = lm_task.eval_docs
        n = len(docs) if task.limit is None else min(task.limit, len(docs))
        return [str(i) for i in range(n)]


def _likelihood_setting(task: TaskEntry) -> SamplerSetting:
    return SamplerSetting("loglikelihood", {"mc_num": task.mc_num, "variant": task.elbo})


def plan(spec: SweepSpec, tasks: _Tasks | None = None) -> list[Unit]:
    """The work units of ``spec`` in their fixed order (see the module docstring)."""
    tasks = tasks or _Tasks(spec)
    units = []
    for m, model in enumerate(spec.models):
        for t, task in enumerate(spec.tasks):
            if task.models is not None and model.name not in task.models:
                continue
            ids = tasks.request_ids(task)
            settings = (
                spec.settings
                if tasks.kind(task) == "generate_until"
                else (_likelihood_setting(task),)
            )
            for setting in settings:
                for start in range(0, len(ids), spec.batch_size):
                    units.append(
                        Unit(len(units), m, t, setting, tuple(ids[start : start + spec.batch_size]))
                    )
    return units


# ---------------------------------------------------------------------------- running
class _Runner:
    """Loads one model at a time and answers units."""

    def __init__(self, spec: SweepSpec, tasks: _Tasks, device=None):
        self.spec = spec
        self.tasks = tasks
        self.device = device
        self.model_index = None
        self.model = None
        self.requests = {}
        self.entropy = {}
        self.scoring_seconds = 0.0  # the tasks' own scoring (exact log p, lm-eval process_results)

    def _scored(self, fn, *args):
        tic = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.scoring_seconds += time.perf_counter() - tic

    def load(self, m: int):
        if self.model_index == m:
            return self.model
        from remask.models import load_model

        entry = self.spec.models[m]
        self.model, self.model_index, self.requests = None, None, {}
        dtype = None
        if entry.dtype is not None:
            import torch

            dtype = getattr(torch, entry.dtype)
        device = entry.device or self.device
        try:
            model = _quiet_load(load_model, entry.spec, device=device, dtype=dtype)
        except (TypeError, ValueError, OSError) as error:
            raise ValueError(f"sweep model {entry.name!r} ({entry.spec!r}): {error}") from None
        self.check(m, model)
        self.model, self.model_index = model, m
        return model

    def check(self, m: int, model) -> None:
        """A task the model cannot run is an error naming both (before any of its units runs)."""
        from remask.eval.likelihood import is_exact_oracle, supports_loglikelihood

        entry = self.spec.models[m]
        for task in self.spec.tasks:
            if task.models is not None and entry.name not in task.models:
                continue
            if task.kind == "oracle":
                if not is_exact_oracle(model):
                    raise ValueError(
                        f"task {task.name!r} (kind oracle) needs an exact oracle, and model {entry.name!r} "
                        f"({type(model).__name__}) is not one"
                    )
                if (
                    not _is_markov(model) and task.gen_length != model.seq_len
                ):  # the chain models any window
                    raise ValueError(
                        f"task {task.name!r}: gen_length={task.gen_length} must equal the seq_len "
                        f"{model.seq_len} of model {entry.name!r}"
                    )
            elif self.tasks.kind(task) == "loglikelihood":
                why = supports_loglikelihood(model)
                if why is not None:
                    raise ValueError(
                        f"task {task.name!r} needs loglikelihood, which model {entry.name!r} cannot "
                        f"give: {why}"
                    )

    def lm(self, setting: SamplerSetting, task: TaskEntry):
        from remask.eval.lm import RemaskLM

        if setting.name == "loglikelihood":
            return RemaskLM(
                self.model,
                "low_confidence",
                mc_num=task.mc_num,
                elbo=task.elbo,
                loglikelihood_batch_size=task.loglikelihood_batch_size,
                seed=self.spec.seed,
                batch_size=self.spec.batch_size,
            )
        return RemaskLM(
            self.model,
            setting.name,
            setting.settings,
            gen_length=task.gen_length or 256,
            batch_size=self.spec.batch_size,
            seed=self.spec.seed,
        )

    def lm_requests(self, task: TaskEntry, lm):
        if task.name not in self.requests:
            from remask.eval.tasks import LMEvalRequests

            self.requests[task.name] = LMEvalRequests(
                self.tasks.loaded[task.name],
                limit=task.limit,
                lm=lm,
                apply_chat_template=task.apply_chat_template,
            )
        return self.requests[task.name]

    def oracle_entropy(self, gen_length: int) -> tuple[float, bool]:
        """H(p) of a generated window: closed form for the Markov chain, else the mean of
        -log p over 2**14 exact samples (Monte-Carlo, flagged)."""
        key = (self.model_index, gen_length)
        if key not in self.entropy:
            model = self.model
            if _is_markov(model):
                T, pi = model.transition, model.initial
                h0 = float(-(pi * pi.log()).sum())
                step = float(-(pi.unsqueeze(-1) * T * T.log()).sum())
                self.entropy[key] = (h0 + (gen_length - 1) * step, True)
            else:
                x = model.sample(2**14, seed=0)
                self.entropy[key] = (float(-model.log_prob(x).mean()), False)
        return self.entropy[key]

    def run(self, unit: Unit) -> tuple[list[dict], float, float]:
        """Rows of one unit, its decode seconds and the seconds spent on its rows after decoding
        (scoring included; the scoring alone accumulates in ``scoring_seconds``)."""
        import torch

        from remask.eval.decoding import decode_rows

        task = self.spec.tasks[unit.task]
        entry = self.spec.models[unit.model]
        model = self.load(unit.model)
        base = {
            "model": entry.name,
            "sampler": unit.setting.name,
            "settings": unit.setting.settings,
            "task": task.name,
        }
        rows = []
        if task.kind == "oracle":
            from remask.samplers import build

            sampler = build(unit.setting.name, **unit.setting.settings)
            seeds = [request_seed(self.spec.seed, f"{task.name}/{r}") for r in unit.request_ids]
            decoded = decode_rows(
                model,
                [[] for _ in unit.request_ids],
                sampler,
                gen_length=task.gen_length,
                seeds=seeds,
            )
            decode_seconds = decoded.seconds
            tic = time.perf_counter()
            log_prob = self._scored(
                model.log_prob, torch.tensor(decoded.tokens, dtype=torch.int64)
            ).tolist()
            entropy, exact = self._scored(self.oracle_entropy, task.gen_length)
            share = decoded.seconds / len(unit.request_ids)
            for rid, seed, tokens, nfe, lp in zip(
                unit.request_ids, seeds, decoded.tokens, decoded.nfe, log_prob
            ):
                valid = lp > -math.inf
                rows.append(
                    {
                        **base,
                        "request_id": rid,
                        "seed": seed,
                        "tokens": tokens,
                        "nfe": nfe,
                        **_costs(len(tokens), nfe, share, decoded.seconds, len(unit.request_ids)),
                        "accuracy": float(valid),
                        "log_prob": lp if valid else None,
                        "valid": valid,
                        "entropy": entropy,
                        "entropy_exact": exact,
                    }
                )
            return rows, decode_seconds, time.perf_counter() - tic
        lm = self.lm(unit.setting, task)
        requests = self.lm_requests(task, lm)
        metric = requests.first_metric()
        if requests.kind == "generate_until":
            items = []
            for n, rid in enumerate(unit.request_ids):
                instance = requests.instances[int(rid)][0]
                context, gen_kwargs = instance.args[0], instance.args[1]
                items.append(
                    (
                        n,
                        lm.codec.encode(context),
                        (gen_kwargs or {}).get("until"),
                        f"{task.name}/{rid}",
                    )
                )
            start = time.perf_counter()
            texts = lm.generate_ids(items)
            decode_seconds = time.perf_counter() - start
            tic = time.perf_counter()
            costs = {c["request_id"]: c for c in lm.costs()}
            for rid, text in zip(unit.request_ids, texts):
                c = costs[f"{task.name}/{rid}"]
                metrics = self._scored(requests.score, int(rid), [text])
                rows.append(
                    {
                        **base,
                        "request_id": rid,
                        "seed": request_seed(self.spec.seed, f"{task.name}/{rid}"),
                        "tokens": c["tokens"],
                        "nfe": c["nfe"],
                        **_costs(
                            c["generated_tokens"],
                            c["nfe"],
                            c["seconds"],
                            c["seconds"] * c["batch_rows"],
                            c["batch_rows"],
                        ),
                        "accuracy": _accuracy(metrics, metric),
                        "text": text,
                        **metrics,
                    }
                )
            return rows, decode_seconds, time.perf_counter() - tic
        decode_seconds = 0.0
        bookkeeping = 0.0
        for rid in unit.request_ids:
            instances = requests.instances[int(rid)]
            start = time.perf_counter()
            answers = lm.loglikelihood(instances)
            seconds = time.perf_counter() - start
            decode_seconds += seconds
            tic = time.perf_counter()
            nfe = sum(c["nfe"] for c in lm.costs()[-len(instances) :])
            metrics = self._scored(requests.score, int(rid), answers)
            rows.append(
                {
                    **base,
                    "request_id": rid,
                    "seed": request_seed(self.spec.seed, f"{task.name}/{rid}/0"),
                    "tokens": [],
                    "nfe": nfe,
                    **_costs(0, nfe, seconds, seconds, 1),
                    "estimator": "exact" if _exact(model) else "elbo",
                    "accuracy": _accuracy(metrics, metric),
                    "loglikelihoods": [a[0] for a in answers],
                    **metrics,
                }
            )
            bookkeeping += time.perf_counter() - tic
        return rows, decode_seconds, bookkeeping


def _quiet_load(load_model, spec, **kwargs):
    """``load_model`` without transformers' weight-loading bar (one per rank would interleave)."""
    if spec.startswith(("oracle:", "tiny")):
        return load_model(spec, **kwargs)  # built-ins: no transformers to import
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return load_model(spec, **kwargs)
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load_model(spec, **kwargs)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _is_markov(model) -> bool:
    from remask.models import MarkovChainOracle

    return isinstance(model, MarkovChainOracle)


def _exact(model) -> bool:
    from remask.eval.likelihood import is_exact_oracle

    return is_exact_oracle(model)


def _costs(generated: int, nfe: int, seconds: float, batch_seconds: float, batch_rows: int) -> dict:
    return {
        "generated_tokens": generated,
        "tokens_per_forward": generated / nfe if nfe else 0.0,
        "seconds": seconds,
        "tokens_per_second": generated / seconds if seconds > 0 else 0.0,
        "batch_seconds": batch_seconds,
        "batch_rows": batch_rows,
    }


def _accuracy(metrics: dict, metric: str | None):
    if metric is None:
        return None
    for key, value in metrics.items():
        if (key == metric or key.startswith(metric + ",")) and isinstance(value, (int, float)):
            return float(value)
    return None


# ---------------------------------------------------------------------------- distributed
def _dist():
    """(rank, world size, torch.distributed or None); initialises the process group under
    torchrun/accelerate (WORLD_SIZE > 1): NCCL when CUDA is there, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import datetime

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=6))
    return dist.get_rank(), dist.get_world_size(), dist


def _local_device():
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return None


# ---------------------------------------------------------------------------- the sweep
def run_sweep(
    spec: SweepSpec,
    out,
    *,
    dry_run: bool = False,
    progress: bool | None = None,
    log=None,
    on_unit=None,
) -> dict:
    """Run (or resume) a sweep; see the module docstring.

    Parameters
    ----------
    spec : SweepSpec
        From :func:`remask.eval.load_spec`.
    out : path
        Output directory (created; checked writable before anything runs).
    dry_run : bool
        Print the grid and the request counts, run nothing.
    progress : bool, optional
        A tqdm bar per rank (``position = rank``); default: when stderr is a terminal.
    log : callable, optional
        Where messages go (default: print to stderr on rank 0).
    on_unit : callable, optional
        Called as ``on_unit(unit, rows)`` after each unit's rows are written.

    Returns
    -------
    dict with ``rows`` (rows in DIR after the run; rank 0, else None), ``ran`` (units this
    rank decoded), ``skipped`` (units already done), ``decode_seconds`` (generate / ELBO
    calls), ``scoring_seconds`` (the tasks' scoring: exact log p, lm-eval's filters and
    ``process_results``) and ``bookkeeping_seconds`` (the sweep's own per-request work: seeds,
    costs, rows built and written), all for this rank, ``rank`` and ``world_size``.
    """
    out = check_out_dir(out)
    rank, world, dist = _dist()
    if log is None:

        def log(message):
            if rank == 0:
                print(message, file=sys.stderr)

    tasks = _Tasks(spec)
    units = plan(spec, tasks)
    n_requests = sum(len(u.request_ids) for u in units)
    if world > n_requests:
        raise ValueError(
            f"world size {world} is larger than the sweep's {n_requests} request(s): "
            f"run with at most {n_requests} processes"
        )
    existing, broken = _existing(out)
    if broken:
        log(f"sweep: {broken} partial line(s) in {out} (a killed run) will be redone")
    keys = {
        u.index: [
            row_key(spec.models[u.model].name, u.setting, spec.tasks[u.task].name, r)
            for r in u.request_ids
        ]
        for u in units
    }
    pending = [u for u in units if not all(k in existing for k in keys[u.index])]
    if dry_run:
        _print_plan(spec, units, pending, tasks, log)
        return {
            "rows": None,
            "ran": 0,
            "skipped": len(units) - len(pending),
            "units": len(units),
            "requests": n_requests,
            "rank": rank,
            "world_size": world,
            "decode_seconds": 0.0,
            "scoring_seconds": 0.0,
            "bookkeeping_seconds": 0.0,
        }
    mine = [u for u in pending if u.index % world == rank]
    shard = os.path.join(out, "shards", f"rank{rank}.jsonl")
    _repair(shard)
    runner = _Runner(spec, tasks, device=_local_device())
    # Models the plan names are checked up front where loading is cheap (oracles, tiny):
    # a task the model cannot run fails before any compute.
    for m, entry in enumerate(spec.models):
        if entry.spec.startswith(("oracle:", "tiny")):
            runner.load(m)
    bar = _bar(progress, rank, sum(len(u.request_ids) for u in mine))
    decode_seconds = bookkeeping = 0.0
    try:
        with open(shard, "a", encoding="utf-8") as f:
            for unit in mine:
                rows, dec, book = runner.run(unit)
                tic = time.perf_counter()
                for key, row in zip(keys[unit.index], rows):
                    if key not in existing:
                        f.write(json.dumps(row) + "\n")
                        existing[key] = row
                f.flush()
                bookkeeping += book + time.perf_counter() - tic
                decode_seconds += dec
                if bar is not None:
                    bar.update(len(rows))
                if on_unit is not None:
                    on_unit(unit, rows)
    finally:
        if bar is not None:
            bar.close()
    if dist is not None:
        dist.barrier()
    result = {
        "rows": None,
        "ran": len(mine),
        "skipped": len(units) - len(pending),
        "units": len(units),
        "requests": n_requests,
        "rank": rank,
        "world_size": world,
        "decode_seconds": decode_seconds,
        "scoring_seconds": runner.scoring_seconds,
        "bookkeeping_seconds": bookkeeping - runner.scoring_seconds,
    }
    if rank == 0:
        result["rows"] = _merge(out, units, keys)
        summarize(result["rows"], os.path.join(out, "summary.csv"))
        log(
            f"sweep: {len(result['rows'])} rows in {os.path.join(out, 'rows.jsonl')}, summary in "
            f"{os.path.join(out, 'summary.csv')}"
        )
    if dist is not None:
        dist.barrier()
    return result


def _bar(progress, rank: int, total: int):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"rank {rank}", position=rank, unit="req", leave=True)


def _merge(out: str, units: list[Unit], keys: dict) -> list[dict]:
    """All rows, each key once, in plan order (rows of keys the plan no longer has last)."""
    existing, _ = _existing(out)
    ordered = []
    for unit in units:
        for key in keys[unit.index]:
            if key in existing:
                ordered.append(existing.pop(key))
    ordered.extend(existing.values())
    target = os.path.join(out, "rows.jsonl")
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in ordered:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    for path in glob.glob(os.path.join(out, "shards", "rank*.jsonl")):
        os.remove(path)
    return ordered


def _print_plan(spec: SweepSpec, units, pending, tasks: _Tasks, log) -> None:
    log(f"sweep plan ({spec.source}): seed {spec.seed}, batch size {spec.batch_size}")
    log(f"  models:  {', '.join(m.name for m in spec.models)}")
    log(f"  settings ({len(spec.settings)}):")
    for s in spec.settings:
        log(f"    {s.label}")
    for t in spec.tasks:
        on = ", ".join(t.models) if t.models else "every model"
        log(
            f"  task {t.name} ({t.kind}, {tasks.kind(t)}) on {on}: {len(tasks.request_ids(t))} request(s)"
        )
    n = sum(len(u.request_ids) for u in units)
    todo = sum(len(u.request_ids) for u in pending)
    log(f"  {len(units)} unit(s), {n} request(s); {todo} to run, {n - todo} already done")


# ---------------------------------------------------------------------------- summary
SUMMARY_FIELDS = [
    "model",
    "sampler",
    "settings",
    "task",
    "requests",
    "accuracy",
    "nfe_mean",
    "tokens_per_forward",
    "tokens_per_second",
    "generated_tokens",
    "seconds",
    "nll_mean",
    "entropy",
    "nll_gap",
    "nll_gap_se",
    "valid_rate",
]


def summarize(rows: list[dict], path: str | None = None) -> list[dict]:
    """One summary row per (model, sampler, settings, task); written as CSV to ``path``.

    ``accuracy`` is the mean per-request accuracy (an lm-eval task's first metric; for an
    oracle task the fraction of samples the oracle gives positive probability);
    ``tokens_per_forward`` and ``tokens_per_second`` are ratios of sums (generated tokens /
    NFE, generated tokens / decode seconds). Oracle tasks add ``nll_mean`` (mean ``-log p(x)``
    of the samples), ``entropy`` (H(p)), ``nll_gap = nll_mean - entropy`` with its standard
    error ``nll_gap_se`` (0 for an exact sampler up to noise; a sampler that loses the
    dependence between tokens samples less likely sequences and has a positive gap).
    """
    groups = {}
    for row in rows:
        key = (
            row["model"],
            row["sampler"],
            json.dumps(row["settings"], sort_keys=True),
            row["task"],
        )
        groups.setdefault(key, []).append(row)
    out = []
    for (model, sampler, settings, task), group in groups.items():
        n = len(group)
        nfe = sum(r["nfe"] for r in group)
        tokens = sum(r["generated_tokens"] for r in group)
        seconds = sum(r["seconds"] for r in group)
        accs = [r["accuracy"] for r in group if isinstance(r.get("accuracy"), (int, float))]
        summary = {
            "model": model,
            "sampler": sampler,
            "settings": settings,
            "task": task,
            "requests": n,
            "accuracy": sum(accs) / len(accs) if accs else "",
            "nfe_mean": nfe / n,
            "tokens_per_forward": tokens / nfe if nfe else "",
            "tokens_per_second": tokens / seconds if seconds > 0 and tokens else "",
            "generated_tokens": tokens,
            "seconds": seconds,
        }
        if "entropy" in group[0]:
            nll = [-r["log_prob"] for r in group if r.get("log_prob") is not None]
            if nll:
                mean = sum(nll) / len(nll)
                var = (
                    sum((x - mean) ** 2 for x in nll) / (len(nll) - 1) if len(nll) > 1 else math.nan
                )
                summary.update(
                    nll_mean=mean,
                    entropy=group[0]["entropy"],
                    nll_gap=mean - group[0]["entropy"],
                    nll_gap_se=math.sqrt(var / len(nll)),
                )
            summary["valid_rate"] = sum(bool(r["valid"]) for r in group) / n
        out.append(summary)
    if path is not None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
            writer.writeheader()
            for s in out:
                writer.writerow({k: s.get(k, "") for k in SUMMARY_FIELDS})
    return out
