"""Ports of two reference generation loops, the baselines of the GPU benchmark.

remask's claim is that its general machinery (sampler objects, the driver, the cache wrapper)
costs no more than the hand-written loop each paper ships. To measure that, these are the
reference loops' semantics, written from the algorithms and run through the same remask
denoiser (same weights, same forward pass), so that the two sides differ only in the decoding
code around the forward:

* :func:`llada_generate` — LLaDA's ``generate()`` (Nie et al., arXiv 2502.09992; the
  ``generate.py`` of the official repository): semi-autoregressive blocks, the block's mask
  count split evenly over its steps (remainder on the first steps), a forward over the whole
  canvas every step, argmax proposal (Gumbel-max in float64 at T > 0), confidence = softmax
  probability of the proposal in the logits' dtype, and per row the ``k`` most confident masked
  positions of the current block committed (a per-row ``topk``, as in the reference).
* :func:`fastdllm_dual_cache_generate` — Fast-dLLM v1's ``generate_with_dual_cache`` with a
  confidence threshold (Wu et al., arXiv 2505.22618): at each block start one full forward that
  fills the keys/values of the whole canvas and also commits tokens; then, until the block has
  no mask, forwards of the block alone against the cached prefix *and* suffix, overwriting the
  block's keys/values in place. Selection: float64 softmax confidence of the argmax; every
  masked position with confidence >= threshold is committed, and always the most confident.

Both follow the references' restrictions (``gen_length`` divisible by ``block_length``; for
LLaDA also ``steps`` by the number of blocks) and raise a ``ValueError`` otherwise. One
deliberate difference in Fast-dLLM's selection: the reference drops sub-threshold candidates in
a Python loop over ranks; here the same set is chosen with one comparison per row. It gives the
reference loop the benefit of the doubt: a port at least as fast as the original.

Model interface: ``model(tokens, attention_mask) -> (B, L, V)`` logits (the remask Denoiser
protocol) and, for the dual cache, ``model.forward_cached`` / ``model.forward_window`` of
remask's LLaDA and Dream adapters (:class:`remask.models._adapter.CheckpointDenoiser`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fastdllm_dual_cache_generate", "llada_generate", "num_transfer_tokens"]


def num_transfer_tokens(block_mask: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's per-step commit counts: each row's mask count split evenly, remainder first.

    Parameters
    ----------
    block_mask : (B, W) bool
        Masked positions of the current block.
    steps : int
        Steps for this block.

    Returns
    -------
    (B, steps) int64 counts; row sums equal the rows' mask counts.
    """
    count = block_mask.sum(dim=1, keepdim=True)  # (B, 1)
    base, rem = count // steps, count % steps
    step = torch.arange(steps, device=block_mask.device).unsqueeze(0)  # (1, steps)
    return base + (step < rem).long()  # (B, steps)


def _gumbel_max_input(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    """LLaDA's ``add_gumbel_noise``: logits at T = 0, else exp(l) / (-log u)^T in float64."""
    if temperature == 0:
        return logits
    logits64 = logits.to(torch.float64)  # (B, L, V) float64, as in the reference
    noise = torch.rand(
        logits64.shape, dtype=torch.float64, device=logits.device, generator=generator
    )
    return logits64.exp() / (-torch.log(noise)) ** temperature


def _prepare(
    model,
    prompt: torch.Tensor,
    attention_mask: torch.Tensor | None,
    gen_length: int,
    block_length: int,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2:
        raise ValueError(f"prompt must be a (B, P) tensor, got {type(prompt).__name__}")
    if gen_length < 1 or block_length < 1 or gen_length % block_length:
        raise ValueError(
            f"gen_length ({gen_length}) must be a positive multiple of block_length ({block_length}), "
            "as in the reference loop"
        )
    batch, length = prompt.shape
    x = torch.full(
        (batch, length + gen_length), model.mask_id, dtype=torch.long, device=prompt.device
    )  # (B, L)
    x[:, :length] = prompt
    if attention_mask is not None:
        ones = torch.ones(
            batch, gen_length, dtype=attention_mask.dtype, device=attention_mask.device
        )
        attention_mask = torch.cat([attention_mask, ones], dim=1)  # (B, L)
    return x, attention_mask, gen_length // block_length


@torch.no_grad()
def llada_generate(
    model,
    prompt: torch.Tensor,
    *,
    steps: int,
    gen_length: int,
    block_length: int,
    temperature: float = 0.0,
    attention_mask: torch.Tensor | None = None,
    confidence_dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """LLaDA's reference ``generate()`` with low-confidence remasking (arXiv 2502.09992).

    Parameters
    ----------
    model : Denoiser
        ``model(x, attention_mask)`` -> (B, L, V) logits; ``model.mask_id``.
    prompt : (B, P) int64
    steps, gen_length, block_length : int
        As in the reference: ``gen_length % block_length == 0`` and
        ``steps % (gen_length // block_length) == 0``.
    temperature : float
        0 = argmax; T > 0 = float64 Gumbel-max sample.
    attention_mask : (B, P) bool, optional
        Prompt padding mask (left padding).
    confidence_dtype : torch.dtype, optional
        Dtype of the softmax giving the confidence; default the logits' dtype, as in the
        reference since its June-2025 change (bfloat16 on an 8B checkpoint).
    generator : torch.Generator, optional
        For the Gumbel noise at T > 0.

    Returns
    -------
    tokens : (B, P + gen_length) int64
    nfe : int
        Forward passes (one per step, whole batch).
    """
    x, attention_mask, num_blocks = _prepare(
        model, prompt, attention_mask, gen_length, block_length
    )
    if steps < num_blocks or steps % num_blocks:
        raise ValueError(
            f"steps ({steps}) must be a multiple of the number of blocks ({num_blocks})"
        )
    steps_per_block = steps // num_blocks
    start = prompt.shape[1]
    nfe = 0
    for block in range(num_blocks):
        lo, hi = start + block * block_length, start + (block + 1) * block_length
        counts = num_transfer_tokens(x[:, lo:hi] == model.mask_id, steps_per_block)  # (B, S)
        for i in range(steps_per_block):
            mask_index = x == model.mask_id  # (B, L)
            logits = model(x, attention_mask)  # (B, L, V)
            nfe += 1
            x0 = _gumbel_max_input(logits, temperature, generator).argmax(dim=-1)  # (B, L)
            p = F.softmax(logits.to(confidence_dtype or logits.dtype), dim=-1)  # (B, L, V)
            x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
            x0_p[:, hi:] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -torch.inf)
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(confidence.shape[0]):  # the reference's per-row top-k
                _, index = torch.topk(confidence[j], k=int(counts[j, i]))
                transfer[j, index] = True
            x[transfer] = x0[transfer]
    return x, nfe


def _threshold_transfer(
    logits: torch.Tensor,
    mask_index: torch.Tensor,
    x: torch.Tensor,
    threshold: float,
    temperature: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast-dLLM's ``get_transfer_index`` with a threshold: (proposals, commit mask)."""
    x0 = _gumbel_max_input(logits, temperature, generator).argmax(dim=-1)  # (B, W)
    p = F.softmax(logits.to(torch.float64), dim=-1)  # (B, W, V) float64, as in the reference
    x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)  # (B, W)
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, -torch.inf)
    counts = mask_index.sum(dim=1)  # (B,)
    transfer = torch.zeros_like(x0, dtype=torch.bool)
    for j in range(confidence.shape[0]):  # the reference's per-row top-k over all masks
        k = int(counts[j])
        if k == 0:
            continue
        values, index = torch.topk(confidence[j], k=k)
        keep = values >= threshold
        keep[0] = True  # the most confident proposal always commits
        transfer[j, index[keep]] = True
    return x0, transfer


@torch.no_grad()
def fastdllm_dual_cache_generate(
    model,
    prompt: torch.Tensor,
    *,
    gen_length: int,
    block_length: int,
    threshold: float,
    temperature: float = 0.0,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Fast-dLLM v1's dual-cache loop with threshold decoding (arXiv 2505.22618).

    Parameters
    ----------
    model : CheckpointDenoiser
        Needs ``forward_cached(x, attention_mask) -> (logits, cache)`` and
        ``forward_window(x, attention_mask, cache, start, stop) -> (B, stop - start, V)``.
    prompt : (B, P) int64
    gen_length, block_length : int
        ``gen_length % block_length == 0``, as in the reference.
    threshold : float
        Confidence threshold in [0, 1].
    temperature : float
        0 = argmax; T > 0 = float64 Gumbel-max sample.
    attention_mask : (B, P) bool, optional
    generator : torch.Generator, optional

    Returns
    -------
    tokens : (B, P + gen_length) int64
    nfe : int
        Forward passes (full and window passes alike).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    x, attention_mask, num_blocks = _prepare(
        model, prompt, attention_mask, gen_length, block_length
    )
    start = prompt.shape[1]
    nfe = 0
    for block in range(num_blocks):
        lo, hi = start + block * block_length, start + (block + 1) * block_length
        # Block start: one full pass fills the cache and commits tokens of this block.
        logits, cache = model.forward_cached(x, attention_mask)  # (B, L, V)
        nfe += 1
        mask_index = x == model.mask_id  # (B, L)
        mask_index[:, hi:] = False
        x0, transfer = _threshold_transfer(logits, mask_index, x, threshold, temperature, generator)
        x[transfer] = x0[transfer]
        # Then the block alone, against the cached prefix and suffix, until it has no mask.
        while bool((x[:, lo:hi] == model.mask_id).any()):
            block_mask = x[:, lo:hi] == model.mask_id  # (B, W)
            logits = model.forward_window(x, attention_mask, cache, lo, hi)  # (B, W, V)
            nfe += 1
            x0, transfer = _threshold_transfer(
                logits, block_mask, x[:, lo:hi], threshold, temperature, generator
            )
            x[:, lo:hi] = torch.where(transfer, x0, x[:, lo:hi])
    return x, nfe
