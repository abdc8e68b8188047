"""Common Denoiser adapter for checkpoint-backed models (docs/design.md §2).

Each family subclasses :class:`CheckpointDenoiser` and supplies ``_forward``, which turns
(tokens, attention mask) into raw logits where row i predicts position i. The base class
validates inputs, runs the model without gradients and removes the mask token from the
candidates. Families whose model class has a KV-cache path (LLaDA, Dream) let ``_forward``
take a ``cache`` (an empty :class:`~remask.models._layers.KVCache` to record into) and supply
``_forward_window``, which :class:`remask.models.cache.Cached` drives through
:meth:`CheckpointDenoiser.forward_cached` and :meth:`CheckpointDenoiser.forward_window`. Families that take a custom attention pattern
(LLaDA, Dream) set ``accepts_attention_bias = True`` and supply ``_forward_biased``: the
protocol's attention-bias capability (:mod:`remask.models.protocol`), which WINO's shadow
block uses. Families that can run on a gathered subset of a canvas's columns at their
original positions (LLaDA, Dream) set ``accepts_gathered = True`` and supply
``_forward_gathered``: the protocol's gathered capability, DPad's pruned forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from remask.models._layers import KVCache

__all__ = ["CheckpointDenoiser"]


def _check_id(name: str, value: Any, vocab_size: int, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise ValueError(f"{name} is required, got None")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__} {value!r}")
    if not 0 <= value < vocab_size:
        raise ValueError(f"{name}={value} is outside the model's vocabulary [0, {vocab_size})")
    return int(value)


class CheckpointDenoiser:
    """A loaded checkpoint behind the Denoiser protocol.

    Parameters
    ----------
    model : torch.nn.Module
        The family's model class (put in eval mode here).
    mask_id : int
        Mask token id; its logit column is set to -inf in every output.
    eos_id, eot_id, pad_id, bos_id : int or None
        Special-token ids (end of sequence, end of turn, padding, beginning of sequence),
        None where the checkpoint defines none.
    tokenizer : object or None
        The checkpoint's tokenizer, when its directory ships one.
    vocab_size : int
        Number of logit columns V.
    embedding_rows : int
        Number of token ids the input embedding accepts (may exceed V).

    Attributes
    ----------
    mask_id, vocab_size, eos_id, eot_id, pad_id, bos_id, tokenizer, model
        As above.
    family : str
        Checkpoint family name ("llada", "dream", "mdlm").
    shift : int
        Logit shift the adapter undoes (1 for Dream, else 0); informational.
    supports_kv_cache : bool
        Whether :meth:`forward_cached` / :meth:`forward_window` are available (LLaDA,
        Dream), i.e. whether :class:`remask.models.cache.Cached` can wrap it.
    accepts_attention_bias : bool
        Whether calls may pass ``attention_bias=`` and ``position_ids=`` (LLaDA, Dream); see
        :mod:`remask.models.protocol` for the contract.
    accepts_gathered : bool
        Whether calls may pass ``columns=`` (a gathered call: LLaDA, Dream); see
        :mod:`remask.models.protocol`.

    Notes
    -----
    A family supplies ``_forward(tokens, attention_mask)`` (see :meth:`_forward`) and, where
    it sets a capability, that capability's hook; the base class checks the inputs, runs the
    hook without gradients and sets the ``mask_id`` column to -inf:

    * ``supports_kv_cache``: ``_forward`` also takes ``cache=``, and
      ``_forward_window(tokens, attention_mask, cache, start, stop)`` returns the
      (B, stop - start, V) logits of those positions against the filled cache, row j for
      position ``start + j``;
    * ``accepts_attention_bias``: ``_forward_biased(tokens, attention_mask, attention_bias,
      position_ids)`` returns (B, L', V) logits of (B, L') tokens under a (B, L', L')
      pattern, row i for column ``position_ids[i]``;
    * ``accepts_gathered``: ``_forward_gathered(tokens, attention_mask, columns)`` returns
      the (B, K, V) logits of (B, K) gathered tokens, row i for canvas column
      ``columns[i]``, rows on the right padding (``attention_mask`` False) zeros; the
      checked ``attention_mask`` is None when no row is padded.

    The hooks are only called behind their flags, so the base class defines no stubs.
    """

    family: str = ""
    shift: int = 0
    supports_kv_cache: bool = False
    accepts_attention_bias: bool = False
    accepts_gathered: bool = False

    def __init__(
        self,
        model: nn.Module,
        *,
        mask_id: int,
        vocab_size: int,
        embedding_rows: int,
        eos_id: int | None = None,
        eot_id: int | None = None,
        pad_id: int | None = None,
        bos_id: int | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.model = model.eval()
        self.vocab_size = int(vocab_size)
        self.embedding_rows = int(embedding_rows)
        self.mask_id = _check_id("mask_id", mask_id, self.vocab_size, required=True)
        self.eos_id = _check_id("eos_id", eos_id, self.vocab_size, required=False)
        self.eot_id = _check_id("eot_id", eot_id, self.vocab_size, required=False)
        self.pad_id = _check_id("pad_id", pad_id, self.embedding_rows, required=False)
        self.bos_id = _check_id("bos_id", bos_id, self.embedding_rows, required=False)
        if self.pad_id is not None and self.pad_id == self.mask_id:
            raise ValueError(
                f"pad_id equals mask_id ({self.mask_id}): padding would read as undecided "
                "positions; fix the checkpoint's pad_token_id"
            )
        self.tokenizer = tokenizer

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's parameters (and of the returned logits)."""
        return next(self.model.parameters()).dtype

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, mask_id={self.mask_id}, "
            f"eos_id={self.eos_id}, eot_id={self.eot_id}, pad_id={self.pad_id}, "
            f"device={self.device}, dtype={self.dtype})"
        )

    # ------------------------------------------------------------------ protocol
    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        attention_bias: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        columns: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict every position of a canvas.

        Parameters
        ----------
        tokens : (B, L) int64
            Canvas with ``mask_id`` at undecided positions, on :attr:`device`.
        attention_mask : (B, L) bool, optional
            False on padding (integer 0/1 masks are accepted too).
        attention_bias : (B, L, L) bool, optional
            Only where :attr:`accepts_attention_bias`: True where query i may attend to key
            j (padded keys stay hidden whatever it says); given together with
            ``position_ids``.
        position_ids : (B, L) int64, optional
            Canvas columns (protocol contract): the leading tokens whose column equals their
            index are the canvas, the others stand in for the column they name.
        columns : (B, K) int64, optional
            Only where :attr:`accepts_gathered`: ``tokens`` (B, K) are these canvas columns
            of each row, increasing along the row's real entries, right-padded with
            ``attention_mask`` False (protocol contract); not with ``attention_bias``.

        Returns
        -------
        (B, L, V) float logits in the model's dtype; row i is the prediction for position i
        (for column ``position_ids[i]`` under an attention pattern, for column
        ``columns[i]`` in a gathered call, zeros on its padding); column ``mask_id`` is
        -inf.
        """
        tokens, attention_mask = self._check_inputs(tokens, attention_mask)
        biased = attention_bias is not None or position_ids is not None
        if biased and columns is not None:
            raise TypeError("give either attention_bias/position_ids or columns, not both")
        if biased:
            attention_bias, position_ids = self._check_bias(tokens, attention_bias, position_ids)
        if columns is not None:
            columns = self._check_columns(tokens, attention_mask, columns)
        if tokens.shape[1] == 0:
            return torch.empty(
                (tokens.shape[0], 0, self.vocab_size), dtype=self.dtype, device=tokens.device
            )
        with torch.no_grad():
            if biased:
                logits = self._forward_biased(tokens, attention_mask, attention_bias, position_ids)
            elif columns is not None:
                logits = self._forward_gathered(tokens, attention_mask, columns)
            else:
                logits = self._forward(tokens, attention_mask)
        logits[..., self.mask_id] = float("-inf")
        return logits

    def _forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Family-specific: (B, L) tokens -> (B, L, V) logits, row i for position i.

        Families with :attr:`supports_kv_cache` also take ``cache=``, an empty ``KVCache``
        the same pass records every layer's keys and values into (see the class notes).
        """
        raise NotImplementedError

    def _check_bias(
        self, tokens: torch.Tensor, attention_bias: object, position_ids: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.accepts_attention_bias:
            raise TypeError(
                f"{type(self).__name__} (family {self.family!r}) takes no attention_bias/"
                "position_ids; only LLaDA and Dream checkpoints do"
            )
        B, L = tokens.shape
        if not isinstance(attention_bias, torch.Tensor) or attention_bias.dtype != torch.bool:
            raise TypeError(
                f"attention_bias must be a (B, L, L) bool tensor, got {attention_bias!r:.60}"
            )
        if tuple(attention_bias.shape) != (B, L, L):
            raise ValueError(
                f"attention_bias has shape {tuple(attention_bias.shape)}, expected {(B, L, L)}"
            )
        if not isinstance(position_ids, torch.Tensor) or position_ids.dtype != torch.int64:
            raise TypeError(f"position_ids must be a (B, L) int64 tensor, got {position_ids!r:.60}")
        if tuple(position_ids.shape) != (B, L):
            raise ValueError(
                f"position_ids has shape {tuple(position_ids.shape)}, expected {(B, L)}"
            )
        if B * L and not bool(((position_ids >= 0) & (position_ids < L)).all()):
            raise ValueError(f"position_ids must be canvas columns in [0, {L})")
        return attention_bias, position_ids

    def _check_columns(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None, columns: object
    ) -> torch.Tensor:
        """The ``columns`` of a gathered call, checked (see :meth:`__call__`)."""
        if not self.accepts_gathered:
            raise TypeError(
                f"{type(self).__name__} (family {self.family!r}) takes no columns= (gathered "
                "call); only LLaDA and Dream checkpoints do"
            )
        B, K = tokens.shape
        if not isinstance(columns, torch.Tensor) or columns.dtype != torch.int64:
            raise TypeError(f"columns must be a (B, K) int64 tensor, got {columns!r:.60}")
        if tuple(columns.shape) != (B, K):
            raise ValueError(f"columns has shape {tuple(columns.shape)}, expected {(B, K)}")
        if columns.device != tokens.device:
            raise ValueError(f"columns are on {columns.device} but the tokens on {tokens.device}")
        if not B * K:
            return columns
        real = (
            torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask
        )  # (B, K)
        # One host synchronisation: no negative column, the real entries strictly increasing,
        # and the padding on the right (no real entry after a padded one).
        pairs = real[:, 1:] & real[:, :-1]  # (B, K - 1)
        checks = torch.stack(
            [
                (real & (columns < 0)).any(),
                (pairs & (columns[:, 1:] <= columns[:, :-1])).any(),
                (real[:, 1:] & ~real[:, :-1]).any(),
            ]
        ).tolist()
        if checks[0]:
            raise ValueError("columns must be canvas columns >= 0 on the real entries")
        if checks[1]:
            raise ValueError(
                "columns must increase strictly along each row's real entries (canvas order)"
            )
        if checks[2]:
            raise ValueError(
                "a gathered call is padded on the right only: attention_mask has a real entry "
                "after a padded one"
            )
        return columns

    # ------------------------------------------------------------------ KV cache
    def forward_cached(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """A full forward pass that also keeps every layer's keys and values.

        Parameters
        ----------
        tokens : (B, L) int64
        attention_mask : (B, L) bool, optional
            As in :meth:`__call__`.

        Returns
        -------
        logits : (B, L, V) float
            Exactly what :meth:`__call__` returns for the same inputs.
        cache : KVCache
            Keys and values of the canvas, for :meth:`forward_window`.
        """
        self._require_cache_path()
        tokens, attention_mask = self._check_inputs(tokens, attention_mask)
        if tokens.shape[1] == 0:
            raise ValueError("cannot cache an empty canvas (L = 0)")
        cache = KVCache()
        with torch.no_grad():
            logits = self._forward(tokens, attention_mask, cache=cache)
        logits[..., self.mask_id] = float("-inf")
        return logits, cache

    def forward_window(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: KVCache,
        start: int,
        stop: int,
    ) -> torch.Tensor:
        """Logits of the positions ``[start, stop)`` only, reusing ``cache`` for the rest.

        Parameters
        ----------
        tokens : (B, L) int64
            The whole current canvas.
        attention_mask : (B, L) bool or None
            As for the :meth:`forward_cached` call that filled ``cache``.
        cache : KVCache
            From :meth:`forward_cached` on a canvas of the same shape; the keys and values of
            the recomputed positions are overwritten in place.
        start, stop : int
            The positions to predict, ``0 <= start < stop <= L``.

        Returns
        -------
        (B, stop - start, V) float logits; row j is the prediction for position
        ``start + j``; column ``mask_id`` is -inf. Exact (up to float rounding) when every
        position whose token changed since the cache was filled lies in the window;
        otherwise the stale keys and values make it Fast-dLLM's approximation.
        """
        self._require_cache_path()
        tokens, attention_mask = self._check_inputs(tokens, attention_mask)
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        if not 0 <= start < stop <= tokens.shape[1]:
            raise ValueError(
                f"window [{start}, {stop}) is not inside a canvas of length {tokens.shape[1]}"
            )
        if not isinstance(cache, KVCache):
            raise TypeError(
                f"cache must be a KVCache from forward_cached, got {type(cache).__name__}"
            )
        with torch.no_grad():
            logits = self._forward_window(tokens, attention_mask, cache, start, stop)
        logits[..., self.mask_id] = float("-inf")
        return logits

    def _require_cache_path(self) -> None:
        if not self.supports_kv_cache:
            raise TypeError(
                f"{type(self).__name__} (family {self.family!r}) has no KV-cache path; "
                "only LLaDA and Dream checkpoints support forward_cached/forward_window"
            )

    def _check_inputs(
        self, tokens: object, attention_mask: object
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (B, L), got {tuple(tokens.shape)}")
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be an integer tensor (int64), got {tokens.dtype}")
        device = self.device
        if tokens.device != device:
            raise ValueError(
                f"tokens are on {tokens.device} but the model is on {device}; "
                "move the canvas with .to(denoiser.device)"
            )
        tokens = tokens.long()
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor):
                raise TypeError(
                    f"attention_mask must be a torch.Tensor or None, got {type(attention_mask).__name__}"
                )
            if tuple(attention_mask.shape) != tuple(tokens.shape):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected the tokens' "
                    f"shape {tuple(tokens.shape)}"
                )
            if attention_mask.dtype.is_floating_point:
                raise TypeError(
                    f"attention_mask must be bool (or 0/1 integers), got {attention_mask.dtype}"
                )
            if attention_mask.device != device:
                raise ValueError(
                    f"attention_mask is on {attention_mask.device} but the model is on {device}"
                )
            attention_mask = attention_mask.to(torch.bool)
        if not tokens.numel():
            return tokens, attention_mask
        # One host synchronisation for every value check of the call.
        checks = [tokens.min(), tokens.max()]
        if attention_mask is not None:
            checks.append(attention_mask.all().long())
        values = torch.stack(checks).tolist()
        low, high = values[0], values[1]
        if low < 0 or high >= self.embedding_rows:
            bad = low if low < 0 else high
            raise ValueError(
                f"token id {bad} is outside the model's embedding [0, {self.embedding_rows})"
            )
        if attention_mask is not None and values[2]:
            # A mask without padding means "attend everywhere", exactly what no mask means; without
            # it the attention runs the unmasked kernel (flash attention on a GPU), like the
            # reference code's unpadded calls: faster, and the same bf16 rounding as theirs.
            attention_mask = None
        return tokens, attention_mask
