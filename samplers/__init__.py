"""remask.samplers: interchangeable sampling algorithms behind one registry.

Each algorithm lives in its own module and registers itself on import; adding a sampler
touches its file (with its ``example_configs`` and ``bench_configs``), one import line here,
its slow reference loop and its test, and its README row — the README's "Adding a sampler"
lists the steps and ``tests/test_sampler_contract.py`` checks them.
"""

from remask.samplers.ancestral import Ancestral
from remask.samplers.apd import APD
from remask.samplers.base import Canvas, Sampler, StepInfo
from remask.samplers.credit import Credit
from remask.samplers.daedal import Daedal
from remask.samplers.dilated import Dilated
from remask.samplers.dream import Dream
from remask.samplers.driver import GenerateOutput, decode, generate, infill
from remask.samplers.entropy_bound import EntropyBound
from remask.samplers.factor import Factor
from remask.samplers.freedave import FreeDave
from remask.samplers.gibbs import Gibbs
from remask.samplers.klass import Klass
from remask.samplers.llada2 import LLaDA2
from remask.samplers.llada21 import LLaDA21

# Algorithms (one line each: importing registers them).
from remask.samplers.low_confidence import LowConfidence
from remask.samplers.p2 import P2
from remask.samplers.pc_sampler import PCSampler
from remask.samplers.prophet import Prophet
from remask.samplers.punt import Punt
from remask.samplers.registry import available, build, from_config, register, sampler_class
from remask.samplers.remdm import ReMDM
from remask.samplers.saber import Saber
from remask.samplers.slowfast import SlowFast
from remask.samplers.threshold import Threshold
from remask.samplers.wino import WINO

__all__ = [
    "APD",
    "P2",
    "Saber",
    "SlowFast",
    "Credit",
    "Daedal",
    "Prophet",
    "FreeDave",
    "Punt",
    "Gibbs",
    "ReMDM",
    "WINO",
    "EntropyBound",
    "Klass",
    "Dilated",
    "PCSampler",
    "Ancestral",
    "Dream",
    "Factor",
    "LLaDA2",
    "LLaDA21",
    "Threshold",
    "Canvas",
    "GenerateOutput",
    "LowConfidence",
    "Sampler",
    "StepInfo",
    "available",
    "decode",
    "build",
    "from_config",
    "generate",
    "infill",
    "register",
    "sampler_class",
]
