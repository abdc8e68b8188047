"""TinyTransformer: the shape of a Denoiser, seeded, padding-invariant."""

from __future__ import annotations

import pytest
import torch

from remask.models import TinyTransformer, load_model


def test_shapes_and_mask_column():
    model = TinyTransformer(vocab_size=16, seed=0)
    logits = model(torch.full((3, 5), model.mask_id))
    assert logits.shape == (3, 5, 16)
    assert bool(torch.isinf(logits[..., model.mask_id]).all())
    assert bool(torch.isfinite(logits[..., : model.mask_id]).all())


def test_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = TinyTransformer(seed=5)
    assert torch.equal(torch.rand(1), expected), "construction must not consume the global RNG"
    b = TinyTransformer(seed=5)
    c = TinyTransformer(seed=6)
    x = torch.tensor([[1, 2, a.mask_id, 4]])
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))


def test_left_padding_is_invisible():
    model = TinyTransformer(seed=1, dtype=torch.float64)
    m = model.mask_id
    row = torch.tensor([[5, 6, m, m]])
    padded = torch.tensor([[0, 0, 5, 6, m, m], [1, 2, 3, 4, m, m]])
    keep = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    torch.testing.assert_close(model(padded, keep)[0, 2:], model(row)[0], rtol=1e-10, atol=1e-10)


def test_load_model_tiny_spec():
    model = load_model("tiny:transformer?vocab=12&width=16&heads=2&depth=1&seed=3")
    assert isinstance(model, TinyTransformer) and model.vocab_size == 12 and model.mask_id == 11
    assert isinstance(load_model("tiny"), TinyTransformer)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("tiny:transformer?vocab=12&wdth=3", "wdth"),
        ("tiny:lstm", "lstm"),
        ("oracle:markov?vocab=1", "vocab_size"),
        ("oracle:unicorn?x=1", "unicorn"),
        ("nonexistent/dir", "nonexistent"),
    ],
)
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(ValueError, match=match):
        load_model(spec)


def test_bad_construction():
    with pytest.raises(ValueError, match="width=30 is not divisible by heads=4"):
        TinyTransformer(width=30, heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        TinyTransformer(vocab_size=1)


def test_trainable_in_train_mode_only():
    model = TinyTransformer(vocab_size=8, width=16, heads=2, depth=1, seed=0)
    x = torch.tensor([[1, model.mask_id, 3]])
    assert not model(x).requires_grad, "eval mode (the default) must not build a graph"
    model.train()
    logits = model(x)
    assert logits.requires_grad
    loss = torch.nn.functional.cross_entropy(logits[0, 1:2], torch.tensor([2]))
    loss.backward()
    assert model.head.weight.grad is not None and bool(torch.isfinite(model.head.weight.grad).all())
    assert bool(torch.isinf(logits[..., model.mask_id]).all())
