"""The ``oracle:<kind>?key=value&...`` specs of ``load_model``: parameters, checks, dispatch."""

from __future__ import annotations

import math

from remask.models.oracles.base import ExactOracle
from remask.models.oracles.brackets import BracketsOracle
from remask.models.oracles.eos import EOSPaddedOracle
from remask.models.oracles.finite import FiniteSupportOracle
from remask.models.oracles.hmm import StickyHMMOracle
from remask.models.oracles.listop import ListOpOracle
from remask.models.oracles.markov import MarkovChainOracle
from remask.models.oracles.mixture import MixtureOracle

__all__ = ["TOY_KINDS", "toy_spec"]


def _spec_set(p: dict) -> ExactOracle:
    pattern = p.pop("pattern", "cities")
    if pattern == "cities":
        names = p.pop("names", "New York,Mexico City")
        return FiniteSupportOracle.cities([s.strip() for s in str(names).split(",")])
    if pattern == "parity":
        return FiniteSupportOracle.parity(p.pop("length", 4))
    if pattern == "k_of_n":
        return FiniteSupportOracle.k_of_n(p.pop("length", 4), p.pop("k", 2))
    raise ValueError(f"unknown set pattern {pattern!r}; available: ['cities', 'parity', 'k_of_n']")


TOY_KINDS: dict[str, tuple[str, dict[str, object]]] = {
    # kind: (description, {spec key: default})
    "markov": (
        "T1 stationary Markov chain",
        {"vocab": 8, "length": 16, "seed": 0, "concentration": 1.0},
    ),
    "hmm": (
        "T2 sticky HMM",
        {"vocab": 8, "length": 16, "seed": 0, "states": 3, "stickiness": 0.9, "concentration": 0.3},
    ),
    "mixture": (
        "T3 mixture of products",
        {"vocab": 8, "length": 8, "seed": 0, "components": 2, "concentration": 0.3},
    ),
    "set": (
        "T4 finite support: pattern=cities (names=comma list) | parity (length) | k_of_n (length, k)",
        {"pattern": "cities", "names": "New York,Mexico City", "length": 4, "k": 2},
    ),
    "listop": (
        "T5 list operation: op=copy|reverse|sort|shuffle|replace_random, n, items",
        {"op": "shuffle", "n": 4, "items": None},
    ),
    "eos": (
        "T6 EOS/rainbow-padded variable length",
        {"vocab": 4, "length": 8, "seed": 0, "padding": "eos", "pads": 3, "concentration": 0.5},
    ),
    "brackets": ("T7 balanced brackets", {"length": 8, "types": 1}),
}


def toy_spec(kind: str, params: dict | None = None) -> ExactOracle:
    """Build an exact oracle from a ``load_model("oracle:<kind>?key=value&...")`` spec.

    Parameters
    ----------
    kind : str
        One of (spec keys and defaults):

        - ``markov`` — :class:`MarkovChainOracle`: ``vocab=8, length=16, seed=0,
          concentration=1.0``;
        - ``hmm`` — :class:`StickyHMMOracle`: ``vocab=8, length=16, seed=0, states=3,
          stickiness=0.9, concentration=0.3``;
        - ``mixture`` — :class:`MixtureOracle`: ``vocab=8, length=8, seed=0, components=2,
          concentration=0.3``;
        - ``set`` — :class:`FiniteSupportOracle`: ``pattern=cities`` with
          ``names=New York,Mexico City`` (comma-separated names of equal word count), or
          ``pattern=parity`` with ``length=4``, or ``pattern=k_of_n`` with ``length=4, k=2``;
        - ``listop`` — :class:`ListOpOracle`: ``op=shuffle`` (copy, reverse, sort, shuffle,
          replace_random), ``n=4``, ``items=n``;
        - ``eos`` — :class:`EOSPaddedOracle`: ``vocab=4`` content tokens, ``length=8, seed=0,
          padding=eos`` (or ``rainbow``), ``pads=3, concentration=0.5``;
        - ``brackets`` — :class:`BracketsOracle`: ``length=8, types=1``.
    params : dict, optional
        Spec parameters; values may be numbers or strings (strings are converted).

    Returns
    -------
    ExactOracle

    Examples
    --------
    >>> toy_spec("listop", {"op": "replace_random", "n": 3})
    ListOpOracle(op='replace_random', n=3, n_items=3)
    """
    if kind not in TOY_KINDS:
        raise ValueError(f"unknown oracle kind {kind!r}; available: {list(TOY_KINDS)}")
    params = dict(params or {})
    defaults = TOY_KINDS[kind][1]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for oracle kind {kind!r}; known: {sorted(defaults)}"
        )
    p = {**defaults, **params}

    def num(key: str, cast=int):
        value = p[key]
        if isinstance(value, bool):
            raise ValueError(f"oracle:{kind} parameter {key}={value!r} is not a number")
        try:
            out = cast(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            raise ValueError(
                f"oracle:{kind} parameter {key}={value!r} is not a valid {cast.__name__}"
            ) from None
        if cast is int and float(value) != out:
            raise ValueError(f"oracle:{kind} parameter {key}={value!r} is not an integer")
        if cast is float and not math.isfinite(out):
            raise ValueError(f"oracle:{kind} parameter {key}={value!r} must be finite")
        if key == "seed" and not 0 <= out < 2**63:
            raise ValueError(f"oracle:{kind} parameter seed={value!r} must be in [0, 2**63)")
        return out

    if kind == "markov":
        return MarkovChainOracle(
            num("vocab"), num("length"), num("seed"), num("concentration", float)
        )
    if kind == "hmm":
        return StickyHMMOracle(
            num("vocab"),
            num("length"),
            num("seed"),
            n_states=num("states"),
            stickiness=num("stickiness", float),
            concentration=num("concentration", float),
        )
    if kind == "mixture":
        return MixtureOracle(
            num("vocab"),
            num("length"),
            num("seed"),
            n_components=num("components"),
            concentration=num("concentration", float),
        )
    if kind == "set":
        q = {
            "pattern": str(p["pattern"]),
            "names": p["names"],
            "length": num("length"),
            "k": num("k"),
        }
        return _spec_set(q)
    if kind == "listop":
        items = None if p["items"] is None else num("items")
        return ListOpOracle(str(p["op"]), num("n"), items)
    if kind == "eos":
        return EOSPaddedOracle(
            num("vocab"),
            num("length"),
            num("seed"),
            padding=str(p["padding"]),
            n_pad=num("pads"),
            concentration=num("concentration", float),
        )
    return BracketsOracle(num("length"), num("types"))
