"""Exact oracles: denoisers whose conditional marginals are exactly right, one family a file.

Every oracle derives from :class:`ExactOracle` (``base.py``): a Denoiser (docs/design.md §2)
with ``seq_len``, an exact ``log_prob`` of complete sequences and exact ``sample``, whose
``__call__`` returns the exact float64 log-marginals ``log p(x_i = v | observed)`` for any mask
pattern. The analysis module (``remask.analysis``) computes exact quantities on them, and the
statistical tests use them as ground truth.

======  ============================  =========  ===================================================
ID      class                         file       exact by
======  ============================  =========  ===================================================
T1      :class:`MarkovChainOracle`    markov     forward-backward with hard evidence (stationary:
                                                 any length)
T2      :class:`StickyHMMOracle`      hmm        forward-backward over hidden states
T3      :class:`MixtureOracle`        mixture    closed-form posterior over the mixture component
T4      :class:`FiniteSupportOracle`  finite     enumeration of an explicit support ("New York /
                                                 Mexico City", parity, k-of-n)
T5      :class:`ListOpOracle`         listop     enumeration of the answers of the given prompt
                                                 (copy, replace_random, shuffle, reverse, sort)
T6      :class:`EOSPaddedOracle`      eos        sum over the content length of prefix
                                                 forward-backward
T7      :class:`BracketsOracle`       brackets   enumeration of the balanced-bracket words
======  ============================  =========  ===================================================

:func:`toy_spec` (``spec.py``) builds any of them from the ``load_model("oracle:<kind>?...")``
spec; :data:`TOY_KINDS` lists the kinds with their keys and defaults.
"""

from __future__ import annotations

from remask.models.oracles.base import ExactOracle
from remask.models.oracles.brackets import BracketsOracle
from remask.models.oracles.eos import EOSPaddedOracle
from remask.models.oracles.finite import FiniteSupportOracle
from remask.models.oracles.hmm import StickyHMMOracle
from remask.models.oracles.listop import ListOpOracle
from remask.models.oracles.markov import MarkovChainOracle, stationary_distribution
from remask.models.oracles.mixture import MixtureOracle
from remask.models.oracles.spec import TOY_KINDS, toy_spec

__all__ = [
    "TOY_KINDS",
    "BracketsOracle",
    "EOSPaddedOracle",
    "ExactOracle",
    "FiniteSupportOracle",
    "ListOpOracle",
    "MarkovChainOracle",
    "MixtureOracle",
    "StickyHMMOracle",
    "stationary_distribution",
    "toy_spec",
]
