"""remask.samplers: interchangeable sampling algorithms behind one registry.

Each algorithm lives in its own module and registers itself on import; adding a sampler
touches its file, one import line here and its test.
"""

from remask.samplers.base import Canvas, Sampler, StepInfo
from remask.samplers.driver import GenerateOutput, generate, infill
from remask.samplers.registry import available, build, from_config, register, sampler_class

# Algorithms (one line each: importing registers them).
from remask.samplers.low_confidence import LowConfidence

__all__ = [
    "Canvas",
    "GenerateOutput",
    "LowConfidence",
    "Sampler",
    "StepInfo",
    "available",
    "build",
    "from_config",
    "generate",
    "infill",
    "register",
    "sampler_class",
]
