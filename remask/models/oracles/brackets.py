"""T7, balanced brackets (Dyck words): a long-range hard constraint, exact by enumeration."""

from __future__ import annotations

import math

from remask.models.oracles.base import _MAX_SUPPORT, _as_int
from remask.models.oracles.finite import FiniteSupportOracle

__all__ = ["BracketsOracle"]


class BracketsOracle(FiniteSupportOracle):
    """T7: uniform distribution over balanced-bracket (Dyck) words of length ``seq_len``.

    A long-range hard constraint: every closing bracket must match the type of the opening
    bracket it closes, wherever that is. Exact by enumeration of the words.

    Parameters
    ----------
    seq_len : int
        Even length (>= 2).
    n_types : int
        Bracket types (1: ``()``, 2: ``()[]``, 3: ``()[]{}``).

    Notes
    -----
    Token ids: opening bracket of type t is ``2 t``, closing is ``2 t + 1``. The support has
    Catalan(seq_len/2) · n_types^(seq_len/2) words; at most 2·10^6 are allowed.
    """

    _NAMES = ("(", ")", "[", "]", "{", "}")

    def __init__(self, seq_len: int, n_types: int = 1):
        seq_len = _as_int("seq_len", seq_len, 2)
        if seq_len % 2:
            raise ValueError(f"seq_len must be even for balanced brackets, got {seq_len}")
        n_types = _as_int("n_types", n_types, 1)
        if n_types > 3:
            raise ValueError(f"n_types must be 1, 2 or 3, got {n_types}")
        half = seq_len // 2
        size = math.comb(seq_len, half) // (half + 1) * n_types**half
        if size > _MAX_SUPPORT:
            raise ValueError(
                f"{size} balanced words of length {seq_len} with {n_types} types exceed {_MAX_SUPPORT}"
            )
        words: list[list[int]] = []

        def grow(word: list[int], stack: list[int]) -> None:
            left = seq_len - len(word)
            if left == 0:
                words.append(list(word))
                return
            if len(stack) < left:  # room to open and still close everything
                for t in range(n_types):
                    word.append(2 * t)
                    stack.append(t)
                    grow(word, stack)
                    stack.pop()
                    word.pop()
            if stack:
                t = stack.pop()
                word.append(2 * t + 1)
                grow(word, stack)
                word.pop()
                stack.append(t)

        grow([], [])
        super().__init__(
            words, vocab_size=2 * n_types, token_names=list(self._NAMES[: 2 * n_types])
        )
        self.n_types = n_types

    def __repr__(self) -> str:
        return f"BracketsOracle(seq_len={self.seq_len}, n_types={self.n_types})"
