"""Log-likelihood of a continuation under a masked diffusion model.

Three quantities for ``lm-eval``'s ``loglikelihood`` requests (a context, a continuation):

- :func:`elbo_loglikelihood` — the Monte-Carlo ELBO that LLaDA's and Dream's evaluation
  code use. Only the continuation (the *target*, T tokens) is ever masked; the context stays
  observed. With ``variant="llada"`` (LLaDA arXiv 2502.09992, its evaluation appendix and
  ``eval_llada.py``) each sample masks exactly ``l`` target tokens, ``l`` in {1..T}, chosen
  uniformly at random, and scores ``-(T / l) * Σ_{masked i} log p(x_i | unmasked)``; the ``l``
  of one batch are stratified (a random start ``k`` and ``l_j = ((k + j T / b - 1) mod T) + 1``
  rounded, as ``eval_llada.py`` does). With ``variant="dream"`` (Dream's ``diffllm``
  evaluation, after SMDM) each batch draws ``t_j = (u + j / b) mod 1``, masks every target
  token independently with probability ``p_j = (1 - eps) t_j + eps`` and weights by ``1 / p_j``.
  Dream's code also never masks the first and last token of the whole sequence (its BOS and
  EOS); here the context is never masked and every target token can be, which is the same
  when the continuation carries no EOS.

  Both estimate ``E_σ Σ_k log p(x_{σ(k)} | x_{σ(<k)})``, the any-order autoregressive
  log-likelihood: for a denoiser whose conditionals are exact (an exact oracle) that is the
  exact ``log p(target | context)`` and the LLaDA estimator is unbiased for it (the Dream one
  up to ``O(eps)``); for a trained model it is its ELBO, a lower bound in expectation.
- :func:`exact_loglikelihood` — for an exact oracle: the chain rule
  ``Σ_i log p(x_i | context, x_{<i})``, each conditional read from the oracle with the later
  target positions masked (the oracle marginalises them exactly).
- :func:`greedy_match` — lm-eval's ``is_greedy``: whether decoding the masked target one
  token per step, most confident position first, each token its argmax, reproduces the
  target (``eval_llada.py``'s ``suffix_greedy_prediction``).

The mask token's logit column (when it has one) is set to -inf before the softmax, as the
samplers do (the protocol in :mod:`remask.models`): the mask is never a prediction.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "ELBOEstimate",
    "elbo_loglikelihood",
    "exact_loglikelihood",
    "greedy_match",
    "is_exact_oracle",
    "supports_loglikelihood",
]

VARIANTS = ("llada", "dream")


class ELBOEstimate(NamedTuple):
    """A Monte-Carlo estimate of ``log p(target | context)``.

    Attributes
    ----------
    value : float
        The estimate (nats).
    stderr : float
        Standard error from the spread of the per-sample terms (treating them as
        independent; the stratification only makes the true error smaller).
    mc_num : int
        Samples used.
    nfe : int
        Denoiser rows evaluated (``mc_num``).
    """

    value: float
    stderr: float
    mc_num: int
    nfe: int


def is_exact_oracle(model) -> bool:
    """Whether ``model`` is an exact oracle (an int ``seq_len`` and an exact ``log_prob``)."""
    return callable(getattr(model, "log_prob", None)) and isinstance(
        getattr(model, "seq_len", None), int
    )


def supports_loglikelihood(model) -> str | None:
    """None when ``model`` can score a continuation; else why not (for the error message).

    The ELBO needs one plain call that predicts every position of a whole canvas. A
    block-diffusion model (``block_size``: SDAR, Fast-dLLM v2, LLaDA 2.x) predicts a block
    from a cached causal prefix, and a wrapper that asks for the active block
    (``accepts_active``) only returns logits for it: neither gives those logits.
    """
    if getattr(model, "block_size", None) is not None:
        return (
            f"{type(model).__name__} is a block-diffusion model (block_size={model.block_size}): its logits "
            "come block by block from a causal prefix, so the masked-diffusion ELBO does not apply"
        )
    if getattr(model, "accepts_active", False):
        return (
            f"{type(model).__name__} returns logits for the active block only (accepts_active=True); "
            "use the model it wraps"
        )
    return None


def _check_ids(name: str, ids, model, *, allow_empty: bool) -> list[int]:
    if not isinstance(ids, (list, tuple)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise TypeError(f"{name} must be a list of int token ids, got {ids!r:.80}")
    if not ids and not allow_empty:
        raise ValueError(f"{name} is empty: give at least one token to score")
    for i in ids:
        if not 0 <= i < model.vocab_size or i == model.mask_id:
            raise ValueError(
                f"{name} token id {i} is outside the vocabulary [0, {model.vocab_size}) or is the "
                f"mask id {model.mask_id}"
            )
    return list(ids)


def _device(model) -> torch.device:
    device = getattr(model, "device", None)
    return torch.device(device) if isinstance(device, (str, torch.device)) else torch.device("cpu")


def _log_probs(model, canvas: torch.Tensor) -> torch.Tensor:
    """(B, L, V) log-probabilities of the model on ``canvas`` (B, L), mask column at -inf.

    float32 at least (a bfloat16 softmax loses the small probabilities the ELBO sums);
    an oracle's float64 stays float64 (its values are exact).
    """
    attention = torch.ones_like(canvas, dtype=torch.bool)
    logits = model(canvas, attention)  # (B, L, V)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if 0 <= model.mask_id < logits.shape[-1]:
        logits = logits.clone()
        logits[..., model.mask_id] = -math.inf
    return torch.log_softmax(logits, dim=-1)


def _llada_masks(b: int, T: int, generator: torch.Generator):
    """(b, T) bool masks with exactly l_j masked tokens each, l stratified as eval_llada.py; weights T / l."""
    k = int(torch.randint(1, T + 1, (), generator=generator))
    counts = torch.round(torch.linspace(float(k), k + (b - 1) * (T / b), steps=b)).long()  # (b,)
    counts = ((counts - 1) % T) + 1
    # A uniformly random subset of size l_j: the l_j smallest of T uniform keys.
    ranks = torch.rand(b, T, generator=generator).argsort(-1).argsort(-1)  # (b, T)
    masked = ranks < counts.unsqueeze(-1)
    return masked, counts.double() / T  # (b, T), (b,) the mask ratio l / T


def _dream_masks(b: int, T: int, generator: torch.Generator, eps: float):
    """(b, T) Bernoulli(p_j) masks with stratified t_j (Dream / SMDM); weights 1 / p_j."""
    u = torch.rand((), generator=generator, dtype=torch.float64)
    t = (u + torch.arange(b, dtype=torch.float64) / b) % 1  # (b,)
    p = (1 - eps) * t + eps
    masked = torch.rand(b, T, generator=generator, dtype=torch.float64) < p.unsqueeze(-1)
    return masked, p


def elbo_loglikelihood(
    model,
    context: list[int],
    target: list[int],
    *,
    mc_num: int = 128,
    batch_size: int = 32,
    seed: int = 0,
    variant: str = "llada",
    sampling_eps: float = 1e-3,
) -> ELBOEstimate:
    """Monte-Carlo ELBO estimate of ``log p(target | context)`` (see the module docstring).

    Parameters
    ----------
    model : Denoiser
        Called as ``model(tokens, attention_mask)`` on (b, P + T) canvases.
    context : list of int
        Observed token ids (may be empty).
    target : list of int
        The continuation to score (T >= 1 ids).
    mc_num : int
        Monte-Carlo samples (masked copies), >= 1.
    batch_size : int
        Copies per denoiser call, >= 1 (the last call may be smaller).
    seed : int
        Seed of the masks: the same seed gives the same estimate.
    variant : {"llada", "dream"}
        The mask law (module docstring).
    sampling_eps : float
        Dream's smallest mask probability, in [0, 1).

    Returns
    -------
    ELBOEstimate
    """
    _check_int("mc_num", mc_num)
    _check_int("batch_size", batch_size)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    if (
        isinstance(sampling_eps, bool)
        or not isinstance(sampling_eps, (int, float))
        or not 0 <= sampling_eps < 1
    ):
        raise ValueError(f"sampling_eps must be a number in [0, 1), got {sampling_eps!r}")
    context = _check_ids("context", context, model, allow_empty=True)
    target = _check_ids("target", target, model, allow_empty=False)
    P, T = len(context), len(target)
    generator = torch.Generator().manual_seed(int(seed))
    device = _device(model)
    seq = torch.tensor(context + target, dtype=torch.int64, device=device)  # (L,)
    tgt = seq[P:]  # (T,)
    terms = []
    done = 0
    while done < mc_num:
        b = min(batch_size, mc_num - done)
        if variant == "llada":
            masked, ratio = _llada_masks(b, T, generator)
        else:
            masked, ratio = _dream_masks(b, T, generator, float(sampling_eps))
        masked = masked.to(device)
        canvas = seq.expand(b, -1).clone()  # (b, L)
        canvas[:, P:] = torch.where(masked, model.mask_id, tgt)
        logp = _log_probs(model, canvas)[:, P:]  # (b, T, V)
        picked = logp.gather(-1, tgt.expand(b, -1).unsqueeze(-1)).squeeze(-1)  # (b, T)
        picked = torch.where(masked, picked, torch.zeros_like(picked))
        terms.append(picked.double().sum(-1).cpu() / ratio)  # (b,) the weighted log-likelihood term
        done += b
    values = torch.cat(terms)  # (mc_num,)
    stderr = float(values.std(unbiased=True) / math.sqrt(mc_num)) if mc_num > 1 else math.inf
    return ELBOEstimate(
        value=float(values.mean()), stderr=stderr, mc_num=int(mc_num), nfe=int(mc_num)
    )


def exact_loglikelihood(oracle, context: list[int], target: list[int]) -> float:
    """Exact ``log p(target | context)`` of an exact oracle, by the chain rule.

    One call on T canvases: row i observes the context and ``target[:i]`` and masks the rest,
    and contributes ``log p(target[i] | context, target[:i])``.

    Parameters
    ----------
    oracle : exact oracle
        (``log_prob`` and ``seq_len``; toy oracles need ``len(context) + len(target) == seq_len``.)
    context, target : list of int

    Returns
    -------
    float (nats; -inf when the continuation is impossible).
    """
    if not is_exact_oracle(oracle):
        raise TypeError(
            f"{type(oracle).__name__} is not an exact oracle (it has no log_prob/seq_len)"
        )
    context = _check_ids("context", context, oracle, allow_empty=True)
    target = _check_ids("target", target, oracle, allow_empty=False)
    P, T = len(context), len(target)
    seq = torch.tensor(context + target, dtype=torch.int64)  # (L,)
    canvas = seq.expand(T, -1).clone()  # (T, L)
    later = torch.arange(T).unsqueeze(-1) <= torch.arange(T).unsqueeze(
        0
    )  # (T, T): row i masks j >= i
    canvas[:, P:] = torch.where(later, oracle.mask_id, seq[P:])
    logp = _log_probs(oracle, canvas)[:, P:]  # (T, T, V)
    rows = torch.arange(T)
    return float(logp[rows, rows, seq[P:]].double().sum())


def greedy_match(model, context: list[int], target: list[int]) -> bool:
    """Whether greedy one-token-per-step decoding of the masked target reproduces it.

    Each step commits, among the still-masked target positions, the one whose argmax has the
    highest probability (ties to the lower position), as ``eval_llada.py`` does; T calls.
    """
    context = _check_ids("context", context, model, allow_empty=True)
    target = _check_ids("target", target, model, allow_empty=False)
    P, T = len(context), len(target)
    device = _device(model)
    canvas = torch.tensor(
        [context + [model.mask_id] * T], dtype=torch.int64, device=device
    )  # (1, L)
    for _ in range(T):
        logp = _log_probs(model, canvas)[0, P:]  # (T, V)
        conf, best = logp.max(-1)  # (T,)
        still = canvas[0, P:] == model.mask_id
        conf = torch.where(still, conf, torch.full_like(conf, -math.inf))
        pos = int(conf.argmax())
        canvas[0, P + pos] = best[pos]
    return canvas[0, P:].tolist() == target


def _check_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
