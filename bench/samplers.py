"""Sampler benchmarks: quality vs cost on exact oracles, and per-step overhead.

``remask bench samplers [--quick] [--out FILE]`` (or ``python -m remask.bench.samplers``).

1. **Quality vs NFE** — every registered sampler at the settings its class lists
   (``bench_configs``, next to ``example_configs``) on exact oracles (a Markov
   chain, a sticky HMM with long-range dependence, and the "shuffle" list operation with a
   prompt). For each: mean NFE and its per-row spread, tokens per step, and the distance of
   its output distribution to the exact joint from :func:`remask.analysis.sampler_error`
   (KL(p || q_KT), plug-in TV, validity), next to the noise floor of exact samples. One Pareto
   plot (error vs NFE) per oracle goes to ``bench/results/pareto_<oracle>.png``.
2. **Overhead** — the time a sampler spends per step outside the model forward, as a fraction
   of the forward time, on a ``TinyTransformer`` on this CPU (torch's default threads) at
   several (B, L, V).
3. **Overhead with a stub forward** (``--part overhead_stub``) — the same measure against a
   stub denoiser of known cost (:class:`StubDenoiser`: fixed random logits, materialised
   contiguously in a call of fixed duration, spent by default computing on every thread
   with the logits written last, as a forward on this CPU, or with ``--stub-wait sleep``
   idle after the write), at (B, L, V) = (4, 128,
   8192) float32 (128 generated tokens, 10 ms per forward) and at LLaDA's vocabulary
   (1, 512, 126464) bfloat16 (480 prompt + 32 generated tokens, 50 ms per forward). Threads
   are pinned (torch and Numba: 2) and the load average is recorded; rows carry the
   overhead per step in ms as well, so any other forward cost can be plugged in, and two
   floors of the same run: one plain read of the logits hot (read again and again) and
   fresh (right after the stub's call, what a step's first look at its logits costs), and
   the time to free one stub output (a step lets its logits go). Each row also splits its
   time outside the forward (:class:`StepBreakdown`): the kernel ops that read logits (and
   how many they read, against the exp floor of the stub's logits), the model call around
   the forward, and the rest.

Every row lands in one CSV with the shared schema of :mod:`remask.bench.common`; for quality
rows ``unit`` names the statistic that ``median`` holds (``p20``/``p80`` carry the per-row NFE
spread, or the noise floor's mean -/+ one standard deviation for error statistics).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from remask.bench.common import Result, environment, load_averages, pin_numba, write_csv

__all__ = [
    "ORACLES",
    "LOGIT_OPS",
    "STUB_SHAPES",
    "StepBreakdown",
    "StubDenoiser",
    "settings",
    "quality",
    "overhead",
    "overhead_stub",
    "cold_and_hot_ms",
    "pareto_plot",
    "main",
]

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (model spec, prompt or None, gen_length)
ORACLES: dict[str, tuple[str, list[int] | None, int]] = {
    "markov": ("oracle:markov?vocab=3&length=8&seed=0&concentration=0.3", None, 8),
    "hmm": ("oracle:hmm?vocab=4&length=8&seed=0&states=3&stickiness=0.9", None, 8),
    "shuffle": ("oracle:listop?op=shuffle&n=4", [0, 1, 2, 3], 4),
}

# The two reference points every plot marks.
REFERENCES = {
    ("low_confidence", "1 tok/step"): "LLaDA default",
    ("threshold", "tau=0.9"): "Fast-dLLM",
}


def settings(G: int) -> dict[str, list[tuple[str, dict]]]:
    """(label, config) per registered sampler for generation length ``G``, read from each
    sampler class's ``bench_configs`` (they sample at temperature 1, because the truth is a
    distribution and greedy decoding yields a point mass)."""
    from remask.samplers import available, sampler_class

    return {name: list(sampler_class(name).bench_configs(G)) for name in available()}


def _with_exact_verifier(oracle):
    """The oracle with its exact left-to-right conditionals attached as APD's verifier (a
    ``verifier`` attribute, which APD uses when its config names none), or the oracle itself
    when it has no exact conditionals (then APD verifies its draft by itself)."""
    from remask.models import MarkovChainOracle
    from remask.samplers.apd import MarkovCausalVerifier, WithVerifier

    if isinstance(oracle, MarkovChainOracle):
        return WithVerifier(oracle, MarkovCausalVerifier(oracle))
    return oracle


@dataclass
class QualityRow:
    oracle: str
    sampler: str
    label: str
    config: dict
    nfe_mean: float
    nfe_p20: float
    nfe_p80: float
    tokens_per_step: float
    kl: float
    tv: float
    validity: float
    kl_floor: float
    kl_floor_std: float
    seconds: float


def quality(
    *,
    quick: bool = False,
    n_samples: int | None = None,
    seed: int = 0,
    oracles: list[str] | None = None,
    samplers: list[str] | None = None,
    log=print,
) -> tuple[list[QualityRow], list[str]]:
    """Run the quality-vs-NFE grid (optionally only some oracles/samplers); returns
    (rows, skipped-with-reason)."""
    from remask.analysis import sampler_error
    from remask.models import load_model
    from remask.samplers import available, build, generate, sampler_class

    n = n_samples or (2000 if quick else 20000)
    chosen = oracles or (["markov"] if quick else list(ORACLES))
    rows, skipped = [], []
    for oracle_name in chosen:
        spec, prompt, G = ORACLES[oracle_name]
        oracle = load_model(spec)
        verified = _with_exact_verifier(oracle)
        grid = settings(G)
        for name in samplers or available():
            if not grid.get(name):
                skipped.append(f"{oracle_name}/{name}: the sampler defines no bench_configs")
                continue
            if "verifier" in {f.name for f in dataclasses.fields(sampler_class(name))}:
                if verified is oracle:
                    skipped.append(
                        f"{oracle_name}/{name}: the oracle has no exact left-to-right "
                        "conditionals to verify with"
                    )
                    continue
                model = verified
            else:
                model = oracle
            for label, config in grid[name][: 1 if quick else None]:
                try:
                    sampler = build(name, **config)
                    start = time.perf_counter()
                    err = sampler_error(
                        model,
                        sampler,
                        gen_length=G,
                        n_samples=n,
                        seed=seed,
                        prompt=None if prompt is None else torch.tensor(prompt),
                    )
                    seconds = time.perf_counter() - start
                    # NFE per row from one extra batch (sampler_error reports distances only).
                    rows_prompt = [list(prompt or [])] * min(n, 2000)
                    nfe = generate(
                        model, rows_prompt, sampler, gen_length=G, seed=seed
                    ).nfe.double()
                except (TypeError, ValueError) as error:
                    skipped.append(f"{oracle_name}/{name} [{label}]: {error}")
                    continue
                row = QualityRow(
                    oracle_name,
                    name,
                    label,
                    config,
                    float(nfe.mean()),
                    float(nfe.quantile(0.2)),
                    float(nfe.quantile(0.8)),
                    G / float(nfe.mean()),
                    err.kl,
                    err.tv,
                    err.validity,
                    err.kl_floor,
                    err.kl_floor_std,
                    seconds,
                )
                rows.append(row)
                log(
                    f"  {oracle_name:<8} {name:<15} {label:<30} NFE {row.nfe_mean:6.2f}  "
                    f"KL {row.kl:7.4f} (floor {row.kl_floor:.4f})  TV {row.tv:.3f}  valid {row.validity:.3f}"
                )
    return rows, skipped


class _TimedDenoiser:
    """Wraps a denoiser and accumulates the wall time of its forward calls."""

    def __init__(self, inner):
        self.inner, self.mask_id, self.vocab_size = inner, inner.mask_id, inner.vocab_size
        self.seconds = 0.0

    def __call__(self, tokens, attention_mask=None):
        start = time.perf_counter()
        out = self.inner(tokens, attention_mask)
        self.seconds += time.perf_counter() - start
        return out


def _greedy_sampler(name: str, G: int):
    """The sampler's first benchmark setting at temperature 0 where it accepts that (else as
    listed); None for a sampler without settings."""
    from remask.samplers import build

    grid = settings(G).get(name)
    if not grid:
        return None
    config = dict(grid[0][1], temperature=0.0) if "temperature" in grid[0][1] else grid[0][1]
    try:
        return build(name, **config)
    except (TypeError, ValueError):
        return build(name, **grid[0][1])


def overhead(*, quick: bool = False, samplers: list[str] | None = None, log=print) -> list[dict]:
    """Per-step time outside the forward, as a fraction of forward time, per sampler and shape."""
    from remask.models import TinyTransformer
    from remask.samplers import available, generate

    shapes = [(1, 64, 1024)] if quick else [(1, 64, 1024), (4, 128, 8192)]
    out = []
    for B, G, V in shapes:
        model = TinyTransformer(vocab_size=V, width=64, depth=2, heads=4, max_len=G + 8, seed=0)
        for name in samplers or available():
            sampler = _greedy_sampler(name, G)
            if sampler is None:
                continue
            timed = _TimedDenoiser(model)
            try:
                generate(
                    timed, [[1, 2, 3, 4]] * B, sampler, gen_length=G, seed=0
                )  # warm-up (compiles)
            except (TypeError, ValueError) as error:
                log(f"  overhead {name}: skipped ({error})")
                continue
            # Total and forward time of the same runs; the overhead is their difference.
            totals, forwards = [], []
            for _ in range(2 if quick else 3):
                timed.seconds = 0.0
                start = time.perf_counter()
                result = generate(timed, [[1, 2, 3, 4]] * B, sampler, gen_length=G, seed=0)
                totals.append(time.perf_counter() - start)
                forwards.append(timed.seconds)
            fractions = sorted((t - f) / f for t, f in zip(totals, forwards))
            row = dict(
                sampler=name,
                B=B,
                G=G,
                V=V,
                steps=result.steps,
                total_s=statistics.median(totals),
                forward_s=statistics.median(forwards),
                overhead_fraction=statistics.median(fractions),
                p20=fractions[int(0.2 * (len(fractions) - 1))],
                p80=fractions[int(0.8 * (len(fractions) - 1) + 0.5)],
                repeats=len(totals),
            )
            out.append(row)
            log(
                f"  overhead {name:<15} B={B} L={G} V={V}: {row['overhead_fraction']:6.1%} of forward "
                f"({result.steps} steps, forward {row['forward_s'] / result.steps * 1e3:.2f} ms/step)"
            )
    return out


def one_knob_groups(rows: list[QualityRow]) -> list[list[QualityRow]]:
    """Groups (of 2 or more, sorted by NFE) of one sampler's settings that differ in exactly one
    numeric config key — the settings a line may join (a trade-off along one knob). A setting
    that leaves the key at its default joins too; settings that differ in a categorical value
    (an algorithm, a schedule, None vs a number) or in two keys are never joined."""
    keys = sorted({k for r in rows for k in r.config})
    groups = []
    for knob in keys:
        buckets: dict[str, list[QualityRow]] = {}
        for r in rows:
            rest = {k: repr(r.config.get(k, "<default>")) for k in keys if k != knob}
            buckets.setdefault(json.dumps(rest, sort_keys=True), []).append(r)
        for members in buckets.values():
            present = [r.config[knob] for r in members if knob in r.config]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
            if numeric and len({repr(r.config.get(knob, "<default>")) for r in members}) >= 2:
                groups.append(sorted(members, key=lambda r: r.nfe_mean))
    return groups


#: How the stub spends its forward time (see :class:`StubDenoiser`).
STUB_WAITS = ("busy", "sleep")


class StubDenoiser:
    """A denoiser of known cost: fixed random logits (the mask column at -inf), materialised
    contiguously for each call, which lasts ``cost_s`` seconds. ``mask_id`` is V - 1 and
    ``eos_id`` V - 2.

    Parameters
    ----------
    vocab_size : int
    max_len : int
        Longest canvas it is called with.
    cost_s : float
        Wall time of one call (longer only if materialising the logits takes longer).
    dtype : torch.dtype
        Logits dtype (bfloat16 for LLaDA-sized runs).
    wait : {"busy", "sleep"}
        How the call spends its time. ``"busy"`` (default) is a forward on this CPU: small
        matrix products on every torch thread until only the logits' write is left, then the
        write, so the logits are the last thing the call touches (a model's output layer runs
        last) and the cores never idle. ``"sleep"`` writes the logits first and then sleeps:
        the cores idle (clocked down, a vCPU descheduled) and the caches cool, as after a
        forward that blocks on another device.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        cost_s: float,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        wait: str = "busy",
    ):
        if wait not in STUB_WAITS:
            raise ValueError(f"wait must be one of {STUB_WAITS}, got {wait!r}")
        self.vocab_size, self.mask_id, self.cost_s = vocab_size, vocab_size - 1, cost_s
        # An EOS id, as every checkpoint declares (DAEDAL's length check reads it at every
        # step); its logits are as random as the others', so it is seldom the argmax.
        self.eos_id = vocab_size - 2
        self.wait = wait
        gen = torch.Generator().manual_seed(seed)
        bank = torch.randn(1, max_len, vocab_size, generator=gen) * 3  # (1, L, V)
        bank[..., self.mask_id] = float("-inf")  # models never propose the mask token
        self.bank = bank.to(dtype)
        # The busy forward's operands: 64 KB each, one product ~25 us on two threads (both
        # busy) and ~45 us on one, so the call ends within that of its cost.
        self._work = torch.randn(128, 128, generator=gen) / 128  # (128, 128)
        self._product = torch.empty(128, 128)
        self._write_s = 0.0  # the last call's write of the logits
        self.seconds = 0.0

    def __call__(self, tokens, attention_mask=None, **kwargs):
        start = time.perf_counter()
        B, L = tokens.shape
        if self.wait == "busy":
            self._compute_until(start + self.cost_s - self._write_s)
        write = time.perf_counter()
        # A fresh tensor at every call, as a model's forward returns: ``contiguous()`` would
        # hand out the bank itself at B = 1 (a slice of a (1, L', V) tensor is contiguous),
        # with no allocation to pay for and no write to see.
        out = (
            self.bank[:, :L]
            .expand(B, L, self.vocab_size)
            .clone(memory_format=torch.contiguous_format)
        )  # (B, L, V)
        self._write_s = time.perf_counter() - write
        if self.wait == "busy":  # a write faster than the last one leaves microseconds
            self._compute_until(start + self.cost_s)
        if self.wait == "sleep":
            spent = time.perf_counter() - start
            if spent < self.cost_s:
                time.sleep(self.cost_s - spent)
        self.seconds += time.perf_counter() - start
        return out

    def _compute_until(self, deadline: float) -> None:
        """The busy forward's arithmetic: matrix products on every torch thread until
        ``deadline`` (a ``time.perf_counter`` value)."""
        while time.perf_counter() < deadline:
            torch.mm(self._work, self._work, out=self._product)


#: Ops of :mod:`remask.kernels` that read rows of logits: the part of a step's work that
#: grows with V, timed apart by :class:`StepBreakdown`.
LOGIT_OPS = ("propose", "token_prob", "kl")


class StepBreakdown:
    """Where a run's time outside the forward goes, while active (a context manager): in the
    kernel ops that read logits (:data:`LOGIT_OPS`, with the logits they read), in the model
    call around the forward (``remask.models.protocol.call``: the mask column's fill, the
    checks, and the forward itself, which the caller subtracts), and by difference in the
    rest (selection, commit, schedules, keys, the driver).

    It wraps those functions in their modules (samplers call them as module attributes) and
    restores them on exit; a call made inside another timed call is not counted twice. The
    logits an op reads are counted on numpy (a microsecond outside the timed span).
    """

    def __init__(self):
        self.ops_s = 0.0  # wall time inside LOGIT_OPS
        self.call_s = 0.0  # wall time inside protocol.call (the forward included)
        self.logits = 0  # logit elements the LOGIT_OPS computed
        self._depth = 0
        self._saved: list = []

    def __enter__(self) -> StepBreakdown:
        from remask import kernels
        from remask.models import protocol

        self._saved = [(kernels, name, getattr(kernels, name)) for name in LOGIT_OPS]
        self._saved.append((protocol, "call", protocol.call))
        for module, name, fn in self._saved:
            setattr(module, name, self._timed(fn, name == "call"))
        return self

    def __exit__(self, *exc) -> None:
        for module, name, fn in self._saved:
            setattr(module, name, fn)
        self._saved = []

    def _timed(self, fn, is_call: bool):
        def timed(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self._depth -= 1
                if is_call:
                    self.call_s += spent
                else:
                    self.ops_s += spent
                    self.logits += _logits_read(fn.__name__, args, kwargs)

        return timed


def _logits_read(op: str, args, kwargs) -> int:
    """Logit elements a LOGIT_OPS call reads: its rows (all, or those of ``rows``) x V, twice
    for ``kl`` (p and q)."""
    logits = args[0] if args else kwargs.get("logits", kwargs.get("p_logits"))
    rows = kwargs.get("rows", args[2] if len(args) > 2 else None)  # (B, L) bool or None
    n = logits.shape[:-1].numel() if rows is None else int(np.count_nonzero(rows.cpu().numpy()))
    return n * logits.shape[-1] * (2 if op == "kl" else 1)


#: (B, prompt length, generated length, V, logits dtype, stub cost in s) of the stub runs.
STUB_SHAPES = [(4, 0, 128, 8192, torch.float32, 0.010), (1, 480, 32, 126464, torch.bfloat16, 0.050)]


def overhead_stub(
    *,
    quick: bool = False,
    samplers: list[str] | None = None,
    threads: int = 2,
    wait: str = "busy",
    log=print,
) -> list[dict]:
    """Per-step time outside a stub forward of known cost, per sampler and shape.

    Samplers whose forward needs many copies of the canvas (``wino`` without attention-bias
    support builds B (1 + W) leave-one-out rows: 4 GB of bf16 logits at V = 126464) are
    skipped at the LLaDA vocabulary.
    """
    from remask.samplers import available, generate

    torch.set_num_threads(threads)
    pin_numba(threads)
    out = []
    for B, P, G, V, dtype, cost in STUB_SHAPES[:1] if quick else STUB_SHAPES:
        model = StubDenoiser(V, P + G + 8, cost, dtype, wait=wait)
        prompt = [[1 + i % 7 for i in range(P)] or [1]] * B
        hot = model.bank[:, : P + G].expand(B, P + G, V).contiguous()  # (B, L, V), read hot
        floor_ms, exp_ns = logits_read_ms(hot), exp_floor_ns(hot)
        del hot
        fresh_ms, free_ms = fresh_logits_floors(model, torch.ones(B, P + G, dtype=torch.int64))
        cold_ms, hot_ms = small_call_floors(model, torch.ones(B, P + G, dtype=torch.int64))
        log(
            f"  overhead_stub floor B={B} L={P + G} V={V} {str(dtype).replace('torch.', '')} "
            f"({wait} forward): "
            f"one plain read of the logits {floor_ms:.2f} ms hot (read again and again), "
            f"{fresh_ms:.2f} ms fresh (right after a stub call); freeing them "
            f"{free_ms:.2f} ms; the exp floor {exp_ns or float('nan'):.3f} ns per logit; a "
            f"propose of {B * (P + G) * 16} logits {cold_ms:.3f} ms right after a stub call, "
            f"{hot_ms:.3f} ms in a loop (load {load_averages()})"
        )
        for name in samplers or available():
            sampler = _greedy_sampler(name, G)
            if sampler is None or (V > 100_000 and name == "wino"):
                continue
            try:
                generate(model, prompt, sampler, gen_length=G, seed=0)  # warm-up (compiles)
            except (TypeError, ValueError) as error:
                log(f"  overhead_stub {name}: skipped ({error})")
                continue
            totals, forwards, parts, steps = [], [], [], 0
            for _ in range(2 if quick else 3):
                model.seconds = 0.0
                with StepBreakdown() as part:
                    start = time.perf_counter()
                    result = generate(model, prompt, sampler, gen_length=G, seed=0)
                    totals.append(time.perf_counter() - start)
                forwards.append(model.seconds)
                parts.append(part)
                steps = result.steps
            fractions = sorted((t - f) / f for t, f in zip(totals, forwards, strict=True))
            per_step = statistics.median(
                (t - f) / max(steps, 1) for t, f in zip(totals, forwards, strict=True)
            )
            # The breakdown per step, from the run of median overhead (its parts add up).
            run = sorted(range(len(totals)), key=lambda i: totals[i] - forwards[i])[
                len(totals) // 2
            ]
            part, per = parts[run], 1e3 / max(steps, 1)
            ops_ms = part.ops_s * per
            call_ms = max(part.call_s - forwards[run], 0.0) * per
            row = dict(
                sampler=name,
                B=B,
                G=G,
                P=P,
                V=V,
                dtype=str(dtype).replace("torch.", ""),
                steps=steps,
                cost_ms=cost * 1e3,
                wait=wait,
                total_s=statistics.median(totals),
                forward_s=statistics.median(forwards),
                overhead_fraction=statistics.median(fractions),
                overhead_ms_per_step=per_step * 1e3,
                p20=fractions[0],
                p80=fractions[-1],
                repeats=len(totals),
                load=load_averages(),
                floor_ms=floor_ms,
                fresh_floor_ms=fresh_ms,
                small_call_cold_ms=cold_ms,
                small_call_hot_ms=hot_ms,
                free_ms=free_ms,
                exp_floor_ns=exp_ns,
                ops_ms_per_step=ops_ms,
                call_ms_per_step=call_ms,
                run_ms_per_step=(totals[run] - forwards[run]) * per,  # the parts' run
                rest_ms_per_step=(totals[run] - forwards[run]) * per - ops_ms - call_ms,
                logits_per_step=part.logits / max(steps, 1),
            )
            out.append(row)
            log(
                f"  overhead_stub {name:<15} B={B} L={P + G} V={V} {row['dtype']}: "
                f"{row['overhead_fraction']:6.1%} of a {cost * 1e3:.0f} ms forward, "
                f"{row['overhead_ms_per_step']:.2f} ms/step = "
                f"{row['overhead_ms_per_step'] / floor_ms:.1f} hot / "
                f"{row['overhead_ms_per_step'] / fresh_ms:.1f} fresh logits reads; "
                f"logit ops {ops_ms:.2f} ({row['logits_per_step'] / 1e6:.2f} M logits), "
                f"model call {call_ms:.2f}, rest {row['rest_ms_per_step']:.2f} ms/step "
                f"({steps} steps, load {row['load']})"
            )
    return out


def logits_read_ms(logits: torch.Tensor, repeats: int = 21) -> float:
    """Median ms of one plain read of ``logits`` (``amax`` over V): the physical floor of
    any per-step work that must look at every logit once, on the threads in force."""
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        logits.amax(-1)
        if i >= 2:  # two warm-up reads
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def exp_floor_ns(logits: torch.Tensor, repeats: int = 21) -> float | None:
    """Median ns per logit of the exp floor on ``logits`` (hot; :mod:`remask.bench.kernels`:
    one read plus one vectorized ``exp`` per logit and a row sum, the arithmetic any exact
    softmax statistic needs), on the threads in force; None where that kernel does not run
    (no Numba, fp16)."""
    from remask.bench.kernels import _exp_floor

    run = _exp_floor(logits)
    if run is None:
        return None
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        run()
        if i >= 2:  # the first call compiles
            times.append(time.perf_counter() - start)
    return statistics.median(times) / logits.numel() * 1e9


def small_call_floors(
    model: StubDenoiser, tokens: torch.Tensor, repeats: int = 21
) -> tuple[float, float]:
    """Median ms of one ``propose`` on tiny logits, (B, L, 16) float32 (a fixed cost: the
    validation, the dispatch, the kernel launch, nearly no arithmetic), timed right after a
    call of ``model`` and again and again in a loop: what any small op of a step pays for
    the state the forward left (caches, predictors, TLB swept; on a shared host, by the
    neighbours too) against the same call warm.

    Returns
    -------
    cold_ms, hot_ms : float
    """
    from remask import kernels

    small = torch.randn(*tokens.shape, 16)  # (B, L, 16)
    cold, hot = cold_and_hot_ms(model, tokens, lambda: kernels.propose(small), repeats)
    return statistics.median(cold), statistics.median(hot)


def cold_and_hot_ms(
    model: StubDenoiser, tokens: torch.Tensor, op, repeats: int = 21
) -> tuple[list[float], list[float]]:
    """ms of ``op()`` right after each call of ``model`` on ``tokens`` (cold; two warm-up
    calls first) and again and again in a loop (hot); the calls are not charged to the run
    (``model.seconds`` is left as it was)."""
    seconds, cold, hot = model.seconds, [], []
    for i in range(repeats + 2):
        model(tokens)  # (B, L, V), dropped
        start = time.perf_counter()
        op()
        if i >= 2:  # two warm-up calls
            cold.append((time.perf_counter() - start) * 1e3)
    for _ in range(repeats):
        start = time.perf_counter()
        op()
        hot.append((time.perf_counter() - start) * 1e3)
    model.seconds = seconds
    return cold, hot


def fresh_logits_floors(
    model: StubDenoiser, tokens: torch.Tensor, repeats: int = 21
) -> tuple[float, float]:
    """Median ms of one plain read (``amax`` over V) of the logits ``model`` has just returned,
    timed right after its call, and of dropping them after that read: the floors a sampler
    step really pays for its first look at its logits and for letting them go.

    :func:`logits_read_ms` reads one tensor again and again (hot caches, a busy core). A step
    reads logits right after a call that spent ``cost_s`` on other work (``wait="busy"``:
    other data through the caches) or idle (``"sleep"``: cold caches, an idle core clocked
    down or a second vCPU to wake, several times the hot read on a shared VM). This floor
    pays that on every read: each repeat makes one call of the same stub (same shape, same
    wait) and reads its output once.
    The drop is the step's too: the last reference to the logits goes in the step (or with
    the state that kept them), and glibc hands a block above its mmap threshold (32 MB at
    most) back to the system there, page by page.

    Parameters
    ----------
    model : StubDenoiser
        The stub of the run (its ``seconds`` counter is left as it was).
    tokens : (B, L) int64
        The canvas shape to call it with.
    repeats : int
        Timed calls (after two warm-up calls).

    Returns
    -------
    read_ms, free_ms : float
    """
    seconds, reads, frees = model.seconds, [], []
    for i in range(repeats + 2):
        logits = model(tokens)  # (B, L, V), a whole call of the stub
        start = time.perf_counter()
        logits.amax(-1)  # (B, L)
        read = time.perf_counter()
        del logits  # the last reference: the tensor is freed here
        if i >= 2:  # two warm-up calls
            reads.append((read - start) * 1e3)
            frees.append((time.perf_counter() - read) * 1e3)
    model.seconds = seconds
    return statistics.median(reads), statistics.median(frees)


def pareto_plot(rows: list[QualityRow], oracle: str, path: Path) -> Path | None:
    """Error (KL, nats) vs mean NFE for one oracle; the noise floor shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    picked = [r for r in rows if r.oracle == oracle]
    if not picked:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    names = sorted({r.sampler for r in picked})
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        mine = sorted((r for r in picked if r.sampler == name), key=lambda r: r.nfe_mean)
        colour = cmap(i % 20)
        # More samplers than colours: the marker shape changes with every pass over the map.
        shape = "os^D"[(i // 20) % 4]
        # One marker per setting; a line only through settings that differ in one knob (a
        # trade-off curve), never between qualitatively different settings.
        ax.plot(
            [r.nfe_mean for r in mine],
            [max(r.kl, 1e-4) for r in mine],
            shape,
            color=colour,
            label=name,
            alpha=0.85,
            markersize=5,
            linestyle="none",
        )
        for group in one_knob_groups(mine):
            ax.plot(
                [r.nfe_mean for r in group],
                [max(r.kl, 1e-4) for r in group],
                "-",
                color=colour,
                alpha=0.85,
            )
    offsets = iter([(10, 14), (10, -20)])  # the two reference points often coincide
    for r in picked:
        tag = REFERENCES.get((r.sampler, r.label))
        if tag:
            ax.scatter(
                [r.nfe_mean],
                [max(r.kl, 1e-4)],
                s=160,
                facecolors="none",
                edgecolors="black",
                zorder=5,
            )
            ax.annotate(
                f"{tag} ({r.sampler}, {r.label})",
                (r.nfe_mean, max(r.kl, 1e-4)),
                textcoords="offset points",
                xytext=next(offsets),
                fontsize=8,
                fontweight="bold",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "black", "lw": 0.5},
                arrowprops={"arrowstyle": "-", "lw": 0.7},
            )
    floor = picked[0].kl_floor + 2 * picked[0].kl_floor_std
    low = 0.5 * min(min(max(r.kl, 1e-4) for r in picked), floor)
    ax.axhspan(low, floor, color="grey", alpha=0.2, label="noise floor (exact samples, +2 sd)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=low)
    ax.set_xlabel("mean NFE (forward passes per sequence)")
    ax.set_ylabel("KL(p || q) to the exact joint [nats]")
    ax.set_title(f"Quality vs cost on the exact '{oracle}' oracle (lower-left is better)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rows_from_csv(path: str | Path) -> list[QualityRow]:
    """Rebuild the quality rows of a CSV written by :func:`main` (to re-plot without re-running)."""
    import csv

    stats: dict[tuple[str, str], dict[str, dict]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["name"] == "sampler_quality":
                stats.setdefault((r["config"], r["variant"]), {})[r["unit"]] = r
    rows = []
    for (config, variant), s in stats.items():
        c = json.loads(config)
        kl, nfe = s["kl_nats"], s["nfe"]
        lo, hi = float(kl["p20"]), float(kl["p80"])
        rows.append(
            QualityRow(
                c["oracle"],
                c["sampler"],
                variant.split(" [", 1)[1][:-1],
                c["config"],
                float(nfe["median"]),
                float(nfe["p20"]),
                float(nfe["p80"]),
                float(s["tokens_per_step"]["median"]),
                float(kl["median"]),
                float(s["tv"]["median"]),
                float(s["validity"]["median"]),
                (lo + hi) / 2,
                (hi - lo) / 2,
                math.nan,
            )
        )
    return rows


def _results(
    quality_rows: list[QualityRow], overhead_rows: list[dict], backend: str
) -> list[Result]:
    env = environment("cpu")
    out = []
    for r in quality_rows:
        config = json.dumps(
            {"oracle": r.oracle, "sampler": r.sampler, "config": r.config}, sort_keys=True
        )
        common = dict(
            name="sampler_quality",
            variant=f"{r.sampler} [{r.label}]",
            backend=backend,
            config=config,
            derived=None,
            derived_unit="",
            **env,
        )
        floor_lo, floor_hi = r.kl_floor - r.kl_floor_std, r.kl_floor + r.kl_floor_std
        out += [
            Result(
                repeats=0, median=r.nfe_mean, p20=r.nfe_p20, p80=r.nfe_p80, unit="nfe", **common
            ),
            Result(
                repeats=0,
                median=r.tokens_per_step,
                p20=math.nan,
                p80=math.nan,
                unit="tokens_per_step",
                **common,
            ),
            Result(repeats=0, median=r.kl, p20=floor_lo, p80=floor_hi, unit="kl_nats", **common),
            Result(repeats=0, median=r.tv, p20=math.nan, p80=math.nan, unit="tv", **common),
            Result(
                repeats=0, median=r.validity, p20=math.nan, p80=math.nan, unit="validity", **common
            ),
        ]
    for o in overhead_rows:
        if "cost_ms" in o:  # a stub-forward row
            config = json.dumps(
                {
                    k: o[k]
                    for k in (
                        "B",
                        "G",
                        "P",
                        "V",
                        "dtype",
                        "steps",
                        "cost_ms",
                        "wait",
                        "load",
                        "floor_ms",
                        "fresh_floor_ms",
                        "small_call_cold_ms",
                        "small_call_hot_ms",
                        "free_ms",
                        "exp_floor_ns",
                        "ops_ms_per_step",
                        "run_ms_per_step",
                        "call_ms_per_step",
                        "rest_ms_per_step",
                        "logits_per_step",
                    )
                    if k in o
                },
                sort_keys=True,
            )
            out.append(
                Result(
                    name="sampler_overhead_stub",
                    variant=o["sampler"],
                    backend=backend,
                    config=config,
                    repeats=o["repeats"],
                    median=o["overhead_fraction"],
                    p20=o["p20"],
                    p80=o["p80"],
                    unit="overhead/forward",
                    derived=o["overhead_ms_per_step"],
                    derived_unit="ms per step",
                    **env,
                )
            )
            continue
        config = json.dumps({k: o[k] for k in ("B", "G", "V", "steps")}, sort_keys=True)
        # median/p20/p80: the overhead as a fraction of forward time; derived: total ms per run.
        out.append(
            Result(
                name="sampler_overhead",
                variant=o["sampler"],
                backend=backend,
                config=config,
                repeats=o["repeats"],
                median=o["overhead_fraction"],
                p20=o["p20"],
                p80=o["p80"],
                unit="overhead/forward",
                derived=o["total_s"] * 1e3,
                derived_unit="ms per run",
                **env,
            )
        )
    return out


def main(
    quick: bool = False,
    out: str | Path | None = None,
    *,
    parts: tuple[str, ...] = ("quality", "overhead"),
    samplers: list[str] | None = None,
    oracles: list[str] | None = None,
    n_samples: int | None = None,
    threads: int = 2,
    wait: str = "busy",
    log=print,
) -> Path:
    """Run the benchmark parts, write the CSV (rewritten after each part, so a finished part is
    never lost) and, for a full quality run, the Pareto plots; returns the CSV path.
    ``threads``, ``wait``: torch and Numba threads of the stub-forward part, and how its
    stub spends its forward time (:class:`StubDenoiser`)."""
    from remask import kernels

    unknown = sorted(set(parts) - {"quality", "overhead", "overhead_stub"})
    if unknown:
        raise ValueError(
            f"unknown benchmark part(s) {unknown}; choose from "
            "['quality', 'overhead', 'overhead_stub']"
        )
    path = Path(out) if out else RESULTS / ("samplers_quick.csv" if quick else "samplers_cpu.csv")
    backend = kernels.resolve_backend(device="cpu")
    rows, over = [], []
    if "quality" in parts:
        log("quality vs NFE on exact oracles:")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: one thread is fastest (see remask.app.demo)
        try:
            rows, skipped = quality(
                quick=quick, oracles=oracles, samplers=samplers, n_samples=n_samples, log=log
            )
        finally:
            torch.set_num_threads(threads)
        for line in skipped:
            log(f"  skipped {line}")
        write_csv(_results(rows, over, backend), path)
        if not quick:
            for oracle in oracles or ORACLES:
                pareto_plot(rows, oracle, path.parent / f"pareto_{oracle}.png")
    if "overhead" in parts:
        log(f"overhead outside the forward pass ({torch.get_num_threads()} torch threads):")
        over = overhead(quick=quick, samplers=samplers, log=log)
        write_csv(_results(rows, over, backend), path)
    if "overhead_stub" in parts:
        log("overhead outside a stub forward of known cost:")
        over = over + overhead_stub(
            quick=quick, samplers=samplers, threads=threads, wait=wait, log=log
        )
        write_csv(_results(rows, over, backend), path)
    log(f"wrote {path}")
    return path


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--part",
        action="append",
        choices=["quality", "overhead", "overhead_stub"],
        help="run only this part (repeatable; default both)",
    )
    parser.add_argument(
        "--replot", metavar="CSV", help="only redraw the Pareto plots from a quality CSV"
    )
    parser.add_argument(
        "--sampler",
        action="append",
        help="run only this sampler (repeatable; default every registered sampler)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch and Numba threads of the overhead_stub part (default 2; 1 on a machine "
        "whose load exceeds its cores, where a second thread waits for a busy core)",
    )
    parser.add_argument(
        "--stub-wait",
        choices=STUB_WAITS,
        default="busy",
        help="how the overhead_stub part's stub spends its forward time: busy (default; "
        "matrix products on every thread, the logits written last, as a forward on this "
        "CPU) or sleep (logits first, then idle cores)",
    )
    args = parser.parse_args()
    if args.replot:
        for oracle in ORACLES:
            pareto_plot(
                rows_from_csv(args.replot),
                oracle,
                Path(args.replot).parent / f"pareto_{oracle}.png",
            )
    else:
        main(
            quick=args.quick,
            out=args.out,
            parts=tuple(args.part or ("quality", "overhead")),
            samplers=args.sampler,
            threads=args.threads,
            wait=args.stub_wait,
        )
