"""The toy report behind the README's "what the analysis shows": ``python -m remask.app.report``.

On a small stationary Markov chain (V=4, L=8, Dirichlet(0.3) transition rows: strongly
dependent neighbours, all 4**8 sequences enumerable) and a longer chain of the same kind
(L=24) it computes, exactly:

1. ``homogenization.png`` — KL of the masked marginals to the stationary law against the
   distance to the observed token (with the |λ₂|^(2d) prediction), and the conditional MI of
   a distant pair (decays) against an adjacent pair (does not);
2. ``partition_errors.png`` — the exact error of five unmasking partitions with exact
   marginals, with the chain-rule identity KL(p‖q) = Σ_t E[TC(S_t)];
3. ``decode_order.png`` — the decode order of LLaDA's low-confidence sampler against random
   remasking on the same chain;
4. ``trained_toy.png`` (unless ``--no-train``) — a :func:`~remask.analysis.train_toy` model
   against its oracle: loss, homogenization and CMI against distance (the model is smoother
   than the truth far from the context).

It writes ``summary.json`` (bits, except the training loss in nats/token) and the PNGs to
``--out`` and prints a short table. About a minute on one CPU core.
"""

from __future__ import annotations

import argparse
import math
import os
import warnings

import numpy as np
import torch

from remask.analysis.estimators import marginal_consistency, pairwise_cmi
from remask.analysis.exact import partition_error, total_correlation
from remask.analysis.homogenization import homogenization_profile
from remask.analysis.trace import TraceRecorder, decode_order_metrics
from remask.app.files import to_json, write_summary

__all__ = ["main", "run_report"]

PARTITIONS = {
    "AR (1/step)": [[i] for i in range(8)],
    "L2R blocks of 2": [[0, 1], [2, 3], [4, 5], [6, 7]],
    "dilated (0,2,4,6)(1,3,5,7)": [[0, 2, 4, 6], [1, 3, 5, 7]],
    "contiguous halves": [[0, 1, 2, 3], [4, 5, 6, 7]],
    "one step": [list(range(8))],
}


def _markov_summary(seed: int):
    """Exact Markov quantities (no plotting): partitions, TC pairs, homogenization, CMI, order."""
    from remask.models import MarkovChainOracle
    from remask.samplers import build, generate

    toy = MarkovChainOracle(4, 8, seed=seed, concentration=0.3)
    M = toy.mask_id
    errors = {name: partition_error(toy, part, unit="bits") for name, part in PARTITIONS.items()}
    ctx = torch.tensor([[a] + [M] * 7 for a in range(4)])
    tc_pairs = {
        "adjacent {4,5}": float(total_correlation(toy, ctx[:1], [4, 5], unit="bits").tc[0]),
        "dilated {2,6}": float(total_correlation(toy, ctx[:1], [2, 6], unit="bits").tc[0]),
        "block {1..7}": float(total_correlation(toy, ctx[:1], range(1, 8), unit="bits").tc[0]),
    }
    long = MarkovChainOracle(4, 24, seed=seed, concentration=0.3)
    lam = np.sort(np.abs(torch.linalg.eigvals(long.transition).numpy()))[::-1]
    lctx = torch.tensor([[a] + [M] * 23 for a in range(4)])
    prof = homogenization_profile(long, lctx, unigram=long.initial.numpy(), unit="bits")
    # Distant pair I(x_1; x_d | x_0) and adjacent pair I(x_d; x_{d+1} | x_0), context x_0 = 0.
    first = pairwise_cmi(long, lctx[:1], 1, unit="bits").cmi[0]  # (24,)
    adjacent = np.full(24, np.nan)
    for d in range(1, 23):
        adjacent[d] = float(pairwise_cmi(long, lctx[:1], d, d + 1, unit="bits").cmi[0])
    T, pi = long.transition.numpy(), long.initial.numpy()
    i_chain = float(np.sum(pi[:, None] * T * np.log2(T / pi[None, :])))
    byd = prof.by_distance
    d, klu = np.asarray(byd["distance"], dtype=float), np.asarray(byd["kl_unigram"])
    ok = (klu > 1e-12) & (d <= 16)  # beyond, float64 rounding dominates the tiny KLs
    fitted = float(np.exp(np.polyfit(d[ok], np.log(klu[ok]), 1)[0]))
    orders = {}
    for name, remasking in (("low_confidence", "low_confidence"), ("random remasking", "random")):
        rec = TraceRecorder()
        gen = generate(
            long,
            [[a] for a in range(4)] * 4,
            build("low_confidence", steps=23, remasking=remasking),
            gen_length=23,
            seed=seed,
            callbacks=[rec],
        )
        orders[name] = decode_order_metrics(rec.trace(gen))
    summary = {
        "toy": {
            "vocab": 4,
            "length": 8,
            "long_length": 24,
            "concentration": 0.3,
            "seed": seed,
            "abs_lambda2": float(lam[1]),
        },
        "partitions_bits": {
            n: {
                "kl": e.kl,
                "sum_E_tc": float(e.tc_per_step.sum()),
                "tv": e.tv,
                "validity": e.validity,
            }
            for n, e in errors.items()
        },
        "tc_given_x0_bits": tc_pairs,
        "homogenization_bits": {k: v for k, v in byd.items() if k != "js"},
        "kl_decay_per_token": {"fitted": fitted, "abs_lambda2_squared": float(lam[1] ** 2)},
        "cmi_x1_xd_bits": {int(k): float(first[k]) for k in range(2, 24)},
        "cmi_adjacent_bits": {int(k): float(adjacent[k]) for k in range(1, 23)},
        "stationary_adjacent_mi_bits": i_chain,
        "decode_order": {n: o.summary() for n, o in orders.items()},
    }
    figures = {
        "errors": errors,
        "orders": orders,
        "d": d,
        "klu": klu,
        "rate": float(lam[1] ** 2),
        "first": [first[int(k)] if k >= 2 else np.nan for k in d],
        "adjacent": [adjacent[int(k)] if k < 23 else np.nan for k in d],
        "i_chain": i_chain,
    }
    return summary, figures


def _trained_toy_summary(seed: int, steps: int, progress: bool):
    """Train a TinyTransformer on a Markov toy and compare it with the exact oracle."""
    from remask.analysis.train import diffusion_loss, train_toy
    from remask.models import MarkovChainOracle

    oracle = MarkovChainOracle(4, 10, seed=seed, concentration=0.3)
    M = oracle.mask_id
    model = train_toy(oracle, steps=steps, batch_size=128, lr=3e-3, seed=seed, progress=progress)
    held_out = oracle.sample(8192, seed=seed + 1000)
    losses = {
        name: float(diffusion_loss(m, held_out, generator=torch.Generator().manual_seed(seed)))
        for name, m in (("model", model), ("oracle", oracle))
    }
    ctx = torch.tensor([[a] + [M] * 9 for a in range(4)])
    prof = homogenization_profile(
        model, ctx, reference=oracle, unigram=oracle.initial.numpy(), unit="bits", pairwise=False
    )
    with warnings.catch_warnings():  # columns 0 and 1 are NaN in every row (observed, clamped)
        warnings.simplefilter("ignore", RuntimeWarning)
        cm = np.nanmean(pairwise_cmi(model, ctx, 1, unit="bits").cmi, 0)  # (10,) mean over x_0
        ce = np.nanmean(pairwise_cmi(oracle, ctx, 1, unit="bits").cmi, 0)
    mc_model = marginal_consistency(model, ctx, 1, unit="bits").kl
    mc_oracle = marginal_consistency(oracle, ctx, 1, unit="bits").kl
    byd = prof.by_distance
    d = [int(k) for k in byd["distance"]]
    result = {
        "oracle": repr(oracle),
        "steps": steps,
        "loss_nats_per_token": losses,
        "history": model.history,
        "loss_floor": losses["oracle"],
        "distance": d,
        "unit": "bits",
        "kl_model": byd["kl_unigram"],
        "kl_exact": byd["reference_kl_unigram"],
        "ratio": byd["ratio"],
        "kl_to_exact": byd["kl_to_reference"],
        "cmi_model": [float(cm[k]) if k >= 2 else math.nan for k in d],
        "cmi_exact": [float(ce[k]) if k >= 2 else math.nan for k in d],
        "marginal_consistency_bits": {
            "model": float(np.nanmean(mc_model)),
            "oracle": float(np.nanmean(mc_oracle)),
        },
    }
    return result


def run_report(
    out: str | None = None,
    *,
    seed: int = 0,
    plots: bool = True,
    train: bool = True,
    train_steps: int = 1500,
    progress: bool = False,
) -> dict:
    """Compute the toy report; write ``summary.json`` (and PNGs) under ``out`` when given.

    Parameters
    ----------
    out : str, optional
        Output directory (created).
    seed : int
        Seed of the Markov chains, the sampler and the training run.
    plots : bool
        Also write the PNG figures (needs matplotlib).
    train : bool
        Also train the toy model (about half of the run time).
    train_steps : int
        Optimiser steps of the toy model.
    progress : bool
        Progress bar of the training run.

    Returns
    -------
    dict
        The JSON summary (bits).
    """
    summary, fig = _markov_summary(seed)
    toy = _trained_toy_summary(seed, train_steps, progress) if train else None
    if toy is not None:
        summary["trained_toy"] = {k: v for k, v in toy.items() if k != "history"}
    summary = to_json(summary) if out is None else write_summary(out, summary)
    if out is not None and plots:
        from remask.analysis import plots as P

        P.plot_markov_homogenization(
            fig["d"],
            fig["klu"],
            fig["rate"],
            fig["first"],
            fig["adjacent"],
            fig["i_chain"],
            unit="bits",
            path=os.path.join(out, "homogenization.png"),
        )
        P.plot_partition_errors(fig["errors"], path=os.path.join(out, "partition_errors.png"))
        P.plot_decode_order(fig["orders"], path=os.path.join(out, "decode_order.png"))
        if toy is not None:
            P.plot_trained_toy(toy, path=os.path.join(out, "trained_toy.png"))
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m remask.app.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default="analysis-report", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-train", action="store_true", help="skip the trained-toy comparison")
    parser.add_argument("--train-steps", type=int, default=1500)
    args = parser.parse_args(argv)
    # Tiny tensors: one thread is several times faster than two on a shared CPU.
    torch.set_num_threads(1)
    s = run_report(
        args.out,
        seed=args.seed,
        plots=not args.no_plots,
        train=not args.no_train,
        train_steps=args.train_steps,
        progress=True,
    )
    print(
        f"Markov toy V=4 L=8 Dirichlet(0.3); long chain L=24, |λ2| = {s['toy']['abs_lambda2']:.3f}   (bits)"
    )
    print(f"{'partition':32s} {'KL(p‖q)':>9s} {'Σ E[TC]':>9s} {'TV':>7s}")
    for name, e in s["partitions_bits"].items():
        print(f"{name:32s} {e['kl']:9.4f} {e['sum_E_tc']:9.4f} {e['tv']:7.4f}")
    h = s["homogenization_bits"]
    print("distance            " + " ".join(f"{d:6d}" for d in h["distance"][:8]))
    print("KL(p(x_d|x0)‖π)     " + " ".join(f"{v:6.4f}" for v in h["kl_unigram"][:8]))
    print(
        f"KL decay per token: fitted {s['kl_decay_per_token']['fitted']:.3f}, "
        f"|λ2|² {s['kl_decay_per_token']['abs_lambda2_squared']:.3f}"
    )
    print(
        "I(x1;x_d|x0)        "
        + " ".join(f"{s['cmi_x1_xd_bits'][str(d)]:6.4f}" for d in range(2, 9))
    )
    print(
        "I(x_d;x_d+1|x0)     "
        + " ".join(f"{s['cmi_adjacent_bits'][str(d)]:6.4f}" for d in range(2, 9))
        + f"   stationary {s['stationary_adjacent_mi_bits']:.4f}"
    )
    for name, o in s["decode_order"].items():
        print(
            f"{name:18s} Kendall τ {o['kendall_tau']:.3f}  global AR@1 {o['global_ar@1']:.3f}  "
            f"frontier left {o['frontier_left']:.3f}  mean frontier distance {o['mean_frontier_distance']:.3f}"
        )
    if "trained_toy" in s:
        t = s["trained_toy"]
        print(
            f"trained toy: loss {t['loss_nats_per_token']['model']:.4f} vs exact {t['loss_nats_per_token']['oracle']:.4f}"
            f" nats/token; r(d) = "
            + " ".join(f"{r:.2f}" for r in t["ratio"] if r is not None)
            + f"; martingale KL {t['marginal_consistency_bits']['model']:.2e} (oracle "
            f"{t['marginal_consistency_bits']['oracle']:.0e}) bits"
        )
    print(f"wrote {args.out}/summary.json" + ("" if args.no_plots else " and the PNGs"))


if __name__ == "__main__":
    main()
