"""The sampler registry: names to config classes, with strict construction."""

from __future__ import annotations

import dataclasses
from typing import Any

from remask.samplers.base import Sampler

__all__ = ["register", "build", "from_config", "available", "sampler_class"]

_REGISTRY: dict[str, type[Sampler]] = {}


def register(name: str):
    """Class decorator: make a sampler buildable by ``name``."""

    def wrap(cls: type[Sampler]) -> type[Sampler]:
        if name in _REGISTRY:
            raise ValueError(
                f"sampler name {name!r} is already registered by {_REGISTRY[name].__name__}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available() -> list[str]:
    """Registered sampler names, sorted."""
    return sorted(_REGISTRY)


def sampler_class(name: str) -> type[Sampler]:
    """The config class registered under ``name``."""
    if not isinstance(name, str):
        raise TypeError(f"sampler name must be a string, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; available: {available()}") from None


def build(name: str, **config: Any) -> Sampler:
    """Build the sampler ``name`` with ``config``; unknown keys raise ``TypeError``.

    Examples
    --------
    >>> build("low_confidence", steps=32, block_length=8)
    LowConfidence(block_length=8, steps=32, ...)
    """
    cls = sampler_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise TypeError(
            f"unknown config key(s) {unknown} for sampler {name!r}; valid keys: {sorted(fields)}"
        )
    return cls(**config)


def from_config(config: dict[str, Any]) -> Sampler:
    """Inverse of ``Sampler.to_config()``."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"a sampler config is a dict with a 'name' key, got {config!r}")
    config = dict(config)
    return build(config.pop("name"), **config)
