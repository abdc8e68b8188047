"""Real canvases for the analysis: read from a file, masked reproducibly.

File format (one canvas per non-empty line; ``#`` starts a comment line):

- token ids: integers separated by spaces or commas, ``_`` for a mask
  (``101 _ _ 2054 102``);
- JSON lines: ``{"ids": [101, "_", 2054, 102]}`` (``"_"`` or ``null`` for a mask) or
  ``{"text": "..."}``;
- any other line is text, tokenized by the model's tokenizer *with* its special tokens
  (CLS/SEP, BOS/EOS); write the tokenizer's mask token (``[MASK]``, ``<mask>``) for a mask.

Special tokens (the tokenizer's special ids other than the mask; without a tokenizer, the
model's ``bos_id``/``eos_id``/``pad_id``) are never masked by :func:`mask_canvases`, are not
counted as context by the distance curves and are kept in their position-matched controls.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Canvases", "mask_canvases", "read_canvases", "special_ids"]

MASK_MARK = "_"


@dataclass(frozen=True)
class Canvases:
    """Canvases of possibly different lengths.

    Attributes
    ----------
    rows : list of (L_b,) int64 tensors
        With ``mask_id`` at masked positions.
    special : list of (L_b,) bool tensors
        Structural tokens.
    source : dict
        Where they came from (path, sha256, line count, masking rule and seed), for summaries.
    """

    rows: list
    special: list
    source: dict

    def __post_init__(self):
        if not self.rows:
            raise ValueError("no canvases")
        if len(self.rows) != len(self.special):
            raise ValueError(f"{len(self.rows)} canvases but {len(self.special)} special masks")

    def __len__(self) -> int:
        return len(self.rows)


def special_ids(model) -> set[int]:
    """Ids of the model's structural tokens (module docstring); never the mask id."""
    tok = getattr(model, "tokenizer", None)
    ids = set()
    if tok is not None and getattr(tok, "all_special_ids", None) is not None:
        ids = {int(t) for t in tok.all_special_ids}
    else:
        for name in ("bos_id", "eos_id", "pad_id"):
            t = getattr(model, name, None)
            if isinstance(t, int) and not isinstance(t, bool):
                ids.add(t)
    ids.discard(int(model.mask_id))
    return ids


def _ids_of(items, mask_id: int, where: str) -> list[int]:
    out = []
    for item in items:
        if item is None or item == MASK_MARK:
            out.append(mask_id)
        elif isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError(f"{where}: not a token id: {item!r}")
        else:
            try:
                out.append(int(item))
            except ValueError:
                raise ValueError(f"{where}: not a token id: {item!r}") from None
    return out


def _is_id_line(line: str) -> bool:
    items = line.replace(",", " ").split()
    return bool(items) and all(t == MASK_MARK or t.lstrip("-").isdigit() for t in items)


def _tokenize(model, text: str, where: str) -> list[int]:
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError(
            f"{where} is text but {type(model).__name__} has no tokenizer; "
            f"write token ids ('_' for a mask) instead"
        )
    return [int(t) for t in tok(text, add_special_tokens=True)["input_ids"]]


def read_canvases(
    path, model, *, mask_span: int | None = None, mask_rate: float | None = None, seed: int = 0
) -> Canvases:
    """Read canvases from ``path`` (module docstring) for ``model``, then mask them.

    Parameters
    ----------
    path : str or PathLike
    model : Denoiser
        Its ``mask_id``, ``vocab_size`` and, for text, ``tokenizer``.
    mask_span, mask_rate, seed
        Passed to :func:`mask_canvases` (no extra masking when both are None).

    Returns
    -------
    Canvases

    Raises
    ------
    ValueError
        Unreadable file, no canvases, a bad id (named with its line), text without a
        tokenizer, or a canvas with no masked position after masking.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise ValueError(f"cannot read canvases {path!r}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"canvases {path!r} is not UTF-8 text") from None
    V, mask_id = int(model.vocab_size), int(model.mask_id)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path} line {n}"
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(obj, dict) or ("ids" in obj) == ("text" in obj):
                raise ValueError(f"{where}: a JSON canvas needs exactly one of 'ids' or 'text'")
            if "ids" in obj:
                if not isinstance(obj["ids"], list):
                    raise ValueError(f"{where}: 'ids' must be a list, got {obj['ids']!r}")
                ids = _ids_of(obj["ids"], mask_id, where)
            else:
                if not isinstance(obj["text"], str):
                    raise ValueError(f"{where}: 'text' must be a string, got {obj['text']!r}")
                ids = _tokenize(model, obj["text"], where)
        elif _is_id_line(line):
            ids = _ids_of(line.replace(",", " ").split(), mask_id, where)
        else:
            ids = _tokenize(model, line, where)
        if not ids:
            raise ValueError(f"{where}: empty canvas")
        for t in ids:
            if not 0 <= t < V:
                raise ValueError(f"{where}: token id {t} is outside [0, {V})")
        rows.append(torch.tensor(ids, dtype=torch.int64))
    if not rows:
        raise ValueError(f"canvases {path!r} holds no canvas (one per non-empty line)")
    specials = special_ids(model)
    spec = [
        torch.isin(r, torch.tensor(sorted(specials), dtype=torch.int64))
        if specials
        else torch.zeros_like(r, dtype=torch.bool)
        for r in rows
    ]
    source = {
        "path": os.path.abspath(path),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "n_canvases": len(rows),
    }
    return mask_canvases(
        Canvases(rows, spec, source), mask_id, span=mask_span, rate=mask_rate, seed=seed
    )


def mask_canvases(
    canvases: Canvases,
    mask_id: int,
    *,
    span: int | None = None,
    rate: float | None = None,
    seed: int = 0,
) -> Canvases:
    """Mask real sequences reproducibly: a contiguous span, or a fraction of the positions.

    Only positions that are neither special nor already masked are eligible.

    Parameters
    ----------
    canvases : Canvases
    mask_id : int
    span : int, optional
        Mask ``span`` consecutive eligible positions, starting at a uniformly drawn offset.
    rate : float in (0, 1], optional
        Mask ``max(1, round(rate · n))`` of the n eligible positions, drawn without replacement.
    seed : int
        One ``numpy`` generator for all canvases, in file order.

    Returns
    -------
    Canvases
        Every canvas must have at least one masked position (ValueError otherwise).
    """
    if span is not None and rate is not None:
        raise ValueError(f"give at most one of mask_span={span!r} and mask_rate={rate!r}")
    if span is not None and (isinstance(span, bool) or not isinstance(span, int) or span < 1):
        raise ValueError(f"mask_span must be an int >= 1, got {span!r}")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1
    ):
        raise ValueError(f"mask_rate must be a number in (0, 1], got {rate!r}")
    rng = np.random.default_rng(int(seed))
    rows = []
    for b, (row, sp) in enumerate(zip(canvases.rows, canvases.special)):
        row = row.clone()
        eligible = ((row != mask_id) & ~sp).nonzero()[:, 0].numpy()
        if span is not None:
            if len(eligible) < span:
                raise ValueError(
                    f"canvas {b + 1} has {len(eligible)} maskable tokens, fewer than mask_span={span}"
                )
            start = int(rng.integers(0, len(eligible) - span + 1))
            row[torch.from_numpy(eligible[start : start + span])] = mask_id
        elif rate is not None and len(eligible):
            k = max(1, int(round(rate * len(eligible))))
            row[torch.from_numpy(np.sort(rng.choice(eligible, size=k, replace=False)))] = mask_id
        if not bool((row == mask_id).any()):
            raise ValueError(
                f"canvas {b + 1} has no masked position: mark masks in the file "
                f"('_' in ids, the tokenizer's mask token in text) or pass --mask-span/--mask-rate"
            )
        rows.append(row)
    source = {**canvases.source, "mask_span": span, "mask_rate": rate, "mask_seed": int(seed)}
    return Canvases(rows, list(canvases.special), source)
