"""Load real masked-diffusion checkpoints (LLaDA, Dream, MDLM) as Denoisers.

``load_checkpoint(path)`` reads a checkpoint directory in its original layout
(``config.json``, safetensors weights, optional tokenizer files), builds remask's clean-room
model class for its ``model_type`` and returns the family's Denoiser adapter with the
special-token ids read from the config, ``generation_config.json`` and the tokenizer.

Importing this module is cheap (transformers is imported only when a checkpoint is loaded)
and arranges for transformers' Auto classes to know the families' ``model_type`` names
(see :mod:`remask.models._autoreg`), so ``transformers.AutoModel.from_pretrained(dir)``
works without ``trust_remote_code``.

Special-token resolution (adapters never guess):

=========  =====================================================================
mask_id    ``config.mask_token_id``, else the tokenizer's ``mask_token``; MDLM only:
           else the last logit column (MDLM appends its mask after the tokenizer
           vocabulary). Missing -> ``ValueError``. A tokenizer mask that differs
           from the config's -> ``ValueError``.
eos_id     ``config.eos_token_id``, else ``generation_config.json``, else the
           tokenizer's; a list gives its first entry. Missing -> None.
eot_id     ``config.eot_token_id`` if present, else the family's end-of-turn token
           looked up in the tokenizer vocabulary (LLaDA ``<|eot_id|>``, Dream
           ``<|im_end|>``). Missing -> None.
pad_id     ``config.pad_token_id``, else the tokenizer's. Missing -> None.
bos_id     ``config.bos_token_id``, else the tokenizer's. Missing -> None.
=========  =====================================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from remask.models import _autoreg

__all__ = ["FAMILIES", "checkpoint_family", "load_checkpoint", "register_auto_classes"]

#: ``config.json`` ``model_type`` values handled here, mapped to the family name.
FAMILIES: dict[str, str] = {"llada": "llada", "Dream": "dream", "mdlm": "mdlm"}

#: End-of-turn token of each family's chat template (looked up, never assumed to exist).
_EOT_TOKENS = {"llada": "<|eot_id|>", "dream": "<|im_end|>"}

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")

register_auto_classes = _autoreg.register_auto_classes

# Cheap: only hooks the import of transformers' auto modules (see remask.models._autoreg).
_autoreg.install()


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path``; anything else raises ``ValueError`` naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    except OSError as err:  # unreadable (permissions, a directory named config.json, ...)
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")  # noqa: TRY004 (bad file content)
    return data


def checkpoint_family(path: str | os.PathLike[str]) -> str:
    """Family name ("llada", "dream", "mdlm") of a checkpoint directory.

    Raises
    ------
    ValueError
        If the directory or its ``config.json`` is missing, or its ``model_type`` is not one
        of :data:`FAMILIES` (including LLaDA-MoE, which shares ``model_type "llada"``).
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"checkpoint directory {str(root)!r} does not exist or is not a directory")
    config_path = root / "config.json"
    if not config_path.is_file():
        raise ValueError(f"checkpoint directory {str(root)!r} has no config.json")
    config = read_json(config_path)
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(
            f"{config_path}: model_type {model_type!r} is not a supported checkpoint family "
            f"(supported: {sorted(FAMILIES)})"
        )
    if model_type == "llada":
        from remask.models._configs import LLADA_MOE_FIELDS

        moe = [name for name in LLADA_MOE_FIELDS if name in config]
        if moe:
            raise ValueError(
                f"{config_path}: a LLaDA-MoE config (fields {moe}); LLaDA-MoE shares "
                "model_type 'llada' upstream but is not supported yet"
            )
    return FAMILIES[model_type]


def _check_weight_files(root: Path) -> None:
    present = [name for name in _WEIGHT_FILES if (root / name).is_file()]
    if not present:
        raise ValueError(
            f"checkpoint directory {str(root)!r} has no weights: expected one of {list(_WEIGHT_FILES)}"
        )
    for name in present:
        if name.endswith(".index.json"):
            index = read_json(root / name)
            shards = sorted(set(index.get("weight_map", {}).values()))
            missing = [shard for shard in shards if not (root / shard).is_file()]
            if missing:
                raise ValueError(f"{root / name} lists weight shards that are missing: {missing}")


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str:
    if dtype is None or dtype == "auto":
        return "auto"  # the dtype stored in the checkpoint's config
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if isinstance(resolved, torch.dtype) and resolved.is_floating_point:
            return resolved
    raise ValueError(
        f"dtype must be a floating torch.dtype, its name, 'auto' or None; got {dtype!r}"
    )


def _load_model(family: str, root: Path, dtype: torch.dtype | str) -> torch.nn.Module:
    import transformers

    if family == "llada":
        from remask.models.llada import LLaDAModelLM as model_cls
    elif family == "dream":
        from remask.models.dream import DreamModel as model_cls
    else:
        from remask.models.mdlm import MDLM as model_cls

    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        # ignore_mismatched_sizes=True only so that transformers returns the list of
        # mismatched keys instead of pointing at a log; any mismatch is an error below.
        model, info = model_cls.from_pretrained(
            str(root), output_loading_info=True, ignore_mismatched_sizes=True, **{dtype_key: dtype}
        )
    except _LOAD_ERRORS as err:
        # Shape mismatches (RuntimeError), truncated/empty/garbage safetensors
        # (SafetensorError), corrupt pickles, config fields of the wrong type (TypeError): say
        # which checkpoint and why.
        raise ValueError(
            f"cannot load the checkpoint in {str(root)!r}: {type(err).__name__}: {err}"
        ) from err
    problems = []
    for key, label in (
        ("missing_keys", "missing from the checkpoint"),
        ("unexpected_keys", "not used by the model"),
        ("mismatched_keys", "with mismatched shapes"),
        ("error_msgs", "loading errors"),
    ):
        items = info.get(key) or []
        if items:
            shown = sorted(_describe(item) for item in items)
            more = f" (+{len(shown) - 8} more)" if len(shown) > 8 else ""
            problems.append(f"{label}: {shown[:8]}{more}")
    if problems:
        raise ValueError(
            f"weights in {str(root)!r} do not match the {family} config: " + "; ".join(problems)
        )
    return model


def _load_errors() -> tuple[type[BaseException], ...]:
    import pickle

    errors: tuple[type[BaseException], ...] = (
        RuntimeError, OSError, ValueError, TypeError, KeyError, AttributeError, EOFError,
        pickle.UnpicklingError,
    )
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors ships with transformers
        return errors
    return (*errors, SafetensorError)


_LOAD_ERRORS = _load_errors()


def _describe(item: Any) -> str:
    # mismatched_keys entries are (key, checkpoint shape, model shape) tuples.
    if isinstance(item, tuple) and len(item) == 3:
        key, ckpt, model = item
        return f"{key} (checkpoint {tuple(ckpt)} vs config {tuple(model)})"
    return str(item)


def _load_tokenizer(root: Path, family: str) -> Any:
    """The directory's tokenizer, or None when it ships no tokenizer files."""
    if not any((root / name).is_file() for name in _TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        # trust_remote_code=False: never run (or interactively ask to run) shipped code.
        return AutoTokenizer.from_pretrained(str(root), trust_remote_code=False)
    except Exception as first_error:  # e.g. Dream's remote-code DreamTokenizer class
        try:
            if (root / "tokenizer.json").is_file():
                from transformers import PreTrainedTokenizerFast

                return PreTrainedTokenizerFast.from_pretrained(str(root))
            if (
                family == "dream"
                and (root / "vocab.json").is_file()
                and (root / "merges.txt").is_file()
            ):
                # Dream's tokenizer is the Qwen2 byte-level BPE under another class name.
                from transformers import Qwen2Tokenizer

                return Qwen2Tokenizer.from_pretrained(str(root))
        except Exception as second_error:
            raise ValueError(
                f"cannot load the tokenizer in {str(root)!r}: {first_error}; fallback: {second_error}"
            ) from second_error
        raise ValueError(
            f"cannot load the tokenizer in {str(root)!r}: {first_error}"
        ) from first_error


def _first_id(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else int(value)


def _tokenizer_id(tokenizer: Any, attribute: str) -> int | None:
    if tokenizer is None:
        return None
    value = getattr(tokenizer, attribute, None)
    return None if value is None else int(value)


def _vocab_lookup(tokenizer: Any, token: str | None) -> int | None:
    if tokenizer is None or token is None:
        return None
    vocab = tokenizer.get_vocab()
    return int(vocab[token]) if token in vocab else None


def _special_ids(
    family: str, root: Path, config: Any, tokenizer: Any, vocab_size: int
) -> dict[str, int | None]:
    generation = {}
    if (root / "generation_config.json").is_file():
        generation = read_json(root / "generation_config.json")

    mask_id = getattr(config, "mask_token_id", None)
    tok_mask = _tokenizer_id(tokenizer, "mask_token_id")
    if mask_id is not None and tok_mask is not None and int(mask_id) != tok_mask:
        raise ValueError(
            f"{root}: config.json says mask_token_id={mask_id} but the tokenizer's mask_token "
            f"{tokenizer.mask_token!r} has id {tok_mask}; the model was trained with {mask_id}, "
            "so fix the tokenizer"
        )
    if mask_id is None:
        mask_id = tok_mask
    if mask_id is None and family == "mdlm":
        mask_id = vocab_size - 1  # MDLM's convention: the mask is appended as the last column
    if mask_id is None:
        where = (
            "the tokenizer has no mask_token" if tokenizer is not None else "there is no tokenizer"
        )
        raise ValueError(f"{root}: no mask token id: config.json has no mask_token_id and {where}")

    eos_id = _first_id(getattr(config, "eos_token_id", None))
    if eos_id is None:
        eos_id = _first_id(generation.get("eos_token_id"))
    if eos_id is None:
        eos_id = _tokenizer_id(tokenizer, "eos_token_id")

    eot_id = _first_id(getattr(config, "eot_token_id", None))
    if eot_id is None:
        eot_id = _vocab_lookup(tokenizer, _EOT_TOKENS.get(family))

    pad_id = _first_id(getattr(config, "pad_token_id", None))
    if pad_id is None:
        pad_id = _first_id(generation.get("pad_token_id"))
    if pad_id is None:
        pad_id = _tokenizer_id(tokenizer, "pad_token_id")

    bos_id = _first_id(getattr(config, "bos_token_id", None))
    if bos_id is None:
        bos_id = _tokenizer_id(tokenizer, "bos_token_id")
    return {
        "mask_id": int(mask_id),
        "eos_id": eos_id,
        "eot_id": eot_id,
        "pad_id": pad_id,
        "bos_id": bos_id,
    }


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
):
    """Load a LLaDA, Dream or MDLM checkpoint directory as a ready Denoiser.

    Parameters
    ----------
    path : str or os.PathLike
        Directory in the original layout: ``config.json`` (``model_type`` one of
        :data:`FAMILIES`), ``model.safetensors`` or a sharded index (``pytorch_model.bin``
        also accepted), optionally ``generation_config.json`` and tokenizer files. The
        modeling ``.py`` files and ``auto_map`` entries are ignored; no code is run from it.
    dtype : torch.dtype or str, optional
        Parameter (and logit) dtype, e.g. ``torch.bfloat16``; default: the dtype recorded in
        the checkpoint's config.
    device : torch.device or str, optional
        Where to put the model (default: CPU).

    Returns
    -------
    LLaDADenoiser, DreamDenoiser or MDLMDenoiser
        Callable ``(tokens (B, L) int64, attention_mask (B, L) bool | None) -> logits
        (B, L, V)`` with attributes ``mask_id``, ``vocab_size``, ``eos_id``, ``eot_id``,
        ``pad_id``, ``bos_id`` (int or None), ``tokenizer`` (None if the directory has
        none), ``model``, ``family``, ``shift``, ``device``, ``dtype``.

    Raises
    ------
    ValueError
        Missing directory, ``config.json`` or weight files; unsupported ``model_type`` or
        config option; weights missing, unused or of the wrong shape; no mask token id; a
        tokenizer mask that contradicts the config; an untokenizable tokenizer directory.
    """
    root = Path(path)
    family = checkpoint_family(root)
    _check_weight_files(root)
    _autoreg.register_auto_classes()
    model = _load_model(family, root, _resolve_dtype(dtype))
    if device is not None:
        model = model.to(device)
    tokenizer = _load_tokenizer(root, family)
    config = model.config

    if family == "llada":
        from remask.models.llada import LLaDADenoiser as adapter_cls

        vocab_size = rows = config.effective_embedding_size
    elif family == "dream":
        from remask.models.dream import DreamDenoiser as adapter_cls

        vocab_size = rows = int(config.vocab_size)
    else:
        from remask.models.mdlm import MDLMDenoiser as adapter_cls

        if getattr(config, "time_conditioning", False):
            raise ValueError(
                f"{root}: time_conditioning=true: this MDLM needs the noise level σ at every "
                "call, which the Denoiser protocol does not carry; only time-free MDLM "
                "checkpoints (such as mdlm-owt) are supported"
            )
        vocab_size = rows = int(config.vocab_size)

    ids = _special_ids(family, root, config, tokenizer, vocab_size)
    return adapter_cls(
        model, vocab_size=vocab_size, embedding_rows=rows, tokenizer=tokenizer, **ids
    )
