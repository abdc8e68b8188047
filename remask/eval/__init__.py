"""remask.eval: compare samplers on real tasks.

- :class:`RemaskLM` — an lm-evaluation-harness model (``lm-eval`` 0.4.x, the optional extra
  ``remask[eval]``): ``generate_until`` through any registered sampler, ``loglikelihood``
  through the masked-diffusion ELBO (or the exact log-probability of an exact oracle), and
  the decoding cost of every request (NFE, tokens per forward, wall time, tokens/s).
- :func:`elbo_loglikelihood`, :func:`exact_loglikelihood` — the estimators themselves.
- :func:`run_sweep`, :func:`load_spec` — the sweep runner behind ``remask sweep SPEC --out DIR``
  (data-parallel on ``torch.distributed``, resumable, seeded per request).
- :func:`sweep_report`, :func:`aup` — ``remask sweep-report DIR``: Pareto fronts and the AUP
  table.

The names load on first use: ``import remask.eval`` imports neither torch nor lm-eval.
"""

import importlib

__all__ = [
    "ELBOEstimate",
    "RemaskLM",
    "SweepSpec",
    "aup",
    "elbo_loglikelihood",
    "exact_loglikelihood",
    "load_spec",
    "request_seed",
    "run_sweep",
    "sweep_report",
]

_WHERE = {
    "RemaskLM": "lm",
    "ELBOEstimate": "likelihood",
    "elbo_loglikelihood": "likelihood",
    "exact_loglikelihood": "likelihood",
    "request_seed": "seeds",
    "SweepSpec": "spec",
    "load_spec": "spec",
    "run_sweep": "sweep",
    "sweep_report": "report",
    "aup": "report",
}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"remask.eval.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'remask.eval' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
