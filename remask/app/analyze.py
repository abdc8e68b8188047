"""The ``remask analyze`` commands: measurements of ``remask.analysis`` written to a folder.

Each ``analyze_*`` function takes a loaded Denoiser (``remask.models.load_model``, which also
opens ``train_toy`` checkpoints) and a built sampler where one is used, runs one analysis,
writes ``summary.json`` and, with ``plots=True``, PNG figures under ``out``, and returns the
summary; :func:`format_table` renders a summary as the short table the CLI prints.
``remask.cli`` only parses options and calls these.

Canvases. ``homogenization`` and ``cmi`` take real canvases (:func:`remask.analysis.canvases.read_canvases`:
a file of token ids or text with mask markers, optionally masked reproducibly with a span or
a rate). Without them, an exact oracle or a ``train_toy`` model is probed on ``n_canvases``
default canvases ``[context | gen_length masks]``, the context being the prefix of an exact
sample (of length ``seq_len − gen_length``; one token drawn from the model's own blank-canvas
prediction for a toy without an oracle). Any other model (a checkpoint) refuses: canvases it
did not see in training say nothing about it.

Every ``summary.json`` records the model spec (or type), the canvases' source, and the
environment (device, library versions, git sha).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch

from remask.analysis._util import call_log_probs, check_model, check_oracle
from remask.app.files import check_out_dir, environment, write_summary

__all__ = [
    "analyze_cmi",
    "analyze_coherence",
    "analyze_homogenization",
    "analyze_order",
    "format_table",
    "is_exact_oracle",
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


def _check_positive(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _layout(model, gen_length: int | None, *, need_context: bool) -> tuple[int, int]:
    """(context length P, gen_length) of the probe canvases."""
    # Oracles model one length; a train_toy model only knows the length it was trained on.
    seq_len = (
        getattr(model, "seq_len", None)
        if is_exact_oracle(model)
        else getattr(model, "seq_len_trained", None)
    )
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
    return torch.multinomial(
        probs.float(), n, replacement=True, generator=g
    ).T.contiguous()  # (n, P)


def _canvases(model, n: int, gen_length: int | None, seed: int, *, need_context: bool = True):
    P, G = _layout(model, gen_length, need_context=need_context)
    ctx = _contexts(model, n, P, P + G, seed)
    tokens = torch.cat([ctx, torch.full((n, G), model.mask_id, dtype=torch.int64)], 1)  # (n, P + G)
    return tokens, P, G


def _model_name(model, spec=None) -> str:
    """The spec or path the model was loaded from; else a short repr without an address."""
    if spec is not None:
        return str(spec)
    text = repr(model)
    return text if len(text) < 200 and " at 0x" not in text else type(model).__name__


def _needs_canvases(model) -> bool:
    """A checkpoint (not an exact oracle nor a ``train_toy`` model) must be given real canvases."""
    return not is_exact_oracle(model) and getattr(model, "seq_len_trained", None) is None


def _probe_canvases(model, command: str, canvases, n_canvases, gen_length, seed):
    """(list of (L,) rows, list of (L,) special masks, source dict, P, G) for homogenization/cmi."""
    if canvases is not None:
        if gen_length is not None:
            raise ValueError(
                f"gen_length={gen_length} applies to default canvases only; the masks of real "
                f"canvases come from the file (or mask_span/mask_rate)"
            )
        return list(canvases.rows), list(canvases.special), dict(canvases.source), None, None
    if _needs_canvases(model):
        raise ValueError(
            f"{command} on a checkpoint ({type(model).__name__}) needs real canvases: pass --canvases FILE "
            f"(one per line: token ids with '_' for a mask, text with the tokenizer's mask token, or JSONL "
            f'{{"ids": [...]}} / {{"text": ...}}), and --mask-span N or --mask-rate R to mask real sequences'
        )
    n = _check_positive("n_canvases", n_canvases)
    tokens, P, G = _canvases(model, n, gen_length, seed)
    rows = list(tokens)
    return (
        rows,
        [torch.zeros_like(r, dtype=torch.bool) for r in rows],
        {"default": True, "n_canvases": n},
        P,
        G,
    )


def _plotting():
    from remask.analysis import plots

    return plots


# ---------------------------------------------------------------------------- homogenization
def analyze_homogenization(
    model,
    *,
    out,
    canvases=None,
    gen_length: int | None = None,
    n_canvases: int = 8,
    seed: int = 0,
    reference=None,
    model_spec: str | None = None,
    reference_spec: str | None = None,
    plots: bool = True,
    progress: bool = False,
) -> dict:
    """Homogenization profile against distance to the context, with its position-matched control.

    Parameters
    ----------
    model : Denoiser
    out : str or PathLike
        Output directory (created): ``summary.json``, ``homogenization.png``.
    canvases : Canvases, optional
        Real canvases (:func:`~remask.analysis.canvases.read_canvases`); required for a
        checkpoint (module docstring).
    gen_length : int, optional
        Default canvases only: masked positions after the context (default ``seq_len − 1``
        on an oracle, else 32).
    n_canvases : int
        Default canvases only: how many, each with its own context.
    seed : int
        Seed of the default contexts.
    reference : Denoiser, optional
        Same vocabulary; adds ``KL(p_ref ‖ p_θ)``, r(d) and the excess over the reference.
    model_spec, reference_spec : str, optional
        How the models were loaded, recorded in the summary.
    plots : bool
    progress : bool
        Progress bar over the canvases.

    Returns
    -------
    dict
        ``command``, ``model``, ``canvases``, ``config``, ``environment``, ``by_distance``
        (lists keyed by statistic, nats; with ``control_*``, ``kl_to_control`` and the
        ``excess_*`` = model − control columns).

    Notes
    -----
    Cost per canvas of length L with M masked positions: 3 forward passes (canvas, control,
    context-free marginal; 2 more with a reference); pairwise JS (O(M² V)) only when
    M² V ≤ 2**30.
    """
    check_out_dir(out)
    from tqdm.auto import tqdm

    from remask.analysis.homogenization import homogenization_profile

    check_model(model)
    rows, specials, source, P, G = _probe_canvases(
        model, "homogenization", canvases, n_canvases, gen_length, seed
    )
    profiles = []
    pairwise_all = True
    V = model.vocab_size
    # One canvas at a time: canvases may differ in length, and the bar tracks forward passes.
    for row, sp in tqdm(
        list(zip(rows, specials)), desc="homogenization", disable=not progress, leave=False
    ):
        M = int((row == model.mask_id).sum())
        pairwise = M * M * V <= 2**30
        pairwise_all &= pairwise
        profiles.append(
            homogenization_profile(
                model, row[None], special=sp[None], reference=reference, pairwise=pairwise
            )
        )
    byd = _merge_by_distance(profiles)
    config = {
        "n_canvases": len(rows),
        "seed": seed,
        "unit": "nats",
        "pairwise_js": pairwise_all,
        "control": "context ablated (observed non-special tokens masked), same positions",
    }
    if P is not None:
        config.update(gen_length=G, context_length=P)
    summary = {
        "command": "homogenization",
        "model": _model_name(model, model_spec),
        "reference": None if reference is None else _model_name(reference, reference_spec),
        "canvases": source,
        "config": config,
        "environment": environment(),
        "by_distance": byd,
    }
    d = np.asarray(byd["distance"], dtype=float)
    for key, name in (
        ("kl_unigram", "kl_decay_rate_per_token"),
        ("excess_kl_unigram", "excess_kl_decay_rate_per_token"),
    ):
        kl = np.asarray(byd.get(key, []), dtype=float)
        ok = (kl > 0) & np.isfinite(kl)
        if ok.sum() >= 2:
            # Geometric decay shows as a line in log KL: report its slope as a rate per token.
            slope = np.polyfit(d[ok], np.log(kl[ok]), 1)[0]
            summary[name] = float(math.exp(slope))
    summary = write_summary(out, summary)
    if plots:
        _plotting().plot_homogenization(
            summary["by_distance"], unit="nats", path=os.path.join(out, "homogenization.png")
        )
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
        acc["ratio"] = [
            a / b if b and math.isfinite(b) else math.nan
            for a, b in zip(acc["kl_unigram"], acc["reference_kl_unigram"])
        ]
    out.update(acc)
    return out


# ---------------------------------------------------------------------------- cmi
def analyze_cmi(
    model,
    *,
    out,
    canvases=None,
    gen_length: int | None = None,
    n_canvases: int = 1,
    seed: int = 0,
    top_k: int | None = None,
    n_samples: int | None = None,
    max_positions: int = 32,
    batch_size: int = 64,
    model_spec: str | None = None,
    plots: bool = True,
    progress: bool = False,
) -> dict:
    """Clamp-and-rerun CMI between masked positions, and CMI against separation.

    Parameters
    ----------
    model : Denoiser
    out : str or PathLike
        ``summary.json``, ``cmi.png``.
    canvases, gen_length, n_canvases, seed, model_spec
        As in :func:`analyze_homogenization`.
    top_k, n_samples : int, optional
        Candidate rule of :func:`~remask.analysis.pairwise_cmi`; default exact clamping over
        the full vocabulary when ``vocab_size <= 256``, else ``top_k=8``.
    max_positions : int
        Clamped positions per canvas: all masked ones up to this many, else this many evenly
        spaced among them (every masked position is still read).
    batch_size : int
        Clamped canvases per forward pass (the memory budget).
    plots, progress : bool

    Returns
    -------
    dict
        ``matrix`` (over the masked positions: the mean over canvases when they share one
        layout, else the first canvas; null on the diagonal), ``matrix_positions``,
        ``by_separation`` (mean I(i; j) over clamped i and masked j against |i − j|),
        ``adjacent_mean``, ``distant_mean`` (|i − j| ≥ half the largest separation),
        ``asymmetry_mean`` (mean |I(i;j) − I(j;i)| over pairs clamped both ways),
        ``missed_mass_mean``, ``mode``.

    Notes
    -----
    Cost per canvas with R clamped positions and K candidates: 1 + R K forward passes,
    ``batch_size`` canvases at a time (memory: :func:`~remask.analysis.pairwise_cmi`).
    """
    check_out_dir(out)
    from tqdm.auto import tqdm

    from remask.analysis.estimators import one_shot_logits, pairwise_cmi

    check_model(model)
    max_positions = _check_positive("max_positions", max_positions, low=1)
    if top_k is not None and n_samples is not None:
        raise ValueError(f"give at most one of top_k={top_k!r} and n_samples={n_samples!r}")
    if top_k is None and n_samples is None and model.vocab_size > FULL_CLAMP_VOCAB:
        top_k = DEFAULT_TOP_K
    mode = (
        "exact"
        if top_k is None and n_samples is None
        else (f"top_k={top_k}" if top_k else f"n_samples={n_samples}")
    )
    rows, specials, source, P, G = _probe_canvases(
        model, "cmi", canvases, n_canvases, gen_length, seed
    )
    plans = []
    for row in rows:
        masked = (row == model.mask_id).nonzero()[:, 0].tolist()
        if len(masked) < 2:
            raise ValueError(
                f"cmi needs at least 2 masked positions per canvas, got {len(masked)} in a canvas "
                f"of length {len(row)}"
            )
        clamp = (
            masked
            if len(masked) <= max_positions
            else sorted(
                {masked[int(round(t))] for t in np.linspace(0, len(masked) - 1, max_positions)}
            )
        )
        plans.append((masked, clamp))
    bar = tqdm(
        total=sum(len(c) for _, c in plans), desc="cmi rows", disable=not progress, leave=False
    )
    mats, missed = [], []
    sums, counts, asym = {}, {}, []
    for row, (masked, clamp) in zip(rows, plans):
        tokens = row[None]
        logits0 = one_shot_logits(model, tokens, None, batch_size)  # shared by every clamped row
        mat = np.full((len(row), len(row)), np.nan)
        for i in clamp:
            r = pairwise_cmi(
                model,
                tokens,
                i,
                top_k=top_k,
                n_samples=n_samples,
                seed=seed + i,
                batch_size=batch_size,
                logits0=logits0,
            )
            mat[i] = r.cmi[0]
            missed.append(float(r.missed_mass[0]))
            bar.update()
        del logits0
        for i in clamp:
            for j in masked:
                if j != i and math.isfinite(mat[i, j]):
                    sep = abs(i - j)
                    sums[sep] = sums.get(sep, 0.0) + mat[i, j]
                    counts[sep] = counts.get(sep, 0) + 1
                    if i < j and j in clamp and math.isfinite(mat[j, i]):
                        asym.append(abs(mat[i, j] - mat[j, i]))
        mats.append((masked, mat[np.ix_(masked, masked)]))
    bar.close()
    same_layout = all(len(m) == len(mats[0][0]) and m == mats[0][0] for m, _ in mats) and all(
        len(r) == len(rows[0]) for r in rows
    )
    with (
        warnings.catch_warnings()
    ):  # the diagonal is NaN in every canvas: its mean is NaN, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(np.stack([x for _, x in mats]), 0) if same_layout else mats[0][1]
    sep = {s_: sums[s_] / counts[s_] for s_ in sorted(sums)}
    top = max(sep) if sep else 0
    far = [v for s_, v in sep.items() if s_ >= max(2, (top + 1) // 2)]
    config = {
        "n_canvases": len(rows),
        "seed": seed,
        "unit": "nats",
        "mode": mode,
        "max_positions": max_positions,
        "batch_size": batch_size,
    }
    if P is not None:
        config.update(gen_length=G, context_length=P)
    summary = {
        "command": "cmi",
        "model": _model_name(model, model_spec),
        "canvases": source,
        "config": config,
        "environment": environment(),
        "matrix": m,
        "matrix_positions": mats[0][0],
        "matrix_is_mean": bool(same_layout),
        "by_separation": {
            "separation": list(sep),
            "cmi": list(sep.values()),
            "pairs": [counts[s_] for s_ in sep],
        },
        "adjacent_mean": sep.get(1, math.nan),
        "distant_mean": float(np.mean(far)) if far else math.nan,
        "asymmetry_mean": float(np.mean(asym)) if asym else math.nan,
        "missed_mass_mean": float(np.mean(missed)),
    }
    summary = write_summary(out, summary)
    if plots:
        offset = P if P is not None else 0
        _plotting().plot_cmi(m, sep, path=os.path.join(out, "cmi.png"), unit="nats", offset=offset)
    return summary


# ---------------------------------------------------------------------------- coherence
def standard_partitions(positions) -> dict:
    """Named unmasking partitions of the generated positions, from one token a step to all at once.

    Autoregressive (one per step), left-to-right blocks of 2, dilated (even then odd
    offsets), contiguous halves and a single step: with exact marginals their errors
    (:func:`~remask.analysis.partition_error`) grow from zero to the total correlation.
    """
    pos = list(positions)
    n = len(pos)
    parts = {"AR (1/step)": [[p] for p in pos]}
    if n >= 2:
        parts["L2R blocks of 2"] = [pos[k : k + 2] for k in range(0, n, 2)]
        parts["dilated (even, odd)"] = [pos[0::2], pos[1::2]]
        parts["contiguous halves"] = [pos[: (n + 1) // 2], pos[(n + 1) // 2 :]]
        parts["one step"] = [pos]
    return parts


def analyze_coherence(
    oracle,
    sampler,
    *,
    out,
    gen_length: int | None = None,
    n_samples: int = 2000,
    seed: int = 0,
    model_spec: str | None = None,
    plots: bool = True,
    progress: bool = False,
) -> dict:
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
    model_spec : str, optional
        How the oracle was loaded, recorded in the summary.
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
    from tqdm.auto import tqdm

    from remask.analysis.exact import exact_samples, partition_error, sampler_error

    check_oracle(oracle)
    n_samples = _check_positive("n_samples", n_samples)
    if n_samples > 1 and not getattr(sampler, "stochastic", True):
        warnings.warn(
            f"{sampler.name} is deterministic at these settings (temperature 0): all "
            f"{n_samples} samples are the same sequence, so the empirical law is a point "
            "mass and TV/KL measure only that one sequence; sample with temperature > 0 "
            "(--set temperature=1.0)",
            UserWarning,
            stacklevel=2,
        )
    P, G = _layout(oracle, gen_length, need_context=False)
    prompt = exact_samples(oracle, 1, seed=seed)[0, :P] if P else None
    parts = standard_partitions(range(P, P + G))
    bar = tqdm(total=len(parts) + 1, desc="coherence", disable=not progress, leave=False)
    err = sampler_error(
        oracle, sampler, gen_length=G, prompt=prompt, n_samples=n_samples, seed=seed
    )
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
        "command": "coherence",
        "model": _model_name(oracle, model_spec),
        "sampler": repr(sampler),
        "environment": environment(),
        "config": {
            "gen_length": G,
            "prompt": None if prompt is None else prompt.tolist(),
            "n_samples": n_samples,
            "seed": seed,
            "unit": "nats",
        },
        "sampler_error": err.summary(),
        "partitions": {
            k: {
                "kl": e.kl,
                "sum_E_tc": float(np.sum(e.tc_per_step)),
                "tv": e.tv,
                "validity": e.validity,
                "tc_per_step": e.tc_per_step,
            }
            for k, e in errors.items()
        },
        "tc_total": errors["one step"].kl if "one step" in errors else math.nan,
    }
    if skipped:
        summary["partitions_skipped"] = skipped
    summary = write_summary(out, summary)
    if plots:
        _plotting().plot_coherence(
            summary["sampler_error"], errors, path=os.path.join(out, "coherence.png")
        )
    return summary


# ---------------------------------------------------------------------------- order
def analyze_order(
    model,
    sampler,
    *,
    out,
    gen_length: int | None = None,
    n_rows: int = 8,
    seed: int = 0,
    model_spec: str | None = None,
    plots: bool = True,
    progress: bool = False,
) -> dict:
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
    model_spec : str, optional
        How the model was loaded, recorded in the summary.
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
    gen = generate(
        model, prompt, sampler, gen_length=G, seed=seed, callbacks=[rec], progress=progress
    )
    trace = rec.trace(gen)
    order = decode_order_metrics(trace)
    cert = step_certificates(trace, model)
    with np.errstate(all="ignore"):
        certs = {
            k: float(np.nanmean(getattr(cert, k)))
            for k in ("eb_proxy", "fast_dllm_factor", "frechet")
        }
    summary = {
        "command": "order",
        "model": _model_name(model, model_spec),
        "sampler": repr(sampler),
        "environment": environment(),
        "config": {"gen_length": G, "context_length": P, "n_rows": n, "seed": seed},
        "metrics": order.summary(),
        "certificates": certs,
        "steps": int(gen.steps),
        "nfe_mean": float(gen.nfe.double().mean()),
        "commit_step": order.commit_step,
    }
    summary = write_summary(out, summary)
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
        cols = [
            c
            for c in (
                "kl_unigram",
                "control_kl_unigram",
                "excess_kl_unigram",
                "kl_to_control",
                "entropy",
                "max_prob",
                "js",
                "ratio",
            )
            if c in byd
        ]
        lines.append(f"{'distance':>8} " + " ".join(f"{c:>12}" for c in cols))
        for r, d in enumerate(byd["distance"][:12]):
            lines.append(f"{d:>8} " + " ".join(f"{_fmt(byd[c][r]):>12}" for c in cols))
        if "kl_decay_rate_per_token" in summary:
            lines.append(
                f"KL to the context-free marginal decays by x{summary['kl_decay_rate_per_token']:.3f} per token"
            )
        if "excess_kl_decay_rate_per_token" in summary:
            lines.append(
                f"its excess over the position-matched control decays by "
                f"x{summary['excess_kl_decay_rate_per_token']:.3f} per token"
            )
    elif kind == "cmi":
        sep = summary["by_separation"]
        lines.append(f"{'|i-j|':>6} {'I(i;j|c) [nats]':>16}")
        for s, v in list(zip(sep["separation"], sep["cmi"]))[:12]:
            lines.append(f"{s:>6} {_fmt(v):>16}")
        lines.append(
            f"adjacent {_fmt(summary['adjacent_mean'])}  distant {_fmt(summary['distant_mean'])}  "
            f"asymmetry {_fmt(summary['asymmetry_mean'])}  missed mass {_fmt(summary['missed_mass_mean'])}"
            f"  ({summary['config']['mode']})"
        )
    elif kind == "coherence":
        se = summary["sampler_error"]
        lines.append(f"{'statistic':>20} {'sampler':>10} {'exact floor':>12}")
        for s in ("tv", "kl", "validity", "nll", "reverse_kl_support", "exact_match"):
            lines.append(f"{s:>20} {_fmt(se.get(s)):>10} {_fmt(se.get(s + '_floor')):>12}")
        lines.append(f"{'partition':>24} {'KL(p||q)':>10} {'sum E[TC]':>10} {'TV':>8}")
        for name, e in summary["partitions"].items():
            lines.append(
                f"{name:>24} {_fmt(e['kl']):>10} {_fmt(e['sum_E_tc']):>10} {_fmt(e['tv']):>8}"
            )
        if "partitions_skipped" in summary:
            lines.append(f"partitions skipped: {summary['partitions_skipped']}")
    elif kind == "order":
        for k, v in {**summary["metrics"], **summary["certificates"]}.items():
            lines.append(f"{k:>24} {_fmt(v):>10}")
        lines.append(f"{'steps':>24} {summary['steps']:>10}")
    else:
        raise ValueError(f"unknown summary command {kind!r}")
    return "\n".join(lines)
