"""Philox 4x32 counter-based random numbers and explicit keys: the one RNG spec of the kernels.

Every backend (this torch file, ``remask.kernels._numba``, ``remask.kernels._triton``)
implements the same function, so a key gives the same bits everywhere.

Keys
----
Randomness is passed explicitly, as *keys* (BlackJAX / JAX style), never as global state. A
key is a 64-bit value held in an int64 tensor (its two's-complement bits: values >= 2**63 are
stored negative). One key per output row: ``propose`` takes a key per logits row, ``uniform``
one per output element. New keys come from old ones by :func:`fold`, a Philox hash:

    fold(key, data) = words (0, 1) of Philox4x32-10 with key ``key`` and counter
                      (data_lo, data_hi, 0, STREAM_FOLD), as the 64-bit value w1:w0.

The samplers' keys are built as follows (``remask.generate``):

1. **Row key**: ``seed=[s_1, ..., s_B]`` gives row i the key ``s_i``; one int ``seed=s`` gives
   row r the key ``fold(s, r)`` (what :func:`split` computes), so the rows of one call are
   independent while a row's key never depends on its neighbours' seeds.
2. **Step key**: before every step the driver folds each row key by the step number
   (``fold(row_key, step)``; a sampler whose rows can idle while unfinished — the Gibbs
   corrector — folds by the row's own count of steps instead).
3. **Purpose**: a step folds its key by a :class:`Purpose` for each kind of draw (the proposal,
   random scores, position draws, a second proposal, a composed base sampler), so no two
   draws of a step share bits and no salt is needed.
4. **Position**: :func:`position_keys` folds by each position's rank among the row's real
   (non-padding) tokens, ``l - left_padding`` for a left-padded row — never by the flat index
   ``b * L + l`` — so a row's draws are the same alone, in any batch, at any batch index and
   with any left padding.

The spec
--------
Philox 4x32 with 10 rounds (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC 2011), multipliers ``0xD2511F53, 0xCD9E8D57`` and Weyl key increments
``0x9E3779B9, 0xBB67AE85``, known-answer tested against Random123's ``tests/kat_vectors``.

* key ``(k0, k1)`` = the 64-bit key split into low and high 32-bit words;
* counter ``(c0, c1, c2, c3)`` = ``(0, 0, 0, stream)`` for a draw, ``(data_lo, data_hi, 0,
  STREAM_FOLD)`` for :func:`fold`.

``stream`` separates the consumers of one key, so their numbers never collide:

* :data:`STREAM_PROPOSE` (0): the two per-row uniforms of ``propose`` at ``temperature > 0``
  (``u1`` from words (0, 1), ``u2`` from words (2, 3));
* :data:`STREAM_UNIFORM` (1): :func:`uniform` (random scores, position draws, ...);
* :data:`STREAM_FOLD` (2): :func:`fold`.

Uniforms are built from enough bits that no noise tail is truncated (arXiv 2409.02908):
float64 uniforms use 53 random bits, ``(k + 0.5) * 2**-53`` with ``k`` the top 53 bits of
two words (word 1 high), float32 uniforms ``(k + 0.5) * 2**-24`` with ``k`` the top 24 bits of
word 1 (the same leading bits); both are strictly inside (0, 1).
"""

from __future__ import annotations

import enum
import sys

import numpy as np
import torch

__all__ = [
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_ROUNDS",
    "PHILOX_W0",
    "PHILOX_W1",
    "STREAM_FOLD",
    "STREAM_PROPOSE",
    "STREAM_UNIFORM",
    "Purpose",
    "check_key",
    "check_seed",
    "fold",
    "key_words",
    "philox4x32",
    "position_keys",
    "row_uniforms",
    "split",
    "split_seed",
    "uniform",
]

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10

STREAM_PROPOSE = 0
STREAM_UNIFORM = 1
STREAM_FOLD = 2

_MASK32 = 0xFFFFFFFF
# The same constants as numpy uint64 scalars (the CPU fast paths work on the words in numpy).
_U32 = np.uint64(_MASK32)
_U32_SHIFT = np.uint64(32)
_U64_ZERO = np.uint64(0)
# 2**-53 and 2**-24: the spacing of the float64 / float32 uniform grids.
_TWO_M53 = 1.0 / 9007199254740992.0
_TWO_M24 = 1.0 / 16777216.0
# From 1/2 on a uniform has no room for k + 0.5 (see _to_unit32).
_HALF53 = float(2**52)
_HALF24 = float(2**23)


class Purpose(enum.IntEnum):
    """What a step draws with a key: each kind of draw folds the step key by its own value.

    A sampler step derives every key it uses as ``fold(step_key, purpose)`` (then, per
    position, :func:`position_keys`), so two kinds of draws in one step never share bits.
    """

    #: The token proposal of ``propose`` (temperature > 0).
    PROPOSE = 1
    #: Random scores (LLaDA's "random" remasking, KLASS's random ranking).
    SCORE = 2
    #: Which positions unmask / remask (MDLM's and Dream's unmasking times, ReMDM's moves,
    #: Dream's ``alg_temp`` Plackett-Luce draw).
    POSITIONS = 3
    #: A second proposal in one step (the Gibbs corrector's re-sampling).
    RESAMPLE = 4
    #: The step key handed to a composed base sampler (the Gibbs corrector's base).
    BASE = 5


def check_seed(seed: object) -> int:
    """Validate a 64-bit key given as a Python int (in [0, 2**64)) and return it."""
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(f"seed must be an int, got {seed!r}")
    value = int(seed.__index__())  # type: ignore[attr-defined]
    if not 0 <= value < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value


def _as_bits(value: int) -> int:
    """A value in [0, 2**64) as the int64 with the same bits."""
    return value - 2**64 if value >= 2**63 else value


def check_key(
    key: object, shape: torch.Size | tuple[int, ...], device: torch.device, what: str = "key"
) -> torch.Tensor:
    """Validate a key tensor: int64, of ``shape``, on ``device``; returns it contiguous."""
    if not isinstance(key, torch.Tensor):
        raise TypeError(
            f"{what} must be an int64 tensor of keys (see remask.kernels.split), "
            f"got {type(key).__name__}"
        )
    if key.dtype != torch.int64:
        raise TypeError(f"{what} must be an int64 tensor, got dtype {key.dtype}")
    if tuple(key.shape) != tuple(shape):
        raise ValueError(
            f"{what} must have shape {tuple(shape)} (one key per row), got {tuple(key.shape)}"
        )
    if key.device != torch.device(device):
        raise ValueError(f"{what} is on {key.device} but the data on {device}")
    return key.contiguous()


def split_seed(seed: int) -> tuple[int, int]:
    """Return the Philox key words ``(k0, k1)``: low and high 32-bit words of a 64-bit int."""
    return seed & _MASK32, (seed >> 32) & _MASK32


def key_words(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Philox key words ``(k0, k1)`` of an int64 key tensor (values in [0, 2**32))."""
    return key & _MASK32, (key >> 32) & _MASK32


def _join(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """The int64 whose bits are ``hi:lo`` (32-bit words), without overflowing int64."""
    signed_hi = hi - ((hi >> 31) << 32)  # hi as a signed 32-bit value
    return signed_hi * (1 << 32) + lo


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * m`` for 32-bit ``a`` (int64 tensor) and constant ``m``.

    The 64-bit product would overflow int64, so ``m`` is split in 16-bit halves; every partial
    product stays below 2**49.
    """
    p0 = a * (m & 0xFFFF)  # < 2**48
    p1 = a * (m >> 16)  # < 2**48
    mid = p0 + ((p1 & 0xFFFF) << 16)  # < 2**49
    lo = mid & _MASK32
    hi = (p1 >> 16) + (mid >> 32)
    return hi, lo


def philox4x32(
    c0: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    c3: torch.Tensor,
    k0: int | torch.Tensor,
    k1: int | torch.Tensor,
    rounds: int = PHILOX_ROUNDS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox 4x32 block function on int64 tensors holding unsigned 32-bit words.

    Parameters
    ----------
    c0, c1, c2, c3 : int64 tensors (broadcastable), values in [0, 2**32)
        The counter words.
    k0, k1 : int or int64 tensors (broadcastable with the counter), values in [0, 2**32)
        The key words.
    rounds : int
        Number of rounds (10 for Philox4x32-10; other counts only for known-answer tests).

    Returns
    -------
    tuple of four int64 tensors with values in [0, 2**32)
    """
    x0, x1, x2, x3 = (torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3))
    x0, x1, x2, x3 = torch.broadcast_tensors(x0, x1, x2, x3)
    if rounds == PHILOX_ROUNDS and x0.device.type == "cpu":
        fast = _compiled()
        if fast is not None:
            return _philox_compiled(fast, x0, x1, x2, x3, k0, k1)
    return _philox_torch(x0, x1, x2, x3, k0, k1, rounds)


def _philox_torch(x0, x1, x2, x3, k0, k1, rounds: int = PHILOX_ROUNDS):
    """The block function in torch ops on broadcast int64 counter words (any device)."""
    for r in range(rounds):
        # The key is bumped before every round but the first (Random123's schedule).
        rk0 = (k0 + r * PHILOX_W0) & _MASK32
        rk1 = (k1 + r * PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo(x0, PHILOX_M0)
        hi1, lo1 = _mulhilo(x2, PHILOX_M1)
        x0, x1, x2, x3 = hi1 ^ x1 ^ rk0, lo1, hi0 ^ x3 ^ rk1, lo0
    return x0, x1, x2, x3


def _numba_module():
    """The Numba backend's module once it is loaded (by the dispatcher, for the first op that
    runs on it); None before that and without Numba, so that key derivation alone never
    imports Numba."""
    return sys.modules.get("remask.kernels._numba.propose")


def _compiled():
    """Numba's Philox over arrays (see :func:`_numba_module`). On CPU it replaces ~150 small
    torch ops per call (a fixed cost of hundreds of microseconds at any size) by one compiled
    loop; the bits are the same (tested)."""
    return getattr(_numba_module(), "philox4x32_keyed", None)


def _philox_compiled(fast, x0, x1, x2, x3, k0, k1):
    """:func:`philox4x32` through Numba on CPU int64 tensors (words in [0, 2**32))."""
    k0, k1 = (torch.as_tensor(k, dtype=torch.int64) for k in (k0, k1))
    shape = _shape(x0.shape, k0.shape, k1.shape)
    flat = [
        t.expand(shape).reshape(-1).contiguous().numpy().view("uint64")
        for t in (x0, x1, x2, x3, k0, k1)
    ]  # six (n,) uint64 views of the non-negative int64 words
    words = torch.from_numpy(fast(*flat).view("int64"))  # (4, n)
    return tuple(words[i].view(shape) for i in range(4))


def _words_numpy(fast, shape: tuple[int, ...], c0, c1, c2, c3, k0, k1) -> tuple[np.ndarray, ...]:
    """The compiled Philox on numpy uint64 words (arrays or scalars) broadcast to ``shape``,
    flattened; returns the four (n,) uint64 output words.

    At the small sizes of a sampler step the per-call cost is what matters: numpy's masks,
    shifts and broadcasting assignments cost a fraction of a microsecond each, where the same
    ~30 operations on torch tensors cost several (every T > 0 step of every sampler derives
    its keys through here)."""
    words = []
    for w in (c0, c1, c2, c3, k0, k1):
        if isinstance(w, np.ndarray) and w.shape == shape:
            words.append(w.reshape(-1))  # a view, or a contiguous copy of a strided array
        else:
            full = np.empty(shape, dtype=np.uint64)
            full[...] = w  # broadcasting assignment (C level; np.broadcast_to is Python)
            words.append(full.reshape(-1))
    return tuple(fast(*words))  # (4, n) -> four (n,) rows


def _shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast shape of ``shapes``, by numpy: ``torch.broadcast_shapes`` imports sympy on
    its first call in a process (~0.4 s, paid by the second ``generate`` of a session, when
    the compiled Philox first folds a block of step keys)."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(
            f"key and data shapes {[tuple(s) for s in shapes]} do not broadcast together"
        ) from None


def _on_cpu(value) -> bool:
    """True for a Python int or a CPU tensor (what the numpy path of :func:`fold` takes)."""
    return not isinstance(value, torch.Tensor) or value.device.type == "cpu"


def _numpy_words(value) -> np.ndarray | np.uint64:
    """A key or data argument of :func:`fold` as uint64 bits: a numpy view of an int64 CPU
    tensor, or a numpy scalar for a Python int (validated as :func:`_key_tensor` does, with
    no tensor made for it)."""
    if isinstance(value, torch.Tensor):
        if value.dtype != torch.int64:
            raise TypeError(f"key must be an int64 tensor, got dtype {value.dtype}")
        return value.numpy().view(np.uint64)
    return np.uint64(check_seed(value))


def _fold_numpy(fast, kn, dn) -> torch.Tensor:
    """:func:`fold` on CPU through the compiled Philox, in numpy (same bits): ``kn`` and
    ``dn`` are uint64 arrays or scalars (:func:`_numpy_words`)."""
    shape = _shape(np.shape(kn), np.shape(dn))
    w0, w1, _, _ = _words_numpy(
        fast,
        shape,
        dn & _U32,
        dn >> _U32_SHIFT,
        _U64_ZERO,
        np.uint64(STREAM_FOLD),
        kn & _U32,
        kn >> _U32_SHIFT,
    )
    joined = (w1 << _U32_SHIFT) | w0  # (n,) uint64: the int64 whose bits are w1:w0
    return torch.from_numpy(joined.view(np.int64).reshape(shape))


def _key_tensor(key: int | torch.Tensor, device=None) -> torch.Tensor:
    if isinstance(key, torch.Tensor):
        if key.dtype != torch.int64:
            raise TypeError(f"key must be an int64 tensor, got dtype {key.dtype}")
        return key
    return torch.tensor(_as_bits(check_seed(key)), dtype=torch.int64, device=device)


def fold(key: int | torch.Tensor, data: int | torch.Tensor) -> torch.Tensor:
    """A new key from ``key`` and ``data``: a Philox hash (see the module docstring).

    Parameters
    ----------
    key : int in [0, 2**64) or int64 tensor of keys
    data : int in [0, 2**64) or int64 tensor (its 64 bits), broadcastable with ``key``
        E.g. a row index, a step number, a :class:`Purpose` or a position.

    Returns
    -------
    int64 tensor of the broadcast shape, on the device of the tensor argument

    Examples
    --------
    >>> import remask.kernels as K
    >>> bool(K.fold(7, 1) == K.fold(7, 1)), bool(K.fold(7, 1) == K.fold(7, 2))
    (True, False)
    """
    device = (
        key.device
        if isinstance(key, torch.Tensor)
        else (data.device if isinstance(data, torch.Tensor) else None)
    )
    if device is not None and device.type == "cpu":
        fast = _compiled()
        if fast is not None and _on_cpu(key) and _on_cpu(data):
            return _fold_numpy(fast, _numpy_words(key), _numpy_words(data))
    k = _key_tensor(key, device)
    d = _key_tensor(data, device)
    _shape(k.shape, d.shape)  # a ValueError naming both, before torch's own message
    k0, k1 = key_words(k)
    w0, w1, _, _ = philox4x32(
        d & _MASK32,
        (d >> 32) & _MASK32,
        torch.zeros_like(d),
        torch.full_like(d, STREAM_FOLD),
        k0,
        k1,
    )
    return _join(w0, w1)


def split(
    key: int | torch.Tensor,
    shape: int | tuple[int, ...] | torch.Size,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``shape`` independent keys from one: element i (flat C-order) is ``fold(key, i)``.

    ``remask.generate(..., seed=s)`` gives row r the key ``split(s, B)[r]``.
    """
    size = torch.Size([shape] if isinstance(shape, int) else shape)
    if any(s < 0 for s in size):
        raise ValueError(f"shape must have non-negative sizes, got {tuple(size)}")
    if isinstance(key, torch.Tensor):
        if key.dim() != 0:  # one key split many ways (fold keys elementwise instead)
            raise ValueError(
                f"split needs one key (an int or a 0-d tensor), got shape "
                f"{tuple(key.shape)}; fold(keys, data) folds many"
            )
        device = key.device
    index = torch.arange(size.numel(), dtype=torch.int64, device=device)
    return fold(key, index).reshape(size)


def position_keys(key: torch.Tensor, attention_mask: torch.Tensor, purpose: int) -> torch.Tensor:
    """(B, L) keys for the draws of one step at each position of a canvas.

    ``fold(fold(key[b], purpose), rank)`` with ``rank`` the position's rank among the row's
    real tokens (``l - left_padding`` for a left-padded row; padding positions get the rank
    of the real token before them, their draws are never used). Neither the batch index nor
    the padding enters, so a row's draws are the same alone or in any batch.

    Parameters
    ----------
    key : (B,) int64
        The rows' step keys.
    attention_mask : (B, L) bool
        False on padding.
    purpose : Purpose
    """
    if not isinstance(key, torch.Tensor) or key.dtype != torch.int64 or key.dim() != 1:
        raise TypeError(
            "position_keys: key must be a (B,) int64 tensor, got "
            f"{getattr(key, 'dtype', type(key).__name__)} of shape "
            f"{tuple(getattr(key, 'shape', ()))}"
        )
    if (
        not isinstance(attention_mask, torch.Tensor)
        or attention_mask.dtype != torch.bool
        or attention_mask.dim() != 2
        or attention_mask.shape[0] != key.shape[0]
    ):
        raise ValueError(
            f"position_keys: attention_mask must be a ({key.shape[0]}, L) bool tensor, got "
            f"{getattr(attention_mask, 'dtype', type(attention_mask).__name__)} of shape "
            f"{tuple(getattr(attention_mask, 'shape', ()))}"
        )
    if isinstance(purpose, bool) or not isinstance(purpose, int) or purpose < 0:
        raise ValueError(f"position_keys: purpose must be an int >= 0, got {purpose!r}")
    module = _numba_module()
    if module is not None and key.device.type == "cpu" and attention_mask.device.type == "cpu":
        # One compiled loop instead of two folds and a cumsum (~80 -> ~20 us at (4, 128)):
        # every T > 0 step of every sampler derives its keys here.
        keys = module.position_keys(
            key.contiguous().numpy().view(np.uint64),
            attention_mask.contiguous().numpy(),
            int(purpose),
        )
        return torch.from_numpy(keys.view(np.int64))
    rank = attention_mask.long().cumsum(-1) - 1  # (B, L): l - left_padding on real tokens
    return fold(fold(key, int(purpose)).unsqueeze(-1), rank.clamp_min(0))  # (B, L)


def _to_unit64(lo_word: torch.Tensor, hi_word: torch.Tensor) -> torch.Tensor:
    """float64 uniform in (0, 1) from the top 53 bits of the 64-bit value ``hi:lo``."""
    k = (hi_word << 21) | (lo_word >> 11)  # 53 random bits, < 2**53
    return (k.to(torch.float64) + 0.5) * _TWO_M53


def _to_unit32(word: torch.Tensor) -> torch.Tensor:
    """float32 uniform in (0, 1) from the top 24 bits ``k`` of one word, exact in float32:
    ``(k + 0.5)·2**-24`` below 1/2, ``k·2**-24`` from 1/2 on (where float32 has no room
    for the half: ``k + 0.5`` rounded to even reached 1.0 at k = 2**24 - 1)."""
    k = (word >> 8).to(torch.float32)  # < 2**24: exact
    return torch.where(k < _HALF24, k + 0.5, k) * _TWO_M24


def _open_unit64(lo_word: torch.Tensor, hi_word: torch.Tensor) -> torch.Tensor:
    """:func:`uniform`'s float64 values in (0, 1): :func:`_to_unit64`'s, but ``k·2**-53`` from
    1/2 on (``k + 0.5`` rounded to even reached 1.0 at k = 2**53 - 1). ``propose``'s own draws
    keep :func:`_to_unit64` (its picks clamp a 1.0; changing it would change their tokens)."""
    k = ((hi_word << 21) | (lo_word >> 11)).to(torch.float64)  # < 2**53: exact
    return torch.where(k < _HALF53, k + 0.5, k) * _TWO_M53


def _draw(key: torch.Tensor, stream: int) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 of the counter (0, 0, 0, stream) under each key."""
    k0, k1 = key_words(key)
    zero = torch.zeros_like(key)
    return philox4x32(zero, zero, zero, torch.full_like(key, stream), k0, k1)


def row_uniforms(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two float64 uniforms ``propose`` draws for each row.

    Parameters
    ----------
    key : int64 tensor
        One key per row.

    Returns
    -------
    (u1, u2) : float64 tensors shaped like ``key``
        ``u1`` from words (0, 1) chooses the tile, ``u2`` from words (2, 3) the element.
    """
    w0, w1, w2, w3 = _draw(key, STREAM_PROPOSE)
    return _to_unit64(w0, w1), _to_unit64(w2, w3)


def uniform(key: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Counter-based uniforms in the open interval (0, 1): one per key, on every device alike.

    Element ``i`` is Philox4x32-10 with key ``key[i]`` and counter ``(0, 0, 0,
    STREAM_UNIFORM)``. Because the stream word differs from the one
    :func:`remask.kernels.propose` uses, ``uniform(k)`` and ``propose(..., key=k)`` never
    share random bits (samplers fold different :class:`Purpose` values anyway).

    Parameters
    ----------
    key : int64 tensor, any shape
        One key per output element (e.g. :func:`position_keys` or :func:`split`).
    dtype : torch.float32 or torch.float64
        float32 uses 24 random bits ``k`` per value, float64 53 bits: ``(k + 0.5)·2**-b``
        below 1/2 and ``k·2**-b`` from 1/2 on, both exact (each value equally likely).

    Returns
    -------
    tensor shaped like ``key``, ``dtype``, on its device
        Values in (0, 1), never 0 or 1.

    Examples
    --------
    >>> import remask.kernels as K
    >>> u = K.uniform(K.split(0, (2, 3)))
    >>> u.shape, bool(((u > 0) & (u < 1)).all())
    (torch.Size([2, 3]), True)
    """
    if not isinstance(key, torch.Tensor):
        raise TypeError(
            f"key must be an int64 tensor of keys (see remask.kernels.split), "
            f"got {type(key).__name__}"
        )
    if key.dtype != torch.int64:
        raise TypeError(f"key must be an int64 tensor, got dtype {key.dtype}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if key.device.type == "cpu":
        fast = _compiled()
        if fast is not None:
            return _uniform_numpy(fast, key, dtype)
    w0, w1, _, _ = _draw(key, STREAM_UNIFORM)
    return _open_unit64(w0, w1) if dtype == torch.float64 else _to_unit32(w1)


def _uniform_numpy(fast, key: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """:func:`uniform` on a CPU key tensor through the compiled Philox, in numpy (same bits,
    same values: every step is exact)."""
    shape = tuple(key.shape)
    kn = key.numpy().view(np.uint64)
    w0, w1, _, _ = _words_numpy(
        fast,
        shape,
        _U64_ZERO,
        _U64_ZERO,
        _U64_ZERO,
        np.uint64(STREAM_UNIFORM),
        kn & _U32,
        kn >> _U32_SHIFT,
    )
    if dtype == torch.float64:
        k = ((w1 << np.uint64(21)) | (w0 >> np.uint64(11))).astype(np.float64)  # 53 bits
        u = np.where(k < _HALF53, k + 0.5, k) * _TWO_M53
    else:
        k = (w1 >> np.uint64(8)).astype(np.float32)  # 24 bits
        u = np.where(k < np.float32(_HALF24), k + np.float32(0.5), k) * np.float32(_TWO_M24)
    return torch.from_numpy(u.reshape(shape))
