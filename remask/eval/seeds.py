"""Per-request seeds: a request's random stream depends on (sweep seed, request id) only.

``request_seed(seed, request_id)`` is the first 8 bytes of SHA-256 over the text
``"remask-request:{seed}:{request_id}"``, read big-endian and reduced to [0, 2**63). A request
therefore samples the same tokens whatever the world size, its rank, its batch neighbours
and the order it runs in; two requests with different ids get unrelated streams, and every
sampler setting sees the same seed for the same request (common random numbers, which make
the settings' differences less noisy).
"""

from __future__ import annotations

import hashlib

__all__ = ["request_seed"]


def request_seed(seed: int, request_id: str) -> int:
    """Seed of one request's random stream.

    Parameters
    ----------
    seed : int
        The sweep (or evaluation) seed, in [0, 2**63).
    request_id : str
        The request's id, unique within its task (e.g. ``"gsm8k/17"``).

    Returns
    -------
    int in [0, 2**63).

    Examples
    --------
    >>> request_seed(0, "oracle/3") == request_seed(0, "oracle/3")
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    if not isinstance(request_id, str):
        raise TypeError(f"request_id must be a string, got {request_id!r}")
    digest = hashlib.sha256(f"remask-request:{seed}:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63
