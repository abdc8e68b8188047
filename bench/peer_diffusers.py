"""Peer benchmark: diffusers' ``BlockRefinementScheduler`` against remask's ``llada2``.

``python -m remask.bench.peer_diffusers [--repeats N] [--out FILE]``

diffusers is an optional dependency, used here only: ``pip install diffusers==0.42.0``. remask
never imports it and no test needs it; without it this script says so and exits.

Both sides decode the same prompts with the LLaDA 2.0 rule (block 32, 32 steps per block,
threshold 0.95, greedy, ``minimal_topk`` 1, no editing, no EOS stop) on the same denoiser, in
one process, one thread (torch, Numba and OpenMP pinned), alternating run by run:

- **diffusers**: ``LLaDA2Pipeline`` (its block loop) driving ``BlockRefinementScheduler``
  (``editing_threshold=None``, ``sampling_method="greedy"``, ``eos_early_stop=False``).
- **remask**: ``remask.generate`` with ``build("llada2", threshold=0.95)``.

The denoiser (:class:`CausalRandomDenoiser`, V = 2,048) is causal and exact: the logits at a
position are a row of a fixed random bank chosen by an integer rolling hash of the row's real
tokens up to that position (padding excluded, positions counted from the first real token).
So the logits at a position do not depend on the canvas length, on later positions or on left
padding, bit for bit — which is what lets the two loops, whose canvases differ, give identical
tokens. The pipeline cuts blocks from the start of its sequence, remask from the first
generated position (the prompt, 16 tokens, is not a block multiple): the pipeline gets the
prompt left-padded to 32 tokens (attention mask 0 on the padding), so its blocks cover exactly
the generated positions, as remask's do. Its block loop ends a block when every row has
finished it, so at B > 1 it may take more steps than remask, whose rows advance block by
block independently; a row's tokens are the same either way. Its block loop also runs one
forward more per block: the step after the block's last mask is filled still calls the model
before the loop sees that nothing is left (with editing off that forward changes nothing).

Each run records its total wall time and the time spent inside the denoiser; the difference is
the time outside the forward (the sampler, its driver and their allocations), reported per run
and per step. CSV rows (schema of :mod:`remask.bench.common`), one per side and B: ``median``
/ ``p20`` / ``p80`` the seconds per run outside the forward, ``derived`` the median ms per
step; ``config`` holds the steps, ``identical`` (1 when every token of every row of every run
matched the other side's; the script exits non-zero when one does not), ``cpu_ms_per_step``
(thread CPU time outside the forward, which does not count time spent waiting for a core) and
the load average before, during and after.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

from remask.bench.common import environment, load_averages, pin_numba, sample_row, write_csv
from remask.kernels import resolve_backend

__all__ = ["CausalRandomDenoiser", "main"]

RESULTS = Path(__file__).resolve().parent / "results"

VOCAB = 2048
PROMPT = 16
GEN = 128
BLOCK = 32
THRESHOLD = 0.95


class CausalRandomDenoiser:
    """A causal denoiser whose logits are exact functions of each position's real prefix.

    ``logits[b, i] = bank[h(b, i)]`` where ``h`` is an int64 rolling hash of the real tokens of
    row b up to column i and of i's rank among them; the mask column is -inf. Integer arithmetic
    makes the result independent of the canvas length and of left padding, bit for bit.

    Parameters
    ----------
    vocab_size : int
        V; the mask is the last id (V - 1).
    bank_rows : int
        Distinct logit rows.
    seed : int

    Attributes
    ----------
    seconds : float
        Wall time spent in calls since the last reset.
    """

    def __init__(self, vocab_size: int = VOCAB, bank_rows: int = 4096, seed: int = 0):
        self.vocab_size, self.mask_id = vocab_size, vocab_size - 1
        gen = torch.Generator().manual_seed(seed)
        # Peaked rows on some hashes, flat on others: the threshold path and the top-k path
        # of the rule are both taken.
        scale = torch.empty(bank_rows, 1).uniform_(1.0, 12.0, generator=gen)  # (R, 1)
        bank = torch.randn(bank_rows, vocab_size, generator=gen) * scale  # (R, V)
        bank[:, self.mask_id] = float("-inf")
        self.bank = bank
        self.rows = bank_rows
        # Odd 62-bit multipliers per token rank (wrap-around int64 arithmetic is exact).
        self.mult = torch.randint(1, 2**62, (4096,), generator=gen) | 1  # (4096,)
        self.seconds = self.cpu_seconds = 0.0
        self.calls = 0

    def logits(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L, V) float32 logits of the (B, L) int64 canvas."""
        start, cpu_start = time.perf_counter(), time.thread_time()
        real = (
            torch.ones_like(tokens, dtype=torch.bool)
            if attention_mask is None
            else attention_mask.bool()
        )  # (B, L)
        rank = (real.cumsum(-1) - 1).clamp(min=0)  # (B, L) position among real tokens
        term = (tokens + 1) * self.mult[rank] * real  # (B, L) int64, 0 on padding
        h = term.cumsum(-1) + rank * 0x1E3779B97F4A7C15  # (B, L)
        row = torch.remainder(h >> 7, self.rows)  # (B, L)
        out = self.bank[row]  # (B, L, V)
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.thread_time() - cpu_start
        self.calls += 1
        return out


class _RemaskSide:
    """The remask Denoiser protocol over the shared core."""

    def __init__(self, core: CausalRandomDenoiser):
        self.core, self.mask_id, self.vocab_size = core, core.mask_id, core.vocab_size

    def __call__(self, tokens, attention_mask=None):
        return self.core.logits(tokens, attention_mask)


def _diffusers_side(core: CausalRandomDenoiser):
    """The pipeline's model: ``model(x, attention_mask=, position_ids=).logits``."""

    class _Out:
        def __init__(self, logits):
            self.logits = logits

    class _Model(torch.nn.Module):
        device = torch.device("cpu")  # what the pipeline asks its modules for
        dtype = torch.float32

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            return _Out(core.logits(input_ids, attention_mask))

    return _Model()


def _pin_threads(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    pin_numba(threads)


def run_pair(B: int, *, repeats: int, seed: int = 0, log=print) -> list[dict]:
    """Time diffusers and remask alternately on B prompts; one dict per side."""
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    import remask

    core = CausalRandomDenoiser(seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    prompts = torch.randint(0, core.mask_id, (B, PROMPT), generator=gen)  # (B, P)
    pad = (-PROMPT) % BLOCK
    padded = torch.cat([torch.zeros(B, pad, dtype=torch.long), prompts], 1)  # (B, P + pad)
    attn = torch.cat([torch.zeros(B, pad, dtype=torch.long), torch.ones_like(prompts)], 1)
    pipe = LLaDA2Pipeline(
        model=_diffusers_side(core),
        scheduler=BlockRefinementScheduler(block_length=BLOCK, num_inference_steps=32),
    )
    pipe.set_progress_bar_config(disable=True)
    sampler = remask.samplers.build("llada2", block_length=BLOCK, steps=32, threshold=THRESHOLD)
    model = _RemaskSide(core)

    def run_diffusers():
        out = pipe(
            input_ids=padded,
            attention_mask=attn,
            gen_length=GEN,
            block_length=BLOCK,
            num_inference_steps=32,
            temperature=0.0,
            sampling_method="greedy",
            threshold=THRESHOLD,
            editing_threshold=None,
            minimal_topk=1,
            eos_early_stop=False,
            mask_token_id=core.mask_id,
            output_type="seq",
        )
        return out.sequences  # (B, GEN)

    def run_remask():
        out = remask.generate(model, prompts, sampler, gen_length=GEN, seed=0)
        return out.tokens[:, PROMPT:]  # (B, GEN)

    sides = {"diffusers": run_diffusers, "remask": run_remask}
    times = {name: ([], [], []) for name in sides}
    tokens, steps = {}, {}
    for fn in sides.values():  # warm-up (Numba compiles, allocator settles)
        fn()
    identical = True
    for _ in range(repeats):
        for name, fn in sides.items():
            core.seconds, core.cpu_seconds, core.calls = 0.0, 0.0, 0
            start, cpu_start = time.perf_counter(), time.thread_time()
            tokens[name] = fn()
            total = time.perf_counter() - start
            cpu_outside = time.thread_time() - cpu_start - core.cpu_seconds
            times[name][2].append(cpu_outside)
            steps[name] = core.calls  # one forward per step on both sides
            times[name][0].append(total)
            times[name][1].append(core.seconds)
        identical &= bool(torch.equal(tokens["diffusers"], tokens["remask"]))
        identical &= not bool((tokens["remask"] == core.mask_id).any())
    rows = []
    for name in sides:
        totals, forwards, cpu = times[name]
        outside = [t - f for t, f in zip(totals, forwards, strict=True)]
        rows.append(
            dict(
                side=name,
                B=B,
                steps=steps[name],
                total=totals,
                forward=forwards,
                outside=outside,
                cpu_outside=cpu,
                identical=identical,
                load=load_averages(),
            )
        )
        log(
            f"  {name:<9} B={B}: {steps[name]} steps, outside the forward "
            f"{statistics.median(outside):.3f} s/run "
            f"({statistics.median(outside) / steps[name] * 1e3:.3f} ms/step; thread CPU time "
            f"{statistics.median(cpu) / steps[name] * 1e3:.3f} ms/step), forward "
            f"{statistics.median(forwards):.3f} s; identical tokens: {identical}"
        )
    return rows


def main(
    *,
    batch_sizes: tuple[int, ...] = (1, 8),
    repeats: int = 7,
    out: str | Path | None = None,
    threads: int = 1,
    log=print,
) -> Path:
    """Run both sides at each batch size and write the CSV (one row per side and B)."""
    try:
        import diffusers
    except ImportError:
        raise SystemExit(
            "diffusers is not installed; this peer benchmark needs it: pip install diffusers==0.42.0"
        ) from None
    _pin_threads(threads)
    load_before = load_averages()
    log(
        f"diffusers {diffusers.__version__} vs remask llada2; {threads} thread(s); load {load_before}"
    )
    rows = []
    for B in batch_sizes:
        rows += run_pair(B, repeats=repeats, log=log)
    load_after = load_averages()
    env = environment("cpu")
    import json

    versions = json.loads(env["versions"])
    versions["diffusers"] = diffusers.__version__
    env = dict(env, versions=json.dumps(versions, sort_keys=True))
    results = []
    for r in rows:
        steps = r["steps"]
        config = dict(
            B=r["B"],
            V=VOCAB,
            prompt=PROMPT,
            gen=GEN,
            block=BLOCK,
            threshold=THRESHOLD,
            steps=steps,
            identical=int(r["identical"]),
            # Thread CPU time outside the forward: less sensitive than wall time to a machine
            # whose load exceeds its cores (time spent waiting for a core is not counted).
            cpu_ms_per_step=round(statistics.median(r["cpu_outside"]) / steps * 1e3, 4),
            forward_s=round(statistics.median(r["forward"]), 4),
            load_before=load_before,
            load=r["load"],
            load_after=load_after,
            threads=threads,
        )
        per_step = [o / steps * 1e3 for o in r["outside"]]
        results.append(
            sample_row(
                "peer_outside_forward",
                r["side"],
                r["outside"],
                "s per run",
                config=config,
                env=env,
                backend="torch" if r["side"] == "diffusers" else resolve_backend(device="cpu"),
                derived=statistics.median(per_step),
                derived_unit="ms per step",
            )
        )
    path = write_csv(results, out or RESULTS / "peer_diffusers_cpu.csv")
    by = {(r["side"], r["B"]): r for r in rows}
    for B in batch_sizes:
        d, m = by[("diffusers", B)], by[("remask", B)]
        ratio = statistics.median(d["outside"]) / statistics.median(m["outside"])
        log(f"  B={B}: diffusers / remask time outside the forward = {ratio:.2f}x")
    log(f"load {load_before} -> {load_after}; wrote {path}")
    if not all(r["identical"] for r in rows):
        raise SystemExit("token mismatch between diffusers and remask")
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    main(repeats=args.repeats, threads=args.threads, out=args.out)
    sys.exit(0)
