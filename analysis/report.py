"""The toy report behind the README's "what the analysis shows": ``python -m remask.analysis.report``.

On the coherence.md §3.6 Markov toy (V=4, L=8, Dirichlet(0.3) rows) and a longer chain it
computes, exactly: the homogenization curve against distance, adjacent versus distant
conditional mutual information, the error of five unmasking partitions (KL = Σ E[TC]) and
the decode order of LLaDA's low-confidence sampler; it writes ``summary.json`` and four
PNGs to ``--out`` and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import torch
from remask.analysis.estimators import cmi_matrix, pairwise_cmi
from remask.analysis.exact import partition_error, total_correlation
from remask.analysis.homogenization import homogenization_profile
from remask.analysis.trace import TraceRecorder, decode_order_metrics

__all__ = ["main", "run_report"]

PARTITIONS = {
    "AR (1/step)": [[i] for i in range(8)],
    "L2R blocks of 2": [[0, 1], [2, 3], [4, 5], [6, 7]],
    "dilated (0,2,4,6)(1,3,5,7)": [[0, 2, 4, 6], [1, 3, 5, 7]],
    "contiguous halves": [[0, 1, 2, 3], [4, 5, 6, 7]],
    "one step": [list(range(8))],
}


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    return x


def run_report(out: str | None = None, *, seed: int = 0, plots: bool = True) -> dict:
    """Compute the toy report; write ``summary.json`` (and PNGs) under ``out`` when given.

    Parameters
    ----------
    out : str, optional
        Output directory (created).
    seed : int
        Seed of the Markov chains and the sampler.
    plots : bool
        Also write the PNG figures (needs matplotlib).

    Returns
    -------
    dict
        The JSON summary (bits).
    """
    from remask.samplers import build, generate

    from remask.models.markov import MarkovChainOracle

    toy = MarkovChainOracle(4, 8, seed=seed, concentration=0.3)
    M = toy.mask_id
    lam = np.sort(np.abs(torch.linalg.eigvals(toy.transition).numpy()))[::-1]
    errors = {name: partition_error(toy, part, unit="bits") for name, part in PARTITIONS.items()}
    ctx = torch.tensor([[a] + [M] * 7 for a in range(4)])
    tc_pairs = {
        "adjacent {4,5}": float(total_correlation(toy, ctx[:1], [4, 5], unit="bits").tc[0]),
        "dilated {2,6}": float(total_correlation(toy, ctx[:1], [2, 6], unit="bits").tc[0]),
        "block {1..7}": float(total_correlation(toy, ctx[:1], range(1, 8), unit="bits").tc[0]),
    }
    long = MarkovChainOracle(4, 24, seed=seed, concentration=0.3)
    lctx = torch.tensor([[a] + [M] * 23 for a in range(4)])
    prof = homogenization_profile(long, lctx, unigram=long.initial.numpy(), unit="bits")
    row = pairwise_cmi(long, lctx[:1], 1, unit="bits").cmi[0]
    adjacent = [float(pairwise_cmi(long, lctx[:1], d, d + 1, unit="bits").cmi[0]) for d in (2, 8, 16, 22)]
    T, pi = long.transition.numpy(), long.initial.numpy()
    i_chain = float(np.sum(pi[:, None] * T * np.log2(T / pi[None, :])))
    rec = TraceRecorder()
    gen = generate(long, [[0]] * 16, build("low_confidence", steps=23), gen_length=23, seed=seed,
                   callbacks=[rec])
    order = decode_order_metrics(rec.trace(gen))
    summary = {
        "toy": {"vocab": 4, "length": 8, "concentration": 0.3, "seed": seed, "abs_lambda2": float(lam[1])},
        "partitions_bits": {n: {"kl": e.kl, "sum_E_tc": float(e.tc_per_step.sum()), "tv": e.tv}
                            for n, e in errors.items()},
        "tc_given_x0_bits": tc_pairs,
        "homogenization_bits": {k: v for k, v in prof.by_distance.items() if k != "js"},
        "cmi_x1_xd_bits": {int(d): float(row[d]) for d in range(2, 24)},
        "cmi_adjacent_bits": dict(zip(("d=2", "d=8", "d=16", "d=22"), adjacent)),
        "stationary_adjacent_mi_bits": i_chain,
        "low_confidence_order": order.summary(),
    }
    summary = _clean(summary)
    if out is not None:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        if plots:
            from remask.analysis import plots as P

            P.plot_partition_errors(errors, path=os.path.join(out, "partition_errors.png"))
            P.plot_homogenization(prof, path=os.path.join(out, "homogenization.png"))
            P.plot_cmi_matrix(cmi_matrix(long, lctx[:1], unit="bits"), path=os.path.join(out, "cmi.png"),
                              unit="bits")
            P.plot_decode_order(order, path=os.path.join(out, "decode_order.png"))
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m remask.analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="analysis-report", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    s = run_report(args.out, seed=args.seed, plots=not args.no_plots)
    print(f"Markov toy V=4 L=8 Dirichlet(0.3), |λ2| = {s['toy']['abs_lambda2']:.3f}   (bits)")
    print(f"{'partition':32s} {'KL(p‖q)':>9s} {'Σ E[TC]':>9s} {'TV':>7s}")
    for name, e in s["partitions_bits"].items():
        print(f"{name:32s} {e['kl']:9.4f} {e['sum_E_tc']:9.4f} {e['tv']:7.4f}")
    h = s["homogenization_bits"]
    print("distance            " + " ".join(f"{d:6d}" for d in h["distance"][:8]))
    print("KL(p(x_d|x0)‖π)     " + " ".join(f"{v:6.4f}" for v in h["kl_unigram"][:8]))
    print(f"adjacent I(x_d;x_d+1|x0): {s['cmi_adjacent_bits']}  stationary: {s['stationary_adjacent_mi_bits']:.4f}")
    print(f"low_confidence order: {s['low_confidence_order']}")
    print(f"wrote {args.out}/summary.json" + ("" if args.no_plots else " and 4 PNGs"))


if __name__ == "__main__":
    main()
