"""RemaskLM's generate_until with the EOS early stop: same answers, fewer forward passes."""

from __future__ import annotations

import pytest

from remask.eval.decoding import decode_rows
from remask.models import load_model
from remask.samplers import build


def test_stop_at_eos_keeps_the_answer_and_saves_forward_passes():
    model = load_model("oracle:eos?vocab=3&length=12&seed=0")
    sampler = build("low_confidence", block_length=2, temperature=1.0)
    prompts = [[k % 3, (k // 3) % 3] for k in range(16)]  # 2 + 10 = the oracle's length
    seeds = list(range(16))
    full = decode_rows(model, prompts, sampler, gen_length=10, seeds=seeds)
    stop = decode_rows(model, prompts, sampler, gen_length=10, seeds=seeds, stop_at_eos=True)
    eos = model.eos_id
    for a, b in zip(full.tokens, stop.tokens):
        cut = a.index(eos) if eos in a else len(a)
        assert b[:cut] == a[:cut]  # the answer up to its first EOS is unchanged
        assert all(t == eos for t in b[cut:])
    assert all(s <= f for s, f in zip(stop.nfe, full.nfe)) and sum(stop.nfe) < sum(full.nfe)


def test_remasklm_rejects_a_non_bool_stop_at_eos():
    pytest.importorskip("lm_eval")
    from remask.eval import RemaskLM

    with pytest.raises(TypeError, match="stop_at_eos"):
        RemaskLM("oracle:eos?vocab=3&length=12&seed=0", stop_at_eos="yes")
