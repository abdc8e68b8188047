"""``load_model(spec)``: one string names any denoiser remask can run."""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qsl

__all__ = ["load_model", "parse_spec"]

_TINY_KEYS = {"vocab": "vocab_size", "width": "width", "depth": "depth", "heads": "heads",
              "max_len": "max_len", "seed": "seed", "logit_scale": "logit_scale"}
_MARKOV_KEYS = {"vocab": "vocab_size", "length": "seq_len", "seed": "seed",
                "concentration": "concentration"}


def parse_spec(spec: str) -> tuple[str, str, dict[str, int | float | str]]:
    """Split ``"family:kind?key=value&..."`` into (family, kind, params); numbers are parsed."""
    head, _, query = spec.partition("?")
    family, _, kind = head.partition(":")
    params: dict[str, int | float | str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return family, kind, params


def _rename(params: dict, names: dict[str, str], spec: str) -> dict:
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} in model spec {spec!r}; known: {sorted(names)}")
    return {names[k]: v for k, v in params.items()}


def load_model(spec: str, *, dtype=None, device=None, **options):
    """Resolve a model spec to a ready Denoiser.

    Parameters
    ----------
    spec : str
        One of

        - ``oracle:markov?vocab=8&length=16&seed=0&concentration=1.0`` — exact Markov-chain oracle;
        - ``oracle:<kind>?...`` — the other exact toy oracles of :mod:`remask.models.toys`;
        - ``tiny`` or ``tiny:transformer?vocab=32&width=32&depth=2&heads=4&seed=0`` — a seeded
          random :class:`~remask.models.tiny.TinyTransformer`;
        - a local checkpoint directory: LLaDA/Dream/MDLM layouts through remask's own model
          classes, any other ``AutoModelForMaskedLM`` directory through
          :class:`~remask.models.hf.HFMaskedLM`.
    dtype, device : optional
        Passed to checkpoint loading (ignored by the built-ins).
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
        _, _, params = parse_spec("x:" + spec[len(head):])
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
        if kind == "markov":
            from remask.models.markov import MarkovChainOracle

            kwargs = {"vocab_size": 8, "seq_len": 16, "seed": 0}
            kwargs.update(_rename(params, _MARKOV_KEYS, spec))
            return MarkovChainOracle(**kwargs)
        try:
            from remask.models.toys import toy_spec
        except ImportError:
            raise ValueError(f"unknown oracle kind {kind!r} in {spec!r}; available: ['markov']") from None
        return toy_spec(kind, params)
    if family == "tiny":
        if kind not in ("", "transformer"):
            raise ValueError(f"unknown tiny model kind {kind!r} in {spec!r}; available: ['transformer']")
        from remask.models.tiny import TinyTransformer

        return TinyTransformer(**_rename(params, _TINY_KEYS, spec))
    if ":" in spec or os.sep in spec or spec.startswith("."):
        raise ValueError(
            f"cannot resolve model spec {spec!r}: not a directory and not a built-in "
            "('oracle:markov?...', 'oracle:<kind>?...', 'tiny:transformer?...')"
        )
    # A bare "org/name"-free word is neither a directory nor a built-in.
    raise ValueError(f"model spec {spec!r} is not an existing directory nor a built-in spec")


def _load_directory(path: str, *, dtype=None, device=None, **options):
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"checkpoint directory {path!r} has no config.json")
    with open(config_path) as f:
        model_type = json.load(f).get("model_type")
    try:
        from remask.models import checkpoints
    except ImportError:
        checkpoints = None
    if checkpoints is not None and model_type in checkpoints.FAMILIES:
        return checkpoints.load_checkpoint(path, dtype=dtype, device=device, **options)
    if options:
        raise TypeError(
            f"options {sorted(options)} apply to remask's native checkpoint families only; "
            f"{path!r} has model_type {model_type!r}"
        )
    from remask.models.hf import HFMaskedLM

    return HFMaskedLM.from_pretrained(path, dtype=dtype, device=device)
