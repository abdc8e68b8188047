"""The computations behind ``remask analyze``: pure functions that return JSON-ready dicts.

Each ``analyze_*`` function takes a loaded Denoiser (and a built sampler where one is used),
computes one analysis, writes ``summary.json`` and, with ``plots=True``, PNG figures under
``out``, and returns the summary; :func:`format_table` renders a summary as the short table
the CLI prints. ``remask.cli`` only parses options and calls these.

Canvases. ``homogenization`` and ``cmi`` probe the model on ``n_canvases`` canvases
``[context | gen_length masks]``: for an exact oracle (fixed ``seq_len``) the context is the
prefix of an exact sample, of length ``seq_len − gen_length``; for any other denoiser it is
one token drawn from the model's own prediction at position 0 of an all-masked canvas, so the
context always has positive probability under the model being probed.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import torch
from remask.analysis._util import call_log_probs, check_model, check_oracle

__all__ = [
    "check_out_dir",
    "analyze_cmi",
    "analyze_coherence",
    "analyze_homogenization",
    "analyze_order",
    "format_table",
    "is_exact_oracle",
    "load_analysis_model",
    "standard_partitions",
]

DEFAULT_GEN_LENGTH = 32  # for denoisers without a fixed sequence length
# Above this vocabulary size `cmi` clamps the top-k candidates instead of every token.
FULL_CLAMP_VOCAB = 256
DEFAULT_TOP_K = 8


# ---------------------------------------------------------------------------- helpers
def is_exact_oracle(model) -> bool:
    """Whether ``model`` is an exact oracle (``log_prob`` and ``seq_len``)."""
    try:
        check_oracle(model)
    except TypeError:
        return False
    return True


def load_analysis_model(spec: str, load=None):
    """A ``train_toy`` checkpoint directory through :func:`~remask.analysis.load_toy`, else ``load(spec)``.

    Parameters
    ----------
    spec : str
        Model spec or directory.
    load : callable, optional
        The general loader (default :func:`remask.models.load_model`; the CLI passes its own,
        which turns bad specs into usage errors).
    """
    from remask.analysis.train import is_toy_checkpoint, load_toy

    if is_toy_checkpoint(spec):
        return load_toy(spec)
    if load is None:
        from remask.models import load_model as load
    return load(spec)


def _clean(x):
    """JSON-ready copy: arrays to lists, non-finite floats to None, 6 significant decimals."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    return x


def check_out_dir(out) -> str:
    """Create the output directory ``out`` and prove it writable, before any computing.

    Raises ``ValueError`` naming the path and the cause (a file in the way, no permission,
    ...), so a long analysis never ends in a failed write.
    """
    import tempfile

    path = os.fspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"output directory {path!r} is an existing file")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(f"output directory {path!r} is not writable: {error.strerror or error}") from None
    return path


def _write(out, summary: dict) -> dict:
    summary = _clean(summary)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _check_positive(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _layout(model, gen_length: int | None, *, need_context: bool) -> tuple[int, int]:
    """(context length P, gen_length) of the probe canvases."""
    # Oracles model one length; a train_toy model only knows the length it was trained on.
    seq_len = getattr(model, "seq_len", None) if is_exact_oracle(model) else getattr(model, "seq_len_trained", None)
    if gen_length is None:
        gen_length = (seq_len - 1 if need_context else seq_len) if seq_len else DEFAULT_GEN_LENGTH
    gen_length = _check_positive("gen_length", gen_length)
    if seq_len is None:
        return (1 if need_context else 0), gen_length
    P = seq_len - gen_length
    if P < (1 if need_context else 0):
        raise ValueError(
            f"gen_length={gen_length} leaves no context on an oracle of seq_len={seq_len}; "
            f"use gen_length <= {seq_len - 1 if need_context else seq_len}"
        )
    return P, gen_length


def _contexts(model, n: int, P: int, L: int, seed: int) -> torch.Tensor:
    """(n, P) context tokens of positive probability under ``model`` (module docstring)."""
    if P == 0:
        return torch.zeros(n, 0, dtype=torch.int64)
    if is_exact_oracle(model):
        from remask.analysis.exact import exact_samples

        return exact_samples(model, n, seed=seed)[:, :P]
    blank = torch.full((1, L), model.mask_id, dtype=torch.int64)
    probs = call_log_probs(model, blank)[0, :P].exp()  # (P, V)
    g = torch.Generator().manual_seed(int(seed))
    return torch.multinomial(probs.float(), n, replacement=True, generator=g).T.contiguous()  # (n, P)


def _canvases(model, n: int, gen_length: int | None, seed: int, *, need_context: bool = True):
    P, G = _layout(model, gen_length, need_context=need_context)
    ctx = _contexts(model, n, P, P + G, seed)
    tokens = torch.cat([ctx, torch.full((n, G), model.mask_id, dtype=torch.int64)], 1)  # (n, P + G)
    return tokens, P, G


def _model_name(model) -> str:
    return repr(model) if len(repr(model)) < 200 else type(model).__name__


def _plotting():
    from remask.analysis import plots

    return plots


# ---------------------------------------------------------------------------- homogenization
def analyze_homogenization(model, *, out, gen_length: int | None = None, n_canvases: int = 8, seed: int = 0,
                           reference=None, plots: bool = True, progress: bool = False) -> dict:
    """Homogenization profile of a denoiser against distance to the context (any Denoiser).

    Parameters
    ----------
    model : Denoiser
    out : str or PathLike
        Output directory (created): ``summary.json``, ``homogenization.png``.
    gen_length : int, optional
        Masked positions after the context (default ``seq_len − 1`` on an oracle, else 32).
    n_canvases : int
        Canvases (rows), each with its own context.
    seed : int
        Seed of the contexts.
    reference : Denoiser, optional
        Same vocabulary; adds ``KL(p_ref ‖ p_θ)`` and the excess ratio r(d).
    plots : bool
    progress : bool
        Progress bar over the forward passes.

    Returns
    -------
    dict
        ``command``, ``model``, ``config``, ``by_distance`` (lists keyed by statistic, nats).
    """
    check_out_dir(out)
    from remask.analysis.homogenization import homogenization_profile
    from tqdm.auto import tqdm

    check_model(model)
    n = _check_positive("n_canvases", n_canvases)
    tokens, P, G = _canvases(model, n, gen_length, seed)
    profiles = []
    # One row at a time: the bar then tracks forward passes on large checkpoints.
    for b in tqdm(range(n), desc="homogenization", disable=not progress, leave=False):
        profiles.append(homogenization_profile(model, tokens[b:b + 1], reference=reference))
    byd = _merge_by_distance(profiles)
    summary = {
        "command": "homogenization", "model": _model_name(model),
        "reference": None if reference is None else _model_name(reference),
        "config": {"gen_length": G, "context_length": P, "n_canvases": n, "seed": seed, "unit": "nats"},
        "by_distance": byd,
    }
    d = np.asarray(byd["distance"], dtype=float)
    kl = np.asarray(byd["kl_unigram"], dtype=float)
    ok = (kl > 0) & np.isfinite(kl)
    if ok.sum() >= 2:
        # Geometric decay shows as a line in log KL: report its slope as a rate per token.
        slope = np.polyfit(d[ok], np.log(kl[ok]), 1)[0]
        summary["kl_decay_rate_per_token"] = float(math.exp(slope))
    summary = _write(out, summary)
    if plots:
        _plotting().plot_homogenization(summary["by_distance"], unit="nats",
                                        path=os.path.join(out, "homogenization.png"))
    return summary


def _merge_by_distance(profiles) -> dict:
    """Count-weighted means over rows of per-row ``by_distance`` tables."""
    keys = sorted({int(d) for p in profiles for d in p.by_distance["distance"]})
    stats = [k for k in profiles[0].by_distance if k not in ("distance", "count")]
    out = {"distance": keys, "count": []}
    acc = {s: [] for s in stats}
    for d in keys:
        tot = 0
        sums = {s: 0.0 for s in stats}
        wts = {s: 0 for s in stats}
        for p in profiles:
            byd = p.by_distance
            idx = np.nonzero(np.asarray(byd["distance"]) == d)[0]
            if not len(idx):
                continue
            c = int(byd["count"][idx[0]])
            tot += c
            for s in stats:
                v = float(byd[s][idx[0]])
                if math.isfinite(v):
                    sums[s] += c * v
                    wts[s] += c
        out["count"].append(tot)
        for s in stats:
            acc[s].append(sums[s] / wts[s] if wts[s] else math.nan)
    if "ratio" in acc:  # a ratio of means, not a mean of ratios
        acc["ratio"] = [a / b if b and math.isfinite(b) else math.nan
                        for a, b in zip(acc["kl_unigram"], acc["reference_kl_unigram"])]
    out.update(acc)
    return out


# ---------------------------------------------------------------------------- cmi
def analyze_cmi(model, *, out, gen_length: int | None = None, n_canvases: int = 1, seed: int = 0,
                top_k: int | None = None, n_samples: int | None = None, plots: bool = True,
                progress: bool = False) -> dict:
    """Clamp-and-rerun CMI matrix over the masked positions, and CMI against separation.

    Parameters
    ----------
    model : Denoiser
    out : str or PathLike
        ``summary.json``, ``cmi.png``.
    gen_length, n_canvases, seed
        As in :func:`analyze_homogenization`.
    top_k, n_samples : int, optional
        Candidate rule of :func:`~remask.analysis.pairwise_cmi`; default exact clamping over
        the full vocabulary when ``vocab_size <= 256``, else ``top_k=8``.
    plots, progress : bool

    Returns
    -------
    dict
        ``matrix`` (mean over canvases, (G, G) over the generated positions, null on the
        diagonal), ``by_separation`` (mean I(i; j) against |i − j|), ``adjacent_mean``,
        ``distant_mean`` (|i − j| ≥ G/2), ``asymmetry_mean`` (mean |I(i;j) − I(j;i)|),
        ``missed_mass_mean``, ``mode``.
    """
    check_out_dir(out)
    from remask.analysis.estimators import pairwise_cmi
    from tqdm.auto import tqdm

    check_model(model)
    n = _check_positive("n_canvases", n_canvases)
    if top_k is not None and n_samples is not None:
        raise ValueError(f"give at most one of top_k={top_k!r} and n_samples={n_samples!r}")
    if top_k is None and n_samples is None and model.vocab_size > FULL_CLAMP_VOCAB:
        top_k = DEFAULT_TOP_K
    mode = "exact" if top_k is None and n_samples is None else (f"top_k={top_k}" if top_k else f"n_samples={n_samples}")
    tokens, P, G = _canvases(model, n, gen_length, seed)
    L = P + G
    mat = np.full((n, L, L), np.nan)
    missed = []
    for i in tqdm(range(P, L), desc="cmi rows", disable=not progress, leave=False):
        r = pairwise_cmi(model, tokens, i, top_k=top_k, n_samples=n_samples, seed=seed + i)
        mat[:, i, :] = r.cmi
        missed.append(r.missed_mass)
    with warnings.catch_warnings():  # the diagonal is NaN in every canvas: its mean is NaN, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(mat, 0)[P:, P:]  # (G, G) generated block, mean over canvases
    sep = {}
    for s in range(1, G):
        vals = np.concatenate([np.diagonal(m, s), np.diagonal(m, -s)])
        sep[s] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    asym = np.abs(m - m.T)
    far = [v for s, v in sep.items() if s >= max(2, G // 2)]
    summary = {
        "command": "cmi", "model": _model_name(model),
        "config": {"gen_length": G, "context_length": P, "n_canvases": n, "seed": seed, "unit": "nats",
                   "mode": mode},
        "matrix": m, "by_separation": {"separation": list(sep), "cmi": list(sep.values())},
        "adjacent_mean": sep.get(1, math.nan),
        "distant_mean": float(np.nanmean(far)) if far else math.nan,
        "asymmetry_mean": float(np.nanmean(asym)) if np.isfinite(asym).any() else math.nan,
        "missed_mass_mean": float(np.mean(np.concatenate(missed))),
    }
    summary = _write(out, summary)
    if plots:
        _plotting().plot_cmi(m, sep, path=os.path.join(out, "cmi.png"), unit="nats", offset=P)
    return summary


# ---------------------------------------------------------------------------- coherence
def standard_partitions(positions) -> dict:
    """Named unmasking partitions of the generated positions (coherence.md §3.6).

    Autoregressive (one per step), left-to-right blocks of 2, dilated (even then odd
    offsets), contiguous halves and a single step.
    """
    pos = list(positions)
    n = len(pos)
    parts = {"AR (1/step)": [[p] for p in pos]}
    if n >= 2:
        parts["L2R blocks of 2"] = [pos[k:k + 2] for k in range(0, n, 2)]
        parts["dilated (even, odd)"] = [pos[0::2], pos[1::2]]
        parts["contiguous halves"] = [pos[: (n + 1) // 2], pos[(n + 1) // 2:]]
        parts["one step"] = [pos]
    return parts


def analyze_coherence(oracle, sampler, *, out, gen_length: int | None = None, n_samples: int = 2000,
                      seed: int = 0, plots: bool = True, progress: bool = False) -> dict:
    """A sampler's output distribution against an exact oracle's joint, and partition errors.

    Parameters
    ----------
    oracle : exact oracle
        Required (TypeError otherwise): the truth must be computable.
    sampler : Sampler
        Run with the oracle as its denoiser.
    out : str or PathLike
        ``summary.json``, ``coherence.png``.
    gen_length : int, optional
        Default ``seq_len`` (unconditional); a shorter one conditions on the prefix of an
        exact sample.
    n_samples : int
        Sequences decoded by the sampler.
    seed : int
    plots, progress : bool

    Returns
    -------
    dict
        ``sampler_error`` (TV, KL, validity, NLL, reverse KL on the support, exact match, each
        with its exact-sample noise floor), ``partitions`` (exact KL = Σ E[TC], TV,
        validity per named partition) and ``tc_total`` (the one-step KL, TC of the
        generated block).
    """
    check_out_dir(out)
    from remask.analysis.exact import exact_samples, partition_error, sampler_error
    from tqdm.auto import tqdm

    check_oracle(oracle)
    n_samples = _check_positive("n_samples", n_samples)
    P, G = _layout(oracle, gen_length, need_context=False)
    prompt = exact_samples(oracle, 1, seed=seed)[0, :P] if P else None
    parts = standard_partitions(range(P, P + G))
    bar = tqdm(total=len(parts) + 1, desc="coherence", disable=not progress, leave=False)
    err = sampler_error(oracle, sampler, gen_length=G, prompt=prompt, n_samples=n_samples, seed=seed)
    bar.update()
    errors, skipped = {}, None
    for name, part in parts.items():
        try:
            errors[name] = partition_error(oracle, part, prompt)
        except ValueError as exc:  # support too large to enumerate: report why, keep the rest
            skipped = str(exc)
            break
        finally:
            bar.update()
    bar.close()
    summary = {
        "command": "coherence", "model": _model_name(oracle), "sampler": repr(sampler),
        "config": {"gen_length": G, "prompt": None if prompt is None else prompt.tolist(),
                   "n_samples": n_samples, "seed": seed, "unit": "nats"},
        "sampler_error": err.summary(),
        "partitions": {k: {"kl": e.kl, "sum_E_tc": float(np.sum(e.tc_per_step)), "tv": e.tv,
                           "validity": e.validity, "tc_per_step": e.tc_per_step}
                       for k, e in errors.items()},
        "tc_total": errors["one step"].kl if "one step" in errors else math.nan,
    }
    if skipped:
        summary["partitions_skipped"] = skipped
    summary = _write(out, summary)
    if plots:
        _plotting().plot_coherence(summary["sampler_error"], errors, path=os.path.join(out, "coherence.png"))
    return summary


# ---------------------------------------------------------------------------- order
def analyze_order(model, sampler, *, out, gen_length: int | None = None, n_rows: int = 8, seed: int = 0,
                  plots: bool = True, progress: bool = False) -> dict:
    """Decode-order metrics of a sampler on a model, from a recorded trace (any Denoiser).

    Parameters
    ----------
    model : Denoiser
    sampler : Sampler
    out : str or PathLike
        ``summary.json``, ``decode_order.png``.
    gen_length : int, optional
        Default ``seq_len − 1`` on an oracle (conditioned on the first token of an exact
        sample), else 32 (unconditional).
    n_rows : int
        Rows decoded in one batch.
    seed : int
    plots, progress : bool

    Returns
    -------
    dict
        ``metrics`` (batch means of Kendall τ, AFP, AR-ness@k, frontier distance, ...),
        ``certificates`` (mean per-step EB proxy, Fast-dLLM factor, Fréchet bound),
        ``commit_step`` ((n_rows, P + G), -1 on the context), ``nfe``.
    """
    check_out_dir(out)
    from remask.analysis.trace import TraceRecorder, decode_order_metrics, step_certificates
    from remask.samplers import generate

    check_model(model)
    n = _check_positive("n_rows", n_rows)
    oracle = is_exact_oracle(model)
    P, G = _layout(model, gen_length, need_context=oracle)
    prompt = _contexts(model, n, P, P + G, seed) if P else [[] for _ in range(n)]
    rec = TraceRecorder()
    gen = generate(model, prompt, sampler, gen_length=G, seed=seed, callbacks=[rec], progress=progress)
    trace = rec.trace(gen)
    order = decode_order_metrics(trace)
    cert = step_certificates(trace, model)
    with np.errstate(all="ignore"):
        certs = {k: float(np.nanmean(getattr(cert, k))) for k in ("eb_proxy", "fast_dllm_factor", "frechet")}
    summary = {
        "command": "order", "model": _model_name(model), "sampler": repr(sampler),
        "config": {"gen_length": G, "context_length": P, "n_rows": n, "seed": seed},
        "metrics": order.summary(), "certificates": certs,
        "steps": int(gen.steps), "nfe_mean": float(gen.nfe.double().mean()),
        "commit_step": order.commit_step,
    }
    summary = _write(out, summary)
    if plots:
        _plotting().plot_decode_order(order, path=os.path.join(out, "decode_order.png"))
    return summary


# ---------------------------------------------------------------------------- table
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(summary: dict) -> str:
    """A short plain-text table of an ``analyze_*`` summary (what the CLI prints)."""
    kind = summary.get("command")
    lines = [f"{kind}: {summary.get('model')}"]
    if kind == "homogenization":
        byd = summary["by_distance"]
        cols = [c for c in ("kl_unigram", "entropy", "max_prob", "js", "ratio") if c in byd]
        lines.append(f"{'distance':>8} " + " ".join(f"{c:>12}" for c in cols))
        for r, d in enumerate(byd["distance"][:12]):
            lines.append(f"{d:>8} " + " ".join(f"{_fmt(byd[c][r]):>12}" for c in cols))
        if "kl_decay_rate_per_token" in summary:
            lines.append(f"KL to the context-free marginal decays by x{summary['kl_decay_rate_per_token']:.3f} per token")
    elif kind == "cmi":
        sep = summary["by_separation"]
        lines.append(f"{'|i-j|':>6} {'I(i;j|c) [nats]':>16}")
        for s, v in list(zip(sep["separation"], sep["cmi"]))[:12]:
            lines.append(f"{s:>6} {_fmt(v):>16}")
        lines.append(f"adjacent {_fmt(summary['adjacent_mean'])}  distant {_fmt(summary['distant_mean'])}  "
                     f"asymmetry {_fmt(summary['asymmetry_mean'])}  missed mass {_fmt(summary['missed_mass_mean'])}"
                     f"  ({summary['config']['mode']})")
    elif kind == "coherence":
        se = summary["sampler_error"]
        lines.append(f"{'statistic':>20} {'sampler':>10} {'exact floor':>12}")
        for s in ("tv", "kl", "validity", "nll", "reverse_kl_support", "exact_match"):
            lines.append(f"{s:>20} {_fmt(se.get(s)):>10} {_fmt(se.get(s + '_floor')):>12}")
        lines.append(f"{'partition':>24} {'KL(p||q)':>10} {'sum E[TC]':>10} {'TV':>8}")
        for name, e in summary["partitions"].items():
            lines.append(f"{name:>24} {_fmt(e['kl']):>10} {_fmt(e['sum_E_tc']):>10} {_fmt(e['tv']):>8}")
        if "partitions_skipped" in summary:
            lines.append(f"partitions skipped: {summary['partitions_skipped']}")
    elif kind == "order":
        for k, v in {**summary["metrics"], **summary["certificates"]}.items():
            lines.append(f"{k:>24} {_fmt(v):>10}")
        lines.append(f"{'steps':>24} {summary['steps']:>10}")
    else:
        raise ValueError(f"unknown summary command {kind!r}")
    return "\n".join(lines)
