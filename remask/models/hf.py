"""Adapter: any transformers ``AutoModelForMaskedLM`` checkpoint becomes a Denoiser."""

from __future__ import annotations

import inspect
import os

import torch

__all__ = ["HFMaskedLM"]

# Families that derive position ids from ``input_ids != padding_idx`` themselves (with an
# offset of padding_idx + 1); giving them 0-based ids would shift every embedding.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)
_POSITIONS_FROM_PADDING = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "data2vec-text"}


class HFMaskedLM:
    """A transformers masked LM (BERT, RoBERTa, ModernBERT, ...) behind the Denoiser protocol.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Any model whose output has ``.logits`` of shape (B, L, V).
    tokenizer : transformers tokenizer, optional
        Used for ``mask_id``/``pad_id``/``eos_id`` and by the CLI for text.
    mask_id : int, optional
        Overrides the mask id; otherwise read from the tokenizer (``mask_token_id``) or the
        config (``mask_token_id``). Raises ``ValueError`` when none is found: ids are never guessed.
    banned : sequence of int, optional
        Token ids never proposed (their logits set to -inf). Default: the special tokens a
        masked LM was trained to see but not to write into text — the tokenizer's special ids
        (pad, bos, unk, cls, sep, ...; or the config's pad/bos ids without a tokenizer) less
        ``eos_id``, which a sampler may legitimately produce. ``banned=()`` allows them all.

    Notes
    -----
    Left-padded rows get position ids counted from their first real token (for families
    that accept ``position_ids`` and do not derive them from padding themselves), so a
    padded batch gives each row the logits it would get alone. The logits of the mask token
    and of ``banned_ids`` are set to -inf, so no sampler proposes them. ``max_length`` is the longest canvas the
    position table covers (None when the config declares none).
    """

    def __init__(self, model, tokenizer=None, *, mask_id: int | None = None, banned=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        config = model.config
        if mask_id is None:
            mask_id = getattr(tokenizer, "mask_token_id", None) if tokenizer is not None else None
        if mask_id is None:
            mask_id = getattr(config, "mask_token_id", None)
        if mask_id is None:
            raise ValueError(
                f"no mask token: neither the tokenizer nor the config of {type(model).__name__} "
                "defines mask_token_id; pass mask_id= explicitly"
            )
        self.vocab_size = int(config.vocab_size)
        if not 0 <= int(mask_id) < self.vocab_size:
            raise ValueError(f"mask_id={mask_id} is outside the vocabulary [0, {self.vocab_size})")
        self.mask_id = int(mask_id)

        def special(name: str) -> int | None:
            value = getattr(tokenizer, f"{name}_token_id", None) if tokenizer is not None else None
            return value if value is not None else getattr(config, f"{name}_token_id", None)

        self.pad_id = special("pad")
        self.eos_id = special("eos")
        self.eot_id = None
        if banned is None:
            found = (
                set(getattr(tokenizer, "all_special_ids", None) or [])
                if tokenizer is not None
                else set()
            )
            found |= {special(name) for name in ("pad", "bos", "unk", "cls", "sep")}
            banned = found - {None, self.eos_id}
        elif isinstance(banned, (str, bytes)) or not hasattr(banned, "__iter__"):
            raise TypeError(f"banned must be a sequence of token ids, got {banned!r:.60}")
        ids = []
        for token in banned:
            if isinstance(token, bool) or not isinstance(token, int):
                raise TypeError(f"banned holds {token!r}, not a token id")
            if not 0 <= token < self.vocab_size:
                raise ValueError(
                    f"banned id {token} is outside the vocabulary [0, {self.vocab_size})"
                )
            ids.append(token)
        # The mask column is set anyway; keeping it out of the list states what is extra.
        self.banned_ids: tuple[int, ...] = tuple(sorted(set(ids) - {self.mask_id}))
        model_type = getattr(config, "model_type", "")
        accepts_positions = "position_ids" in inspect.signature(model.forward).parameters
        self._pass_positions = accepts_positions and model_type not in _POSITIONS_FROM_PADDING
        # The longest canvas (the driver checks it before allocating): the position table,
        # less the ids that padding-derived positions skip (RoBERTa: padding_idx + 1).
        positions = getattr(config, "max_position_embeddings", None)
        self.max_length: int | None = None
        if isinstance(positions, int) and not isinstance(positions, bool):
            skipped = (
                int(getattr(config, "pad_token_id", 0) or 0) + 1
                if model_type in _POSITIONS_FROM_PADDING
                else 0
            )
            self.max_length = positions - skipped

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, dtype=None, device=None, mask_id=None, banned=None
    ):
        """Load a checkpoint directory (or hub id) with ``AutoModelForMaskedLM``.

        Only model classes that transformers implements itself are used: every Auto call
        passes ``trust_remote_code=False``, so code shipped with a checkpoint (``auto_map``)
        is never run and transformers never asks on the terminal whether to run it.

        Parameters
        ----------
        path : str or PathLike
        dtype : torch.dtype, optional
        device : str or torch.device, optional
        mask_id : int, optional
        """
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        kwargs = {"dtype": dtype} if dtype else {}
        try:
            model = AutoModelForMaskedLM.from_pretrained(path, trust_remote_code=False, **kwargs)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
            raise ValueError(
                f"cannot load {os.fspath(path)!r} with AutoModelForMaskedLM: "
                f"{type(error).__name__}: {error}"
            ) from error
        tokenizer = None  # a bare weights directory: ids then come from the config
        local = os.path.isdir(path)
        # transformers 5 builds a default tokenizer (with invented special ids) for a directory
        # that has none, so only look for one where tokenizer files exist.
        if not local or any(os.path.exists(os.path.join(path, f)) for f in _TOKENIZER_FILES):
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            except (OSError, ValueError, TypeError):
                tokenizer = None
        if device is not None:
            model = model.to(device)
        return cls(model, tokenizer, mask_id=mask_id, banned=banned)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, L, V) float32 for a (B, L) int64 canvas; mask column at -inf."""
        kwargs = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask.long()
            if self._pass_positions:
                kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        logits = self.model(input_ids=tokens, **kwargs).logits.float()  # (B, L, V)
        logits[..., self.mask_id] = float("-inf")
        if self.banned_ids:
            logits[..., list(self.banned_ids)] = float("-inf")
        return logits
