"""The ``remask`` command line: list, generate, infill, demo, bench, analyze.

User errors (bad options, values, specs, checkpoints, output paths) end as one line in
click's usage-error style with exit code 2, never a traceback: the library raises
``ValueError``/``TypeError``/``OSError`` for them, and the command group turns any that
escape a command into a usage error. A run that ends with masks left (a denoiser that
proposed the mask token) is reported as one line with exit code 1. Output paths are checked
before any computing.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import sys
import time

import click

__all__ = ["main"]

MASK_MARK = "_"  # how `remask infill --tokens` writes a position to fill


def _parse_sets(pairs: tuple[str, ...]) -> dict:
    """``("steps=32", "remasking=random")`` -> ``{"steps": 32, "remasking": "random"}``.

    Values are Python literals (``literal_eval``); anything else is kept as a string,
    ``none``/``null`` mean None and ``inf``/``-inf``/``nan`` are floats (``gamma=inf`` is a
    documented setting; the sampler rejects non-finite values where they are meaningless).
    """
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--set")
        if value.lower() in ("none", "null"):
            config[key] = None
            continue
        if value.lower().lstrip("+-") in ("inf", "infinity", "nan"):
            config[key] = float(value)
            continue
        try:
            config[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[key] = value
    return config


def _parse_ids(text: str, *, mask_id: int | None = None) -> list[int]:
    ids = []
    for item in text.replace(",", " ").split():
        if item == MASK_MARK and mask_id is not None:
            ids.append(mask_id)
            continue
        try:
            ids.append(int(item))
        except ValueError:
            raise click.BadParameter(f"not a token id: {item!r} in {text!r}") from None
    return ids


def _one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined with '; ')."""
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


class _Group(click.Group):
    """A group that turns user errors escaping a command into usage errors (exit code 2)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, TypeError, OSError) as error:
            raise click.UsageError(_one_line(error), ctx=ctx) from None


def _run_sampler(run, *args, **kwargs):
    """Run generate/infill: bad input is a usage error; a run that ends with masks left (a
    denoiser that proposed the mask token) is reported as one line, not a traceback."""
    try:
        return run(*args, **kwargs)
    except (TypeError, ValueError) as error:
        raise click.UsageError(_one_line(error)) from None
    except RuntimeError as error:
        raise click.ClickException(_one_line(error)) from None


def _check_out_file(out: str | None) -> None:
    """A CSV path must be creatable before a benchmark runs."""
    if out is None:
        return
    from remask.analysis.commands import check_out_dir

    if os.path.isdir(out):
        raise click.BadParameter(f"{out!r} is a directory; give a file path", param_hint="--out")
    try:
        check_out_dir(os.path.dirname(os.path.abspath(out)))
    except ValueError as error:
        raise click.BadParameter(_one_line(error), param_hint="--out") from None


def _check_out(out: str) -> None:
    from remask.analysis.commands import check_out_dir

    try:
        check_out_dir(out)
    except ValueError as error:
        raise click.BadParameter(_one_line(error), param_hint="--out") from None


def _build(sampler: str, sets: tuple[str, ...]):
    from remask.samplers import build

    try:
        return build(sampler, **_parse_sets(sets))
    except (TypeError, ValueError) as error:
        raise click.UsageError(_one_line(error)) from None


def _load(spec: str):
    from remask.models import load_model

    try:
        return load_model(spec)
    except (TypeError, ValueError, OSError) as error:
        raise click.UsageError(_one_line(error)) from None


def _report(model, out, seconds: float, as_json: bool, prompt_lengths: list[int] | None) -> None:
    tokenizer = getattr(model, "tokenizer", None)
    rows = []
    for b in range(out.tokens.shape[0]):
        real = out.tokens[b][out.attention_mask[b]].tolist()
        row = {"tokens": real, "nfe": int(out.nfe[b])}
        if prompt_lengths is not None:
            row["generated"] = real[prompt_lengths[b]:]
        if tokenizer is not None:
            row["text"] = tokenizer.decode(row.get("generated", real), skip_special_tokens=True)
        rows.append(row)
    if as_json:
        click.echo(json.dumps({"rows": rows, "steps": out.steps, "seconds": round(seconds, 4)}))
        return
    for b, row in enumerate(rows):
        body = row.get("text", " ".join(map(str, row.get("generated", row["tokens"]))))
        click.echo(f"[{b}] nfe={row['nfe']}  {body}")
    click.echo(f"{out.steps} steps, {seconds:.2f} s", err=True)


@click.group(cls=_Group)
@click.version_option(package_name="remask")
def main() -> None:
    """remask: interchangeable samplers for masked diffusion language models."""


@main.command("list")
def list_command() -> None:
    """List samplers (with their settings), built-in models and kernel backends."""
    from remask import kernels
    from remask.samplers import available, sampler_class

    click.echo("Samplers:")
    for name in available():
        cls = sampler_class(name)
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
        click.echo(f"  {name:<16} {fields}")
    click.echo("Models:")
    click.echo("  oracle:markov?vocab=8&length=16&seed=0&concentration=1.0   exact Markov-chain oracle")
    click.echo("  tiny:transformer?vocab=32&width=32&depth=2&heads=4&seed=0 seeded random transformer")
    click.echo("  <checkpoint directory>                                     LLaDA/Dream/any masked LM")
    backends = kernels.backends() if hasattr(kernels, "backends") else ["torch"]
    click.echo(f"Kernel backends available here: {', '.join(backends)}")


_SAMPLER_OPTIONS = [
    click.option("--model", "model_spec", required=True, help="Model spec or checkpoint directory."),
    click.option("--sampler", default="low_confidence", show_default=True, help="Registered sampler name."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Sampler setting (repeatable)."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--json", "as_json", is_flag=True, help="Print tokens, NFE and timings as JSON."),
    click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."),
]


def _sampler_options(fn):
    for option in reversed(_SAMPLER_OPTIONS):
        fn = option(fn)
    return fn


@main.command()
@_sampler_options
@click.option("--gen-length", type=int, required=True, help="Tokens to generate per prompt.")
@click.option("--prompt-ids", multiple=True, help="A prompt as token ids, e.g. '1,2,3' (repeat for a batch).")
@click.option("--prompt", "prompts", multiple=True, help="A text prompt (needs a tokenizer; repeatable).")
@click.option("--chat", is_flag=True, help="Wrap text prompts in the tokenizer's chat template.")
@click.option("--cache", type=click.Choice(["none", "prefix", "dual"]), default="none", show_default=True,
              help="Fast-dLLM KV cache for blockwise samplers (LLaDA/Dream checkpoints).")
@click.option("--cache-refresh", type=click.IntRange(min=1), default=None,
              help="Also refresh the cache every N steps (default: at each block start only).")
def generate(model_spec, sampler, sets, seed, as_json, progress, gen_length, prompt_ids, prompts, chat,
             cache, cache_refresh):
    """Generate GEN_LENGTH tokens after each prompt."""
    from remask.samplers import generate as run

    model = _load(model_spec)
    if cache != "none":
        from remask.models import CachedDenoiser

        try:
            model = CachedDenoiser(model, mode=cache, refresh_every=cache_refresh)
        except (TypeError, ValueError) as error:
            raise click.UsageError(_one_line(error)) from None
    config = _build(sampler, sets)
    if prompt_ids and prompts:
        raise click.UsageError("give either --prompt-ids or --prompt, not both")
    if prompts:
        batch = _encode(model, prompts, chat)
    else:
        batch = [_parse_ids(p) for p in prompt_ids] or [[]]
    start = time.perf_counter()
    out = _run_sampler(run, model, batch, config, gen_length=gen_length, seed=seed,
                       progress=sys.stderr.isatty() if progress is None else progress)
    _report(model, out, time.perf_counter() - start, as_json, [len(p) for p in batch])


def _encode(model, prompts, chat: bool) -> list[list[int]]:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise click.UsageError("this model has no tokenizer: use --prompt-ids")
    if chat:
        if getattr(tokenizer, "chat_template", None) is None:
            raise click.UsageError("this tokenizer has no chat template: drop --chat")
        # Render to text, then tokenize: apply_chat_template(tokenize=True) returns a list in
        # transformers 4 but a BatchEncoding in 5. The template already holds the special tokens.
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                               add_generation_prompt=True, tokenize=False) for p in prompts]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


@main.command()
@_sampler_options
@click.option("--tokens", "canvases", multiple=True, required=True,
              help=f"A canvas as token ids with '{MASK_MARK}' where to fill, e.g. '3,_,_,7' (repeatable).")
def infill(model_spec, sampler, sets, seed, as_json, progress, canvases):
    """Fill the masked positions of given canvases; other tokens stay fixed."""
    from remask.samplers import infill as run

    model = _load(model_spec)
    config = _build(sampler, sets)
    batch = []
    for canvas in canvases:
        ids = _parse_ids(canvas, mask_id=model.mask_id)
        if not ids:
            raise click.BadParameter(f"empty canvas {canvas!r}: give token ids with '{MASK_MARK}' "
                                     "where to fill, e.g. '3,_,_,7'", param_hint="--tokens")
        if model.mask_id not in ids:
            raise click.BadParameter(f"canvas {canvas!r} has no '{MASK_MARK}': nothing to fill",
                                     param_hint="--tokens")
        batch.append(ids)
    start = time.perf_counter()
    out = _run_sampler(run, model, batch, config, seed=seed,
                       progress=sys.stderr.isatty() if progress is None else progress)
    _report(model, out, time.perf_counter() - start, as_json, None)


@main.command()
@click.option("--samples", type=click.IntRange(min=100), default=20000, show_default=True,
              help="Sequences decoded per sampler setting.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(samples: int, seed: int) -> None:
    """Compare samplers against the exact truth on a built-in Markov-chain oracle (no download)."""
    from remask.demo import format_table, run_demo

    oracle, rows, floor = run_demo(n_samples=samples, seed=seed)
    click.echo(format_table(oracle, rows, floor, samples))


@main.group()
def bench() -> None:
    """Benchmarks; each writes CSV rows (shared schema) under bench/results/ and prints a summary."""


def _bench_command(module: str, doc: str):
    @click.option("--quick", is_flag=True, help="A small run (well under 3 minutes on 2 CPU cores).")
    @click.option("--out", type=click.Path(dir_okay=False), default=None, help="CSV path to write.")
    def command(quick: bool, out: str | None) -> None:
        import importlib

        _check_out_file(out)
        importlib.import_module(f"remask.bench.{module}").main(quick=quick, out=out)

    command.__doc__ = doc
    return command


bench.command("kernels")(_bench_command("kernels", "Kernel micro-benchmarks: propose and selection ops per backend."))
bench.command("samplers")(_bench_command("samplers", "Quality vs NFE on exact oracles, and sampler overhead."))
bench.command("models")(_bench_command("cache", "Model forward: cached (prefix/dual KV) vs uncached decoding."))


@bench.command("gpu")
@click.option("--quick", is_flag=True, help="Tiny shapes on whatever device is there (a pipeline check).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the CSVs (default bench/results).")
@click.option("--keep-going", is_flag=True, help="Log a failing part and go on with the others.")
def bench_gpu(quick: bool, out: str | None, keep_going: bool) -> None:
    """Kernel tests on CUDA, propose vs a copy, 8B-shaped decoding vs the reference loops."""
    from remask.analysis.commands import check_out_dir
    from remask.bench import gpu

    if out is not None:
        try:
            check_out_dir(out)
        except ValueError as error:
            raise click.BadParameter(_one_line(error), param_hint="--out") from None
    gpu.main(quick=quick, out=out, keep_going=keep_going)



# ---------------------------------------------------------------------------- analyze
@main.group()
def analyze() -> None:
    """Measure parallel-decoding failure modes; each writes summary.json and PNGs to --out."""


def _analysis_options(*, sampler: bool, gen_help: str):
    def wrap(fn):
        options = [
            click.option("--model", "model_spec", required=True,
                         help="Model spec, checkpoint directory or train_toy checkpoint directory."),
        ]
        if sampler:
            options += [
                click.option("--sampler", default="low_confidence", show_default=True, help="Registered sampler name."),
                click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Sampler setting (repeatable)."),
            ]
        options += [
            click.option("--device", default=None, help="Load the model on this device (e.g. cuda)."),
            click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
                         help="Load the model's weights in this dtype (e.g. bfloat16 for an 8B checkpoint)."),
            click.option("--gen-length", type=click.IntRange(min=1), default=None, help=gen_help),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory."),
            click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG figures."),
            click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


def _run_analysis(compute, plots: bool, **kwargs) -> None:
    from remask.analysis.commands import format_table

    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError(
                'plots need matplotlib: pip install "remask[plot]" (or pass --no-plots)'
            ) from None
    progress = kwargs.pop("progress")
    try:
        summary = compute(plots=plots, progress=sys.stderr.isatty() if progress is None else progress, **kwargs)
    except (TypeError, ValueError) as error:
        raise click.UsageError(_one_line(error)) from None
    click.echo(format_table(summary))
    click.echo(f"wrote {kwargs['out']}", err=True)


def _analysis_model(spec: str, device: str | None = None, dtype: str | None = None):
    from remask.analysis.commands import load_analysis_model

    if device is None and dtype is None:
        return load_analysis_model(spec, load=_load)

    def load(s: str):
        import torch

        from remask.models import load_model

        try:
            return load_model(s, dtype=None if dtype is None else getattr(torch, dtype), device=device)
        except (TypeError, ValueError, OSError, RuntimeError) as error:
            raise click.UsageError(_one_line(error)) from None

    return load_analysis_model(spec, load=load)


_GEN_HELP = "Masked positions after the context (default: seq_len - 1 on an oracle, else 32)."


def _canvas_options(fn):
    options = [
        click.option("--canvases", "canvases_path", type=click.Path(dir_okay=False), default=None,
                     help="File of canvases, one per line: token ids with '_' for a mask, text (tokenized with "
                          "the model's special tokens; the tokenizer's mask token marks a mask) or JSONL "
                          "{\"ids\": [...]} / {\"text\": ...}. Required for a checkpoint."),
        click.option("--mask-span", type=click.IntRange(min=1), default=None,
                     help="Mask a random span of this many tokens in each canvas (seeded by --seed)."),
        click.option("--mask-rate", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
                     help="Mask this fraction of each canvas's tokens at random (seeded by --seed)."),
        click.option("--n-canvases", type=click.IntRange(min=1), default=None,
                     help="Default canvases on an oracle or train_toy model: how many."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _read_canvases(model, path, mask_span, mask_rate, seed):
    if path is None:
        if mask_span is not None or mask_rate is not None:
            raise click.UsageError("--mask-span/--mask-rate mask the sequences of --canvases FILE; pass it too")
        return None
    from remask.analysis.canvases import read_canvases

    try:
        return read_canvases(path, model, mask_span=mask_span, mask_rate=mask_rate, seed=seed)
    except ValueError as error:
        raise click.BadParameter(_one_line(error), param_hint="--canvases") from None


@analyze.command("homogenization")
@_analysis_options(sampler=False, gen_help=_GEN_HELP)
@_canvas_options
@click.option("--reference", "reference_spec", default=None,
              help="A reference model spec (e.g. the exact oracle a toy was trained on) for r(d).")
def analyze_homogenization(model_spec, device, dtype, gen_length, seed, out, plots, progress, canvases_path, mask_span,
                           mask_rate, n_canvases, reference_spec):
    """Entropy, confidence and KL to the context-free marginal against distance, with a
    position-matched control (the context ablated) and the excess over it."""
    _check_out(out)  # before loading or computing anything
    from remask.analysis.commands import analyze_homogenization as compute

    model = _analysis_model(model_spec, device, dtype)
    canvases = _read_canvases(model, canvases_path, mask_span, mask_rate, seed)
    reference = None if reference_spec is None else _analysis_model(reference_spec, device, dtype)
    _run_analysis(compute, plots, model=model, out=out, canvases=canvases, gen_length=gen_length,
                  n_canvases=8 if n_canvases is None else n_canvases, seed=seed, reference=reference,
                  model_spec=model_spec, reference_spec=reference_spec, progress=progress)


@analyze.command("cmi")
@_analysis_options(sampler=False, gen_help=_GEN_HELP)
@_canvas_options
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Clamp the k most likely tokens (default: all tokens when V <= 256, else 8).")
@click.option("--samples", "n_samples", type=click.IntRange(min=1), default=None,
              help="Clamp sampled tokens instead (unbiased; O(1/M) plug-in bias).")
@click.option("--max-positions", type=click.IntRange(min=1), default=32, show_default=True,
              help="Clamped positions per canvas (evenly spaced among the masked ones).")
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Clamped canvases per forward pass (the memory budget).")
def analyze_cmi(model_spec, device, dtype, gen_length, seed, out, plots, progress, canvases_path, mask_span, mask_rate,
                n_canvases, top_k, n_samples, max_positions, max_batch):
    """Clamp-and-rerun conditional mutual information between masked positions (any model)."""
    _check_out(out)  # before loading or computing anything
    from remask.analysis.commands import analyze_cmi as compute

    model = _analysis_model(model_spec, device, dtype)
    canvases = _read_canvases(model, canvases_path, mask_span, mask_rate, seed)
    _run_analysis(compute, plots, model=model, out=out, canvases=canvases, gen_length=gen_length,
                  n_canvases=1 if n_canvases is None else n_canvases, seed=seed, top_k=top_k, n_samples=n_samples,
                  max_positions=max_positions, batch_size=max_batch, model_spec=model_spec, progress=progress)


@analyze.command("coherence")
@_analysis_options(sampler=True, gen_help="Generated tokens (default: the oracle's seq_len).")
@click.option("--samples", "n_samples", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Sequences decoded by the sampler.")
def analyze_coherence(model_spec, sampler, sets, device, dtype, gen_length, seed, out, plots, progress, n_samples):
    """A sampler's output law against an exact oracle's joint, and exact partition errors."""
    _check_out(out)  # before loading or computing anything
    from remask.analysis.commands import analyze_coherence as compute, is_exact_oracle

    model = _analysis_model(model_spec, device, dtype)
    if not is_exact_oracle(model):
        raise click.UsageError(
            f"coherence needs an exact oracle (e.g. 'oracle:markov?vocab=3&length=6'), got "
            f"{type(model).__name__} from {model_spec!r}; use homogenization, cmi or order on other models"
        )
    _run_analysis(compute, plots, oracle=model, sampler=_build(sampler, sets), out=out, gen_length=gen_length,
                  n_samples=n_samples, seed=seed, model_spec=model_spec, progress=progress)


@analyze.command("order")
@_analysis_options(sampler=True, gen_help=_GEN_HELP)
@click.option("--rows", "n_rows", type=click.IntRange(min=1), default=8, show_default=True,
              help="Sequences decoded in one batch.")
def analyze_order(model_spec, sampler, sets, device, dtype, gen_length, seed, out, plots, progress, n_rows):
    """Decode order of a sampler (Kendall τ, AR-ness, frontier distance, certificates)."""
    _check_out(out)  # before loading or computing anything
    from remask.analysis.commands import analyze_order as compute

    _run_analysis(compute, plots, model=_analysis_model(model_spec, device, dtype), sampler=_build(sampler, sets), out=out,
                  gen_length=gen_length, n_rows=n_rows, seed=seed, model_spec=model_spec, progress=progress)

if __name__ == "__main__":  # pragma: no cover
    main()
