"""Hugging Face Hub ids (``GSAI-ML/LLaDA-8B-Instruct``) resolved to a local snapshot directory.

``huggingface_hub.snapshot_download`` does the work: a checkpoint is downloaded once into the
hub cache (``HF_HOME`` / ``HF_HUB_CACHE``) and found there afterwards; with
``HF_HUB_OFFLINE=1`` nothing is fetched and a checkpoint missing from the cache is an error.
Only configuration, weights and tokenizer files are fetched: the Python files a repository
ships are not downloaded, and would never run anyway (see :func:`remask.models.load_model`).
"""

from __future__ import annotations

import re

__all__ = ["is_hub_id", "resolve_hub_id"]

# "org/name" with an optional "@revision"; the hub's own rules: letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<rev>[\w./-]+))?$"
)

# What a checkpoint needs; never ``*.py`` (no remote code) nor other frameworks' weights.
ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "tokenizer*",
    "*.tiktoken",
    "*.bin",
]
IGNORE_PATTERNS = ["*.py", "*.msgpack", "*.h5", "*.onnx", "*.ot", "optimizer*", "training_args.bin"]


def is_hub_id(spec: str) -> bool:
    """Whether ``spec`` reads as ``org/name`` or ``org/name@revision``."""
    return bool(_HUB_ID.match(spec)) and ".." not in spec


def resolve_hub_id(spec: str, *, cache_dir: str | None = None) -> str:
    """The local snapshot directory of hub id ``spec``, downloading it on first use.

    Parameters
    ----------
    spec : str
        ``org/name`` or ``org/name@revision`` (a branch, tag or commit).
    cache_dir : str, optional
        The hub cache to use (default: huggingface_hub's, from ``HF_HUB_CACHE``/``HF_HOME``).

    Returns
    -------
    str
        A directory holding ``config.json``, the weights and the tokenizer files.

    Raises
    ------
    ValueError
        ``huggingface_hub`` is not installed; the repository or revision does not exist; it
        is not in the cache while offline (``HF_HUB_OFFLINE=1``); the network failed. The
        message names the id.
    """
    match = _HUB_ID.match(spec)
    if match is None or ".." in spec:
        raise ValueError(f"{spec!r} is not a hub id ('org/name' or 'org/name@revision')")
    try:
        import huggingface_hub
        from huggingface_hub.utils import HfHubHTTPError
    except ImportError:
        raise ValueError(
            f"{spec!r} looks like a Hugging Face Hub id, which needs huggingface_hub: "
            'pip install "remask[hf]"; or pass a local checkpoint directory'
        ) from None
    repo, revision = match["repo"], match["rev"]
    try:
        return huggingface_hub.snapshot_download(
            repo,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=ALLOW_PATTERNS,
            ignore_patterns=IGNORE_PATTERNS,
        )
    except (HfHubHTTPError, OSError, ValueError) as error:
        offline = huggingface_hub.constants.HF_HUB_OFFLINE
        hint = (
            " (offline mode, HF_HUB_OFFLINE=1: only checkpoints already in the hub cache load)"
            if offline
            else ""
        )
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"cannot fetch hub id {spec!r}{hint}: {type(error).__name__}: {text}"
        ) from None
