"""Helpers shared by the slow reference loops: one row's logits (with LLaDA's
classifier-free guidance), block boundaries, even splits, the descending-confidence order,
and a handcrafted denoiser of fixed confidences.
"""

from __future__ import annotations

import torch


def guided_logits(model, x: list[int], prompt_length: int, cfg_scale: float) -> torch.Tensor:
    """(L, V) logits of one row, with LLaDA's classifier-free guidance when cfg_scale > 0."""
    tokens = torch.tensor([x])
    cond = model(tokens)[0].double()
    if cfg_scale == 0:
        return cond
    unconditional = tokens.clone()
    unconditional[0, :prompt_length] = model.mask_id  # prompt replaced by masks
    un = model(unconditional)[0].double()
    guided = un + (cfg_scale + 1) * (cond - un)
    return torch.where(torch.isfinite(cond), guided, float("-inf"))


def row_logits(model, x: list[int]) -> torch.Tensor:
    """(L, V) float64 logits of one row."""
    return model(torch.tensor([x]))[0].double()


def by_confidence(candidates: list[tuple[float, int]]) -> list[int]:
    """Positions by descending confidence, ties to the lower position."""
    return [j for _, j in sorted(candidates, key=lambda c: (-c[0], c[1]))]


def block_bounds(P: int, gen_length: int, block_length: int | None) -> list[tuple[int, int]]:
    size = block_length or gen_length
    return [(P + lo, min(P + lo + size, P + gen_length)) for lo in range(0, gen_length, size)]


def even_split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


class FixedConfidence:
    """A denoiser whose prediction at generated position j ignores the canvas: token
    ``tokens[j]`` with probability ``confidences[j]``, the rest spread evenly.

    Positions are counted from the end of the canvas, so any prompt (or none) works: the
    last ``len(confidences)`` positions get the table. ``mask_id = vocab_size`` (no logit
    column, as in MDLM and the Markov oracle).
    """

    def __init__(self, confidences, tokens=None, vocab_size: int = 4):
        self.confidences = torch.tensor(confidences, dtype=torch.float64)
        n = len(confidences)
        self.tokens = torch.zeros(n, dtype=torch.int64) if tokens is None else torch.tensor(tokens)
        self.vocab_size = vocab_size
        self.mask_id = vocab_size
        rest = (1 - self.confidences) / (vocab_size - 1)  # (n,)
        probs = rest.unsqueeze(-1).repeat(1, vocab_size)  # (n, V)
        probs.scatter_(-1, self.tokens.unsqueeze(-1), self.confidences.unsqueeze(-1))
        self.table = probs.log()  # (n, V)

    def __call__(self, tokens, attention_mask=None):
        B, L = tokens.shape
        n = self.table.shape[0]
        logits = torch.zeros(B, L, self.vocab_size, dtype=torch.float64)
        logits[:, L - n :] = self.table
        return logits


def check_remasks_against_reference(model, sampler, reference, config, prompts, gen_length) -> int:
    """Decode ``prompts`` in one batch with ``sampler`` and check every row against the
    one-row ``reference(model, prompt, gen_length=, **config) -> (tokens, nfe, remasks)``:
    tokens, NFE, and the positions remasked over the batch (``info.remasked``). Returns that
    count, so callers can check a setting actually remasks."""
    import remask

    remasked = []
    out = remask.generate(
        model,
        prompts,
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[lambda s, i: remasked.append(int(i.remasked.sum()))],
    )
    width = max(map(len, prompts))
    expected_remasks = 0
    for row, prompt in enumerate(prompts):
        expected, nfe, remasks = reference(model, prompt, gen_length=gen_length, **config)
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        assert int(out.nfe[row]) == nfe
        expected_remasks += remasks
    assert sum(remasked) == expected_remasks
    return expected_remasks
