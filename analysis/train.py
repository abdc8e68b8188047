"""Train a :class:`~remask.models.tiny.TinyTransformer` as a masked diffusion model on an oracle.

A small masked diffusion model trained on samples of an exact oracle adds model error (and
homogenization excess) to the sampler error of a decoding rule, and is the non-exact model on which
the real-checkpoint estimators (:func:`~remask.analysis.pairwise_cmi`,
:func:`~remask.analysis.marginal_consistency`, ...) are validated against the model's own
enumerated values.

Objective (MDLM, arXiv 2406.07524; LLaDA, arXiv 2502.09992 eq. 3): for a clean sequence
x₀ of length L, draw ``t ~ U(ε, 1)`` per sequence, mask every token independently with
probability t, and minimise

    ℒ(θ) = −E_{t, x₀, x_t} [ (1 / t) Σ_{i=1}^{L} 1[x_t^i = M] log p_θ(x₀^i | x_t) ] / L,

the per-token normalisation of LLaDA's pre-training code (sum over the batch divided by
B · L; an upper bound on the negative log-likelihood per token).

Vocabulary: the network has ``oracle.vocab_size + 1`` columns, its mask last, and
:class:`~remask.models.trained_toy.ToyModel` drops that column, so the trained model has exactly
the oracle's ``mask_id``/``vocab_size`` and every analysis function compares the two
directly. The model class and its checkpoint format live in :mod:`remask.models.trained_toy`
(``load_model(DIR)`` opens a checkpoint written with ``out=DIR``); ``ToyModel`` and
``load_toy`` are re-exported here.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from remask.analysis._util import check_oracle
from remask.models.tiny import TinyTransformer
from remask.models.trained_toy import ToyModel, load_toy, save_toy

__all__ = ["ToyModel", "diffusion_loss", "load_toy", "train_toy"]

# Largest pool of oracle samples drawn up front (rows); batches are drawn from it with
# replacement, which for the small supports of toy oracles is indistinguishable from fresh
# samples and avoids one ancestral pass per step.
_POOL_LIMIT = 1 << 17


def diffusion_loss(
    model: ToyModel,
    tokens: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    eps: float = 1e-3,
) -> torch.Tensor:
    """The MDLM/LLaDA masked-diffusion loss of a batch (LLaDA arXiv 2502.09992 eq. 3).

    Parameters
    ----------
    model : ToyModel
        In ``train()`` mode for a differentiable loss, eval mode for evaluation.
    tokens : (B, L) int64
        Clean sequences x₀ (no mask id).
    generator : torch.Generator, optional
        Source of t and of the masks (fix it for a reproducible evaluation).
    eps : float
        ``t ~ U(eps, 1)``: the lower bound keeps the 1/t weight finite.

    Returns
    -------
    () float32
        ``Σ_b Σ_i 1[masked] CE_bi / t_b`` divided by ``B · L``.
    """
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    B, L = tokens.shape
    t = eps + (1.0 - eps) * torch.rand(B, 1, generator=generator)  # (B, 1)
    masked = torch.rand(B, L, generator=generator) < t  # (B, L)
    noisy = torch.where(masked, torch.full_like(tokens, model.mask_id), tokens)
    logits = model(noisy)  # (B, L, V)
    ce = nn.functional.cross_entropy(
        logits.reshape(B * L, -1).float(), tokens.reshape(-1), reduction="none"
    ).view(B, L)
    # Unmasked positions carry no loss (and no gradient); 1/t reweights each sequence.
    return (torch.where(masked, ce, torch.zeros_like(ce)) / t).sum() / (B * L)


def _draw_samples(oracle, n: int, seed: int) -> torch.Tensor:
    """(n, seq_len) exact samples: the oracle's own sampler, or ancestral exact sampling."""
    if callable(getattr(oracle, "sample", None)):
        return oracle.sample(n, seed=seed).long()
    from remask.analysis.exact import exact_samples

    return exact_samples(oracle, n, seed=seed)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def train_toy(
    oracle,
    *,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    width: int = 32,
    depth: int = 2,
    heads: int = 4,
    eps: float = 1e-3,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> ToyModel:
    """Train a TinyTransformer as a masked diffusion model on exact samples of ``oracle``.

    Each step draws ``batch_size`` sequences from a pool of exact oracle samples, masks
    them (module docstring) and takes one AdamW step on :func:`diffusion_loss`; the learning
    rate warms up linearly over the first 5% of the steps and then decays with a cosine to
    10% of ``lr``. CPU-friendly: V=3, L=6, width 32, 2 layers trains in well under a minute.

    Parameters
    ----------
    oracle : exact oracle
        Needs ``mask_id == vocab_size``, ``seq_len`` and ``log_prob`` (e.g.
        any oracle of :mod:`remask.models.oracles`); samples come from its ``sample`` method
        if it has one.
    steps : int
        Optimiser steps (0 returns the untrained, seeded network).
    batch_size : int
        Sequences per step.
    lr : float
        Peak learning rate.
    seed : int
        Seeds the initialisation, the sample pool and the masks.
    width, depth, heads : int
        TinyTransformer size.
    eps : float
        Lower bound of the masking ratio t.
    out : str or PathLike, optional
        Directory to write the checkpoint to (``model.pt`` state dict and ``toy_config.json``);
        load it with :func:`load_toy` or ``remask.models.load_model(out)``.
    progress : bool
        Show a tqdm progress bar with the running loss.

    Returns
    -------
    ToyModel
        In eval mode; the TinyTransformer is ``model.net``, the loss curve ``model.history``.

    Examples
    --------
    >>> from remask.models import MarkovChainOracle
    >>> oracle = MarkovChainOracle(3, 6, seed=0)
    >>> model = train_toy(oracle, steps=10, progress=False)
    >>> model.vocab_size, model.mask_id
    (3, 3)
    """
    check_oracle(oracle)
    if oracle.mask_id != oracle.vocab_size:
        raise ValueError(
            f"train_toy needs an oracle whose mask id is vocab_size (no mask column), got "
            f"mask_id={oracle.mask_id}, vocab_size={oracle.vocab_size}"
        )
    steps = _check_int("steps", steps, 0)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    L = int(oracle.seq_len)
    config = dict(
        vocab_size=oracle.vocab_size,
        seq_len=L,
        steps=steps,
        batch_size=batch_size,
        lr=float(lr),
        seed=seed,
        width=width,
        depth=depth,
        heads=heads,
        eps=float(eps),
        oracle=repr(oracle),
        objective="LLaDA arXiv 2502.09992 eq. 3 (1/t-weighted masked cross-entropy / (B L))",
    )
    net = TinyTransformer(
        oracle.vocab_size + 1,
        width=width,
        depth=depth,
        heads=heads,
        max_len=L,
        seed=seed,
        logit_scale=1.0,
    )
    model = ToyModel(net, config=config)
    if steps:
        _fit(
            model,
            oracle,
            steps=steps,
            batch_size=batch_size,
            lr=float(lr),
            seed=seed,
            eps=float(eps),
            progress=progress,
        )
    model.eval()
    if out is not None:
        save_toy(model, out)
    return model


def _fit(
    model: ToyModel,
    oracle,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    eps: float,
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    pool = _draw_samples(oracle, min(steps * batch_size, _POOL_LIMIT), seed)  # (N, L)
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)

    def schedule(k: int) -> float:
        if k < warm:
            return (k + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    record = max(1, steps // 200)  # ~200 points of the loss curve
    running = None
    bar = tqdm(range(steps), desc="train_toy", disable=not progress, leave=False)
    for k in bar:
        batch = pool[torch.randint(len(pool), (batch_size,), generator=g)]
        loss = diffusion_loss(model, batch, generator=g, eps=eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        # An exponential average: single-batch losses are noisy because of the 1/t weight.
        running = value if running is None else 0.98 * running + 0.02 * value
        if k % record == 0 or k == steps - 1:
            model.history["step"].append(k)
            model.history["loss"].append(running)
            bar.set_postfix(loss=f"{running:.4f}")
    bar.close()
    model.config["final_loss"] = running
