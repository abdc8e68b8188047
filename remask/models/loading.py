"""``load_model(spec)``: one string names any denoiser remask can run."""

from __future__ import annotations

import math
import os
from urllib.parse import parse_qsl

__all__ = ["load_model", "parse_spec"]

# Spec key -> (constructor argument, type). Types: "int" (an integer, range checked by the
# constructor), "seed" (an integer in [0, 2**63)), "float" (a finite number).
_TINY_KEYS = {
    "vocab": ("vocab_size", "int"),
    "width": ("width", "int"),
    "depth": ("depth", "int"),
    "heads": ("heads", "int"),
    "max_len": ("max_len", "int"),
    "seed": ("seed", "seed"),
    "logit_scale": ("logit_scale", "float"),
}


def parse_spec(spec: str) -> tuple[str, str, dict[str, int | float | str]]:
    """Split ``"family:kind?key=value&..."`` into (family, kind, params); numbers are parsed.

    Values that read as an int become ints, then floats, else stay strings. A malformed query
    or a key given twice raises ``ValueError`` naming it.
    """
    head, _, query = spec.partition("?")
    family, _, kind = head.partition(":")
    params: dict[str, int | float | str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as error:
        raise ValueError(
            f"model spec {spec!r}: malformed parameters {query!r} ({error}); "
            "expected key=value pairs joined by '&'"
        ) from None
    for key, value in pairs:
        if key in params:
            raise ValueError(f"model spec {spec!r}: duplicate key {key!r}; give each key once")
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return family, kind, params


def spec_value(key: str, value, kind: str, spec: str):
    """``value`` of spec key ``key`` as ``kind`` ("int", "seed", "float"); errors name the key."""
    where = f"model spec {spec!r}: {key}={value!r}"
    if kind in ("int", "seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} is not an integer")
        if kind == "seed" and not 0 <= value < 2**63:
            raise ValueError(f"{where}: a seed must be in [0, 2**63)")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite")
    return float(value)


def _rename(params: dict, names: dict[str, tuple[str, str]], spec: str) -> dict:
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} in model spec {spec!r}; known: {sorted(names)}"
        )
    return {names[k][0]: spec_value(k, v, names[k][1], spec) for k, v in params.items()}


def _construct(cls, kwargs: dict, spec: str):
    """``cls(**kwargs)``, with the spec named in its argument errors."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model spec {spec!r}: {error}") from None


def load_model(spec: str, *, dtype=None, device=None, **options):
    """Resolve a model spec to a ready Denoiser.

    Parameters
    ----------
    spec : str
        One of

        - ``oracle:markov?vocab=8&length=16&seed=0&concentration=1.0`` — exact Markov-chain oracle;
        - ``oracle:<kind>?...`` — the other exact oracles of :mod:`remask.models.oracles`
          (kinds and keys: :func:`~remask.models.oracles.toy_spec`);
        - ``tiny`` or ``tiny:transformer?vocab=32&width=32&depth=2&heads=4&seed=0`` — a seeded
          random :class:`~remask.models.tiny.TinyTransformer`;
        - a local checkpoint directory: LLaDA/Dream/MDLM layouts through remask's own model
          classes, any other ``AutoModelForMaskedLM`` directory through
          :class:`~remask.models.hf.HFMaskedLM`, a ``remask.analysis.train_toy`` checkpoint
          as a :class:`~remask.models.trained_toy.ToyModel`;
        - a Hugging Face Hub id ``org/name`` (or ``org/name@revision``): its config, weights
          and tokenizer are fetched once into the hub cache by ``huggingface_hub`` (never its
          Python files), then loaded as a directory. ``HF_HUB_OFFLINE=1`` loads from the cache
          only.
    dtype, device : optional
        Passed to checkpoint loading (ignored by the built-ins and ``train_toy`` checkpoints).
    **options
        For checkpoint directories of remask's native families only, passed to
        :func:`remask.models.load_checkpoint`: special ids the checkpoint lacks
        (``mask_id=``, ``eos_id=``, ``eot_id=``, ``pad_id=``, ``bos_id=``) and, for
        block-diffusion families, ``block_size=`` and ``cache=``. A directory spec may carry
        them too: ``"path/to/sdar?mask_id=151669&block_size=4"``.

    Examples
    --------
    >>> load_model("oracle:markov?vocab=4&length=6&seed=0")
    MarkovChainOracle(vocab_size=4, seq_len=6, seed=0, concentration=1.0)
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"model spec must be a string or path, got {type(spec).__name__}")
    spec = os.fspath(spec)
    head, _, query = spec.partition("?")
    if query and not os.path.isdir(spec) and os.path.isdir(head):
        # "DIR?mask_id=...&block_size=...": checkpoint options in the spec string.
        _, _, params = parse_spec("x:" + spec[len(head) :])
        spec, options = head, {**params, **options}
    if os.path.isdir(spec):
        return _load_directory(spec, dtype=dtype, device=device, **options)
    if options:
        raise TypeError(
            f"load_model options {sorted(options)} apply to checkpoint directories only, "
            f"not to {spec!r}"
        )
    family, kind, params = parse_spec(spec)
    if family == "oracle":
        from remask.models.oracles.spec import toy_spec

        try:
            return toy_spec(kind, params)
        except (TypeError, ValueError) as error:
            raise ValueError(f"model spec {spec!r}: {error}") from None
    if family == "tiny":
        if kind not in ("", "transformer"):
            raise ValueError(
                f"unknown tiny model kind {kind!r} in {spec!r}; available: ['transformer']"
            )
        from remask.models.tiny import TinyTransformer

        return _construct(TinyTransformer, _rename(params, _TINY_KEYS, spec), spec)
    from remask.models.hub import is_hub_id, resolve_hub_id

    if is_hub_id(spec) and not os.path.exists(spec):
        # A Hugging Face Hub id: fetched once into the hub cache (offline mode respected).
        return _load_directory(resolve_hub_id(spec), dtype=dtype, device=device)
    if ":" in spec or os.sep in spec or spec.startswith("."):
        raise ValueError(
            f"cannot resolve model spec {spec!r}: not a directory and not a built-in "
            "('oracle:markov?...', 'oracle:<kind>?...', 'tiny:transformer?...')"
        )
    # A bare "org/name"-free word is neither a directory nor a built-in.
    raise ValueError(f"model spec {spec!r} is not an existing directory nor a built-in spec")


def _load_directory(path: str, *, dtype=None, device=None, **options):
    """A checkpoint directory: a ``train_toy`` checkpoint, remask's own families, else a
    model_type transformers itself implements. Anything else (an unknown or missing
    model_type, whatever its ``auto_map`` says) is refused: remask never runs code shipped in
    a checkpoint."""
    from remask.models import checkpoints, trained_toy

    if trained_toy.is_toy_checkpoint(path):
        if options:
            raise TypeError(
                f"options {sorted(options)} apply to remask's native checkpoint families only; "
                f"{path!r} is a train_toy checkpoint"
            )
        return trained_toy.load_toy(path)  # a CPU toy: dtype and device do not apply
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"checkpoint directory {path!r} has no config.json")
    model_type = checkpoints.read_json(config_path).get("model_type")
    if model_type in checkpoints.FAMILIES:
        return checkpoints.load_checkpoint(path, dtype=dtype, device=device, **options)
    if options:
        raise TypeError(
            f"options {sorted(options)} apply to remask's native checkpoint families only; "
            f"{path!r} has model_type {model_type!r}"
        )
    builtin = _transformers_model_types()
    if not isinstance(model_type, str) or model_type not in builtin:
        what = "has no model_type" if model_type is None else f"has model_type {model_type!r}"
        raise ValueError(
            f"{config_path} {what}, which remask cannot load: supported are remask's families "
            f"{sorted(checkpoints.FAMILIES)} and the masked LMs transformers implements itself "
            "(bert, roberta, modernbert, ...); code shipped in a checkpoint (auto_map) is never run"
        )
    from remask.models.hf import HFMaskedLM

    return HFMaskedLM.from_pretrained(path, dtype=dtype, device=device)


def _transformers_model_types() -> frozenset[str]:
    """model_type names with a model class inside transformers (empty without transformers)."""
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except ImportError:
        return frozenset()
    return frozenset(CONFIG_MAPPING_NAMES)
