"""Sampled batch invariance: with one seed per row, every row of a ragged batch is the row
decoded alone with its seed, for every stochastic sampler, on an exact oracle."""

from __future__ import annotations

import dataclasses

import pytest

from remask.eval.decoding import decode_rows
from remask.models import MarkovChainOracle
from remask.samplers import available, build, generate, sampler_class

PROMPTS = [[0, 1, 2], [1], [], [3, 3]]
SEEDS = [11, 2**40 + 3, 7, 11]


def _stochastic():
    out = []
    for name in available():
        fields = {f.name for f in dataclasses.fields(sampler_class(name))}
        sampler = build(name, temperature=1.0) if "temperature" in fields else build(name)
        if sampler.stochastic:
            out.append(pytest.param(sampler, id=name))
    return out


@pytest.mark.filterwarnings("ignore:apd. no verifier")
@pytest.mark.parametrize("sampler", _stochastic())
def test_ragged_rows_equal_rows_alone(sampler):
    chain = MarkovChainOracle(vocab_size=4, seq_len=8, seed=0, concentration=0.5)
    batch = generate(chain, PROMPTS, sampler, gen_length=5, seed=SEEDS)
    for b, (prompt, seed) in enumerate(zip(PROMPTS, SEEDS)):
        alone = generate(chain, [prompt], sampler, gen_length=5, seed=[seed])
        assert batch.tokens[b, -5:].tolist() == alone.tokens[0, -5:].tolist(), (sampler.name, b)
        assert int(batch.nfe[b]) == int(alone.nfe[0])
    # rows 0 and 3 share a seed but not a prompt; the helper agrees with generate
    rows = decode_rows(chain, PROMPTS, sampler, gen_length=5, seeds=SEEDS)
    assert rows.tokens == batch.tokens[:, -5:].tolist()


def test_decode_rows_matches_generate_alone():
    """One batch with per-row seeds: the same tokens as each row alone."""
    chain = MarkovChainOracle(vocab_size=4, seq_len=8, seed=0)
    sampler = build("ancestral")
    rows = decode_rows(chain, PROMPTS, sampler, gen_length=3, seeds=SEEDS)
    for b, (prompt, seed) in enumerate(zip(PROMPTS, SEEDS)):
        alone = generate(chain, [prompt], sampler, gen_length=3, seed=[seed])
        assert rows.tokens[b] == alone.tokens[0, -3:].tolist()
    with pytest.raises(ValueError, match="2 seeds for 4 prompts"):
        decode_rows(chain, PROMPTS, sampler, gen_length=3, seeds=[1, 2])
