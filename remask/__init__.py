"""remask: interchangeable samplers for masked diffusion language models.

>>> import remask
>>> from remask.models import load_model
>>> model = load_model("oracle:markov?vocab=4&length=8&seed=0")
>>> sampler = remask.samplers.build("low_confidence", block_length=4)
>>> out = remask.generate(model, [[0, 1, 2]], sampler, gen_length=8, seed=0)
"""

from remask import kernels, models, samplers
from remask.models import load_model
from remask.samplers import GenerateOutput, generate, infill

__version__ = "0.1.0"

__all__ = ["GenerateOutput", "generate", "infill", "kernels", "load_model", "models", "samplers", "__version__"]
