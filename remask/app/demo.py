"""``remask demo``: samplers against the exact truth on a built-in Markov-chain oracle.

Every row decodes ``n_samples`` sequences from scratch and compares their empirical
distribution with the oracle's exact joint over all V**L sequences
(:func:`remask.analysis.empirical_error`, the statistics of
:func:`remask.analysis.sampler_error`). The sampling-noise floor (the same statistics for
``n_samples`` exact draws from the chain, averaged over three draws) tells bias from noise:
one-token-per-step decoding in random order is exact, so it sits on the floor; committing
several tokens per step samples from a product of marginals and moves away from it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from remask.analysis import empirical_error
from remask.models import MarkovChainOracle
from remask.samplers import build, generate

__all__ = ["DEMO_CONFIGS", "DemoRow", "run_demo", "format_table"]

# (label, sampler name, config); steps are for gen_length = 6. Every setting samples at
# temperature 1: the truth is a distribution, and greedy decoding yields a point mass.
_T = {"temperature": 1.0}
DEMO_CONFIGS: list[tuple[str, str, dict]] = [
    ("LLaDA random order, 1 token/step", "low_confidence", dict(_T, remasking="random")),
    ("LLaDA random order, 2 tokens/step", "low_confidence", dict(_T, remasking="random", steps=3)),
    ("all at once (product of marginals)", "low_confidence", dict(_T, remasking="random", steps=1)),
    ("LLaDA confidence, 1 token/step", "low_confidence", dict(_T)),
    ("LLaDA confidence, 2 tokens/step", "low_confidence", dict(_T, steps=3)),
    (
        "LLaDA semi-AR, blocks of 2, 2 tokens/step",
        "low_confidence",
        dict(_T, steps=3, block_length=2),
    ),
    ("Fast-dLLM threshold 0.9", "threshold", dict(_T, threshold=0.9)),
    ("Fast-dLLM threshold 0.7", "threshold", dict(_T, threshold=0.7)),
    ("EB-sampler gamma 0.5 nats", "entropy_bound", dict(_T, gamma=0.5)),
    ("DUS dilated, block 6", "dilated", dict(_T, block_length=6, confidence_threshold=None)),
    ("MDLM ancestral, 6 steps", "ancestral", dict(steps=6)),
    ("Dream origin, 3 steps", "dream", dict(_T, alg="origin", steps=3)),
]


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table: a sampler setting's cost and its distance to the truth.

    ``nfe`` is the mean number of forward passes per sequence, ``tv`` the total variation
    between the exact joint and the samples' empirical law, ``nll`` the samples' mean
    ``-log p(x)`` (nats), ``seconds`` the decoding wall time.
    """

    label: str
    sampler: str
    config: dict
    nfe: float
    tokens_per_step: float
    tv: float
    nll: float
    seconds: float


def run_demo(
    *,
    n_samples: int = 20000,
    seed: int = 0,
    vocab_size: int = 3,
    seq_len: int = 6,
    concentration: float = 0.3,
) -> tuple[MarkovChainOracle, list[DemoRow], DemoRow]:
    """Run every demo configuration; returns (oracle, rows, noise-floor row)."""
    oracle = MarkovChainOracle(vocab_size, seq_len, seed=seed, concentration=concentration)
    threads = torch.get_num_threads()
    # Every tensor here is tiny: one thread avoids thread-pool overhead (and thrashing on a
    # shared machine) and is the fastest setting — for torch and for Numba's kernels alike
    # (`remask demo` also sets NUMBA_NUM_THREADS=1 before numba starts its pool).
    numba_threads = _numba_threads(None)
    torch.set_num_threads(1)
    _numba_threads(1)
    try:
        # The floors depend on the oracle and the seed only: computed with the first row.
        results = [
            _demo_row(
                oracle, label, name, config, n_samples, seed, floor_repeats=3 if k == 0 else 0
            )
            for k, (label, name, config) in enumerate(DEMO_CONFIGS)
        ]
    finally:
        torch.set_num_threads(threads)
        _numba_threads(numba_threads)
    rows = [row for row, _ in results]
    error = results[0][1]
    floor = DemoRow(
        "exact samples (noise floor)",
        "-",
        {},
        float("nan"),
        float("nan"),
        error.tv_floor,
        error.nll_floor,
        0.0,
    )
    return oracle, rows, floor


def _numba_threads(threads: int | None) -> int | None:
    """Set Numba's thread count (when numba is installed); return the previous one."""
    try:
        import numba
    except ImportError:
        return None
    previous = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(threads)
    return previous


def _demo_row(
    oracle, label: str, name: str, config: dict, n_samples: int, seed: int, *, floor_repeats: int
):
    """One setting: (its DemoRow, the SamplerError of its samples)."""
    seq_len = oracle.seq_len
    sampler = build(name, **config)
    start = time.perf_counter()
    # One batch seeded by `seed`: the samples sampler_error(..., batch_size=n_samples) draws.
    out = generate(oracle, [[]] * n_samples, sampler, gen_length=seq_len, seed=seed)
    seconds = time.perf_counter() - start
    nfe = float(out.nfe.double().mean())
    error = empirical_error(oracle, out.tokens, seed=seed, floor_repeats=floor_repeats)
    return DemoRow(label, name, config, nfe, seq_len / nfe, error.tv, error.nll, seconds), error


def format_table(
    oracle: MarkovChainOracle, rows: list[DemoRow], floor: DemoRow, n_samples: int
) -> str:
    """A plain-text table of the demo results."""
    p = oracle.log_prob(oracle.all_sequences()).exp()
    entropy = float(-(p * p.log()).sum())
    lines = [
        f"Exact oracle: {oracle!r}",
        f"  {oracle.vocab_size**oracle.seq_len} sequences; entropy H(p) = {entropy:.3f} nats; "
        f"{n_samples} samples per row",
        "",
        f"{'sampler / setting':<44} {'NFE':>5} {'tok/step':>8} {'TV(p, q^)':>10} {'NLL':>7} {'sec':>6}",
        "-" * 84,
    ]
    for row in [*rows, floor]:
        nfe = "-" if math.isnan(row.nfe) else f"{row.nfe:.1f}"
        tps = "-" if math.isnan(row.tokens_per_step) else f"{row.tokens_per_step:.2f}"
        lines.append(
            f"{row.label:<44} {nfe:>5} {tps:>8} {row.tv:>10.4f} {row.nll:>7.3f} {row.seconds:>6.2f}"
        )
    lines += [
        "",
        "TV(p, q^): total variation between the exact joint p and the samples' empirical law q^",
        "(compare with the noise floor); NLL: mean -log p(x) of the samples under the truth (nats;",
        "H(p) for exact samples, lower for mode-seeking samplers).",
    ]
    return "\n".join(lines)
