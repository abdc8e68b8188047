"""The floor of a sampler step on this CPU: ``low_confidence`` beside the same decode compiled.

``python -m remask.bench.step_floor [--threads 2] [--repeats 5] [--large] [--out FILE]``

The per-sampler overhead of :mod:`remask.bench.samplers` (``--part overhead_stub``) is the time
a decode spends outside a stub forward of known cost (10 ms at (4, 128, 8192) float32, the
logits written last). A sampler step there is a few dozen torch ops around one
:func:`remask.kernels.propose`; this benchmark measures what is left of a step when it has
no torch op at all, so that a sampler's overhead can be read against the least any step can
cost on the machine:

- **sampler**: ``remask.generate`` with ``low_confidence`` at temperature 0, one token per
  step, one block (every masked position of every row is proposed at every step: the
  whole-canvas case), on :class:`remask.bench.samplers.StubDenoiser`.
- **compiled step**: the same decode written as the least work a step can do — the stub's
  call, the protocol's mask-column fill, the Numba ``propose`` kernel called directly on
  numpy views of the logits (no validation, no wrapper, no torch op) and one compiled call
  that picks each row's most confident masked position and commits it. Its tokens must equal
  the sampler's (the script exits non-zero otherwise), so both do the same work.
- **kernel alone**: the kernel's share of the compiled step (timed inside it).
- **small torch op**: one ``torch.empty((B, L))`` right after a stub call, and again and
  again in a loop: what any op of a step pays for the state the forward left.

The two decodes alternate run by run (``--repeats`` each), torch, Numba and OpenMP pinned to
``--threads``; every step is timed (the sampler's through the driver's callbacks), and the
first step of each run, which also holds the run's start, is left out. CSV rows (schema of
:mod:`remask.bench.common`): ``median``/``p20``/``p80`` ms outside the forward over every
timed step of every run (``repeats`` counts them; ms per op for the small op), ``derived``
the median as a fraction of the stub's forward; ``config`` holds the shape, the stub's cost,
the steps per run, each run's mean (``run_means_ms``: what :mod:`remask.bench.samplers`
reports, stalls included) and the load average before and after.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from remask.bench.common import environment, load_averages, pin_numba, sample_row, write_csv
from remask.bench.samplers import STUB_SHAPES, StubDenoiser, _greedy_sampler, cold_and_hot_ms

__all__ = ["compiled_low_confidence", "main", "small_op_ms"]

RESULTS = Path(__file__).resolve().parent / "results"


@functools.cache
def _select_commit():
    """The compiled select-and-commit of :func:`compiled_low_confidence` (built once, on first
    use: Numba is optional for the package, not for this benchmark)."""
    from numba import njit

    @njit(cache=False)
    def select_commit(canvas, prob, tokens, masked):  # pragma: no cover - compiled
        """Commit each row's most confident masked position (ties to the lower index, as
        ``remask.kernels.topk_mask``); canvas (B, L) int64 and masked (B, L) bool in place."""
        for b in range(canvas.shape[0]):
            best, best_prob = -1, -1.0
            for i in range(canvas.shape[1]):
                if masked[b, i] and prob[b, i] > best_prob:
                    best, best_prob = i, prob[b, i]
            if best >= 0:
                canvas[b, best] = tokens[b, best]
                masked[b, best] = False

    return select_commit


def compiled_low_confidence(
    model: StubDenoiser, prompt_length: int, gen_length: int, batch: int
) -> tuple[torch.Tensor, list[float], list[float]]:
    """Greedy low-confidence decoding, one token per step, each step the least work it can be.

    Parameters
    ----------
    model : StubDenoiser
    prompt_length, gen_length, batch : int
        The canvas: ``batch`` rows of ``prompt_length`` prompt tokens (as
        :func:`remask.bench.samplers.overhead_stub` builds them; one token when 0) and
        ``gen_length`` masks.

    Returns
    -------
    tokens : (B, L) int64
        The decoded canvas (to compare with ``remask.generate``).
    outside_s : list of float
        Each step's wall seconds outside the stub's call.
    kernel_s : list of float
        Each step's seconds in the ``propose`` kernel.
    """
    from remask.kernels._numba import propose as numba_propose

    if model.bank.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"the compiled decode reads float32 or bfloat16, got {model.bank.dtype}")
    select_commit = _select_commit()
    prompt = [1 + i % 7 for i in range(prompt_length)] or [1]
    canvas = torch.full((batch, len(prompt) + gen_length), model.mask_id, dtype=torch.int64)
    canvas[:, : len(prompt)] = torch.tensor(prompt)
    tokens, masked = canvas.numpy(), canvas.numpy() == model.mask_id  # (B, L) views / copy
    n_rows, vocab = tokens.size, model.vocab_size
    keys = np.zeros(n_rows, dtype=np.uint64)  # temperature 0: never read
    outside_s, kernel_s = [], []
    while masked.any():
        start, forward = time.perf_counter(), model.seconds
        logits = model(canvas)  # (B, L, V)
        logits[..., model.mask_id] = float("-inf")  # the protocol's mask-column fill
        if logits.dtype == torch.bfloat16:  # the raw bits, as the kernel's wrapper passes them
            src = logits.view(torch.int16).numpy().view(np.uint16)
            kind = numba_propose._KIND_BF16
        else:
            src, kind = logits.numpy().view(np.uint32), numba_propose._KIND_F32
        rows = masked.reshape(-1)  # (N,)
        out_tok = np.empty(n_rows, dtype=np.int64)
        stats = np.empty((3, n_rows), dtype=np.float32)
        status = np.empty(n_rows, dtype=np.int32)
        small = int(np.count_nonzero(rows)) * vocab < numba_propose.SERIAL_ELEMENTS
        kernel = numba_propose._propose_kernel_serial if small else numba_propose._propose_kernel
        kernel_start = time.perf_counter()
        kernel(
            src.reshape(n_rows, vocab),
            kind,
            numba_propose._F16_BITS,
            rows,
            True,
            0.0,
            keys,
            1.0,
            0,
            0,
            False,
            False,
            out_tok,
            stats[0],
            stats[1],
            stats[2],
            status,
        )
        kernel_s.append(time.perf_counter() - kernel_start)
        if status.any():
            raise ValueError("the stub returned unusable logits (NaN, +inf or no finite logit)")
        select_commit(tokens, stats[0].reshape(masked.shape), out_tok.reshape(masked.shape), masked)
        del logits  # the step lets its logits go, as a sampler's does
        outside_s.append(time.perf_counter() - start - (model.seconds - forward))
    return canvas, outside_s, kernel_s


def sampler_steps(model: StubDenoiser, prompt: list, sampler, gen_length: int):
    """``remask.generate`` with each step's wall seconds outside the stub's call, from the
    driver's callbacks (the first step also holds the run's start: it is left out).

    Returns
    -------
    tokens : (B, L) int64
    outside_s : list of float
    """
    from remask.samplers import generate

    marks = []  # (time, stub seconds) after each step

    def mark(state, info) -> None:
        marks.append((time.perf_counter(), model.seconds))

    result = generate(model, prompt, sampler, gen_length=gen_length, seed=0, callbacks=[mark])
    outside = [(t1 - t0) - (f1 - f0) for (t0, f0), (t1, f1) in zip(marks, marks[1:])]
    return result.tokens, outside


def small_op_ms(model: StubDenoiser, tokens: torch.Tensor, repeats: int = 21) -> tuple[list, list]:
    """ms of one ``torch.empty`` of the canvas's shape right after each call of ``model``
    (cold) and again and again in a loop (hot); the calls are not charged to the run."""
    return cold_and_hot_ms(model, tokens, lambda: torch.empty(tokens.shape), repeats)


def main(
    *,
    threads: int = 2,
    repeats: int = 5,
    large: bool = False,
    out: str | Path | None = None,
    log=print,
) -> Path:
    """Run both decodes alternating at each shape (the first of
    :data:`remask.bench.samplers.STUB_SHAPES`, both with ``large``), write the CSV, return
    its path. Raises ``RuntimeError`` when the compiled decode's tokens differ from the
    sampler's."""
    from remask import kernels
    from remask.samplers import generate

    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    backend = kernels.resolve_backend(device="cpu")
    if backend != "numba":
        raise RuntimeError(f"the compiled step needs the numba backend (this machine: {backend})")
    torch.set_num_threads(threads)
    pin_numba(threads)
    env, results = environment("cpu"), []
    path = Path(out) if out else RESULTS / "step_floor_cpu.csv"
    for B, P, G, V, dtype, cost in STUB_SHAPES if large else STUB_SHAPES[:1]:
        model = StubDenoiser(V, P + G + 8, cost, dtype)
        prompt = [[1 + i % 7 for i in range(P)] or [1]] * B
        sampler = _greedy_sampler("low_confidence", G)
        load_before = load_averages()
        expected = generate(model, prompt, sampler, gen_length=G, seed=0).tokens  # warm-up
        compiled_low_confidence(model, P, G, B)  # warm-up (compiles)
        # Every step of every run, pooled: a step's time, not a run's mean, so that stalls of
        # 1-5 ms (measured in a third of the compiled decode's steps, after the parallel
        # kernel; see the README) move no median. The runs' means are in the config.
        steps = {"sampler": [], "compiled step": [], "kernel alone": []}
        means = {name: [] for name in steps}
        for _ in range(repeats):
            tokens, outside = sampler_steps(model, prompt, sampler, G)
            decoded, floor_s, kernel_s = compiled_low_confidence(model, P, G, B)
            if not torch.equal(decoded, tokens) or not torch.equal(decoded, expected):
                raise RuntimeError(
                    "the compiled decode's tokens differ from low_confidence's: the floor "
                    "would not be the same work"
                )
            for name, times in (
                ("sampler", outside),
                ("compiled step", floor_s[1:]),  # as the sampler's: the first step left out
                ("kernel alone", kernel_s[1:]),
            ):
                steps[name] += [t * 1e3 for t in times]
                means[name].append(round(statistics.fmean(times) * 1e3, 4))
        cold, hot = small_op_ms(model, torch.ones(B, P + G + (P == 0), dtype=torch.int64))
        config = dict(
            B=B,
            P=P,
            G=G,
            V=V,
            dtype=str(dtype).replace("torch.", ""),
            cost_ms=cost * 1e3,
            steps=len(kernel_s),
            repeats=repeats,
            threads=threads,
            load_before=load_before,
            load_after=load_averages(),
        )
        for variant, ms in steps.items():
            results.append(
                sample_row(
                    "step_floor",
                    variant,
                    ms,
                    "ms per step",
                    config={**config, "run_means_ms": means[variant]},
                    env=env,
                    backend=backend,
                    derived=statistics.median(ms) / (cost * 1e3),
                    derived_unit="of the forward",
                )
            )
            log(
                f"  B={B} L={P + G} V={V} {config['dtype']} ({cost * 1e3:.0f} ms forward) "
                f"{variant}: {statistics.median(ms):.3f} ms per step, median of "
                f"{len(ms)} steps ({statistics.median(ms) / (cost * 1e3):.1%} of the forward; "
                "the runs' means " + " / ".join(f"{m:.3f}" for m in means[variant]) + ")"
            )
        for variant, ms in (("small torch op, cold", cold), ("small torch op, hot", hot)):
            results.append(
                sample_row(
                    "step_floor", variant, ms, "ms per op", config=config, env=env, backend=backend
                )
            )
            log(f"  {variant}: {statistics.median(ms) * 1e3:.1f} us")
        log(f"  load average {config['load_before']} -> {config['load_after']}")
        write_csv(results, path)
    log(f"wrote {path}")
    return path


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=2, help="torch and Numba threads (default 2)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each decode (default 5)")
    parser.add_argument(
        "--large", action="store_true", help="also LLaDA's vocabulary, (1, 512, 126464) bf16"
    )
    parser.add_argument(
        "--out", default=None, help="CSV path (default bench/results/step_floor_cpu.csv)"
    )
    args = parser.parse_args()
    try:
        main(threads=args.threads, repeats=args.repeats, large=args.large, out=args.out)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
