"""The ``remask`` command line: list, generate, infill, demo, bench, analyze.

User errors (bad options, values, specs, checkpoints, output paths) end as one line in
click's usage-error style with exit code 2, never a traceback: the library raises
``ValueError``/``TypeError``/``OSError`` for them, and the command group turns any that
escape a command into a usage error. A run that ends with masks left (a denoiser that
proposed the mask token) is reported as one line with exit code 1. Every argument and output
path is checked before a model is loaded or anything is computed.

Start-up is cheap: torch, numba and transformers are imported inside the commands that need
them (``remask --help`` imports none of them), so that ``--threads`` can still set
``NUMBA_NUM_THREADS``/``OMP_NUM_THREADS`` before those libraries read them.
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
    if (
        isinstance(error, OSError)
        and error.filename is not None
        and str(error.filename) not in text
    ):
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


def _check_out_file(out: str | None, *, hint: str = "--out") -> None:
    """An output file path must be creatable before anything runs."""
    if out is None:
        return
    from remask.app.files import check_out_dir

    if os.path.isdir(out):
        raise click.BadParameter(f"{out!r} is a directory; give a file path", param_hint=hint)
    try:
        check_out_dir(os.path.dirname(os.path.abspath(out)))
    except ValueError as error:
        raise click.BadParameter(_one_line(error), param_hint=hint) from None


def _check_out(out: str) -> None:
    from remask.app.files import check_out_dir

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


def _load(spec: str, *, device=None, dtype=None, verbose: bool | None = None):
    """Load a model spec, checkpoint directory or hub id; loading bars only with --verbose."""
    from remask.models import load_model
    from remask.models.hub import is_hub_id, resolve_hub_id

    if verbose is None:
        ctx = click.get_current_context(silent=True)
        verbose = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("verbose"))
    try:
        if is_hub_id(spec) and not os.path.exists(spec):
            spec = resolve_hub_id(spec)  # download bars stay: a first download can take long
        if not os.path.isdir(spec) or verbose:
            return load_model(spec, device=device, dtype=dtype)
        with _quiet_transformers():
            return load_model(spec, device=device, dtype=dtype)
    except (TypeError, ValueError, OSError) as error:
        raise click.UsageError(_one_line(error)) from None


class _quiet_transformers:
    """Silence transformers' "Loading weights" bar and info messages for the duration."""

    def __enter__(self):
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:
            self.logging = None
            return self
        self.logging = hf_logging
        self.bar = hf_logging.is_progress_bar_enabled()
        self.level = hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        if self.logging is not None:
            if self.bar:
                self.logging.enable_progress_bar()
            self.logging.set_verbosity(self.level)
        return False


def _device_dtype(device: str | None, dtype: str | None):
    """Resolve --device/--dtype: cuda + bfloat16 when CUDA is available, else cpu + float32."""
    import torch

    cuda = torch.cuda.is_available()
    if device is None:
        device = "cuda" if cuda else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise click.BadParameter(
            f"not a torch device: {device!r} (e.g. cpu, cuda, cuda:1)", param_hint="--device"
        ) from None
    if resolved.type == "cuda" and not cuda:
        raise click.BadParameter(
            f"{device!r} asked for, but CUDA is not available here", param_hint="--device"
        )
    if (
        resolved.type == "cuda"
        and resolved.index is not None
        and resolved.index >= torch.cuda.device_count()
    ):
        raise click.BadParameter(
            f"{device!r}: only {torch.cuda.device_count()} CUDA device(s) here",
            param_hint="--device",
        )
    if dtype is None:
        dtype = "bfloat16" if resolved.type == "cuda" else "float32"
    return resolved, getattr(torch, dtype)


def set_threads(threads: int) -> None:
    """Use ``threads`` threads in torch, Numba and OpenMP/MKL.

    The environment variables are read when numba and torch are first imported, so they are
    set first; libraries already imported are set through their APIs (Numba only up to the
    pool it launched with).
    """
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _report(
    model, out, seconds: float, as_json: bool, prompt_lengths: list[int] | None
) -> list[dict]:
    rows = []
    for b in range(out.tokens.shape[0]):
        real = out.tokens[b][out.attention_mask[b]].tolist()
        row = {"tokens": real, "nfe": int(out.nfe[b])}
        if prompt_lengths is not None:
            row["generated"] = real[prompt_lengths[b] :]
        if out.text is not None:
            row["text"] = out.text[b]
        rows.append(row)
    _print_rows(out, rows, seconds, as_json)
    return rows


def _print_rows(out, rows: list[dict], seconds: float, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"rows": rows, "steps": out.steps, "seconds": round(seconds, 4)}))
        return
    for b, row in enumerate(rows):
        body = row.get("text", " ".join(map(str, row.get("generated", row["tokens"]))))
        click.echo(f"[{b}] nfe={row['nfe']}  {body}")
    click.echo(f"{out.steps} steps, {seconds:.2f} s", err=True)


@click.group(cls=_Group)
@click.version_option(package_name="remask")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads for torch, Numba and OpenMP (default: the libraries' own, one per core; "
    "`remask demo` always runs on one: its tensors are tiny).",
)
@click.option("--verbose", is_flag=True, help="Show transformers' weight-loading bar and messages.")
@click.pass_context
def main(ctx: click.Context, threads: int | None, verbose: bool) -> None:
    """remask: interchangeable samplers for masked diffusion language models."""
    ctx.obj = {"threads": threads, "verbose": verbose}
    if threads is not None:
        set_threads(threads)


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
    click.echo(
        "  oracle:markov?vocab=8&length=16&seed=0&concentration=1.0   exact Markov-chain oracle"
    )
    click.echo(
        "  tiny:transformer?vocab=32&width=32&depth=2&heads=4&seed=0 seeded random transformer"
    )
    click.echo(
        "  <checkpoint directory> or <org/name> (Hugging Face Hub id)  LLaDA/Dream/MDLM/any masked LM"
    )
    backends = kernels.backends() if hasattr(kernels, "backends") else ["torch"]
    click.echo(f"Kernel backends available here: {', '.join(backends)}")


_SAMPLER_OPTIONS = [
    click.option(
        "--model",
        "model_spec",
        required=True,
        help="Model spec, checkpoint directory or Hugging Face Hub id (org/name).",
    ),
    click.option(
        "--sampler", default="low_confidence", show_default=True, help="Registered sampler name."
    ),
    click.option(
        "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Sampler setting (repeatable)."
    ),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option(
        "--device",
        default=None,
        help="Torch device for a checkpoint (default: cuda if available, else cpu).",
    ),
    click.option(
        "--dtype",
        type=click.Choice(["float32", "bfloat16", "float16"]),
        default=None,
        help="Checkpoint dtype (default: bfloat16 on cuda, float32 on cpu).",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print tokens, NFE and timings as JSON."),
    click.option(
        "--out",
        "out_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Also write one JSON line per row (prompt, tokens, text, nfe, seconds, sampler config).",
    ),
    click.option(
        "--trace",
        "trace_target",
        default=None,
        metavar="PATH.html|PATH.png|-",
        help="Show the decode: an HTML page to step through, a PNG (position x step), or '-' for "
        "text in the terminal (one file per row).",
    ),
    click.option(
        "--progress/--no-progress", default=None, help="Progress bar (default: on a terminal)."
    ),
]


def _sampler_options(fn):
    for option in reversed(_SAMPLER_OPTIONS):
        fn = option(fn)
    return fn


def _check_trace_target(target: str | None) -> None:
    """--trace: '-', or a creatable .html or .png path (a PNG needs matplotlib); checked before loading."""
    if target is None or target == "-":
        return
    if not target.lower().endswith((".png", ".html")):
        raise click.BadParameter(
            f"{target!r}: give a .html or .png path, or '-' for text", param_hint="--trace"
        )
    _check_out_file(target, hint="--trace")
    if target.lower().endswith(".html"):
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.BadParameter(
            'a PNG trace needs matplotlib: pip install "remask[plot]" (or use --trace -)',
            param_hint="--trace",
        ) from None


def _read_prompts_file(path: str) -> list[tuple[str, object]]:
    """Prompts from a file: one per line — plain text, or JSON (a string, a list of token ids,
    or an object with "prompt" (text) or "prompt_ids" (ids)). Blank lines are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise click.BadParameter(
            f"cannot read {path!r}: {_one_line(error)}", param_hint="--prompts-file"
        ) from None
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        where = f"{path}:{number}"
        value: object = text
        if text[0] in '{["':
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise click.BadParameter(
                    f"{where}: not valid JSON ({error.msg})", param_hint="--prompts-file"
                ) from None
        if isinstance(value, dict):
            keys = [k for k in ("prompt", "prompt_ids") if k in value]
            if len(keys) != 1:
                raise click.BadParameter(
                    f"{where}: a JSON object needs exactly one of 'prompt' (text) or "
                    f"'prompt_ids' (token ids), got keys {sorted(value)}",
                    param_hint="--prompts-file",
                )
            value = value[keys[0]]
            if keys[0] == "prompt" and not isinstance(value, str):
                raise click.BadParameter(
                    f"{where}: 'prompt' must be text, got {value!r:.60}",
                    param_hint="--prompts-file",
                )
            if keys[0] == "prompt_ids" and not isinstance(value, list):
                raise click.BadParameter(
                    f"{where}: 'prompt_ids' must be a list of ints", param_hint="--prompts-file"
                )
        if isinstance(value, str):
            entries.append(("text", value))
        elif isinstance(value, list) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in value
        ):
            entries.append(("ids", value))
        else:
            raise click.BadParameter(
                f"{where}: expected text, a list of token ids or an object, got {value!r:.60}",
                param_hint="--prompts-file",
            )
    if not entries:
        raise click.BadParameter(f"{path!r} holds no prompt", param_hint="--prompts-file")
    return entries


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _check_cache_blocks(cache: str, cache_refresh: int | None, config) -> None:
    """A cache refreshed only at block starts is stale within one block: with a single block
    (block_length=None) the tokens differ from uncached decoding. Say so."""
    if cache == "none" or cache_refresh == 1 or getattr(config, "block_length", None) is not None:
        return
    _warn(
        f"--cache {cache} with a single block (block_length=None): the cache is refreshed only at "
        "block starts, so the whole answer is decoded from stale keys and values and the tokens "
        "differ from uncached decoding; use --set block_length=32 (the setting the cache is made "
        "for) or --cache-refresh 1 (exact, no saving)"
    )


#: Shadow width the CLI picks for WINO when it must emulate the shadow block and no block
#: length was given: 1 + 32 forward passes per step instead of 1 + the whole masked region.
WINO_EMULATED_WIDTH = 32


def _run_options(fn):
    """--cfg, --stop-at-eos and DPad's --dpad-* knobs, shared by generate and infill."""
    options = [
        click.option(
            "--cfg",
            type=click.FloatRange(min=0.0),
            default=0.0,
            show_default=True,
            help="Classifier-free guidance scale S for any sampler (LLaDA's; 0 = off, each step "
            "costs 2 NFE).",
        ),
        click.option(
            "--stop-at-eos",
            is_flag=True,
            help="EOS early stop: a row stops once it has committed EOS with everything before "
            "decided; the rest of the row becomes EOS (needs a model with an eos_id).",
        ),
        click.option(
            "--dpad-window",
            type=click.IntRange(min=1),
            default=None,
            help="DPad suffix dropout (any sampler, blocks): keep suffix masks at most W positions "
            "after the active block, near ones more often (reference W: 256).",
        ),
        click.option(
            "--dpad-sigma",
            type=click.FloatRange(min=0.0),
            default=None,
            help="DPad: the window's end at k standard deviations [default: 4].",
        ),
        click.option(
            "--dpad-scale",
            type=click.FloatRange(min=0.0, min_open=True),
            default=None,
            help="DPad: scale a of the retention probability [default: 2].",
        ),
        click.option(
            "--dpad-seed",
            type=click.IntRange(min=0, max=2**63 - 1),
            default=None,
            help="DPad: seed of the kept suffix sets [default: 0].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _dpad(model, window, sigma, scale, seed):
    """--dpad-window W (and its knobs): the model behind DPad's suffix dropout."""
    if window is None:
        given = [
            name
            for name, value in (
                ("--dpad-sigma", sigma),
                ("--dpad-scale", scale),
                ("--dpad-seed", seed),
            )
            if value is not None
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} set(s) DPad's dropout but --dpad-window is missing: "
                "give --dpad-window W to turn DPad on"
            )
        return model
    from remask.models.dpad import DPad

    knobs = {k: v for k, v in (("sigma", sigma), ("scale", scale), ("seed", seed)) if v is not None}
    try:
        return DPad(model, window=window, **knobs)
    except (TypeError, ValueError) as error:
        raise click.UsageError(f"--dpad-window: {_one_line(error)}") from None


def _guided(model, cfg: float, config):
    """--cfg S: the model behind classifier-free guidance (any sampler); a sampler config that
    guides already (``--set cfg_scale=...``) would guide twice, so giving both is an error."""
    if not cfg:
        return model
    if getattr(config, "cfg_scale", 0.0):
        raise click.UsageError(
            f"--cfg {cfg} and --set cfg_scale={config.cfg_scale} both ask for guidance; "
            "give one of them"
        )
    from remask.models.wrappers import Guided

    try:
        return Guided(model, cfg)
    except (TypeError, ValueError) as error:
        raise click.UsageError(f"--cfg: {_one_line(error)}") from None


def _check_wino_cost(model, config, widest: int):
    """WINO without the attention-bias path emulates its shadow block: 1 + W evaluations a step.

    Warns with the cost; when no ``block_length`` was given and the masked region is wider than
    :data:`WINO_EMULATED_WIDTH`, returns the config with that block length (a bounded width),
    else the config unchanged.
    """
    if getattr(config, "name", None) != "wino":
        return config
    from remask.samplers.wino import supports_attention_bias

    if config.shadow == "attention" or supports_attention_bias(model):
        return config
    if config.block_length is None and widest > WINO_EMULATED_WIDTH:
        import dataclasses

        _warn(
            f"wino emulates its shadow block on {type(model).__name__} (no attention-bias path): with "
            f"one block each step would cost 1 + {widest} forward passes per row; using "
            f"block_length={WINO_EMULATED_WIDTH} ({1 + WINO_EMULATED_WIDTH} per step). "
            "--set block_length=N chooses another width"
        )
        return dataclasses.replace(config, block_length=WINO_EMULATED_WIDTH)
    width = widest if config.block_length is None else min(config.block_length, widest)
    if width >= 8:
        _warn(
            f"wino emulates its shadow block on {type(model).__name__} (no attention-bias path): each "
            f"step costs 1 + W = {1 + width} forward passes per row (W = {width}, "
            f"{'the whole masked region' if config.block_length is None else 'block_length'}); "
            "--set block_length=8 bounds it"
        )
    return config


def _model_args(device, dtype):
    resolved_device, resolved_dtype = _device_dtype(device, dtype)
    return {"device": resolved_device, "dtype": resolved_dtype}


def _finish(
    model,
    sampler_name,
    config,
    out,
    batch_prompts,
    seconds,
    *,
    as_json,
    out_file,
    tracer,
    trace_target,
    prompt_lengths,
    seed,
):
    rows = _report(model, out, seconds, as_json, prompt_lengths)
    if out_file is not None:
        config_dict = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        with open(out_file, "w", encoding="utf-8") as handle:
            for prompt, row in zip(batch_prompts, rows):
                record = {
                    "prompt": prompt,
                    "tokens": row.get("generated", row["tokens"]),
                    "text": row.get("text"),
                    "nfe": row["nfe"],
                    "seconds": round(seconds, 4),
                    "sampler": sampler_name,
                    "config": config_dict,
                    "seed": seed,
                }
                handle.write(json.dumps(record, default=repr) + "\n")
        click.echo(f"wrote {out_file}", err=True)
    if tracer is not None:
        from remask.trace_view import write_trace

        trace = tracer.trace(out)
        # With --json, stdout holds the JSON document: a text trace goes to stderr.
        write_trace(
            trace,
            trace_target,
            mask_id=model.mask_id,
            title=f"{sampler_name}: {out.steps} steps",
            stream=sys.stderr if as_json else None,
            tokenizer=getattr(model, "tokenizer", None),
        )
        if trace_target != "-":
            click.echo(
                f"wrote {trace_target}"
                + ("" if out.tokens.shape[0] == 1 else " (one file per row)"),
                err=True,
            )


def _tracer(trace_target):
    if trace_target is None:
        return None, []
    from remask.trace_view import DecodeTracer

    tracer = DecodeTracer()
    return tracer, [tracer]


@main.command()
@_sampler_options
@click.option(
    "--gen-length", type=click.IntRange(min=1), required=True, help="Tokens to generate per prompt."
)
@click.option(
    "--prompt-ids", multiple=True, help="A prompt as token ids, e.g. '1,2,3' (repeat for a batch)."
)
@click.option(
    "--prompt", "prompts", multiple=True, help="A text prompt (needs a tokenizer; repeatable)."
)
@click.option(
    "--prompts-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Prompts, one a line: text, or JSON (a string, a list of ids, {'prompt': ...} or {'prompt_ids': [...]}).",
)
@click.option("--chat", is_flag=True, help="Wrap text prompts in the tokenizer's chat template.")
@click.option(
    "--cache",
    type=click.Choice(["none", "prefix", "dual"]),
    default="none",
    show_default=True,
    help="Fast-dLLM KV cache for blockwise samplers (LLaDA/Dream checkpoints); use with block_length.",
)
@click.option(
    "--cache-refresh",
    type=click.IntRange(min=1),
    default=None,
    help="Also refresh the cache every N steps (default: at each block start only).",
)
@_run_options
def generate(
    model_spec,
    sampler,
    sets,
    seed,
    device,
    dtype,
    as_json,
    out_file,
    trace_target,
    progress,
    gen_length,
    prompt_ids,
    prompts,
    prompts_file,
    chat,
    cache,
    cache_refresh,
    cfg,
    stop_at_eos,
    dpad_window,
    dpad_sigma,
    dpad_scale,
    dpad_seed,
):
    """Generate GEN_LENGTH tokens after each prompt."""
    # Every argument is checked before the model loads.
    _check_out_file(out_file)
    _check_trace_target(trace_target)
    if prompt_ids and prompts:
        raise click.UsageError("give either --prompt-ids or --prompt, not both")
    entries = [("ids", _parse_ids(p)) for p in prompt_ids] + [("text", p) for p in prompts]
    if prompts_file is not None:
        if entries:
            raise click.UsageError(
                "give prompts either on the command line or with --prompts-file, not both"
            )
        entries = _read_prompts_file(prompts_file)
    if chat and any(kind == "ids" for kind, _ in entries):
        raise click.UsageError(
            "--chat applies a chat template to text prompts; token-id prompts are already "
            "encoded: drop --chat or give text prompts"
        )
    config = _build(sampler, sets)
    model = _load(model_spec, **_model_args(device, dtype))
    texts = [p for kind, p in entries if kind == "text"]
    encoded = iter(_encode(model, texts, chat) if texts else [])
    batch = [next(encoded) if kind == "text" else p for kind, p in entries] or [[]]
    # Checked here as well as in generate(): a cache wrapper does not carry the limit.
    limit = next(
        (
            v
            for v in (getattr(model, n, None) for n in ("max_length", "max_len"))
            if isinstance(v, int) and not isinstance(v, bool)
        ),
        None,
    )
    if limit is not None and max(map(len, batch)) + gen_length > limit:
        raise click.BadParameter(
            f"{gen_length} after a prompt of {max(map(len, batch))} tokens exceeds the "
            f"{limit} tokens {type(model).__name__} handles",
            param_hint="--gen-length",
        )
    if cache != "none":
        from remask.models import Cached

        _check_cache_blocks(cache, cache_refresh, config)
        try:
            model = Cached(model, mode=cache, refresh_every=cache_refresh)
        except (TypeError, ValueError) as error:
            raise click.UsageError(_one_line(error)) from None
    model = _dpad(model, dpad_window, dpad_sigma, dpad_scale, dpad_seed)
    model = _guided(model, cfg, config)
    config = _check_wino_cost(model, config, gen_length)
    from remask.samplers import generate as run

    tracer, callbacks = _tracer(trace_target)
    start = time.perf_counter()
    out = _run_sampler(
        run,
        model,
        batch,
        config,
        gen_length=gen_length,
        seed=seed,
        callbacks=callbacks,
        progress=sys.stderr.isatty() if progress is None else progress,
        stop_at_eos=stop_at_eos,
    )
    shown = [p for _, p in entries] or [[]]
    _finish(
        model,
        sampler,
        config,
        out,
        shown,
        time.perf_counter() - start,
        as_json=as_json,
        out_file=out_file,
        tracer=tracer,
        trace_target=trace_target,
        prompt_lengths=[len(p) for p in batch],
        seed=seed,
    )


def _encode(model, prompts, chat: bool) -> list[list[int]]:
    """Text prompts to ids as the model expects them.

    Plain prompts go through the tokenizer with its special tokens (BERT's [CLS], LLaDA's
    BOS), less any it appends at the end ([SEP], EOS): the answer follows the prompt. A chat
    template already holds its special tokens. A prompt that encodes mostly to the unknown
    token warns: the tokenizer does not cover its characters.
    """
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise click.UsageError("this model has no tokenizer: use --prompt-ids")
    if chat:
        if getattr(tokenizer, "chat_template", None) is None:
            raise click.UsageError("this tokenizer has no chat template: drop --chat")
        # Render to text, then tokenize: apply_chat_template(tokenize=True) returns a list in
        # transformers 4 but a BatchEncoding in 5. The template already holds the special tokens.
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
            )
            for p in prompts
        ]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    closing = {getattr(tokenizer, name, None) for name in ("sep_token_id", "eos_token_id")} - {None}
    unk = getattr(tokenizer, "unk_token_id", None)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    batch = []
    for number, prompt in enumerate(prompts):
        plain = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        while len(ids) > len(plain) and ids and ids[-1] in closing:
            ids.pop()  # a closing [SEP]/EOS would end the text before the answer
        words = [i for i in ids if i not in special or i == unk]
        unknown = sum(i == unk for i in words) if unk is not None else 0
        if words and unknown * 2 >= len(words):
            _warn(
                f"prompt {number} {prompt[:40]!r} encodes to {unknown} unknown token(s) out of {len(words)}: "
                "the tokenizer does not cover its text (a character-level tokenizer may need spaces "
                "between characters)"
            )
        batch.append(ids)
    return batch


@main.command()
@_sampler_options
@click.option(
    "--tokens",
    "canvases",
    multiple=True,
    required=True,
    help=f"A canvas as token ids with '{MASK_MARK}' where to fill, e.g. '3,_,_,7' (repeatable).",
)
@_run_options
def infill(
    model_spec,
    sampler,
    sets,
    seed,
    device,
    dtype,
    as_json,
    out_file,
    trace_target,
    progress,
    canvases,
    cfg,
    stop_at_eos,
    dpad_window,
    dpad_sigma,
    dpad_scale,
    dpad_seed,
):
    """Fill the masked positions of given canvases; other tokens stay fixed."""
    _check_out_file(out_file)
    _check_trace_target(trace_target)
    holes = -1  # stands for '_' until the model (and its mask id) is loaded
    parsed = []
    for canvas in canvases:
        ids = _parse_ids(canvas, mask_id=holes)
        if not ids:
            raise click.BadParameter(
                f"empty canvas {canvas!r}: give token ids with '{MASK_MARK}' "
                "where to fill, e.g. '3,_,_,7'",
                param_hint="--tokens",
            )
        if holes not in ids:
            raise click.BadParameter(
                f"canvas {canvas!r} has no '{MASK_MARK}': nothing to fill", param_hint="--tokens"
            )
        parsed.append(ids)
    config = _build(sampler, sets)
    model = _load(model_spec, **_model_args(device, dtype))
    batch = [[model.mask_id if i == holes else i for i in ids] for ids in parsed]
    model = _dpad(model, dpad_window, dpad_sigma, dpad_scale, dpad_seed)
    model = _guided(model, cfg, config)
    config = _check_wino_cost(model, config, max(sum(i == holes for i in ids) for ids in parsed))
    from remask.samplers import infill as run

    tracer, callbacks = _tracer(trace_target)
    start = time.perf_counter()
    out = _run_sampler(
        run,
        model,
        batch,
        config,
        seed=seed,
        callbacks=callbacks,
        progress=sys.stderr.isatty() if progress is None else progress,
        stop_at_eos=stop_at_eos,
    )
    _finish(
        model,
        sampler,
        config,
        out,
        list(canvases),
        time.perf_counter() - start,
        as_json=as_json,
        out_file=out_file,
        tracer=tracer,
        trace_target=trace_target,
        prompt_lengths=None,
        seed=seed,
    )


@main.command()
@click.option(
    "--samples",
    type=click.IntRange(min=100),
    default=20000,
    show_default=True,
    help="Sequences decoded per sampler setting.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def demo(ctx: click.Context, samples: int, seed: int) -> None:
    """Compare samplers against the exact truth on a built-in Markov-chain oracle (no download)."""
    if (
        (ctx.find_root().obj or {}).get("threads") is None
        and "NUMBA_NUM_THREADS" not in os.environ
        and "numba" not in sys.modules
    ):
        # Every tensor of the demo is tiny: one thread is the fastest setting and does not
        # fight other work for the cores (the demo pins torch to one thread itself).
        os.environ["NUMBA_NUM_THREADS"] = "1"
    from remask.app.demo import format_table, run_demo

    oracle, rows, floor = run_demo(n_samples=samples, seed=seed)
    click.echo(format_table(oracle, rows, floor, samples))


@main.group()
def bench() -> None:
    """Benchmarks; each writes CSV rows (shared schema) under bench/results/ and prints a summary."""


def _bench_command(module: str, doc: str):
    @click.option(
        "--quick", is_flag=True, help="A small run (well under 3 minutes on 2 CPU cores)."
    )
    @click.option("--out", type=click.Path(dir_okay=False), default=None, help="CSV path to write.")
    def command(quick: bool, out: str | None) -> None:
        import importlib

        _check_out_file(out)
        importlib.import_module(f"remask.bench.{module}").main(quick=quick, out=out)

    command.__doc__ = doc
    return command


bench.command("kernels")(
    _bench_command("kernels", "Kernel micro-benchmarks: propose and selection ops per backend.")
)
bench.command("samplers")(
    _bench_command("samplers", "Quality vs NFE on exact oracles, and sampler overhead.")
)
bench.command("models")(
    _bench_command("cache", "Model forward: cached (prefix/dual KV) vs uncached decoding.")
)


@bench.command("gpu")
@click.option(
    "--quick", is_flag=True, help="Tiny shapes on whatever device is there (a pipeline check)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the CSVs (default bench/results).",
)
@click.option("--keep-going", is_flag=True, help="Log a failing part and go on with the others.")
def bench_gpu(quick: bool, out: str | None, keep_going: bool) -> None:
    """Kernel tests on CUDA, propose vs a copy, 8B-shaped decoding vs the reference loops."""
    from remask.app.files import check_out_dir
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
            click.option(
                "--model",
                "model_spec",
                required=True,
                help="Model spec, checkpoint directory or train_toy checkpoint directory.",
            ),
        ]
        if sampler:
            options += [
                click.option(
                    "--sampler",
                    default="low_confidence",
                    show_default=True,
                    help="Registered sampler name.",
                ),
                click.option(
                    "--set",
                    "sets",
                    multiple=True,
                    metavar="KEY=VALUE",
                    help="Sampler setting (repeatable).",
                ),
            ]
        options += [
            click.option(
                "--device", default=None, help="Load the model on this device (e.g. cuda)."
            ),
            click.option(
                "--dtype",
                type=click.Choice(["float32", "bfloat16", "float16"]),
                default=None,
                help="Load the model's weights in this dtype (e.g. bfloat16 for an 8B checkpoint).",
            ),
            click.option("--gen-length", type=click.IntRange(min=1), default=None, help=gen_help),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option(
                "--out", type=click.Path(file_okay=False), required=True, help="Output directory."
            ),
            click.option(
                "--plots/--no-plots", default=True, show_default=True, help="Write PNG figures."
            ),
            click.option(
                "--progress/--no-progress",
                default=None,
                help="Progress bar (default: on a terminal).",
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


def _run_analysis(compute, plots: bool, **kwargs) -> None:
    from remask.app.analyze import format_table

    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError(
                'plots need matplotlib: pip install "remask[plot]" (or pass --no-plots)'
            ) from None
    progress = kwargs.pop("progress")
    try:
        summary = compute(
            plots=plots, progress=sys.stderr.isatty() if progress is None else progress, **kwargs
        )
    except (TypeError, ValueError) as error:
        raise click.UsageError(_one_line(error)) from None
    click.echo(format_table(summary))
    click.echo(f"wrote {kwargs['out']}", err=True)


def _analysis_model(spec: str, device: str | None = None, dtype: str | None = None):
    if device is None and dtype is None:
        return _load(spec)
    import torch

    try:
        return _load(spec, device=device, dtype=None if dtype is None else getattr(torch, dtype))
    except RuntimeError as error:  # e.g. a device that is not there
        raise click.UsageError(_one_line(error)) from None


_GEN_HELP = "Masked positions after the context (default: seq_len - 1 on an oracle, else 32)."


def _canvas_options(fn):
    options = [
        click.option(
            "--canvases",
            "canvases_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="File of canvases, one per line: token ids with '_' for a mask, text (tokenized with "
            "the model's special tokens; the tokenizer's mask token marks a mask) or JSONL "
            '{"ids": [...]} / {"text": ...}. Required for a checkpoint.',
        ),
        click.option(
            "--mask-span",
            type=click.IntRange(min=1),
            default=None,
            help="Mask a random span of this many tokens in each canvas (seeded by --seed).",
        ),
        click.option(
            "--mask-rate",
            type=click.FloatRange(min=0, max=1, min_open=True),
            default=None,
            help="Mask this fraction of each canvas's tokens at random (seeded by --seed).",
        ),
        click.option(
            "--n-canvases",
            type=click.IntRange(min=1),
            default=None,
            help="Default canvases on an oracle or train_toy model: how many.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _read_canvases(model, path, mask_span, mask_rate, seed):
    if path is None:
        if mask_span is not None or mask_rate is not None:
            raise click.UsageError(
                "--mask-span/--mask-rate mask the sequences of --canvases FILE; pass it too"
            )
        return None
    from remask.analysis.canvases import read_canvases

    try:
        return read_canvases(path, model, mask_span=mask_span, mask_rate=mask_rate, seed=seed)
    except ValueError as error:
        raise click.BadParameter(_one_line(error), param_hint="--canvases") from None


@analyze.command("homogenization")
@_analysis_options(sampler=False, gen_help=_GEN_HELP)
@_canvas_options
@click.option(
    "--reference",
    "reference_spec",
    default=None,
    help="A reference model spec (e.g. the exact oracle a toy was trained on) for r(d).",
)
def analyze_homogenization(
    model_spec,
    device,
    dtype,
    gen_length,
    seed,
    out,
    plots,
    progress,
    canvases_path,
    mask_span,
    mask_rate,
    n_canvases,
    reference_spec,
):
    """Entropy, confidence and KL to the context-free marginal against distance, with a
    position-matched control (the context ablated) and the excess over it."""
    _check_out(out)  # before loading or computing anything
    from remask.app.analyze import analyze_homogenization as compute

    model = _analysis_model(model_spec, device, dtype)
    canvases = _read_canvases(model, canvases_path, mask_span, mask_rate, seed)
    reference = None if reference_spec is None else _analysis_model(reference_spec, device, dtype)
    _run_analysis(
        compute,
        plots,
        model=model,
        out=out,
        canvases=canvases,
        gen_length=gen_length,
        n_canvases=8 if n_canvases is None else n_canvases,
        seed=seed,
        reference=reference,
        model_spec=model_spec,
        reference_spec=reference_spec,
        progress=progress,
    )


@analyze.command("cmi")
@_analysis_options(sampler=False, gen_help=_GEN_HELP)
@_canvas_options
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Clamp the k most likely tokens (default: all tokens when V <= 256, else 8).",
)
@click.option(
    "--samples",
    "n_samples",
    type=click.IntRange(min=1),
    default=None,
    help="Clamp sampled tokens instead (unbiased; O(1/M) plug-in bias).",
)
@click.option(
    "--max-positions",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Clamped positions per canvas (evenly spaced among the masked ones).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Clamped canvases per forward pass (the memory budget).",
)
def analyze_cmi(
    model_spec,
    device,
    dtype,
    gen_length,
    seed,
    out,
    plots,
    progress,
    canvases_path,
    mask_span,
    mask_rate,
    n_canvases,
    top_k,
    n_samples,
    max_positions,
    max_batch,
):
    """Clamp-and-rerun conditional mutual information between masked positions (any model)."""
    _check_out(out)  # before loading or computing anything
    from remask.app.analyze import analyze_cmi as compute

    model = _analysis_model(model_spec, device, dtype)
    canvases = _read_canvases(model, canvases_path, mask_span, mask_rate, seed)
    _run_analysis(
        compute,
        plots,
        model=model,
        out=out,
        canvases=canvases,
        gen_length=gen_length,
        n_canvases=1 if n_canvases is None else n_canvases,
        seed=seed,
        top_k=top_k,
        n_samples=n_samples,
        max_positions=max_positions,
        batch_size=max_batch,
        model_spec=model_spec,
        progress=progress,
    )


@analyze.command("coherence")
@_analysis_options(sampler=True, gen_help="Generated tokens (default: the oracle's seq_len).")
@click.option(
    "--samples",
    "n_samples",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Sequences decoded by the sampler.",
)
def analyze_coherence(
    model_spec, sampler, sets, device, dtype, gen_length, seed, out, plots, progress, n_samples
):
    """A sampler's output law against an exact oracle's joint, and exact partition errors."""
    _check_out(out)  # before loading or computing anything
    from remask.app.analyze import analyze_coherence as compute
    from remask.app.analyze import is_exact_oracle

    model = _analysis_model(model_spec, device, dtype)
    if not is_exact_oracle(model):
        raise click.UsageError(
            f"coherence needs an exact oracle (e.g. 'oracle:markov?vocab=3&length=6'), got "
            f"{type(model).__name__} from {model_spec!r}; use homogenization, cmi or order on other models"
        )
    _run_analysis(
        compute,
        plots,
        oracle=model,
        sampler=_build(sampler, sets),
        out=out,
        gen_length=gen_length,
        n_samples=n_samples,
        seed=seed,
        model_spec=model_spec,
        progress=progress,
    )


@analyze.command("order")
@_analysis_options(sampler=True, gen_help=_GEN_HELP)
@click.option(
    "--rows",
    "n_rows",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Sequences decoded in one batch.",
)
def analyze_order(
    model_spec, sampler, sets, device, dtype, gen_length, seed, out, plots, progress, n_rows
):
    """Decode order of a sampler (Kendall τ, AR-ness, frontier distance, certificates)."""
    _check_out(out)  # before loading or computing anything
    from remask.app.analyze import analyze_order as compute

    _run_analysis(
        compute,
        plots,
        model=_analysis_model(model_spec, device, dtype),
        sampler=_build(sampler, sets),
        out=out,
        gen_length=gen_length,
        n_rows=n_rows,
        seed=seed,
        model_spec=model_spec,
        progress=progress,
    )


if __name__ == "__main__":  # pragma: no cover
    main()


# ---------------------------------------------------------------------------- eval, sweep, sweep-report
def _need_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise click.UsageError("this command needs lm-eval: pip install 'remask[eval]'") from None


def _check_out_dir(out: str) -> None:
    from remask.eval.sweep import check_out_dir

    try:
        check_out_dir(out)
    except ValueError as error:
        raise click.BadParameter(_one_line(error), param_hint="--out") from None


@main.command("eval")
@click.option(
    "--model",
    "model_spec",
    required=True,
    help="Model spec, checkpoint directory or Hugging Face Hub id (org/name).",
)
@click.option(
    "--sampler", default="low_confidence", show_default=True, help="Registered sampler name."
)
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Sampler setting (repeatable)."
)
@click.option("--tasks", required=True, help="lm-eval task name(s), comma-separated.")
@click.option(
    "--include-path",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="A folder of extra lm-eval task YAMLs.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="First N documents of each task."
)
@click.option("--num-fewshot", type=click.IntRange(min=0), default=None)
@click.option(
    "--apply-chat-template", is_flag=True, help="Render prompts with the tokenizer's chat template."
)
@click.option(
    "--gen-length",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Tokens decoded per generate_until request.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Rows per generate call.",
)
@click.option(
    "--mc-num",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Monte-Carlo samples of the ELBO per loglikelihood request.",
)
@click.option(
    "--loglikelihood-batch-size", type=click.IntRange(min=1), default=32, show_default=True
)
@click.option(
    "--elbo",
    type=click.Choice(["llada", "dream"]),
    default="llada",
    show_default=True,
    help="ELBO variant (mask law) for loglikelihood requests.",
)
@click.option(
    "--stop-at-eos",
    is_flag=True,
    help="EOS early stop in generate_until: a row whose answer has ended costs no more forward passes.",
)
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0, show_default=True)
@click.option(
    "--device",
    default=None,
    help="Torch device for a checkpoint (default: cuda if available, else cpu).",
)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for results.json (lm-eval's results) and requests.jsonl (per-request costs).",
)
def eval_command(
    model_spec,
    sampler,
    sets,
    tasks,
    include_path,
    limit,
    num_fewshot,
    apply_chat_template,
    gen_length,
    batch_size,
    mc_num,
    loglikelihood_batch_size,
    elbo,
    stop_at_eos,
    seed,
    device,
    dtype,
    out,
) -> None:
    """Evaluate a model with a sampler on lm-eval tasks (remask.eval.RemaskLM)."""
    _check_out_dir(out)
    _need_lm_eval()
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise click.BadParameter(f"no task names in {tasks!r}", param_hint="--tasks")
    config = _parse_sets(sets)
    _build(sampler, sets)  # a bad sampler or setting fails before anything loads
    from remask.eval.tasks import quiet, task_manager

    quiet()
    manager = task_manager(names, include_path)
    model = _load(model_spec, **_model_args(device, dtype))
    import lm_eval

    from remask.eval.likelihood import supports_loglikelihood
    from remask.eval.lm import RemaskLM
    from remask.eval.tasks import load_tasks

    loaded = load_tasks(names, include_path, num_fewshot=num_fewshot, manager=manager)
    why = supports_loglikelihood(model)
    needy = [n for n, t in loaded.items() if t.OUTPUT_TYPE != "generate_until"]
    if why is not None and needy:
        raise click.UsageError(
            f"task(s) {needy} need loglikelihood, which this model cannot give: {why}"
        )
    rolling = [n for n, t in loaded.items() if t.OUTPUT_TYPE == "loglikelihood_rolling"]
    if rolling:
        raise click.UsageError(
            f"task(s) {rolling} need loglikelihood_rolling (perplexity), which remask does not "
            "implement for masked diffusion models"
        )
    lm = RemaskLM(
        model,
        sampler,
        config,
        gen_length=gen_length,
        batch_size=batch_size,
        mc_num=mc_num,
        loglikelihood_batch_size=loglikelihood_batch_size,
        elbo=elbo,
        stop_at_eos=stop_at_eos,
        seed=seed,
    )
    lm.model_name = model_spec
    start = time.perf_counter()
    results = _run_sampler(
        lm_eval.simple_evaluate,
        model=lm,
        tasks=list(loaded.values()),
        limit=limit,
        apply_chat_template=apply_chat_template,
        log_samples=False,
        bootstrap_iters=0,
        task_manager=manager,
    )
    seconds = time.perf_counter() - start
    summary = {
        "model": model_spec,
        "sampler": sampler,
        "settings": config,
        "tasks": names,
        "seconds": seconds,
        "results": results["results"],
        "costs": lm.cost_summary(),
        "lm_eval_config": {
            "limit": limit,
            "num_fewshot": num_fewshot,
            "apply_chat_template": apply_chat_template,
            "gen_length": gen_length,
            "mc_num": mc_num,
            "elbo": elbo,
            "stop_at_eos": stop_at_eos,
            "seed": seed,
        },
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    with open(os.path.join(out, "requests.jsonl"), "w") as f:
        for row in lm.costs():
            f.write(json.dumps(row) + "\n")
    from lm_eval.utils import make_table

    click.echo(make_table(results))
    c = summary["costs"]
    if c["requests"]:
        click.echo(
            f"generate_until: {c['requests']} requests, NFE/request {c['nfe_per_request']:.1f}, "
            f"tokens/forward {c['tokens_per_forward']:.2f}, {c['tokens_per_second']:.1f} generated tokens/s"
        )
    click.echo(
        f"results in {os.path.join(out, 'results.json')}, costs in {os.path.join(out, 'requests.jsonl')}",
        err=True,
    )


@main.command("sweep")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Output directory (resumable)."
)
@click.option("--dry-run", is_flag=True, help="Print the grid and the request counts; run nothing.")
@click.option(
    "--progress/--no-progress", default=None, help="A bar per rank (default: on a terminal)."
)
def sweep_command(spec_path, out, dry_run, progress) -> None:
    """Run every (model, sampler setting, task, request) of a TOML SPEC; rows.jsonl + summary.csv.

    Data-parallel under torchrun (`torchrun --nproc-per-node N -m remask sweep SPEC --out DIR`),
    resumable (a rerun skips finished rows)."""
    from remask.eval.spec import load_spec
    from remask.eval.sweep import run_sweep

    spec = load_spec(spec_path)
    _check_out_dir(out)
    if any(t.kind == "lm_eval" for t in spec.tasks):
        _need_lm_eval()
        from remask.eval.tasks import quiet

        quiet()
    try:
        run_sweep(spec, out, dry_run=dry_run, progress=progress)
    except RuntimeError as error:
        raise click.ClickException(_one_line(error)) from None


@main.command("sweep-report")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Where aup.json and the plots go (default: DIR).",
)
@click.option("--no-plots", is_flag=True, help="Only the AUP table (no matplotlib needed).")
def sweep_report_command(directory, out, no_plots) -> None:
    """Pareto fronts (quality vs NFE and vs tokens/s) and the AUP / TPF table of a sweep."""
    from remask.eval.report import sweep_report

    if out is not None:
        _check_out_dir(out)
    report = sweep_report(directory, out=out, plots=not no_plots)
    click.echo(report["markdown"])
    for path in report["plots"]:
        click.echo(f"plot: {path}", err=True)
