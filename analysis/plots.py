"""Plots of the analysis results. The only module that imports matplotlib (the ``plot`` extra).

Every function takes a result object, draws on a new figure (or the given ``ax``), and
returns the matplotlib Figure; pass ``path`` to also save it as PNG.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "plot_cmi",
    "plot_cmi_matrix",
    "plot_coherence",
    "plot_decode_order",
    "plot_homogenization",
    "plot_markov_homogenization",
    "plot_partition_errors",
    "plot_trained_toy",
]


def _plt(what: str = "remask.analysis.plots"):
    """matplotlib.pyplot on the Agg backend; ``what`` names the caller in the ImportError."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{what} needs matplotlib: pip install 'remask[plot]'") from exc
    return plt


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _arr(x):
    """List/array with None for missing values -> float ndarray with NaN."""
    return np.asarray(
        [np.nan if v is None else v for v in np.asarray(x, dtype=object).ravel()], dtype=float
    )


def plot_homogenization(profile, *, path=None, log_scale: bool = True, unit: str | None = None):
    """KL to the unigram, sharpness and attractor mass (or r(d) with a reference) against distance.

    Parameters
    ----------
    profile : HomogenizationProfile or dict
        A profile, or its ``by_distance`` table (e.g. from a JSON summary).
    path : str or PathLike, optional
    log_scale : bool
        Log y-axis for the KL panel (geometric decay shows as a line).
    unit : str, optional
        Unit of the divergences (default the profile's, else nats).
    """
    plt = _plt()
    byd = profile if isinstance(profile, dict) else profile.by_distance
    unit = unit or getattr(profile, "unit", "nats")
    d = _arr(byd["distance"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    ax = axes[0]
    ax.plot(d, _arr(byd["kl_unigram"]), "o-", label="model")
    if "reference_kl_unigram" in byd:
        ax.plot(d, _arr(byd["reference_kl_unigram"]), "s--", label="reference (exact)")
    if "control_kl_unigram" in byd:
        ax.plot(d, _arr(byd["control_kl_unigram"]), "x:", label="control (context ablated)")
        ax.plot(d, _arr(byd["excess_kl_unigram"]), "d-", label="excess = model − control")
    if log_scale:
        ax.set_yscale("log")
    ax.set(
        xlabel="distance to nearest known token [positions]",
        ylabel=f"KL(p_i ‖ u) [{unit}]",
        title="homogenization: KL to context-free marginal",
    )
    ax.legend()
    ax = axes[1]
    ax.plot(d, _arr(byd["entropy"]), "o-", label=f"entropy [{unit}]")
    ax.plot(d, _arr(byd["max_prob"]), "^-", label="max prob")
    if "js" in byd:
        ax.plot(d, _arr(byd["js"]), "v-", label=f"mean pairwise JS [{unit}]")
    ax.set(xlabel="distance [positions]", title="sharpness of masked predictions")
    ax.legend()
    ax = axes[2]
    if "ratio" in byd:
        ax.plot(d, _arr(byd["ratio"]), "o-")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set(
            xlabel="distance [positions]",
            ylabel="r(d) = KL_model / KL_exact",
            title="excess homogenization r(d)",
        )
    else:
        ax.plot(d, _arr(byd["attractor_mass"]), "o-")
        ax.set(
            xlabel="distance [positions]", ylabel="probability", title="attractor (EOS/pad) mass"
        )
    return _finish(fig, path)


def _partition_bars(ax, results: dict):
    names = list(results)
    kl = [results[n].kl for n in names]
    tc = [float(np.sum(results[n].tc_per_step)) for n in names]
    tv = [results[n].tv for n in names]
    unit = results[names[0]].unit if names else "nats"
    x = np.arange(len(names))
    ax.bar(x - 0.2, kl, 0.4, label="KL(p‖q)")
    ax.plot(x - 0.2, tc, "k_", ms=18, mew=2, label="Σ_t E[TC(S_t)]")
    for xi, v in zip(x, kl):
        ax.annotate(f"{v:.2f}", (xi - 0.2, v), ha="center", va="bottom", fontsize=8)
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, tv, 0.4, color="tab:orange", label="TV(p, q)")
    ax2.set_ylim(0, 1)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel(f"KL(p‖q) [{unit}]")
    ax2.set_ylabel("TV (0-1)")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper center", fontsize=8)


def plot_partition_errors(results: dict, *, path=None):
    """Bar chart of exact KL(p‖q) (with Σ E[TC] marked: the chain-rule identity) and TV.

    Parameters
    ----------
    results : dict of str to PartitionError
    path : str or PathLike, optional
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.5 * len(results) + 3, 3.8))
    _partition_bars(ax, results)
    ax.set_title("exact error of unmasking a partition with exact marginals")
    return _finish(fig, path)


def plot_coherence(sampler_summary: dict, partitions: dict, *, path=None):
    """A sampler's error against the exact joint (with noise floors), beside partition errors.

    Parameters
    ----------
    sampler_summary : dict
        :meth:`SamplerError.summary` (values may be None when not computable).
    partitions : dict of str to PartitionError
    path : str or PathLike, optional
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    ax = axes[0]
    stats = ["tv", "kl", "reverse_kl_support"]

    def invalid(key):
        v = sampler_summary.get(key)
        return np.nan if v is None else 1.0 - v

    vals = _arr([sampler_summary.get(s) for s in stats] + [invalid("validity")])
    floor = _arr([sampler_summary.get(s + "_floor") for s in stats] + [invalid("validity_floor")])
    err = _arr(
        [sampler_summary.get(s + "_floor_std") for s in stats]
        + [sampler_summary.get("validity_floor_std")]
    )
    x = np.arange(len(vals))
    ax.bar(x - 0.2, vals, 0.4, label="sampler")
    ax.bar(x + 0.2, floor, 0.4, yerr=err, color="gray", label="exact samples (noise floor)")
    ax.set_xticks(x, ["TV", "KL(p‖q̂)", "rev. KL on supp", "invalid rate"], rotation=15)
    ax.set(
        ylabel=f"value [{sampler_summary.get('unit', 'nats')} for KL]",
        title=f"sampler vs exact joint (n={sampler_summary.get('n_samples')})",
    )
    ax.legend(fontsize=8)
    if partitions:
        _partition_bars(axes[1], partitions)
        axes[1].set_title("exact partition errors (oracle marginals)")
    else:
        axes[1].axis("off")
    return _finish(fig, path)


def plot_decode_order(order, *, row: int | None = None, path=None):
    """Commit step against position, and where each commit lands relative to known tokens.

    Parameters
    ----------
    order : DecodeOrder or dict of str to DecodeOrder
        One result, or several (e.g. per sampler) drawn side by side.
    row : int, optional
        Draw only this row (default every row, with the mean).
    path : str or PathLike, optional
    """
    plt = _plt()
    orders = order if isinstance(order, dict) else {"": order}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    rng = np.random.default_rng(0)
    for k, (name, o) in enumerate(orders.items()):
        tau = o.commit_step if row is None else o.commit_step[row : row + 1]
        color = f"C{k}"
        rows, pos = np.nonzero(tau >= 0)
        # Steps normalised to [0, 1] so samplers with different step counts compare.
        T = max(1, int(tau.max()))
        jitter = rng.uniform(-0.15, 0.15, len(pos))
        axes[0].scatter(pos + jitter, tau[rows, pos] / T, s=6, alpha=0.25, color=color)
        mean = np.array(
            [
                tau[:, p][tau[:, p] >= 0].mean() / T if (tau[:, p] >= 0).any() else np.nan
                for p in range(tau.shape[1])
            ]
        )
        label = f"{name} (Kendall τ = {np.nanmean(o.kendall_tau):.2f})".strip()
        axes[0].plot(np.arange(tau.shape[1]), mean, "-", color=color, lw=2, label=label)
        fd = np.concatenate(
            o.frontier_distance if row is None else o.frontier_distance[row : row + 1]
        )
        fd = fd[fd > 0]
        if len(fd):
            bins = np.arange(1, max(fd.max(), 2) + 2) - 0.5
            axes[1].hist(
                fd,
                bins=bins,
                alpha=0.55,
                color=color,
                density=True,
                label=f"{name} (left side {np.nanmean(o.frontier_left):.0%})".strip(),
            )
    axes[0].set(
        xlabel="position",
        ylabel="commit step / last step",
        title="decode order (mean line over rows)",
    )
    axes[0].legend(fontsize=8)
    axes[1].set(
        xlabel="distance of a commit to the nearest known token [positions]",
        ylabel="fraction of commits",
        title="frontier distance",
    )
    axes[1].legend(fontsize=8)
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


def plot_cmi(matrix, by_separation: dict, *, path=None, unit: str = "nats", offset: int = 0):
    """CMI heatmap over the generated positions and mean CMI against separation |i − j|.

    Parameters
    ----------
    matrix : (G, G) array
        ``I(i; j | c)`` over generated positions (NaN on the diagonal).
    by_separation : dict of int to float
    path : str or PathLike, optional
    unit : str
    offset : int
        Canvas index of the first generated position (tick labels).
    """
    plt = _plt()
    m = _arr(matrix).reshape(np.asarray(matrix, dtype=object).shape)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    G = m.shape[0]
    im = axes[0].imshow(
        np.nan_to_num(m, nan=0.0),
        cmap="viridis",
        extent=(offset - 0.5, offset + G - 0.5, offset + G - 0.5, offset - 0.5),
    )
    fig.colorbar(im, ax=axes[0], label=f"I(x_i; x_j | c) [{unit}]")
    axes[0].set(xlabel="position j", ylabel="position i (clamped)", title="clamp-and-rerun CMI")
    s = np.asarray(list(by_separation), dtype=float)
    v = _arr(list(by_separation.values()))
    axes[1].semilogy(s, np.where(v > 0, v, np.nan), "o-")
    axes[1].set(
        xlabel="separation |i − j| [positions]",
        ylabel=f"mean I(x_i; x_j | c) [{unit}]",
        title="dependence against separation",
    )
    return _finish(fig, path)


def plot_markov_homogenization(
    distance, kl, rate, cmi_first, cmi_adjacent, stationary_mi, *, unit: str = "bits", path=None
):
    """The Markov-chain homogenization picture: KL to the stationary law and pairwise CMI by distance.

    Parameters
    ----------
    distance : (D,) int
        Distances d to the observed token x_0.
    kl : (D,) float
        Exact ``KL(p(x_d | x_0) ‖ π)``.
    rate : float
        Predicted per-token decay factor (|λ₂|² for a KL); drawn as a dashed line.
    cmi_first : (D,) float
        Exact ``I(x_1; x_d | x_0)`` (NaN where undefined).
    cmi_adjacent : (D,) float
        Exact ``I(x_d; x_{d+1} | x_0)``.
    stationary_mi : float
        ``I(x_t; x_{t+1})`` of the stationary chain.
    unit : str
    path : str or PathLike, optional
    """
    plt = _plt()
    d = np.asarray(distance, dtype=float)
    kl = _arr(kl)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    ax.semilogy(d, kl, "o-", label="exact KL(p(x_d | x_0) ‖ π)")
    # Anchored mid-curve: the slopes are what compare (a near-degenerate λ₂ adds a slowly
    # varying polynomial prefactor, so the curve runs slightly above the pure rate).
    mid = len(d) // 2
    ax.semilogy(
        d, kl[mid] * rate ** (d - d[mid]), "k--", lw=1, label=f"∝ |λ₂|^(2d), |λ₂|² = {rate:.3f}"
    )
    ax.set(
        xlabel="distance d to the observed token [positions]",
        ylabel=f"KL [{unit}]",
        title="masked marginals homogenize geometrically",
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    cf, ca = _arr(cmi_first), _arr(cmi_adjacent)
    ax.semilogy(d, np.where(cf > 0, cf, np.nan), "o-", label="I(x_1; x_d | x_0): distant pair")
    ax.semilogy(d, np.where(ca > 0, ca, np.nan), "s-", label="I(x_d; x_d+1 | x_0): adjacent pair")
    ax.axhline(
        stationary_mi, color="gray", ls=":", label=f"stationary I(x_t; x_t+1) = {stationary_mi:.3f}"
    )
    ax.set(
        xlabel="distance d [positions]",
        ylabel=f"conditional MI [{unit}]",
        title="…while adjacent masked pairs stay dependent",
    )
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_trained_toy(result: dict, *, path=None):
    """A ``train_toy`` model against its exact oracle: loss, homogenization and CMI.

    Parameters
    ----------
    result : dict
        Keys ``history`` ({"step", "loss"}), ``loss_floor`` (the oracle's loss), ``distance``,
        ``kl_model``/``kl_exact`` (KL to π against distance), ``cmi_model``/``cmi_exact``
        (I(x_1; x_d | x_0) against distance), ``unit``.
    path : str or PathLike, optional
    """
    plt = _plt()
    unit = result.get("unit", "nats")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    h = result["history"]
    axes[0].plot(h["step"], h["loss"], label="TinyTransformer (running mean)")
    axes[0].axhline(result["loss_floor"], color="k", ls="--", lw=1, label="exact oracle")
    axes[0].set(xlabel="training step", ylabel="MDLM/LLaDA loss [nats/token]", title="training")
    axes[0].legend(fontsize=8)
    d = np.asarray(result["distance"], dtype=float)
    for ax, key, title in (
        (axes[1], "kl", "KL(p(x_d | x_0) ‖ π)"),
        (axes[2], "cmi", "I(x_1; x_d | x_0)"),
    ):
        m, e = _arr(result[f"{key}_model"]), _arr(result[f"{key}_exact"])
        ax.semilogy(d, np.where(e > 0, e, np.nan), "s--", label="exact oracle")
        ax.semilogy(d, np.where(m > 0, m, np.nan), "o-", label="trained model")
        ax.set(xlabel="distance d [positions]", ylabel=f"{title} [{unit}]", title=title)
        ax.legend(fontsize=8)
    return _finish(fig, path)
