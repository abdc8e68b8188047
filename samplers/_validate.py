"""Checks of config values shared by every sampler's ``__post_init__``.

Every check raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a value
outside its documented range; both messages name the field and show the offending value, so
``build("dream", temperature=float("inf"))`` fails at build time rather than deep inside a
step. Floats must be finite unless ``allow_inf=True`` (only where a docstring gives +inf a
meaning, e.g. ``entropy_bound``'s ``gamma``); NaN is never accepted.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_int", "check_float", "check_choice", "check_bool"]


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> None:
    """Require a Python ``int`` (not a bool) in ``[low, high]`` (None: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> None:
    """Require a real number (not a bool), not NaN, finite unless ``allow_inf``, in the range.

    The range is ``[low, high]``; ``low_open`` / ``high_open`` exclude an end. When both ends
    are given the message states the interval, e.g. ``threshold must be in [0, 1], got 1.5``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name} must not be NaN, got {value!r}")
    if math.isinf(x) and not (allow_inf and x > 0):
        raise ValueError(f"{name} must be finite, got {value!r}")
    below = low is not None and (x <= low if low_open else x < low)
    above = high is not None and (x >= high if high_open else x > high)
    if not (below or above):
        return
    if low is not None and high is not None:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    if below:
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    """Require one of ``choices`` (compared as strings: ``1`` never matches ``"1"``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {value!r} ({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_bool(value: Any, name: str) -> None:
    """Require a Python ``bool`` (``0``/``1`` and strings are rejected: they hide typos)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
