"""Kernel benchmarks: ``propose`` per backend against LLaDA's step and plain torch.

Run ``python -m remask.bench.kernels [--quick] [--out FILE]`` (or ``remask bench kernels``).
Shape: one LLaDA step, (B, L, V) = (1, 256, 126464), float32 and bfloat16 logits. Rows:

* ``floor``            one plain read of the logits (``amax`` over V) in torch; for bf16 this
                       is compute-bound (torch widens each element), so also:
* ``read``             the same read as a Numba integer max over the raw bits (bf16 as 16-bit
                       integers), two threads: the fastest plain read measured here, the
                       stricter floor (CPU with Numba only);
* ``exp_floor``        the arithmetic floor of any exact softmax statistic: one read plus one
                       ``exp`` per logit and a sum (Numba, the kernel's own vectorized ``exp``,
                       the row max given), two threads: ``propose`` at T = 0 cannot beat it
                       (the probability of the argmax and the entropy need Σ exp over the
                       row), so ``exp_floor / read`` bounds ``propose_t0 / read`` from below;
* ``llada_t0``         LLaDA's T = 0 step: argmax + softmax in the logits dtype + gather;
* ``llada_gumbel_t1``  LLaDA's T = 1 step: float64 cast, float64 uniforms,
                       ``exp(logits) / (-log u) ** T``, argmax, softmax + gather
                       (``add_gumbel_noise`` of ML-GSAI/LLaDA generate.py);
* ``torch_fp32``       the best plain-torch float32 code for the same four outputs as
                       ``propose`` (token, prob, margin, entropy) at T = 0;
* ``propose_t0`` / ``propose_t1``  ``remask.kernels.propose`` on each available backend;
* ``propose_t0_tail``  ``propose_t0`` on the last half of the positions only (``rows``, as a
  block sampler's masked rows: contiguous): half the work, so ~0.5x ``propose_t0`` when the
  threads share the computed rows out evenly (1x when they all land on one thread);
* ``propose_top_p`` / ``propose_top_k`` / ``propose_min_p``  ``propose`` at T = 1 with
  ``top_p=0.95`` / ``top_k=50`` / ``min_p=0.05`` (``stats="sampled"``, Dream's call), against
  ``torch_top_p`` / ``torch_top_k``:
  the plain-torch code a user would write (sort + cumsum + mask + multinomial, or topk +
  multinomial, and the probability of the draw);
* ``propose_top_p_lm`` the ``propose_top_p`` call on LM-like rows (``lm_like``: the same
  logits plus 16 large logits per row, a nucleus of tens of tokens, as real LM rows have;
  the randn rows' 0.95 nucleus holds ~9% of the vocabulary). The numba selection's cost
  depends on the distribution (a block-max bound applies to peaked rows), hence both rows;
* ``keys``             a step's key derivation at this (B, L), as the samplers do it:
                       the rows' step keys (``fold`` by the step number) and one key per
                       position (``position_keys``), in torch; compare with ``propose_t1``;
* ``token_prob`` against ``torch_token_prob`` (float64 log-softmax + gather, what WINO and
  Gibbs did), and ``kl`` against ``torch_kl`` (float64 log-softmaxes, what KLASS did), the
  second operand being the logits plus small noise.

With ``--large`` the fast backend's ops (and the floor) are also timed at (8, 1024, 126464)
in bfloat16 (2 GB of logits; float32 and the plain-torch baselines, which need several
(B, L, V) float32/float64 temporaries, do not fit next to it in 24 GB and are not run).

Threads are pinned (torch, Numba) to ``--threads`` (default 2) and ``uptime``'s load average
is recorded in each row's config: the machine may be shared.

Results go to ``bench/results/kernels_cpu.csv`` (or ``kernels_cuda.csv`` on a GPU); a ratio
table against the targets of the kernel issue is printed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import remask.kernels as K
from remask.bench.common import (
    Result,
    environment,
    load_averages,
    pin_numba,
    time_cpu,
    time_gpu,
    write_csv,
)

__all__ = [
    "llada_greedy_step",
    "llada_gumbel_step",
    "main",
    "torch_fp32_step",
    "torch_kl",
    "torch_token_prob",
    "torch_top_k",
    "torch_top_p",
]

SHAPE = (1, 256, 126464)
LARGE_SHAPE = (8, 1024, 126464)
RESULTS = Path(__file__).resolve().parent / "results"


def llada_greedy_step(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA at T = 0: argmax, softmax in the logits dtype, gather."""
    x0 = logits.argmax(-1)  # (B, L)
    p = F.softmax(logits, dim=-1)  # (B, L, V) in the logits dtype
    return x0, p.gather(-1, x0.unsqueeze(-1)).squeeze(-1)


def llada_gumbel_step(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA at T > 0: float64 Gumbel-max in the exp(l) / (-log u)^T form, then confidence."""
    logits64 = logits.to(torch.float64)  # (B, L, V) float64
    noise = torch.rand(logits64.shape, dtype=torch.float64, generator=generator)
    gumbel_noise = (-torch.log(noise)) ** temperature
    x0 = (logits64.exp() / gumbel_noise).argmax(-1)  # (B, L)
    p = F.softmax(logits, dim=-1)  # (B, L, V)
    return x0, p.gather(-1, x0.unsqueeze(-1)).squeeze(-1)


def torch_fp32_step(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Plain torch float32: token, prob, margin, entropy with as few full passes as possible."""
    x = logits.float()  # (B, L, V)
    top = x.topk(2, dim=-1)  # (B, L, 2)
    lse = torch.logsumexp(x, dim=-1)  # (B, L)
    p = torch.exp(x - lse.unsqueeze(-1))  # (B, L, V)
    entropy = lse - (p * x.clamp_min(torch.finfo(torch.float32).min)).sum(-1)
    top_p = torch.exp(top.values - lse.unsqueeze(-1))  # (B, L, 2)
    return top.indices[..., 0], top_p[..., 0], top_p[..., 0] - top_p[..., 1], entropy


def torch_top_p(
    logits: torch.Tensor, top_p: float = 0.95, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch nucleus sampling at T = 1 (Dream's convention): sort, cumsum, mask, draw."""
    x = logits.float()  # (B, L, V)
    ordered, order = x.sort(dim=-1, descending=True)  # (B, L, V)
    probs = ordered.softmax(-1)  # (B, L, V)
    remove = (probs.cumsum(-1) - probs) > top_p  # (B, L, V) mass before the token > p
    probs = probs.masked_fill(remove, 0.0)
    flat = probs.reshape(-1, probs.shape[-1])  # (N, V)
    pick = torch.multinomial(flat, 1, generator=generator)  # (N, 1)
    q = flat.gather(-1, pick) / flat.sum(-1, keepdim=True)  # (N, 1)
    tokens = order.reshape(-1, order.shape[-1]).gather(-1, pick)  # (N, 1)
    return tokens.reshape(x.shape[:-1]), q.reshape(x.shape[:-1])


def torch_top_k(
    logits: torch.Tensor, top_k: int = 50, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch top-k sampling at T = 1: topk, softmax over the k, draw."""
    values, index = logits.float().topk(top_k, dim=-1)  # (B, L, k)
    probs = values.softmax(-1).reshape(-1, top_k)  # (N, k)
    pick = torch.multinomial(probs, 1, generator=generator)  # (N, 1)
    tokens = index.reshape(-1, top_k).gather(-1, pick)
    return tokens.reshape(logits.shape[:-1]), probs.gather(-1, pick).reshape(logits.shape[:-1])


def torch_token_prob(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """What WINO/Gibbs computed before kernels.token_prob: float64 log-softmax + gather."""
    return logits.double().log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).exp()


def torch_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """What KLASS computed before kernels.kl: float64 log-softmaxes, masked sum."""
    log_p = p_logits.double().log_softmax(-1)  # (B, L, V)
    log_q = q_logits.double().log_softmax(-1)  # (B, L, V)
    return torch.where(log_p == float("-inf"), 0.0, log_p.exp() * (log_p - log_q)).sum(-1)


def lm_like(logits: torch.Tensor, n_hot: int = 16, seed: int = 1) -> torch.Tensor:
    """``logits`` plus ``n_hot`` large logits per row (1 to 5 above the row's max, at random
    positions): ~92% of the mass on the hot tokens, so a top-p = 0.95 nucleus of tens of
    tokens. Same shape, dtype and device."""
    gen = torch.Generator().manual_seed(seed)
    x = logits.float().cpu().reshape(-1, logits.shape[-1]).clone()  # (N, V)
    hot = torch.randint(0, x.shape[-1], (x.shape[0], n_hot), generator=gen)  # (N, n_hot)
    lift = 1.0 + 4.0 * torch.rand(x.shape[0], n_hot, generator=gen)  # (N, n_hot)
    x.scatter_(1, hot, x.amax(-1, keepdim=True) + lift)
    return x.reshape(logits.shape).to(logits.dtype).to(logits.device)


def _read_floor(logits: torch.Tensor) -> Callable[[], object] | None:
    """A Numba kernel that reads every logit once (integer max of the raw bits per row), or
    None without Numba / off the CPU."""
    if logits.device.type != "cpu":
        return None
    try:
        import numpy as np
        from numba import njit, prange
    except ImportError:
        return None

    @njit(parallel=True, cache=False)
    def read_rows(src, out):  # pragma: no cover - compiled
        for r in prange(src.shape[0]):
            row = src[r]
            acc = row[0]
            for k in range(row.shape[0]):
                acc = max(acc, row[k])
            out[r] = acc

    bits = _row_bits(logits)  # (R, V)
    out = np.empty(bits.shape[0], dtype=np.int64)
    return lambda: (read_rows(bits, out), out)[1]  # (R,) max of the raw bits per row


def _row_bits(logits: torch.Tensor):
    """(R, V) numpy view of the logits' raw bits as signed integers (int16 for 2-byte dtypes,
    int32 for float32): what the floors read."""
    flat = logits.reshape(-1, logits.shape[-1])
    return flat.view(torch.int16 if flat.element_size() == 2 else torch.int32).numpy()


def _exp_floor(logits: torch.Tensor) -> Callable[[], object] | None:
    """A Numba kernel that reads every logit once and sums ``exp(x - m)`` with the row max
    ``m`` given (computed outside the timing), using the propose kernel's vectorized ``exp``
    and widening; None without Numba / off the CPU or for fp16 (widened through a table)."""
    if logits.device.type != "cpu" or logits.dtype not in (torch.float32, torch.bfloat16):
        return None
    try:
        import numpy as np
        from numba import njit, prange

        from remask.kernels._numba.propose import _D_MIN, _FAST, _bits, _exp_neg
    except ImportError:
        return None

    @njit(parallel=True, cache=False, fastmath=_FAST)
    def exp_rows(src, m, out):  # pragma: no cover - compiled
        for r in prange(src.shape[0]):
            row = src[r]
            ref = np.float32(m[r])
            s = np.float32(0.0)
            for k in range(row.shape[0]):
                s += _exp_neg(max(_D_MIN, _bits(row[k]).view(np.float32) - ref))
            out[r] = s

    bits = _row_bits(logits)  # (R, V)
    bits = bits.view(np.uint16 if bits.itemsize == 2 else np.uint32)  # what ``_bits`` widens
    m = logits.reshape(bits.shape).float().amax(-1).numpy()  # (R,)
    out = np.empty(bits.shape[0], dtype=np.float32)
    return lambda: (exp_rows(bits, m, out), out)[1]  # (R,) Σ exp(x - m) per row


def _cases(
    logits: torch.Tensor, backends: list[str], quick: bool, large: bool = False
) -> list[tuple[str, str, Callable[[], object], bool]]:
    """(name, backend, fn, slow) for one logits tensor (--quick skips the float64 reference;
    ``large`` keeps only the floor and the fast backends)."""
    gen = torch.Generator(device=logits.device).manual_seed(0)
    tokens = torch.randint(0, logits.shape[-1], logits.shape[:-1], generator=gen).to(logits.device)
    other = (
        (logits.float() + 0.1 * torch.randn(logits.shape, generator=gen).to(logits.device)).to(
            logits.dtype
        )
        if not large
        else logits
    )
    cases = [("floor", "torch", lambda: logits.amax(-1), False)]
    read = _read_floor(logits)
    if read is not None:
        read()  # compile outside the timing
        cases.append(("read", "numba", read, False))
    exp_floor = _exp_floor(logits)
    if exp_floor is not None:
        exp_floor()  # compile outside the timing
        cases.append(("exp_floor", "numba", exp_floor, False))
    if not large:
        cases += [
            ("llada_t0", "torch", lambda: llada_greedy_step(logits), False),
            ("llada_gumbel_t1", "torch", lambda: llada_gumbel_step(logits, 1.0, gen), True),
            ("torch_fp32", "torch", lambda: torch_fp32_step(logits), False),
            ("torch_top_p", "torch", lambda: torch_top_p(logits, 0.95, gen), True),
            ("torch_top_k", "torch", lambda: torch_top_k(logits, 50, gen), False),
            ("torch_token_prob", "torch", lambda: torch_token_prob(logits, tokens), True),
            ("torch_kl", "torch", lambda: torch_kl(logits, other), True),
        ]
    key = K.split(0, logits.shape[:-1], device=logits.device)  # one Philox key per row
    row_keys = K.split(0, logits.shape[0], device=logits.device)  # (B,)
    real = torch.ones(logits.shape[:-1], dtype=torch.bool, device=logits.device)  # (B, L)
    tail = torch.zeros_like(real)  # (B, L): the last half of each row's positions, contiguous
    tail[:, logits.shape[1] // 2 :] = True
    if not large:
        cases.append(
            (
                "keys",
                "torch",
                lambda: K.position_keys(K.fold(row_keys, 1), real, K.Purpose.PROPOSE),
                False,
            )
        )
    peaked = None if large else lm_like(logits)  # one LM-like copy shared by every backend
    for b in backends:
        slow = b == "torch"
        if (quick or large) and slow:
            continue
        cases.append(("propose_t0", b, lambda b=b: K.propose(logits, backend=b), slow))
        cases.append(
            ("propose_t0_tail", b, lambda b=b: K.propose(logits, rows=tail, backend=b), slow)
        )
        cases.append(
            (
                "propose_t1",
                b,
                lambda b=b: K.propose(logits, temperature=1.0, key=key, backend=b),
                slow,
            )
        )
        cases.append(
            (
                "propose_top_p",
                b,
                lambda b=b: K.propose(
                    logits, temperature=1.0, key=key, top_p=0.95, stats="sampled", backend=b
                ),
                slow,
            )
        )
        if peaked is not None:
            cases.append(
                (
                    "propose_top_p_lm",
                    b,
                    lambda b=b, peaked=peaked: K.propose(
                        peaked, temperature=1.0, key=key, top_p=0.95, stats="sampled", backend=b
                    ),
                    slow,
                )
            )
        cases.append(
            (
                "propose_min_p",
                b,
                lambda b=b: K.propose(
                    logits, temperature=1.0, key=key, min_p=0.05, stats="sampled", backend=b
                ),
                slow,
            )
        )
        if not large:
            cases.append(
                (
                    "propose_top_k",
                    b,
                    lambda b=b: K.propose(
                        logits, temperature=1.0, key=key, top_k=50, stats="sampled", backend=b
                    ),
                    slow,
                )
            )
        cases.append(("token_prob", b, lambda b=b: K.token_prob(logits, tokens, backend=b), slow))
        if not large:
            cases.append(("kl", b, lambda b=b: K.kl(logits, other, backend=b), slow))
    return cases


def _pin_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    pin_numba(threads)


def main(
    quick: bool = False, out: str | Path | None = None, *, large: bool = False, threads: int = 2
) -> list[Result]:
    """Time every case side by side, write the CSV and print ratios against the targets.

    Parameters
    ----------
    quick : bool
        Fewer repeats (a few minutes on a 2-core CPU).
    out : path, optional
        CSV path; default ``bench/results/kernels_<device>.csv`` (``..._quick.csv`` when quick).
    large : bool
        Also time the fast backend at (8, 1024, 126464) bfloat16.
    threads : int
        torch and Numba threads.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        _pin_threads(threads)
    env = environment(device)
    backends = K.backends(device.type)
    timer = time_gpu if device.type == "cuda" else time_cpu
    results: list[Result] = []
    runs = [(SHAPE, torch.float32, False), (SHAPE, torch.bfloat16, False)]
    if large:
        runs.append((LARGE_SHAPE, torch.bfloat16, True))
    for shape, dtype, is_large in runs:
        gen = torch.Generator().manual_seed(0)
        logits = (torch.randn(shape, generator=gen) * 3).to(dtype).to(device)  # LLaDA-like spread
        nbytes = logits.numel() * logits.element_size()
        for name, backend, fn, slow in _cases(logits, backends, quick, is_large):
            if device.type == "cuda":
                stats = timer(fn)
            elif slow or is_large:
                stats = timer(fn, warmup=1, repeats=2 if quick else 5)
            else:
                stats = timer(fn, warmup=2, repeats=5 if quick else 15)
            config = json.dumps(
                {
                    "B": shape[0],
                    "L": shape[1],
                    "V": shape[2],
                    "dtype": str(dtype).replace("torch.", ""),
                    "load": load_averages(),
                }
            )
            results.append(
                Result(
                    name=name,
                    variant=str(dtype).replace("torch.", "") + ("_large" if is_large else ""),
                    backend=backend,
                    config=config,
                    repeats=int(stats["repeats"]),
                    median=round(stats["median"], 4),
                    p20=round(stats["p20"], 4),
                    p80=round(stats["p80"], 4),
                    unit="ms",
                    derived=round(nbytes / (stats["median"] * 1e-3) / 1e9, 3),
                    derived_unit="GB/s",
                    device=env["device"],
                    versions=env["versions"],
                    sha=env["sha"],
                    date=env["date"],
                )
            )
            print(
                f"{name:16s} {results[-1].variant:14s} {backend:7s} median "
                f"{stats['median']:9.2f} ms  [p20 {stats['p20']:.2f}, p80 {stats['p80']:.2f}]"
                f"  load {load_averages()}",
                flush=True,
            )
        del logits
    # A quick run never replaces the committed full results.
    path = write_csv(
        results, out or RESULTS / f"kernels_{device.type}{'_quick' if quick else ''}.csv"
    )
    print(f"wrote {path}")
    _print_ratios(results, "numba" if device.type == "cpu" else "triton")
    return results


#: (label, numerator (name, backend or None = fast), denominator, target) of the ratio table.
RATIOS = [
    ("propose_t0 / floor", ("propose_t0", None), ("floor", "torch"), "<= 2"),
    ("propose_t1 / floor", ("propose_t1", None), ("floor", "torch"), "<= 2.5"),
    ("propose_t0 / read", ("propose_t0", None), ("read", "numba"), "<= 2"),
    ("propose_t1 / read", ("propose_t1", None), ("read", "numba"), "<= 2.5"),
    ("floor / read", ("floor", "torch"), ("read", "numba"), "-"),
    ("exp_floor / read", ("exp_floor", "numba"), ("read", "numba"), "-"),
    ("propose_t0 / exp_floor", ("propose_t0", None), ("exp_floor", "numba"), "-"),
    ("propose_t1 / exp_floor", ("propose_t1", None), ("exp_floor", "numba"), "-"),
    ("propose_t0_tail / propose_t0", ("propose_t0_tail", None), ("propose_t0", None), "-"),
    ("llada_t0 / propose_t0", ("llada_t0", "torch"), ("propose_t0", None), ">= 5"),
    ("llada_gumbel_t1 / propose_t1", ("llada_gumbel_t1", "torch"), ("propose_t1", None), ">= 40"),
    ("torch_fp32 / propose_t0", ("torch_fp32", "torch"), ("propose_t0", None), ">= 5"),
    ("keys / propose_t1", ("keys", "torch"), ("propose_t1", None), "-"),
    ("propose_top_p / propose_t1", ("propose_top_p", None), ("propose_t1", None), "<= 2"),
    ("propose_top_p_lm / propose_t1", ("propose_top_p_lm", None), ("propose_t1", None), "-"),
    ("propose_top_k / propose_t1", ("propose_top_k", None), ("propose_t1", None), "-"),
    ("propose_min_p / propose_t1", ("propose_min_p", None), ("propose_t1", None), "-"),
    ("torch_top_p / propose_top_p", ("torch_top_p", "torch"), ("propose_top_p", None), "-"),
    ("torch_top_k / propose_top_k", ("torch_top_k", "torch"), ("propose_top_k", None), "-"),
    ("token_prob / floor", ("token_prob", None), ("floor", "torch"), "-"),
    ("torch_token_prob / token_prob", ("torch_token_prob", "torch"), ("token_prob", None), "-"),
    ("kl / floor", ("kl", None), ("floor", "torch"), "-"),
    ("torch_kl / kl", ("torch_kl", "torch"), ("kl", None), "-"),
]


def ratio_rows(results: list[Result], fast: str) -> list[tuple[str, str, float, str]]:
    """(variant, label, value, target) for every ratio both of whose timings exist."""
    med = {(r.name, r.variant, r.backend): r.median for r in results}
    rows = []
    for variant in dict.fromkeys(r.variant for r in results):
        for label, (num, nb), (den, db), target in RATIOS:
            a = med.get((num, variant, nb or fast))
            b = med.get((den, variant, db or fast))
            if a is not None and b is not None and b > 0:
                rows.append((variant, label, a / b, target))
    return rows


def _print_ratios(results: list[Result], fast: str) -> None:
    rows = ratio_rows(results, fast)
    if not rows:
        print(f"backend {fast} not available: no ratios")
    for variant, label, value, target in rows:
        print(f"[{variant}] {label:32s} {value:8.2f}x   target {target}")


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", default=None, help="CSV path")
    parser.add_argument("--large", action="store_true", help="also (8, 1024, 126464) bf16")
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out, large=args.large, threads=args.threads)


if __name__ == "__main__":
    _cli()
