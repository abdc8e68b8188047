"""Load real masked-diffusion checkpoints as Denoisers: LLaDA, Dream, MDLM, and the newer
LLaDA-MoE, LLaDA 2.x, SDAR and Fast-dLLM v2.

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
mask_id    ``config.mask_token_id``, else the tokenizer's ``mask_token``, else
           (LLaDA-MoE, LLaDA 2.x) ``<|mask|>`` in the tokenizer vocabulary; MDLM
           only: else the last logit column (MDLM appends its mask after the
           tokenizer vocabulary); else the caller's ``mask_id=``. Missing ->
           ``ValueError``. A tokenizer mask that differs from the config's ->
           ``ValueError``.
eos_id     ``config.eos_token_id``, else ``generation_config.json``, else the
           tokenizer's; a list gives its first entry. Missing -> None.
eot_id     ``config.eot_token_id`` if present, else the family's end-of-turn token
           looked up in the tokenizer vocabulary (LLaDA ``<|eot_id|>``, Dream
           ``<|im_end|>``). Missing -> None.
pad_id     ``config.pad_token_id``, else the tokenizer's. Missing -> None.
bos_id     ``config.bos_token_id``, else the tokenizer's. Missing -> None.
=========  =====================================================================

Every id may also be supplied by the caller (``load_checkpoint(path, mask_id=...)``) where
the checkpoint lacks it; a supplied id that contradicts the checkpoint's is a ``ValueError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from remask.models import _autoreg

__all__ = [
    "BLOCK_DIFFUSION_FAMILIES",
    "FAMILIES",
    "SPECIAL_IDS",
    "checkpoint_family",
    "load_checkpoint",
    "register_auto_classes",
]

#: ``config.json`` ``model_type`` values handled here, mapped to the family name
#: (``"llada"`` with MoE fields is the "llada_moe" family).
FAMILIES: dict[str, str] = {
    "llada": "llada",
    "Dream": "dream",
    "mdlm": "mdlm",
    "llada2_moe": "llada2",
    "sdar": "sdar",
    "Fast_dLLM_Qwen": "fast_dllm_v2",
}

#: Families decoded block by block under a block-causal mask, with their default block size
#: (LLaDA 2.x and SDAR keep it out of config.json; Fast-dLLM v2 has ``bd_size``).
BLOCK_DIFFUSION_FAMILIES: dict[str, int | None] = {"llada2": 32, "sdar": 4, "fast_dllm_v2": None}

#: End-of-turn token of each family's chat template (looked up, never assumed to exist).
_EOT_TOKENS = {
    "llada": "<|eot_id|>",
    "dream": "<|im_end|>",
    "llada_moe": "<|role_end|>",
    "llada2": "<|role_end|>",
    "sdar": "<|im_end|>",
    "fast_dllm_v2": "<|im_end|>",
}

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
    """Family name of a checkpoint directory: "llada", "llada_moe", "dream", "mdlm",
    "llada2", "sdar" or "fast_dllm_v2".

    Raises
    ------
    ValueError
        If the directory or its ``config.json`` is missing, or its ``model_type`` is not one
        of :data:`FAMILIES`.
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

        # LLaDA-MoE shares model_type "llada" upstream; its MoE fields tell it apart.
        if any(name in config for name in LLADA_MOE_FIELDS):
            return "llada_moe"
    return FAMILIES[model_type]


#: config.json keys the newer families must carry: their config classes' defaults describe
#: multi-billion-parameter models, which a config missing a shape key must not silently build.
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "llada_moe": (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "dense_intermediate_size",
        "expert_intermediate_size",
        "num_experts",
        "num_experts_per_tok",
        "moe_layer_freq",
    ),
    "llada2": (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "moe_intermediate_size",
        "num_experts",
        "num_experts_per_tok",
        "first_k_dense_replace",
    ),
    "sdar": (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
    ),
    "fast_dllm_v2": (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
    ),
}


def _check_required_fields(root: Path, family: str) -> None:
    needed = _REQUIRED_FIELDS.get(family, ())
    if not needed:
        return
    config = read_json(root / "config.json")
    missing = [name for name in needed if config.get(name) is None]
    if missing:
        raise ValueError(
            f"{root / 'config.json'}: a {family} config must set {missing} "
            f"(the fields of the family's published config.json)"
        )


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


def _model_class(family: str) -> type:
    if family == "llada":
        from remask.models.llada import LLaDAModelLM as model_cls
    elif family == "dream":
        from remask.models.dream import DreamModel as model_cls
    elif family == "mdlm":
        from remask.models.mdlm import MDLM as model_cls
    elif family == "llada_moe":
        from remask.models.llada_moe import LLaDAMoEModelLM as model_cls
    elif family == "llada2":
        from remask.models.llada2 import LLaDA2MoeModelLM as model_cls
    elif family == "sdar":
        from remask.models.sdar import SDARForCausalLM as model_cls
    else:
        from remask.models.fast_dllm_v2 import Fast_dLLM_QwenForCausalLM as model_cls
    return model_cls


def _load_model(family: str, root: Path, dtype: torch.dtype | str) -> torch.nn.Module:
    import transformers

    model_cls = _model_class(family)

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
        RuntimeError,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        EOFError,
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


#: Mask token of families whose tokenizer keeps it out of ``mask_token`` (looked up by name).
_MASK_TOKENS = {"llada_moe": "<|mask|>", "llada2": "<|mask|>"}

#: Special ids a caller may supply where the checkpoint lacks them (``load_checkpoint(...,
#: mask_id=...)``).
SPECIAL_IDS = ("mask_id", "eos_id", "eot_id", "pad_id", "bos_id")


def _special_ids(
    family: str,
    root: Path,
    config: Any,
    tokenizer: Any,
    vocab_size: int,
    given: dict[str, int | None] | None = None,
) -> dict[str, int | None]:
    ids = _checkpoint_ids(family, root, config, tokenizer, vocab_size)
    for name, value in (given or {}).items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if ids[name] is not None and ids[name] != value:
            raise ValueError(
                f"{root}: {name}={value} contradicts the checkpoint's {name}={ids[name]}; "
                "give special ids only where the checkpoint has none"
            )
        ids[name] = value
    if ids["mask_id"] is None:
        where = (
            "the tokenizer has no mask_token" if tokenizer is not None else "there is no tokenizer"
        )
        raise ValueError(
            f"{root}: no mask token id: config.json has no mask_token_id and {where}; "
            "pass it as load_model(path, mask_id=...) (or the model spec 'path?mask_id=...')"
        )
    return ids


def _checkpoint_ids(
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
    if mask_id is None:
        mask_id = _vocab_lookup(tokenizer, _MASK_TOKENS.get(family))
    if mask_id is None and family == "mdlm":
        mask_id = vocab_size - 1  # MDLM's convention: the mask is appended as the last column

    def declared(key: str) -> int | None:
        """``key`` from config.json, else generation_config.json (eos and pad only), else
        the tokenizer's attribute of that name."""
        value = _first_id(getattr(config, key, None))
        if value is None and key in ("eos_token_id", "pad_token_id"):
            value = _first_id(generation.get(key))
        return value if value is not None else _tokenizer_id(tokenizer, key)

    eot_id = _first_id(getattr(config, "eot_token_id", None))
    if eot_id is None:
        eot_id = _vocab_lookup(tokenizer, _EOT_TOKENS.get(family))
    return {
        "mask_id": None if mask_id is None else int(mask_id),
        "eos_id": declared("eos_token_id"),
        "eot_id": eot_id,
        "pad_id": declared("pad_token_id"),
        "bos_id": declared("bos_token_id"),
    }


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    block_size: int | None = None,
    cache: bool = True,
    **special_ids: int | None,
):
    """Load a checkpoint directory of a native family as a ready Denoiser.

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
    block_size : int, optional
        Block-diffusion families (LLaDA 2.x, SDAR, Fast-dLLM v2) only: the block-causal
        block length (default: Fast-dLLM v2's ``bd_size``, LLaDA 2.x 32, SDAR 4).
    cache : bool
        Block-diffusion families only: keep an exact KV cache of finished blocks (default);
        False recomputes the whole canvas at every call.
    mask_id, eos_id, eot_id, pad_id, bos_id : int, optional
        Special ids for checkpoints that lack them (LLaDA 2.x, LLaDA-MoE, SDAR and Fast-dLLM
        v2 keep the mask id in the tokenizer only). A value that contradicts the checkpoint's
        own is a ``ValueError``.

    Returns
    -------
    LLaDADenoiser, DreamDenoiser, MDLMDenoiser, LLaDAMoEDenoiser or BlockDiffusionDenoiser
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
    unknown = sorted(set(special_ids) - set(SPECIAL_IDS))
    if unknown:
        raise TypeError(
            f"load_checkpoint got unknown arguments {unknown}; special ids: {list(SPECIAL_IDS)}"
        )
    if isinstance(cache, int) and cache in (0, 1):  # also 0/1 from a spec string "DIR?cache=0"
        cache = bool(cache)
    else:
        raise TypeError(f"cache must be a bool, got {cache!r}")
    family = checkpoint_family(root)
    block_default = BLOCK_DIFFUSION_FAMILIES.get(family, 0)
    if block_size is not None and block_default == 0:
        raise ValueError(
            f"{root}: block_size={block_size!r} applies to block-diffusion checkpoints only "
            f"({sorted(BLOCK_DIFFUSION_FAMILIES)}), not to a {family!r} checkpoint"
        )
    _check_required_fields(root, family)
    _check_weight_files(root)
    _autoreg.register_auto_classes()
    model = _load_model(family, root, _resolve_dtype(dtype))
    if device is not None:
        model = model.to(device)
    tokenizer = _load_tokenizer(root, family)
    config = model.config

    if family in BLOCK_DIFFUSION_FAMILIES:
        from remask.models.block_diffusion import BlockDiffusionDenoiser

        if block_size is None:
            block_size = block_default or int(getattr(config, "bd_size", 32))
        vocab_size = int(config.vocab_size)
        ids = _special_ids(family, root, config, tokenizer, vocab_size, special_ids)
        return BlockDiffusionDenoiser(
            model,
            block_size=block_size,
            cache=cache,
            family=family,
            shift=1 if family == "fast_dllm_v2" else 0,
            vocab_size=vocab_size,
            embedding_rows=vocab_size,
            tokenizer=tokenizer,
            **ids,
        )
    if family == "llada_moe":
        from remask.models.llada_moe import LLaDAMoEDenoiser as adapter_cls

        vocab_size = rows = int(config.vocab_size)
    elif family == "llada":
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

    ids = _special_ids(family, root, config, tokenizer, vocab_size, special_ids)
    return adapter_cls(
        model, vocab_size=vocab_size, embedding_rows=rows, tokenizer=tokenizer, **ids
    )
