"""The sampler registry: names to config classes, with strict construction."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from remask.samplers._validate import check_int
from remask.samplers.base import Sampler

__all__ = [
    "register",
    "build",
    "from_config",
    "available",
    "sampler_class",
    "resolve_base",
    "frozen",
]

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


# Samplers that wrap a base sampler (gibbs, prophet, freedave) ----------------------------
def frozen(value: Any) -> Any:
    """Hashable form of a config value (dicts become tuples of pairs, lists tuples), so a
    frozen sampler config can hold its base's config."""
    if isinstance(value, dict):
        return tuple((k, frozen(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def _base_config(base: Any) -> dict[str, Any]:
    """A base given as registry name, config dict, (key, value) pairs or sampler, as a dict."""
    if isinstance(base, Sampler):
        return base.to_config()
    if isinstance(base, str):
        return {"name": base}
    if isinstance(base, dict):
        return dict(base)
    if isinstance(base, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in base
    ):
        return dict(base)
    raise TypeError(
        f"base must be a sampler name, a config dict with a 'name' key or a Sampler, got {base!r}"
    )


def resolve_base(base: Any, block_length: int | None) -> Sampler:
    """Validate the ``base`` field of a wrapping sampler and build the base.

    ``block_length`` (the wrapper's own field) is handed to the base; giving it on both with
    different values raises. Errors in the base's config name the base.
    """
    config = _base_config(base)
    if "name" not in config:
        raise ValueError(f"base config needs a 'name' key, got {config!r}")
    base_block = config.get("block_length")
    if block_length is not None:
        check_int(block_length, "block_length", low=1)
        if base_block is not None and base_block != block_length:
            raise ValueError(
                f"block_length={block_length} contradicts the base's "
                f"block_length={base_block}; give it once"
            )
        config["block_length"] = block_length
    try:
        return from_config(config)  # validates the base (unknown keys, bad values)
    except (TypeError, ValueError) as error:  # say that the bad value sits in the base
        raise type(error)(f"base {config['name']!r}: {error}") from None


class WrapsBase:
    """Mixin of the samplers built around a base sampler (gibbs, prophet, freedave).

    The subclass's frozen ``base`` field (set through :func:`resolve_base` and :func:`frozen`)
    builds the base once; the run uses the base's model-side wrappers (its ``cfg_scale`` ...);
    the contract (stochastic, edits committed tokens, may leave masks, step bound) follows the
    base unless the subclass says otherwise.
    """

    @functools.cached_property
    def base_sampler(self) -> Sampler:
        """The base sampler built from ``base``."""
        return from_config(dict(self.base))

    @property
    def stochastic(self) -> bool:
        return self.base_sampler.stochastic

    @property
    def edits_committed(self) -> bool:  # type: ignore[override]
        return self.base_sampler.edits_committed

    @property
    def may_leave_masks(self) -> bool:  # type: ignore[override]
        return self.base_sampler.may_leave_masks

    def max_steps(self, canvas) -> int:
        return self.base_sampler.max_steps(canvas)

    def wrap(self, denoiser):
        """The base sampler's model-side sugar (its ``cfg_scale`` ...) applies to the whole run."""
        return self.base_sampler.wrap(denoiser)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()  # type: ignore[misc]
        config["base"] = dict(self.base)
        return config
