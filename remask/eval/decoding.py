"""Decode a batch of requests, each row with its own seed, and measure its cost.

``remask.generate(..., seed=[s_1, ..., s_B])`` keys each row's random stream by its own seed
(independent of its batch index, its neighbours and its padding), so a request decodes to the
same tokens in any batch. (One int ``seed=s`` is not the same thing: it keys row r by
``fold(s, r)``, so a row's tokens would depend on its index.)
"""

from __future__ import annotations

import time
from typing import NamedTuple

__all__ = ["Decoded", "decode_rows"]


class Decoded(NamedTuple):
    """Generated ids and costs of a batch.

    Attributes
    ----------
    tokens : list of list of int
        Each row's generated ids (``gen_length`` of them; the prompt excluded).
    nfe : list of int
        Denoiser evaluations per row.
    seconds : float
        Wall time of the ``generate`` call.
    """

    tokens: list
    nfe: list
    seconds: float


def decode_rows(
    model,
    prompts: list[list[int]],
    sampler,
    *,
    gen_length: int,
    seeds: list[int],
    stop_at_eos: bool = False,
) -> Decoded:
    """Generate ``gen_length`` tokens after each prompt in one batch; row b uses ``seeds[b]``.

    Parameters
    ----------
    model : Denoiser
    prompts : list of list of int
        Prompts of any lengths (left-padded by ``generate``).
    sampler : Sampler
    gen_length : int
    seeds : list of int
        One per prompt, each in [0, 2**63).
    stop_at_eos : bool
        ``generate``'s EOS early stop: a row whose answer has ended stops costing forward
        passes (its tokens after the EOS are EOS, which the text cut drops anyway).

    Returns
    -------
    Decoded
    """
    from remask.samplers import generate

    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
    start = time.perf_counter()
    out = generate(
        model,
        [list(p) for p in prompts],
        sampler,
        gen_length=gen_length,
        seed=list(seeds),
        stop_at_eos=stop_at_eos,
    )
    tokens = out.tokens[:, -gen_length:].tolist()
    return Decoded(tokens, out.nfe.tolist(), time.perf_counter() - start)
