"""Register remask's model classes with transformers' Auto classes, lazily.

After ``import remask.models``, ``transformers.AutoConfig`` / ``AutoModel`` /
``AutoModelForMaskedLM`` resolve the ``model_type`` values ``"llada"``, ``"Dream"`` and
``"mdlm"`` to remask's clean-room classes, and ``AutoModelForCausalLM`` (as well as the
other two) resolves ``"llada2_moe"``, ``"sdar"``, ``"Fast_dLLM_Qwen"`` and LLaDA-MoE
(``"llada"`` with MoE fields). Registered local classes take precedence over a
checkpoint's ``auto_map`` (transformers treats them as explicit local code), so the original
directories load without ``trust_remote_code`` and without running their modeling files.

Why lazily: importing ``transformers.modeling_utils`` costs seconds, and transformers is an
optional dependency of remask. :func:`install` therefore only hooks the import of
transformers' two auto modules and registers when (if ever) they are imported:

* when ``transformers.models.auto.configuration_auto`` finishes importing, the config
  classes are registered (they need only ``transformers.configuration_utils``);
* when ``transformers.models.auto.modeling_auto`` finishes importing, the model classes are.

If those modules are already imported, registration happens at once.
:func:`register_auto_classes` does everything eagerly; ``load_checkpoint`` calls it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["install", "register_auto_classes", "register_configs", "register_models"]

_logger = logging.getLogger(__name__)
_lock = threading.RLock()
_done = {"configs": False, "models": False}

_CONFIG_AUTO = "transformers.models.auto.configuration_auto"
_MODEL_AUTO = "transformers.models.auto.modeling_auto"


def register_configs() -> None:
    """Register the config classes with ``transformers.AutoConfig`` (idempotent)."""
    with _lock:
        if _done["configs"]:
            return
        # Import from the defining module, not the lazy `transformers` namespace: this may run
        # while the `transformers.models.auto` package itself is still initialising.
        from transformers.models.auto.configuration_auto import AutoConfig

        from remask.models._block_configs import FastDLLMQwenConfig, LLaDA2MoeConfig, SDARConfig
        from remask.models._configs import DreamConfig, LLaDAConfig, MDLMConfig

        # LLaDAMoEConfig is not registered: it shares model_type "llada", and
        # LLaDAConfig.from_dict hands MoE configs over to it.
        for cls in (
            LLaDAConfig,
            DreamConfig,
            MDLMConfig,
            LLaDA2MoeConfig,
            SDARConfig,
            FastDLLMQwenConfig,
        ):
            AutoConfig.register(cls.model_type, cls, exist_ok=True)
        _done["configs"] = True


def register_models() -> None:
    """Register the model classes with ``AutoModel`` and ``AutoModelForMaskedLM`` (idempotent).

    LLaDA is also registered for ``AutoModelForCausalLM``, because the upstream checkpoints'
    ``auto_map`` (and code written against it) use that class name, although the model is
    not causal.
    """
    with _lock:
        if _done["models"]:
            return
        register_configs()
        from transformers.models.auto.modeling_auto import (
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForMaskedLM,
        )

        from remask.models.dream import DreamConfig, DreamModel
        from remask.models.llada import LLaDAConfig, LLaDAModelLM
        from remask.models.mdlm import MDLM, MDLMConfig

        for config_cls, model_cls in (
            (LLaDAConfig, LLaDAModelLM),
            (DreamConfig, DreamModel),
            (MDLMConfig, MDLM),
        ):
            AutoModel.register(config_cls, model_cls, exist_ok=True)
            AutoModelForMaskedLM.register(config_cls, model_cls, exist_ok=True)
        AutoModelForCausalLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
        # The four newer families: their checkpoints' auto_map names AutoModel and
        # AutoModelForCausalLM; both resolve to the LM class (remask has no head-less trunk
        # class for them). AutoModelForMaskedLM too, as for the other diffusion families.
        from remask.models.fast_dllm_v2 import Fast_dLLM_QwenForCausalLM, FastDLLMQwenConfig
        from remask.models.llada2 import LLaDA2MoeConfig, LLaDA2MoeModelLM
        from remask.models.llada_moe import LLaDAMoEConfig, LLaDAMoEModelLM
        from remask.models.sdar import SDARConfig, SDARForCausalLM

        for config_cls, model_cls in (
            (LLaDA2MoeConfig, LLaDA2MoeModelLM),
            (LLaDAMoEConfig, LLaDAMoEModelLM),
            (SDARConfig, SDARForCausalLM),
            (FastDLLMQwenConfig, Fast_dLLM_QwenForCausalLM),
        ):
            for auto in (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM):
                auto.register(config_cls, model_cls, exist_ok=True)
        _done["models"] = True


def register_auto_classes() -> None:
    """Register configs and models now (imports ``transformers.modeling_utils``)."""
    register_models()


class _RunAfterLoader(importlib.abc.Loader):
    """Wraps a module's real loader and runs a callback once the module has executed."""

    def __init__(self, loader: importlib.abc.Loader, callback: Callable[[], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._callback()
        except Exception:  # never break the user's transformers import over our registration
            _logger.debug("remask: deferred Auto-class registration failed", exc_info=True)

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, is_package, ...
        return getattr(self._loader, name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that attaches callbacks to the import of specific modules."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[], None]] = {}

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        callback = self.callbacks.pop(fullname, None)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RunAfterLoader(spec.loader, callback)
        return spec


_finder = _AfterImportFinder()


def install() -> None:
    """Arrange registration for when transformers' auto modules are imported (cheap)."""
    with _lock:
        for name, callback in ((_CONFIG_AUTO, register_configs), (_MODEL_AUTO, register_models)):
            if name in sys.modules:
                try:
                    callback()
                except Exception:
                    _logger.debug("remask: Auto-class registration failed", exc_info=True)
            else:
                _finder.callbacks[name] = callback
        if _finder.callbacks and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
