"""Block-diffusion decoding as a denoiser capability, with an exact KV cache of finished blocks.

Block-diffusion models (LLaDA 2.x, SDAR, Fast-dLLM v2) are trained under a **block-causal**
mask: positions are cut into blocks of ``block_size`` tokens counted from the first real
token, and a query in block b attends every key in blocks <= b. A block's keys and values
therefore depend only on the tokens of that block and the blocks before it. Once a block is
finished its keys and values never change, so they can be cached *exactly* — unlike the
Fast-dLLM v1 prefix/dual caches of :mod:`remask.models.cache`, which approximate a
bidirectional model.

:class:`BlockDiffusionDenoiser` is the Denoiser adapter of these checkpoints. It declares
``accepts_active = True`` and ``block_size``, so every sampler hands it the canvas's active
block at each call and the driver cuts the canvas into blocks that are whole model blocks
(see :func:`remask.generate`). A call then runs only

    the model blocks that hold the active positions (queries, keys and values)
    against the cached keys and values of everything before them,

and splices the fresh keys and values into the cache. The cache is checked against the
canvas at every call: the first column whose token changed since the last call (a sampler
that revises committed tokens, a new canvas) invalidates the cached blocks from there on, so
the result equals the uncached block-causal forward (``cache=False``) up to float rounding,
whatever the sampler does.

Which rows are current. Rows of the recomputed window are the model's predictions for the
current canvas, identical to the uncached run's. Rows outside it hold the most recent
logits computed for those positions (zeros, with the mask column at -inf, for positions
never computed in this canvas): a sampler must decide only inside its active block, the
semi-autoregressive contract every registered sampler keeps.

Fast-dLLM v2's shifted logits (raw row i predicts token i + 1) are handled here: a window
also recomputes the last position before it, whose raw row predicts the window's first
position (the family's ``generate()`` decodes a block's first token from the previous
block's last position in the same way).
"""

from __future__ import annotations

from typing import Any

import torch

from remask.models._adapter import CheckpointDenoiser
from remask.models._decoder import block_causal_keep, padding_positions
from remask.models.cache import CachedDenoiser

__all__ = ["BlockDiffusionDenoiser"]


def _first_true(x: torch.Tensor, default: int) -> torch.Tensor:
    """(B, L) bool -> (B,) int64 index of the first True per row, ``default`` where none."""
    hit = x.any(-1)
    return torch.where(hit, x.int().argmax(-1), default)


class BlockDiffusionDenoiser(CheckpointDenoiser):
    """Denoiser adapter of a block-causal checkpoint, with an exact cache of finished blocks.

    Parameters
    ----------
    model : DecoderLM
        A LLaDA 2.x, SDAR or Fast-dLLM v2 model class from this package.
    block_size : int
        The model's attention block (LLaDA 2.x 32, SDAR 4, Fast-dLLM v2 ``bd_size`` 32 for
        the released checkpoints). Samplers decode in blocks of a multiple of it.
    cache : bool
        Keep the keys and values of finished blocks (default). False runs every call as a
        full block-causal forward over the whole canvas (the reference the cache equals).
    family : str
        Family name ("llada2", "sdar", "fast_dllm_v2").
    shift : int
        1 when raw row i predicts token i + 1 (Fast-dLLM v2), else 0.
    mask_id, vocab_size, embedding_rows, eos_id, eot_id, pad_id, bos_id, tokenizer
        As for :class:`~remask.models._adapter.CheckpointDenoiser`.

    Attributes
    ----------
    accepts_active : bool
        True: samplers call ``denoiser(tokens, attention_mask, active=active)``.
    block_size : int
    stats : dict of str to int
        ``calls``, ``full_passes``, ``window_passes`` and ``query_positions`` (sum over calls
        of B times the positions run through the layers) since construction or :meth:`reset`.

    Raises
    ------
    ValueError
        ``block_size`` not a positive int, or larger than the model's
        ``max_position_embeddings``.
    """

    accepts_active = True

    def __init__(
        self,
        model: Any,
        *,
        block_size: int,
        cache: bool = True,
        family: str = "",
        shift: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}")
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and block_size > int(limit):
            raise ValueError(
                f"block_size={block_size} exceeds the model's max_position_embeddings={limit}"
            )
        if shift not in (0, 1):
            raise ValueError(f"shift must be 0 or 1, got {shift!r}")
        self.block_size = block_size
        self.cache = bool(cache)
        self.family = family
        self.shift = shift
        self.reset()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(family={self.family!r}, block_size={self.block_size}, "
            f"cache={self.cache}, vocab_size={self.vocab_size}, mask_id={self.mask_id}, "
            f"device={self.device}, dtype={self.dtype})"
        )

    def reset(self) -> None:
        """Drop the cache and zero :attr:`stats`."""
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer, C columns
        self._valid: torch.Tensor | None = None  # (B,) cached columns valid in each row
        self._tokens: torch.Tensor | None = None  # (B, L) canvas of the last call
        self._real: torch.Tensor | None = None  # (B, L) padding mask of the last call
        self._logits: torch.Tensor | None = None  # (B, L, V) latest logits of every position
        self.stats = {"calls": 0, "full_passes": 0, "window_passes": 0, "query_positions": 0}

    # ------------------------------------------------------------------ protocol
    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        active: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict a canvas under the block-causal mask.

        Parameters
        ----------
        tokens : (B, L) int64
            Canvas with ``mask_id`` at undecided positions.
        attention_mask : (B, L) bool, optional
            False on (left) padding. Positions and blocks count from each row's first real
            token.
        active : (B, L) bool, optional
            The sampler's active block. None (or ``cache=False``) runs a full block-causal
            forward over the whole canvas.

        Returns
        -------
        (B, L, V) float logits, a fresh tensor; row i is the prediction for position i;
        column ``mask_id`` is -inf. See the module notes for rows outside the window.
        """
        tokens, attention_mask = self._check_inputs(tokens, attention_mask)
        self.stats["calls"] += 1
        b, length = tokens.shape
        if length == 0:
            return torch.empty((b, 0, self.vocab_size), dtype=self.dtype, device=tokens.device)
        real = (
            attention_mask
            if attention_mask is not None
            else torch.ones_like(tokens, dtype=torch.bool)
        )  # (B, L)
        if active is not None:
            active = CachedDenoiser._check_active(active, tokens)
        if not self.cache or active is None or not bool(active.any()):
            self._kv = None
            self.stats["full_passes"] += 1
            self.stats["query_positions"] += tokens.numel()
            with torch.no_grad():
                logits = self._full(tokens, real)
            logits[..., self.mask_id] = float("-inf")
            return logits
        with torch.no_grad():
            return self._cached(tokens, real, active)

    # ------------------------------------------------------------------ internals
    def _full(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Uncached block-causal forward: (B, L, V) logits, row i for position i."""
        positions = padding_positions(real)  # (B, L)
        mask = block_causal_keep(positions, positions, self.block_size, real)  # (B, 1, L, L)
        hidden, _ = self.model.model(tokens, positions, mask)
        raw = self.model.head(hidden)  # (B, L, V)
        return self._unshift(raw, real, 0)

    def _unshift(self, raw: torch.Tensor, real: torch.Tensor, start: int) -> torch.Tensor:
        """Rows of the columns ``[start, start + W)`` from raw rows of the same columns.

        For a shifted model column i takes raw row i - 1, and the first real column of a row
        keeps its own raw row; the window's own first column (whose raw predecessor lies
        outside it) is then meaningless and the caller drops it.
        """
        if not self.shift:
            return raw
        shifted = torch.cat([raw[:, :1], raw[:, :-1]], dim=1)  # (B, W, V)
        w = raw.shape[1]
        first = real[:, start : start + w] & (real.long().cumsum(-1)[:, start : start + w] == 1)
        return torch.where(first[..., None], raw, shifted)

    def _block_bounds(
        self, blocks: torch.Tensor, column: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """First and last column of the block holding ``column`` (B,) in each row."""
        at = blocks.gather(1, column[:, None])  # (B, 1)
        same = blocks == at  # (B, L): contiguous, as blocks never decrease along a row
        length = blocks.shape[1]
        first = same.int().argmax(-1)
        last = length - 1 - same.flip(-1).int().argmax(-1)
        return first, last

    def _cached(
        self, tokens: torch.Tensor, real: torch.Tensor, active: torch.Tensor
    ) -> torch.Tensor:
        b, length = tokens.shape
        positions = padding_positions(real)  # (B, L)
        blocks = positions // self.block_size  # (B, L); left pads share block 0 (keys hidden)
        fresh_canvas = (
            self._kv is None
            or self._tokens.shape != tokens.shape
            or not torch.equal(self._real, real)
        )
        if fresh_canvas:
            self._kv = None
            self._valid = torch.zeros(b, dtype=torch.int64, device=tokens.device)
            self._logits = torch.zeros(
                b, length, self.vocab_size, dtype=self.dtype, device=tokens.device
            )
            changed = torch.full((b,), length, dtype=torch.int64, device=tokens.device)
        else:
            changed = _first_true(tokens != self._tokens, length)  # (B,)
        first_active = _first_true(active, length)  # (B,); rows without one: L
        # Each row keeps the cached columns before the block of its first changed or active
        # column: keys and values there depend only on unchanged tokens.
        edge = torch.minimum(changed, first_active)  # (B,)
        block_start, _ = self._block_bounds(blocks, edge.clamp_max(length - 1))
        keep = torch.where(edge >= length, self._valid, torch.minimum(self._valid, block_start))
        # The window must end where every row's block holding its last active column ends.
        last_active = length - 1 - active.flip(-1).int().argmax(-1)  # (B,)
        has_active = active.any(-1)
        last_col = int(torch.where(has_active, last_active, 0).amax())
        _, block_end = self._block_bounds(blocks, torch.full_like(edge, last_col))
        bounds = torch.stack([keep.amin(), block_end.amax()]).tolist()  # the call's one host sync
        start, stop = int(bounds[0]), int(bounds[1]) + 1
        # A shifted model predicts the window's first column from the column before it.
        query_start = max(start - self.shift, 0)
        past = None
        if query_start > 0:
            past = [(k[:, :, :query_start], v[:, :, :query_start]) for k, v in self._kv]
        q_pos = positions[:, query_start:stop]  # (B, W)
        mask = block_causal_keep(q_pos, positions[:, :stop], self.block_size, real[:, :stop])
        hidden, present = self.model.model(tokens[:, query_start:stop], q_pos, mask, past)
        raw = self.model.head(hidden)  # (B, W, V)
        rows = self._unshift(raw, real, query_start)[
            :, start - query_start :
        ]  # (B, stop - start, V)
        rows[..., self.mask_id] = float("-inf")
        self._logits[:, start:stop] = rows
        if past is None:
            self._kv = present
        else:
            self._kv = [
                (torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2))
                for (pk, pv), (k, v) in zip(past, present)
            ]
        # Columns of a block that extends past `stop` saw only part of their keys: not valid.
        tail_first, tail_last = self._block_bounds(blocks, torch.full_like(edge, stop - 1))
        self._valid = torch.where(tail_last > stop - 1, tail_first, stop)
        self._tokens = tokens.clone()
        self._real = real.clone()
        self.stats["full_passes" if query_start == 0 and stop == length else "window_passes"] += 1
        self.stats["query_positions"] += b * (stop - query_start)
        return self._logits.clone()
