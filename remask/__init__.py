"""remask: interchangeable samplers for masked diffusion language models.

>>> import remask
>>> from remask.models import load_model
>>> model = load_model("oracle:markov?vocab=4&length=8&seed=0")
>>> sampler = remask.samplers.build("low_confidence", block_length=4)
>>> out = remask.generate(model, [[0, 1, 2]], sampler, gen_length=8, seed=0)

The subpackages load on first use (``remask.samplers``, ``remask.models``, ...), so that
``import remask`` — and ``remask --help`` — does not pay for importing torch and numba.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "GenerateOutput",
    "decode",
    "generate",
    "infill",
    "kernels",
    "load_model",
    "models",
    "samplers",
    "__version__",
]

_SUBMODULES = {
    "kernels",
    "models",
    "samplers",
    "analysis",
    "bench",
    "demo",
    "cli",
    "trace_view",
    "eval",
}
_ATTRIBUTES = {
    "GenerateOutput": "remask.samplers",
    "generate": "remask.samplers",
    "infill": "remask.samplers",
    "decode": "remask.samplers",
    "load_model": "remask.models",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"remask.{name}")
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'remask' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
