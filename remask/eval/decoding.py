"""Decode a batch of requests, each row with its own seed, and measure its cost.

``remask.generate(..., seed=[s_1, ..., s_B])`` keys each row's random stream by its own seed
(independent of its batch index and of padding). Where the installed ``generate`` takes one
int only, :func:`decode_rows` falls back — temporarily, until per-row seeds are in — to
decoding the rows one at a time with their own seed, which gives the same tokens per
request at the cost of batching.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

__all__ = ["Decoded", "decode_rows", "per_row_seeds"]


class Decoded(NamedTuple):
    """Generated ids and costs of a batch.

    Attributes
    ----------
    tokens : list of list of int
        Each row's generated ids (``gen_length`` of them; the prompt excluded).
    nfe : list of int
        Denoiser evaluations per row.
    seconds : float
        Wall time of the whole batch (all its ``generate`` calls).
    batched : bool
        Whether the rows ran as one batch (False in the row-at-a-time fallback).
    """

    tokens: list
    nfe: list
    seconds: float
    batched: bool


@functools.lru_cache(maxsize=1)
def per_row_seeds() -> bool:
    """Whether ``remask.generate`` accepts one seed per row (probed once on a 2-token oracle)."""
    from remask.models import MarkovChainOracle
    from remask.samplers import build, generate

    oracle = MarkovChainOracle(vocab_size=2, seq_len=2, seed=0)
    try:
        generate(oracle, [[], []], build("low_confidence"), gen_length=1, seed=[1, 2])
    except (TypeError, ValueError):
        return False
    return True


def decode_rows(model, prompts: list[list[int]], sampler, *, gen_length: int, seeds: list[int]) -> Decoded:
    """Generate ``gen_length`` tokens after each prompt; row b uses ``seeds[b]``.

    Parameters
    ----------
    model : Denoiser
    prompts : list of list of int
        Prompts of any lengths (left-padded by ``generate``).
    sampler : Sampler
    gen_length : int
    seeds : list of int
        One per prompt.

    Returns
    -------
    Decoded
    """
    from remask.samplers import generate

    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
    start = time.perf_counter()
    if per_row_seeds() or len(prompts) == 1:
        seed = list(seeds) if len(prompts) > 1 else seeds[0]
        out = generate(model, [list(p) for p in prompts], sampler, gen_length=gen_length, seed=seed)
        tokens = out.tokens[:, -gen_length:].tolist()
        nfe = out.nfe.tolist()
        return Decoded(tokens, nfe, time.perf_counter() - start, True)
    tokens, nfe = [], []
    for prompt, seed in zip(prompts, seeds):
        out = generate(model, [list(prompt)], sampler, gen_length=gen_length, seed=seed)
        tokens.append(out.tokens[0, -gen_length:].tolist())
        nfe.append(int(out.nfe[0]))
    return Decoded(tokens, nfe, time.perf_counter() - start, False)
