"""Plots of the analysis results. The only module that imports matplotlib (the ``plot`` extra).

Every function takes a result object, draws on a new figure (or the given ``ax``), and
returns the matplotlib Figure; pass ``path`` to also save it as PNG.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_cmi_matrix", "plot_decode_order", "plot_homogenization", "plot_partition_errors"]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "remask.analysis.plots needs matplotlib: pip install 'remask[plot]'"
        ) from exc
    return plt


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_homogenization(profile, *, path=None, log_scale: bool = True):
    """KL to the unigram, entropy and attractor mass against distance (and r(d) with a reference).

    Parameters
    ----------
    profile : HomogenizationProfile
    path : str or PathLike, optional
    log_scale : bool
        Log y-axis for the KL panel (geometric decay shows as a line).
    """
    plt = _plt()
    byd = profile.by_distance
    d = byd["distance"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    ax = axes[0]
    ax.plot(d, byd["kl_unigram"], "o-", label="model")
    if "reference_kl_unigram" in byd:
        ax.plot(d, byd["reference_kl_unigram"], "s--", label="reference (exact)")
    if log_scale:
        ax.set_yscale("log")
    ax.set(xlabel="distance to nearest known token", ylabel=f"KL(p_i ‖ u) [{profile.unit}]", title="homogenization")
    ax.legend()
    ax = axes[1]
    ax.plot(d, byd["entropy"], "o-", label="entropy")
    ax.plot(d, byd["max_prob"], "^-", label="max prob")
    if "js" in byd:
        ax.plot(d, byd["js"], "v-", label="mean pairwise JS")
    ax.set(xlabel="distance", title="sharpness")
    ax.legend()
    ax = axes[2]
    if "ratio" in byd:
        ax.plot(d, byd["ratio"], "o-")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set(xlabel="distance", ylabel="r(d)", title="excess homogenization r(d)")
    else:
        ax.plot(d, byd["attractor_mass"], "o-")
        ax.set(xlabel="distance", ylabel="mass", title="attractor (EOS/pad) mass")
    return _finish(fig, path)


def plot_partition_errors(results: dict, *, path=None):
    """Bar chart of exact KL(p‖q) (= Σ E[TC]) and TV for named partitions.

    Parameters
    ----------
    results : dict of str to PartitionError
    path : str or PathLike, optional
    """
    plt = _plt()
    names = list(results)
    kl = [results[n].kl for n in names]
    tc = [float(np.sum(results[n].tc_per_step)) for n in names]
    tv = [results[n].tv for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 3, 3.5))
    ax.bar(x - 0.2, kl, 0.4, label="KL(p‖q)")
    ax.plot(x - 0.2, tc, "k_", ms=18, label="Σ E[TC]")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, tv, 0.4, color="tab:orange", label="TV")
    ax.set_xticks(x, names, rotation=20)
    unit = results[names[0]].unit if names else "nats"
    ax.set(ylabel=f"KL [{unit}]", title="exact error of parallel unmasking with exact marginals")
    ax2.set_ylabel("TV")
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    return _finish(fig, path)


def plot_decode_order(order, *, row: int = 0, path=None):
    """Commit step against position for one row, and the tokens committed per step.

    Parameters
    ----------
    order : DecodeOrder
    row : int
    path : str or PathLike, optional
    """
    plt = _plt()
    tau = order.commit_step[row]
    pos = np.nonzero(tau >= 0)[0]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].scatter(pos, tau[pos], s=12)
    axes[0].set(xlabel="position", ylabel="commit step",
                title=f"decode order (Kendall τ = {order.kendall_tau[row]:.2f})")
    tps = order.tokens_per_step[:, row]
    axes[1].bar(np.arange(len(tps)), tps)
    axes[1].set(xlabel="step", ylabel="tokens committed", title=f"AFP = {order.afp[row]:.2f}")
    return _finish(fig, path)


def plot_cmi_matrix(matrix, *, row: int = 0, path=None, unit: str = "nats"):
    """Heatmap of a (B, L, L) CMI matrix from :func:`remask.analysis.cmi_matrix`."""
    plt = _plt()
    m = np.asarray(matrix)[row]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(np.nan_to_num(m, nan=0.0), cmap="viridis")
    fig.colorbar(im, ax=ax, label=f"I(i; j | c) [{unit}]")
    ax.set(xlabel="j", ylabel="i (clamped)", title="clamp-and-rerun CMI")
    return _finish(fig, path)
