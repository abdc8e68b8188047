"""Exact toy oracles T2-T7: marginals, joint and samples against brute-force enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _analysis_brute import condition, joint_table

from remask.models import (
    BracketsOracle,
    EOSPaddedOracle,
    FiniteSupportOracle,
    ListOpOracle,
    MixtureOracle,
    StickyHMMOracle,
    toy_spec,
)

SMALL = {
    "hmm": lambda: StickyHMMOracle(3, 5, seed=1, n_states=2, stickiness=0.8),
    "mixture": lambda: MixtureOracle(3, 5, seed=2, n_components=3),
    "cities": lambda: FiniteSupportOracle.cities(["New York", "Mexico City", "New Delhi"]),
    "parity": lambda: FiniteSupportOracle.parity(5),
    "k_of_n": lambda: FiniteSupportOracle.k_of_n(5, 2),
    "shuffle": lambda: ListOpOracle("shuffle", 3),
    "replace_random": lambda: ListOpOracle("replace_random", 3),
    "sort": lambda: ListOpOracle("sort", 3, n_items=4),
    "reverse": lambda: ListOpOracle("reverse", 2, n_items=3),
    "copy": lambda: ListOpOracle("copy", 2, n_items=3),
    "eos": lambda: EOSPaddedOracle(2, 5, seed=0),
    "rainbow": lambda: EOSPaddedOracle(2, 5, seed=1, padding="rainbow", n_pad=2),
    "brackets": lambda: BracketsOracle(6, n_types=2),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_joint_normalised_and_marginals_exact(name):
    oracle = SMALL[name]()
    X, p = joint_table(oracle)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    rows = oracle.sample(40, seed=3)  # masks on supported sequences: conditionals well defined
    masks = torch.rand(rows.shape, generator=g) < torch.rand(rows.shape[0], 1, generator=g)
    masks[0] = True  # fully masked row
    tokens = torch.where(masks, torch.full_like(rows, oracle.mask_id), rows)
    got = oracle(tokens).exp().numpy()
    assert got.dtype == np.float64
    for b in range(tokens.shape[0]):
        q = condition(X, p, tokens[b].numpy(), oracle.mask_id)
        for i in range(oracle.seq_len):
            ref = np.bincount(X[:, i], weights=q, minlength=oracle.vocab_size)
            np.testing.assert_allclose(got[b, i], ref, atol=1e-12)


@pytest.mark.statistical
@pytest.mark.parametrize(
    "name", ["hmm", "mixture", "cities", "shuffle", "replace_random", "eos", "rainbow", "brackets"]
)
def test_samples_follow_the_joint(name):
    oracle = SMALL[name]()
    X, p = joint_table(oracle)
    n = 20000
    s = oracle.sample(n, seed=0)
    assert s.shape == (n, oracle.seq_len) and s.dtype == torch.int64
    assert torch.isfinite(oracle.log_prob(s)).all()
    codes = (s.numpy() * oracle.vocab_size ** np.arange(oracle.seq_len - 1, -1, -1)).sum(1)
    ref_codes = (X * oracle.vocab_size ** np.arange(oracle.seq_len - 1, -1, -1)).sum(1)
    freq = np.bincount(np.searchsorted(ref_codes, codes), minlength=len(p)) / n
    # Each frequency is Binomial(n, p)/n: 5 standard deviations, plus 1/n for p≈0.
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1.0 / n)


def test_hmm_padding_is_invisible():
    oracle = StickyHMMOracle(4, 6, seed=0)
    M = oracle.mask_id
    # Padding at position 2 of a row whose real tokens are [1, M, M, 2, M].
    padded = torch.tensor([[1, M, 0, M, 2, M]])
    am = torch.tensor([[True, True, False, True, True, True]])
    ref = StickyHMMOracle(4, 5, seed=0)(torch.tensor([[1, M, M, 2, M]]))
    got = oracle(padded, am)
    keep = am[0]
    np.testing.assert_allclose(got[0, keep], ref[0], atol=1e-12)
    assert torch.equal(got[0, ~keep], torch.zeros(1, 4, dtype=torch.float64))


def test_impossible_evidence_gives_uniform_and_finite_logits():
    oracle = FiniteSupportOracle.cities()  # tokens New, Mexico, York, City
    M = oracle.mask_id
    out = oracle(torch.tensor([[M, 3], [0, M]]))
    assert float(out[0, 0].exp()[1]) == pytest.approx(1.0)  # "? City" -> Mexico
    assert float(out[1, 1].exp()[2]) == pytest.approx(1.0)  # "New ?" -> York
    # "York ?" at the first position never happens: uniform by convention, finite.
    out = oracle(torch.tensor([[2, M]]))
    np.testing.assert_allclose(out[0, 1].exp().numpy(), np.full(4, 0.25))


def test_cities_and_parity_structure():
    c = FiniteSupportOracle.cities(["New York", "Mexico City", "New Delhi"])
    assert c.token_names == ["New", "Mexico", "York", "City", "Delhi"]
    assert float(c(torch.tensor([[c.mask_id, c.mask_id]])).exp()[0, 0, 0]) == pytest.approx(2 / 3)
    par = FiniteSupportOracle.parity(4)
    assert par.support.shape == (8, 4) and bool((par.support.sum(1) % 2 == 0).all())


def test_list_op_answers():
    shuffle = ListOpOracle("shuffle", 3)
    assert shuffle.answers(torch.tensor([[2, 0, 1]])).shape == (1, 6, 3)
    assert ListOpOracle("sort", 3, 5).answers(torch.tensor([[4, 0, 2]])).tolist() == [[[0, 2, 4]]]
    assert ListOpOracle("reverse", 3).answers(torch.tensor([[2, 0, 1]])).tolist() == [[[1, 0, 2]]]
    rr = ListOpOracle("replace_random", 3)
    assert rr.answers(torch.tensor([[2, 0, 1]])).tolist() == [[[3, 0, 1], [2, 3, 1], [2, 0, 3]]]
    # log_prob: uniform over 3! prompts x answers.
    lp = shuffle.log_prob(
        torch.tensor([[2, 0, 1, 0, 1, 2], [2, 0, 1, 0, 1, 1], [2, 2, 1, 2, 2, 1]])
    )
    assert lp[0] == pytest.approx(-math.log(36)) and lp[1] == -math.inf and lp[2] == -math.inf


def test_eos_padding_structure():
    o = EOSPaddedOracle(3, 6, seed=0, padding="rainbow", n_pad=2)
    assert o.pad_tokens[2].tolist() == [-1, -1, 3, 4, 5, 4]
    s = o.sample(200, seed=1)
    first = (s >= 3).int().argmax(1)
    for row, f in zip(s, first):
        if (row >= 3).any():
            assert row[f] == o.eos_id
    # An observed EOS forces EOS-or-pad to its right.
    M = o.mask_id
    probs = o(torch.tensor([[0, 3, M, M, M, M]])).exp()
    assert float(probs[0, 2, 4]) == pytest.approx(1.0)


def test_brackets_support_is_balanced():
    o = BracketsOracle(8, n_types=2)
    assert o.support.shape[0] == 14 * 16  # Catalan(4) * 2**4
    for w in o.support.tolist():
        stack = []
        for t in w:
            if t % 2 == 0:
                stack.append(t)
            else:
                assert stack and stack.pop() == t - 1
        assert not stack


def test_validation_errors():
    o = MixtureOracle(3, 4)
    with pytest.raises(ValueError, match="seq_len=4"):
        o(torch.zeros(1, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="mask id"):
        o.log_prob(torch.full((1, 4), o.mask_id))
    with pytest.raises(TypeError, match="int64"):
        o(torch.zeros(1, 4, dtype=torch.float32))
    with pytest.raises(ValueError, match="padding"):
        o(torch.zeros(1, 4, dtype=torch.int64), torch.tensor([[False, True, True, True]]))
    with pytest.raises(ValueError, match="n_items"):
        ListOpOracle("shuffle", 4, n_items=3)
    with pytest.raises(ValueError, match="unknown list operation"):
        ListOpOracle("rotate", 3)
    with pytest.raises(ValueError, match="even"):
        BracketsOracle(5)
    with pytest.raises(ValueError, match="stickiness"):
        StickyHMMOracle(3, 4, stickiness=1.5)


def test_toy_spec_every_kind():
    assert isinstance(
        toy_spec("hmm", {"vocab": "4", "length": "6", "stickiness": "0.5"}), StickyHMMOracle
    )
    assert isinstance(toy_spec("mixture", {"components": 3}), MixtureOracle)
    c = toy_spec("set", {"names": "New York,Mexico City,New Delhi"})
    assert c.support.shape == (3, 2)
    assert toy_spec("set", {"pattern": "parity", "length": 3}).support.shape == (4, 3)
    assert toy_spec("set", {"pattern": "k_of_n", "length": 4, "k": 1}).support.shape == (4, 4)
    lo = toy_spec("listop", {"op": "replace_random", "n": 3, "items": 5})
    assert (lo.op, lo.n, lo.n_items) == ("replace_random", 3, 5)
    assert toy_spec("eos", {"padding": "rainbow", "pads": 2}).vocab_size == 4 + 1 + 2
    assert toy_spec("brackets", {"length": 4, "types": 2}).support.shape == (8, 4)
    with pytest.raises(ValueError, match="unknown oracle kind"):
        toy_spec("markov2", {})
    with pytest.raises(ValueError, match="unknown parameter"):
        toy_spec("hmm", {"vocab_size": 4})
    with pytest.raises(ValueError, match="not an integer"):
        toy_spec("hmm", {"vocab": 2.5})


def test_load_model_dispatches_to_toys():
    from remask.models.loading import load_model

    o = load_model("oracle:listop?op=shuffle&n=3")
    assert isinstance(o, ListOpOracle) and o.seq_len == 6
    o = load_model("oracle:set?names=New York,Mexico City")
    assert o.token_names == ["New", "Mexico", "York", "City"]


def test_every_oracle_family_derives_from_exact_oracle():
    import importlib
    import inspect
    import pkgutil

    import remask.models.oracles as oracles
    from remask.models import ExactOracle, MarkovChainOracle, load_model
    from remask.models.oracles import TOY_KINDS

    # Every family file defines an ExactOracle subclass; base and spec define the shared parts.
    families = {}
    for info in pkgutil.iter_modules(oracles.__path__):
        if info.name in ("base", "spec"):
            continue
        module = importlib.import_module(f"remask.models.oracles.{info.name}")
        found = [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if c.__module__ == module.__name__ and issubclass(c, ExactOracle)
        ]
        assert found, f"remask.models.oracles.{info.name} defines no ExactOracle subclass"
        families[info.name] = found
    assert {"markov", "hmm", "mixture", "finite", "listop", "eos", "brackets"} <= set(families)
    assert MarkovChainOracle in families["markov"]
    # Every spec kind builds one, the Markov chain included.
    assert "markov" in TOY_KINDS
    for kind in TOY_KINDS:
        assert isinstance(load_model(f"oracle:{kind}"), ExactOracle), kind


def test_markov_chain_keeps_its_any_length_contract():
    from remask.models import MarkovChainOracle

    oracle = MarkovChainOracle(3, 4, seed=0)
    assert oracle.max_length is None and oracle.mask_id == 3  # stationary: any window length
    longer = oracle.sample(5, seed=1).repeat(1, 2)  # (5, 8), longer than seq_len
    assert oracle(longer).shape == (5, 8, 3) and oracle.log_prob(longer).shape == (5,)
    with pytest.raises(ValueError, match="seq_len=4"):
        StickyHMMOracle(3, 4)(longer)
