"""Conformance property: every config field of every registered sampler rejects invalid values
at ``build`` with a ValueError/TypeError that names the field.

The domains below are written from the samplers' docstrings (not read from the validation
code), one per field; a new sampler or field without a domain here fails
``test_every_field_has_a_domain``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remask.samplers import available, build, sampler_class


@dataclass(frozen=True)
class Num:
    """A number field: ``kind`` "int" or "float", in [low, high] (ends open if asked)."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    inf_ok: bool = False  # +inf documented as meaningful
    optional: bool = False


@dataclass(frozen=True)
class Choice:
    choices: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Custom:
    """A field with its own invalid-value strategy."""

    invalid: st.SearchStrategy


PROB = Num("float", 0.0, 1.0)
NONNEG = Num("float", 0.0)
POS_INT = Num("int", 1)
OPT_POS_INT = Num("int", 1, optional=True)
TOP_P = Num("float", 0.0, 1.0, low_open=True, optional=True)
UNIT_OPEN = Num("float", 0.0, 1.0, low_open=True, high_open=True)

# A wrapped base sampler (gibbs, prophet): a registry name, a config dict or a sampler.
BASE_SAMPLER = Custom(
    st.one_of(
        st.integers(),
        st.floats(),
        st.none(),
        st.booleans(),
        st.text(min_size=1, max_size=6).filter(lambda s: s not in available()),
        st.just({"steps": 3}),  # no name
        st.just({"name": "low_confidence", "stepz": 3}),  # unknown key of the base
        st.just({"name": "low_confidence", "temperature": float("inf")}),  # bad base value
    )
)

# Field name -> domain, for names whose meaning is the same in every sampler.
COMMON = {
    "block_length": OPT_POS_INT,
    "temperature": NONNEG,
    "cfg_scale": NONNEG,
    "top_p": TOP_P,
    "min_spacing": OPT_POS_INT,
}

# (sampler, field) -> domain.
SPECIFIC = {
    ("ancestral", "steps"): POS_INT,
    ("ancestral", "eps"): UNIT_OPEN,
    ("apd", "mixture_weight"): PROB,
    ("apd", "max_lookahead"): POS_INT,
    ("apd", "verifier"): Custom(
        st.one_of(st.integers(), st.floats(), st.lists(st.text(), max_size=2), st.booleans())
    ),
    ("credit", "threshold"): PROB,
    ("credit", "credit_alpha"): NONNEG,
    ("credit", "boost_gamma"): NONNEG,
    ("credit", "decay_beta"): PROB,
    ("daedal", "initial_length"): POS_INT,
    ("daedal", "threshold"): PROB,
    ("daedal", "low_threshold"): PROB,
    ("daedal", "eos_threshold"): PROB,
    ("daedal", "expand_eos_threshold"): PROB,
    ("daedal", "expansion_factor"): POS_INT,
    ("daedal", "eos_check_tokens"): POS_INT,
    ("dilated", "schedule"): Choice(("dilated", "binary")),
    ("dilated", "base"): POS_INT,
    ("dilated", "skip_exp"): POS_INT,
    ("dilated", "confidence_threshold"): Num("float", 0.0, 1.0, optional=True),
    ("dream", "steps"): POS_INT,
    ("dream", "alg"): Choice(("origin", "maskgit_plus", "topk_margin", "entropy")),
    ("dream", "alg_temp"): Num("float", 0.0, optional=True),
    ("dream", "top_k"): OPT_POS_INT,
    ("dream", "eps"): UNIT_OPEN,
    ("entropy_bound", "gamma"): Num("float", 0.0, inf_ok=True),
    ("entropy_bound", "score"): Choice(("entropy", "prob", "margin")),
    ("factor", "factor"): NONNEG,
    ("gibbs", "base"): BASE_SAMPLER,
    ("freedave", "base"): Custom(
        st.one_of(
            st.integers(),
            st.floats(),
            st.none(),
            st.booleans(),
            st.text(min_size=1, max_size=6).filter(lambda s: s not in available()),
            st.just({"steps": 3}),  # no name
            st.just({"name": "low_confidence", "stepz": 3}),  # unknown key of the base
            st.just({"name": "low_confidence", "temperature": float("inf")}),  # bad base value
            st.just({"name": "gibbs"}),  # a wrapping base
        )
    ),
    ("freedave", "draft_steps"): POS_INT,
    ("punt", "epsilon"): Num("float", 0.0, inf_ok=True),
    ("punt", "temperature"): NONNEG,
    ("punt", "score"): Choice(("prob", "margin", "entropy", "random")),
    ("gibbs", "threshold"): Num("float", 0.0, inf_ok=True),
    ("gibbs", "window"): POS_INT,
    ("gibbs", "max_revisions"): Num("int", 0),
    ("gibbs", "every"): POS_INT,
    ("gibbs", "sweeps"): Num("int", 0),
    ("gibbs", "temperature"): Num("float", 0.0, optional=True),
    ("klass", "conf_threshold"): PROB,
    ("klass", "kl_threshold"): NONNEG,
    ("klass", "history"): POS_INT,
    ("klass", "steps"): OPT_POS_INT,
    ("klass", "unmask_strategy"): Choice(("all", "max_conf", "min_kl", "random")),
    ("llada21", "threshold"): PROB,
    ("llada21", "edit_threshold"): PROB,
    ("llada21", "max_post_steps"): Num("int", 0),
    ("llada21", "num_to_transfer"): POS_INT,
    ("llada2", "steps"): POS_INT,
    ("llada2", "threshold"): PROB,
    ("llada2", "minimal_topk"): POS_INT,
    ("low_confidence", "steps"): OPT_POS_INT,
    ("low_confidence", "remasking"): Choice(("low_confidence", "random")),
    ("low_confidence", "score"): Choice(("prob", "margin", "entropy", "random"), optional=True),
    ("low_confidence", "eos_id"): Num("int", 0, optional=True),
    ("low_confidence", "eot_id"): Num("int", 0, optional=True),
    ("low_confidence", "logits_eos_inf"): Bool(),
    ("low_confidence", "confidence_eos_eot_inf"): Bool(),
    ("p2", "steps"): OPT_POS_INT,
    ("p2", "eta"): NONNEG,
    ("prophet", "base"): BASE_SAMPLER,
    ("prophet", "answer_start"): Num("int", 0, optional=True),
    ("prophet", "answer_length"): POS_INT,
    ("prophet", "early_threshold"): Num("float", 0.0, inf_ok=True),
    ("prophet", "mid_threshold"): Num("float", 0.0, inf_ok=True),
    ("prophet", "late_threshold"): Num("float", 0.0, inf_ok=True),
    ("prophet", "total_steps"): OPT_POS_INT,
    ("pc_sampler", "lambd"): NONNEG,
    ("pc_sampler", "alpha"): Num("float", 0.0, low_open=True),
    ("pc_sampler", "background"): Custom(
        st.one_of(
            st.just([]),
            st.just("abc"),
            st.integers(),
            st.just(torch.ones(2, 2)),
            st.lists(st.floats(allow_nan=True), min_size=1, max_size=4).filter(
                lambda v: any(not math.isfinite(x) or x < 0 for x in v)
            ),
            st.lists(st.text(max_size=2), min_size=1, max_size=3),
        )
    ),
    ("pc_sampler", "steps"): OPT_POS_INT,
    ("remdm", "schedule"): Choice(("cap", "rescale", "conf", "loop")),
    ("remdm", "eta"): Num("float", 0.0, 1.0, optional=True),
    ("remdm", "t_on"): UNIT_OPEN,
    ("remdm", "t_off"): UNIT_OPEN,
    ("remdm", "alpha_on"): UNIT_OPEN,
    ("remdm", "steps"): OPT_POS_INT,
    ("saber", "n"): POS_INT,
    ("slowfast", "explore_steps"): POS_INT,
    ("slowfast", "span_threshold"): PROB,
    ("slowfast", "stability_window"): POS_INT,
    ("slowfast", "stability_std"): Num("float", 0.0, low_open=True),
    ("slowfast", "high_threshold"): PROB,
    ("threshold", "threshold"): PROB,
    ("wino", "threshold_in"): PROB,
    ("wino", "threshold_out"): PROB,
    ("wino", "accept_ratio"): PROB,
    ("wino", "accept_min"): POS_INT,
    ("wino", "accept_max"): POS_INT,
    ("wino", "shadow"): Choice(("auto", "attention", "emulate")),
}

FIELDS = [(name, f.name) for name in available() for f in dataclasses.fields(sampler_class(name))]


def domain(sampler: str, field: str):
    return SPECIFIC.get((sampler, field)) or COMMON.get(field)


def _wrong_types(optional: bool) -> st.SearchStrategy:
    options = [st.text(max_size=4), st.lists(st.integers(), max_size=2), st.just(1 + 1j)]
    if not optional:
        options.append(st.none())
    return st.one_of(*options)


def invalid_values(d) -> st.SearchStrategy:
    """Values outside the documented domain ``d``."""
    if isinstance(d, Custom):
        return d.invalid
    if isinstance(d, Bool):
        return st.one_of(st.integers(), st.text(max_size=4), st.none(), st.floats())
    if isinstance(d, Choice):
        return st.one_of(
            st.text(max_size=8).filter(lambda s: s not in d.choices),
            st.integers(),
            st.booleans(),
            *([] if d.optional else [st.none()]),
        )
    options = [_wrong_types(d.optional), st.booleans()]
    if d.kind == "int":
        options.append(st.floats())  # any float, even 2.0, is the wrong type for an int field
        if d.low is not None:
            options.append(st.integers(max_value=int(d.low) - 1))
        if d.high is not None:
            options.append(st.integers(min_value=int(d.high) + 1))
        return st.one_of(*options)
    options.append(st.just(float("nan")))
    options.append(st.just(float("-inf")))
    if not d.inf_ok:
        options.append(st.just(float("inf")))
    finite = st.floats(allow_nan=False, allow_infinity=False)
    if d.low is not None:
        low = d.low
        options.append(finite.filter((lambda x: x <= low) if d.low_open else (lambda x: x < low)))
        options.append(st.just(low - 1e-9) if not d.low_open else st.just(low))
    if d.high is not None:
        high = d.high
        options.append(
            finite.filter((lambda x: x >= high) if d.high_open else (lambda x: x > high))
        )
        options.append(st.just(high + 1e-9) if not d.high_open else st.just(high))
    return st.one_of(*options)


def test_every_field_has_a_domain():
    missing = [pair for pair in FIELDS if domain(*pair) is None]
    assert not missing, f"add a documented domain for {missing}"


@pytest.mark.parametrize("sampler,field", FIELDS, ids=[f"{s}.{f}" for s, f in FIELDS])
def test_invalid_values_raise_at_build(sampler, field):
    d = domain(sampler, field)

    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(value=invalid_values(d))
    def check(value):
        with pytest.raises((ValueError, TypeError)) as error:
            build(sampler, **{field: value})
        assert field in str(error.value), f"the message must name {field!r}: {error.value}"

    check()


# Valid edge values build (the domains above are not stricter than the docs).
EDGES = [
    ("threshold", "threshold", 0.0),
    ("threshold", "threshold", 1.0),
    ("llada2", "threshold", 1.0),
    ("wino", "accept_ratio", 1.0),
    ("wino", "threshold_in", 0.0),
    ("dream", "top_p", 1.0),
    ("entropy_bound", "gamma", float("inf")),
    ("gibbs", "threshold", float("inf")),
    ("remdm", "eta", 1.0),
    ("low_confidence", "eos_id", 0),
    ("apd", "mixture_weight", 0.0),
    ("punt", "epsilon", float("inf")),
    ("punt", "epsilon", 0.0),
    ("freedave", "draft_steps", 1),
    ("dream", "temperature", 1),
    ("klass", "conf_threshold", 1.0),
]


@pytest.mark.parametrize("sampler,field,value", EDGES)
def test_documented_edge_values_build(sampler, field, value):
    assert getattr(build(sampler, **{field: value}), field) == value
