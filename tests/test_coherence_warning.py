"""`analyze coherence` warns when every sample is the same sequence."""

from __future__ import annotations

import warnings

import pytest

import remask
from remask.app.analyze import analyze_coherence
from remask.models import load_model


def test_a_deterministic_sampler_warns_and_a_sampled_one_does_not(tmp_path):
    oracle = load_model("oracle:markov?vocab=3&length=4&seed=0")
    greedy = remask.samplers.build("threshold", threshold=0.5)
    with pytest.warns(UserWarning, match="all 50 samples are the same sequence"):
        analyze_coherence(oracle, greedy, out=tmp_path / "a", n_samples=50, plots=False)
    sampled = remask.samplers.build("threshold", threshold=0.5, temperature=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        analyze_coherence(oracle, sampled, out=tmp_path / "b", n_samples=50, plots=False)
