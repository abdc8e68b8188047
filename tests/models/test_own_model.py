"""Your own model: a plain callable, ``as_denoiser`` and an in-memory transformers model."""

from __future__ import annotations

import pytest
import torch

import remask
from remask.models import FunctionDenoiser, MarkovChainOracle, as_denoiser
from remask.samplers import available, build

V, MASK = 6, 5


class FiniteMask:
    """A callable with mask_id/vocab_size whose logits give the mask token a finite (large) logit."""

    mask_id = MASK
    vocab_size = V

    def __call__(self, tokens, attention_mask=None):
        logits = torch.zeros(*tokens.shape, V)  # (B, L, V)
        logits[..., MASK] = 10.0  # the mask is the favourite token: it must still never be proposed
        logits[..., 2] = 1.0
        return logits


@pytest.mark.filterwarnings(
    "ignore:apd. no verifier:RuntimeWarning"
)  # apd without a verifier warns by design
@pytest.mark.parametrize(
    "name",
    [
        "low_confidence",
        "ancestral",
        "remdm",
        "dilated",
        "apd",
        "dream",
        "llada2",
        "threshold",
        "klass",
        "pc_sampler",
        "entropy_bound",
        "factor",
    ],
)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_callable_with_finite_mask_logit_finishes(name, temperature):
    if name not in available():
        pytest.skip(f"{name} not registered")
    kwargs = (
        {"temperature": temperature}
        if "temperature" in {f for f in build(name).__dataclass_fields__}
        else {}
    )
    out = remask.generate(FiniteMask(), [[0, 1]], build(name, **kwargs), gen_length=6, seed=0)
    assert not bool((out.tokens == MASK).any())


def test_denoise_sets_mask_column_and_keeps_others():
    from remask.models.wrappers import Guided
    from remask.samplers.canvas import make_canvas
    from remask.samplers.predict import denoise

    tokens = torch.tensor([[0, MASK, MASK]])
    editable = torch.tensor([[False, True, True]])
    canvas = make_canvas(tokens, editable, torch.ones_like(editable), None)
    logits, evaluations = denoise(FiniteMask(), canvas)
    assert evaluations == 1
    assert torch.isneginf(logits[..., MASK]).all()
    assert (logits[..., 2] == 1.0).all() and (logits[..., 0] == 0.0).all()
    guided, evaluations = denoise(Guided(FiniteMask(), 1.0), canvas)
    assert evaluations == 2 and torch.isneginf(guided[..., MASK]).all()
    assert not torch.isnan(guided).any()


def test_denoise_copes_with_an_expanded_view():
    from remask.samplers.canvas import make_canvas
    from remask.samplers.predict import denoise

    table = torch.arange(V, dtype=torch.float32)

    class Expanding:
        mask_id, vocab_size = MASK, V

        def __call__(self, tokens, attention_mask=None):
            return table.expand(*tokens.shape, V)  # one row of memory for every position

    tokens = torch.tensor([[0, MASK]])
    editable = torch.tensor([[False, True]])
    canvas = make_canvas(tokens, editable, torch.ones_like(editable), None)
    logits, _ = denoise(Expanding(), canvas)
    assert torch.isneginf(logits[..., MASK]).all()
    assert table[MASK] == MASK  # the function's own table is untouched


def test_oracle_without_mask_column_is_unchanged():
    oracle = MarkovChainOracle(vocab_size=4, seq_len=6, seed=0)
    assert oracle.mask_id == oracle.vocab_size  # no column for the mask
    out = remask.generate(
        oracle, [[0]], build("low_confidence", temperature=1.0), gen_length=5, seed=0
    )
    assert int(out.tokens.max()) < oracle.vocab_size


def test_as_denoiser_plain_function_one_and_two_arguments():
    seen = {}

    def one(tokens):
        logits = torch.zeros(*tokens.shape, V)
        logits[..., 3] = 5.0
        return logits

    def two(tokens, attention_mask):
        seen["mask"] = attention_mask
        return one(tokens)

    for fn in (one, two):
        model = as_denoiser(fn, mask_id=MASK, vocab_size=V)
        assert isinstance(model, FunctionDenoiser)
        out = remask.generate(model, [[0], [1, 2]], build("low_confidence"), gen_length=4, seed=0)
        generated = out.tokens[:, -4:]
        assert (generated == 3).all()
    assert seen["mask"].dtype == torch.bool and seen["mask"].shape[0] == 2


def test_as_denoiser_leaves_the_functions_tensor_alone():
    table = torch.zeros(2, 3, V)
    model = as_denoiser(lambda tokens: table, mask_id=MASK, vocab_size=V)
    logits = model(torch.zeros(2, 3, dtype=torch.int64))
    assert torch.isneginf(logits[..., MASK]).all()
    assert (table == 0).all()


def test_as_denoiser_rejects_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        as_denoiser(3, mask_id=0, vocab_size=4)
    with pytest.raises(ValueError, match="mask_id=9"):
        as_denoiser(lambda t: t, mask_id=9, vocab_size=4)
    with pytest.raises(TypeError, match="vocab_size"):
        as_denoiser(lambda t: t, mask_id=1, vocab_size="4")
    with pytest.raises(ValueError, match="eos_id=-1"):
        as_denoiser(lambda t: t, mask_id=1, vocab_size=4, eos_id=-1)
    model = as_denoiser(lambda t: torch.zeros(*t.shape, 3), mask_id=1, vocab_size=4)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(1, 2, dtype=torch.int64))


def test_as_denoiser_max_length_checked_before_compute():
    calls = []

    def fn(tokens):
        calls.append(tokens.shape)
        return torch.zeros(*tokens.shape, V)

    model = as_denoiser(fn, mask_id=MASK, vocab_size=V, max_length=8)
    with pytest.raises(ValueError, match="at most 8"):
        remask.generate(model, [[0, 1]], build("low_confidence"), gen_length=7, seed=0)
    assert calls == []


def test_a_bare_function_is_pointed_to_as_denoiser():
    def fn(tokens):
        return torch.zeros(*tokens.shape, V)

    with pytest.raises(TypeError, match="as_denoiser"):
        remask.generate(fn, [[1]], build("low_confidence"), gen_length=2, seed=0)
