"""Traces, decode-order metrics, certificates and the sampler-error estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from remask.analysis import (
    Trace,
    TraceRecorder,
    conditional_joint,
    decode_order_metrics,
    sampler_error,
    step_certificates,
    step_total_correlation,
)
from remask.models import FiniteSupportOracle, ListOpOracle, MarkovChainOracle, StickyHMMOracle
from remask.samplers import build, generate


def _trace_from_order(order, L, prompt_len=0):
    """A one-row trace committing the given position groups step by step."""
    T = len(order)
    committed = torch.zeros(T, 1, L, dtype=torch.bool)
    for t, group in enumerate(order):
        committed[t, 0, group] = True
    editable = torch.zeros(1, L, dtype=torch.bool)
    editable[0, prompt_len:] = True
    return Trace(
        committed=committed, editable=editable, attention_mask=torch.ones(1, L, dtype=torch.bool)
    )


def test_order_metrics_on_hand_built_traces():
    l2r = decode_order_metrics(_trace_from_order([[2], [3], [4], [5]], 6, prompt_len=2), ks=(1, 2))
    assert l2r.kendall_tau[0] == pytest.approx(1.0)
    assert l2r.afp[0] == 1.0
    assert l2r.global_ar[1][0] == 1.0 and l2r.local_ar[2][0] == 1.0
    assert l2r.mean_frontier_distance[0] == 1.0 and l2r.frontier_left[0] == 1.0
    assert l2r.mean_jump[0] == 1.0 and l2r.edit_rate[0] == 0.0
    r2l = decode_order_metrics(_trace_from_order([[5], [4], [3], [2]], 6, prompt_len=2), ks=(1,))
    assert r2l.kendall_tau[0] == pytest.approx(-1.0)
    assert r2l.global_ar[1][0] == 0.25  # left-most masked only when it is the last mask
    assert r2l.local_ar[1][0] == 0.25  # only the last commit (position 2) follows a known token
    # The first commit (5) is 4 from the prompt; then each is adjacent on the right.
    assert r2l.frontier_distance[0].tolist() == [4, 1, 1, 1]
    par = decode_order_metrics(_trace_from_order([[0, 2], [1, 3]], 4), ks=(2,))
    assert par.afp[0] == 2.0 and par.tokens_per_step[:, 0].tolist() == [2, 2]
    assert par.frontier_distance[0].tolist() == [-1, -1, 1, 1]  # nothing known at step 0
    # Kendall τ-b with ties: steps (0, 1, 0, 1) against positions 0..3.
    x, y = np.array([0, 1, 0, 1.0]), np.arange(4.0)
    conc = sum(
        np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i in range(4) for j in range(i + 1, 4)
    )
    assert par.kendall_tau[0] == pytest.approx(conc / math.sqrt(4 * 6))


def test_recorder_with_a_real_sampler():
    oracle = MarkovChainOracle(4, 10, seed=0)
    rec = TraceRecorder()
    sampler = build("low_confidence", steps=8, block_length=2, temperature=1.0)
    out = generate(oracle, [[1, 2]] * 3, sampler, gen_length=8, seed=0, callbacks=[rec])
    tr = rec.trace(out)
    assert tr.committed.shape == (out.steps, 3, 10)
    assert torch.equal(tr.tokens[-1], out.tokens)
    assert tr.committed.sum(0)[:, 2:].eq(1).all() and not tr.committed[:, :, :2].any()
    m = decode_order_metrics(tr)
    assert m.commit_step.shape == (3, 10) and (m.commit_step[:, :2] == -1).all()
    assert np.all(m.tokens_per_step.sum(0) == 8)
    # Blocks of 2, one token per step: the block order forces τ(i) to rise with the block.
    blocks = m.commit_step[:, 2:].reshape(3, 4, 2)
    assert np.all(blocks.max(-1)[:, :-1] < blocks.min(-1)[:, 1:])
    rec.reset()
    out = generate(
        oracle,
        [[1, 2]] * 2,
        build("low_confidence", steps=8, block_length=1),
        gen_length=8,
        seed=0,
        callbacks=[rec],
    )
    ar = decode_order_metrics(rec.trace(out))
    np.testing.assert_allclose(ar.kendall_tau, 1.0)
    np.testing.assert_allclose(ar.global_ar[1], 1.0)
    # every=3 coarsens commit times without losing commits (the tail is flushed too).
    coarse = TraceRecorder(every=3)
    out = generate(oracle, [[1, 2]] * 2, sampler, gen_length=8, seed=0, callbacks=[coarse])
    ctr = coarse.trace(out)
    assert ctr.steps == math.ceil(out.steps / 3)
    assert ctr.committed.sum(0)[:, 2:].eq(1).all()
    assert torch.equal(ctr.tokens[-1], out.tokens)
    with pytest.raises(ValueError, match="no field"):
        generate(
            oracle,
            [[1]],
            sampler,
            gen_length=9,
            seed=0,
            callbacks=[TraceRecorder(fields=("bogus",))],
        )


def test_certificates_bound_the_exact_step_quantities():
    # EB: TC(S) ≤ Σ H − max H; Fréchet: P(all committed tokens jointly) ≥ Σ c − (n − 1).
    oracle = StickyHMMOracle(4, 8, seed=2, stickiness=0.85)
    rec = TraceRecorder()
    out = generate(
        oracle,
        [[1]] * 4,
        build("low_confidence", steps=3, temperature=1.0),
        gen_length=7,
        seed=1,
        callbacks=[rec],
    )
    tr = rec.trace(out)
    cert = step_certificates(tr, oracle)
    tcs = step_total_correlation(tr, oracle)
    done = ~np.isnan(cert.eb_proxy)
    assert done.sum() >= 8
    assert np.all(tcs[done] <= cert.eb_proxy[done] + 1e-9)
    assert np.any(cert.n[done] > 1) and np.any(tcs[done] > 1e-3)
    for t in range(tr.steps):
        canvas = tr.canvas_before(t, oracle.mask_id)
        for b in range(4):
            pos = torch.nonzero(tr.committed[t, b]).flatten().tolist()
            if not pos:
                continue
            values, logp = conditional_joint(oracle, canvas[b], pos)
            hit = (values == tr.tokens[t, b, pos]).all(-1)
            joint = float(logp[hit].exp().sum())
            assert joint >= cert.frechet[t, b] - 1e-9


@pytest.mark.statistical
def test_sampler_error_of_an_exact_sampler_sits_on_the_noise_floor():
    # One token per step in random order with exact marginals samples the joint exactly.
    oracle = MarkovChainOracle(3, 6, seed=0, concentration=0.5)
    sampler = build("low_confidence", steps=5, temperature=1.0, remasking="random")
    err = sampler_error(
        oracle, sampler, gen_length=5, prompt=[1], n_samples=3000, seed=0, floor_repeats=4
    )
    assert err.enumerable and err.validity == 1.0
    for stat in ("tv", "kl", "reverse_kl_support", "nll"):
        floor, sd = err.floors[stat]
        assert abs(getattr(err, stat) - floor) <= 6 * sd + 1e-3, stat
    # One step of 5 tokens from the same oracle is biased well beyond the floor.
    fast = sampler_error(
        oracle,
        build("low_confidence", steps=1, temperature=1.0),
        gen_length=5,
        prompt=[1],
        n_samples=3000,
        seed=0,
        floor_repeats=4,
    )
    assert fast.tv > fast.tv_floor + 6 * fast.tv_floor_std


@pytest.mark.statistical
def test_sampler_validity_matches_closed_forms():
    n = 4000
    # "New York" / "Mexico City" in one step: valid with probability exactly 1/2.
    cities = FiniteSupportOracle.cities()
    err = sampler_error(
        cities,
        build("low_confidence", steps=1, temperature=1.0),
        gen_length=2,
        n_samples=n,
        seed=0,
        floor_repeats=2,
    )
    assert abs(err.validity - 0.5) <= 5 * math.sqrt(0.25 / n)
    assert err.validity_floor == 1.0
    # ParallelBench shuffle, n=6, k=2 tokens per step in random order: accuracy 0.3125.
    shuffle = ListOpOracle("shuffle", 6)
    prompt = shuffle.prompts(1, seed=0)[0]
    err = sampler_error(
        shuffle,
        build("low_confidence", steps=3, temperature=1.0, remasking="random"),
        gen_length=6,
        prompt=prompt,
        n_samples=n,
        seed=1,
        floor_repeats=2,
    )
    assert abs(err.validity - 0.3125) <= 5 * math.sqrt(0.3125 * 0.6875 / n)
