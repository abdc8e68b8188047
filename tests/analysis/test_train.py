"""train_toy: a TinyTransformer trained as a masked diffusion model on an exact oracle, and the
estimators validated on it (issue 5 acceptance: estimates track the model's own enumerated
values; the martingale test separates an exact oracle from an undertrained model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from remask.analysis import (
    ToyModel,
    diffusion_loss,
    load_toy,
    marginal_consistency,
    pairwise_cmi,
    train_toy,
)
from remask.analysis._util import call_log_probs, kl
from remask.models import MarkovChainOracle

V, L = 3, 6


@pytest.fixture(scope="module")
def oracle():
    # Dirichlet(0.5) rows: strongly dependent neighbours, |λ2| well below 1.
    return MarkovChainOracle(V, L, seed=0, concentration=0.5)


@pytest.fixture(scope="module")
def untrained(oracle):
    return train_toy(oracle, steps=0, seed=0, progress=False)


@pytest.fixture(scope="module")
def trained(oracle):
    return train_toy(oracle, steps=600, batch_size=128, lr=3e-3, seed=0, progress=False)


@pytest.fixture(scope="module")
def undertrained(oracle):
    return train_toy(oracle, steps=150, batch_size=128, lr=3e-3, seed=0, progress=False)


def _canvases(oracle):
    """x_0 observed (each value once), x_1..x_5 masked: (V, L)."""
    return torch.tensor([[a] + [oracle.mask_id] * (L - 1) for a in range(V)])


def test_toy_model_speaks_the_oracle_vocabulary(oracle, untrained):
    assert isinstance(untrained, ToyModel)
    assert (untrained.vocab_size, untrained.mask_id) == (oracle.vocab_size, oracle.mask_id)
    assert untrained.net.vocab_size == V + 1 and untrained.net.mask_id == oracle.mask_id
    logits = untrained(_canvases(oracle))
    assert logits.shape == (V, L, V) and not logits.requires_grad and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="token ids"):
        untrained(torch.tensor([[0, 1, V + 1, 0, 0, 0]]))


def test_training_reduces_loss_and_brings_marginals_to_the_oracle(oracle, untrained, trained):
    held_out = oracle.sample(4096, seed=123)

    def loss(model):  # the same t and masks for every model: a paired comparison
        return float(diffusion_loss(model, held_out, generator=torch.Generator().manual_seed(5)))

    l0, l1, floor = loss(untrained), loss(trained), loss(oracle)
    # The exact oracle attains the objective's minimum (up to the shared sampling noise):
    # training must close most of the gap between the initial network and it.
    assert floor < l1 < l0
    assert l1 - floor < 0.1 * (l0 - floor), (l0, l1, floor)
    hist = trained.history["loss"]
    assert len(hist) > 10 and np.mean(hist[-5:]) < 0.8 * hist[0]

    # One-shot marginals on random mask patterns of held-out sequences.
    g = torch.Generator().manual_seed(9)
    tokens = oracle.sample(512, seed=77)
    masked = torch.rand(tokens.shape, generator=g) < 0.6  # (512, L)
    tokens = torch.where(masked, torch.full_like(tokens, oracle.mask_id), tokens)
    exact = call_log_probs(oracle, tokens)

    def marginal_kl(model):
        return float(kl(exact, call_log_probs(model, tokens))[masked].mean())

    k0, k1 = marginal_kl(untrained), marginal_kl(trained)
    assert k1 < 0.1 * k0 and k1 < 0.05, (k0, k1)


def test_checkpoint_round_trip(tmp_path, oracle):
    model = train_toy(oracle, steps=3, batch_size=8, seed=1, out=tmp_path / "ckpt", progress=False)
    loaded = load_toy(tmp_path / "ckpt")
    tokens = _canvases(oracle)
    assert torch.equal(model(tokens), loaded(tokens))
    assert loaded.config["steps"] == 3 and loaded.history["loss"] == model.history["loss"]
    with pytest.raises(ValueError, match="not a train_toy checkpoint"):
        load_toy(tmp_path)
    # load_model opens it like any other model directory (the CLI's one loader).
    from remask.models import load_model

    opened = load_model(str(tmp_path / "ckpt"))
    assert isinstance(opened, ToyModel) and torch.equal(opened(tokens), model(tokens))
    with pytest.raises(TypeError, match="train_toy checkpoint"):
        load_model(str(tmp_path / "ckpt"), mask_id=3)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(steps=-1), ValueError),
        (dict(lr=0.0), ValueError),
        (dict(batch_size=0), ValueError),
    ],
)
def test_bad_arguments(oracle, kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        train_toy(oracle, progress=False, **kwargs)


def test_train_toy_needs_an_exact_oracle(untrained):
    with pytest.raises(TypeError, match="exact oracle"):
        train_toy(untrained, steps=1, progress=False)


def _clamped_conditionals(model, tokens, i, j):
    """π = p(x_i | c) (B, V) and p_a = p(x_j | c, x_i = a) (B, V_a, V) by enumeration."""
    pi = call_log_probs(model, tokens)[:, i].exp()
    canv = tokens.repeat_interleave(V, 0)
    canv[:, i] = torch.arange(V).repeat(tokens.shape[0])
    pa = call_log_probs(model, canv)[:, j].exp().view(tokens.shape[0], V, V)
    return pi, pa


@pytest.mark.statistical
def test_pairwise_cmi_estimates_track_the_models_exact_values(oracle, trained):
    tokens = _canvases(oracle)
    M = 400
    for i in (1, 2, 3):
        exact = pairwise_cmi(
            trained, tokens, i
        )  # full-vocabulary clamping: the model's own exact CMI
        assert np.all(exact.missed_mass == 0) and np.all(exact.n_candidates == V)
        # top-k with k = V is the same enumeration; k < V reports the probability it skips.
        full_k = pairwise_cmi(trained, tokens, i, top_k=V)
        np.testing.assert_allclose(full_k.cmi, exact.cmi, atol=1e-12, equal_nan=True)
        top2 = pairwise_cmi(trained, tokens, i, top_k=2)
        pi = call_log_probs(trained, tokens)[:, i].exp()
        np.testing.assert_allclose(top2.missed_mass, pi.min(-1).values.numpy(), atol=1e-12)
        sampled = pairwise_cmi(trained, tokens, i, n_samples=M, seed=11 + i)
        for j in range(1, L):
            if j == i:
                continue
            # Delta method for Î(w) = H(Σ w_a p_a) − Σ w_a H(p_a) with multinomial weights:
            # ∂Î/∂w_a = KL(p_a ‖ p̄) − 1, so sd = sqrt(Var_a KL(p_a ‖ p̄) / M); the plug-in
            # entropy is biased down by about Σ_v Var_a p_a(v) / (2 M p̄(v)).
            pi, pa = _clamped_conditionals(trained, tokens, i, j)
            pbar = (pi.unsqueeze(-1) * pa).sum(1, keepdim=True)  # (B, 1, V)
            kla = (pa * (pa.log() - pbar.log())).sum(-1)  # (B, V_a)
            var_kl = (pi * kla**2).sum(-1) - (pi * kla).sum(-1) ** 2
            var_p = (pi.unsqueeze(-1) * (pa - pbar) ** 2).sum(1)  # (B, V)
            sd = (var_kl.clamp_min(0) / M).sqrt().numpy()
            bias = (var_p / (2 * M * pbar[:, 0])).sum(-1).numpy()
            tol = 5 * sd + 3 * bias + 1e-6
            err = np.abs(sampled.cmi[:, j] - exact.cmi[:, j])
            assert np.all(err <= tol), (i, j, err, tol)
    # Across pairs the sampled estimates order the dependencies as the exact values do.
    ex = np.concatenate([pairwise_cmi(trained, tokens, i).cmi[:, i + 1 :] for i in (1, 2, 3)], None)
    sa = np.concatenate(
        [pairwise_cmi(trained, tokens, i, n_samples=M, seed=3).cmi[:, i + 1 :] for i in (1, 2, 3)],
        None,
    )
    assert np.corrcoef(ex, sa)[0, 1] > 0.98


def test_trained_model_learns_local_dependence(oracle, trained):
    # Like the chain, the model makes adjacent masked positions far more dependent than
    # distant ones, and its adjacent CMI is near the exact one.
    tokens = _canvases(oracle)
    model_row = pairwise_cmi(trained, tokens, 2).cmi  # (V, L)
    exact_row = pairwise_cmi(oracle, tokens, 2).cmi
    assert np.all(model_row[:, 3] > 5 * model_row[:, 5])
    np.testing.assert_allclose(model_row[:, 3], exact_row[:, 3], atol=0.1)


@pytest.mark.statistical
def test_marginal_consistency_separates_oracle_from_undertrained(oracle, undertrained):
    tokens = _canvases(oracle)
    exact = marginal_consistency(oracle, tokens, 2)
    assert np.nanmax(exact.kl) < 1e-10  # a coherent joint: the martingale property holds exactly
    model = marginal_consistency(undertrained, tokens, 2)
    # float32 logits put the numerical floor near 1e-7 nats; the gap is orders of magnitude above.
    assert np.nanmean(model.kl) > 1e-4, model.kl
    # With sampled draws the gap stands out of the noise a consistent model would show.
    sampled = marginal_consistency(undertrained, tokens, 2, n_samples=400, seed=3)
    oracle_sampled = marginal_consistency(oracle, tokens, 2, n_samples=400, seed=3)
    assert np.nanmean(sampled.kl) > 3 * np.nanmean(sampled.kl_noise)
    # ... whereas the oracle's sampled KL is of the size of its own noise estimate.
    assert np.nanmean(oracle_sampled.kl) < 3 * np.nanmean(oracle_sampled.kl_noise)
    assert math.isfinite(float(np.nanmean(model.tv))) and np.nanmean(model.tv) > 1e-3
