"""remask.models: denoisers — exact oracles, tiny transformers, checkpoint adapters.

Everything here satisfies the Denoiser protocol of docs/design.md §2; ``load_model(spec)``
resolves a spec string to one. The exact oracles (one family a file under
``remask.models.oracles``, all derived from ``ExactOracle``) are importable from here. ``BlockDiffusionDenoiser`` (LLaDA 2.x, SDAR, Fast-dLLM v2) is
imported on first access.
"""

from remask.models.cache import Cached, CachedDenoiser
from remask.models.checkpoints import FAMILIES, load_checkpoint
from remask.models.dpad import DPad
from remask.models.hf import HFMaskedLM
from remask.models.loading import load_model, parse_spec
from remask.models.oracles import (
    BracketsOracle,
    EOSPaddedOracle,
    ExactOracle,
    FiniteSupportOracle,
    ListOpOracle,
    MarkovChainOracle,
    MixtureOracle,
    StickyHMMOracle,
    toy_spec,
)
from remask.models.protocol import Denoiser, check_logits
from remask.models.tiny import TinyTransformer
from remask.models.wrap import FunctionDenoiser, as_denoiser
from remask.models.wrappers import Guided, Suppress

__all__ = [
    "BlockDiffusionDenoiser",
    "BracketsOracle",
    "Cached",
    "CachedDenoiser",
    "DPad",
    "Denoiser",
    "EOSPaddedOracle",
    "ExactOracle",
    "FAMILIES",
    "FiniteSupportOracle",
    "FunctionDenoiser",
    "Guided",
    "HFMaskedLM",
    "ListOpOracle",
    "MarkovChainOracle",
    "MixtureOracle",
    "StickyHMMOracle",
    "Suppress",
    "TinyTransformer",
    "as_denoiser",
    "check_logits",
    "load_checkpoint",
    "load_model",
    "parse_spec",
    "toy_spec",
]


def __getattr__(name: str):
    # Lazy: the block-diffusion adapter imports transformers' modeling code (seconds), which
    # `import remask.models` must not pay for.
    if name == "BlockDiffusionDenoiser":
        from remask.models.block_diffusion import BlockDiffusionDenoiser

        return BlockDiffusionDenoiser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
