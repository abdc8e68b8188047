"""DPad suffix dropout (remask.models.DPad) on the golden LLaDA checkpoint.

Checked: with nothing dropped the wrapper is the plain model; the kept sets follow the
retention rule P(d) (frequencies over seeds, tolerance from the sample size); greedy
low_confidence through the wrapper equals a slow loop written from the paper, which runs the
*pruned* sequence (prefix + kept suffix masks at their original positions) through the raw
LLaDA module — for both of the wrapper's paths, the pruned forward (the default) and the
hidden-keys one. test_dpad_pruned.py checks the two paths against each other.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import remask
from remask import kernels
from remask.models import DPad, load_model
from remask.models.checkpoints import load_checkpoint
from remask.samplers import build
from remask.samplers.registry import available, sampler_class

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


@pytest.fixture(autouse=True)
def _torch_kernels():
    with remask.kernels.use_backend("torch"):
        yield


@pytest.fixture(scope="module")
def llada():
    return load_checkpoint(GOLDEN / "llada_tiny")


def _paper_p(d: int, W: int, k: float, a: float) -> float:
    """P(d) = a N(x; 0, 1), x running from 0 (d = 1) to k (d = W); 0 beyond W; capped at 1."""
    if not 1 <= d <= W:
        return 0.0
    x = k * (d - 1) / (W - 1) if W > 1 else 0.0
    return min(1.0, a * math.exp(-x * x / 2) / math.sqrt(2 * math.pi))


def test_nothing_dropped_is_the_plain_model(llada):
    """Window over the whole suffix and P >= 1 everywhere: the plain logits, on a left-padded
    batch with different active blocks."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, llada.mask_id, (3, 14), generator=g)
    mask = torch.ones(3, 14, dtype=torch.bool)
    mask[0, :2] = False
    mask[2, :4] = False
    tokens[:, 6:] = llada.mask_id
    active = torch.zeros_like(mask)
    active[0, 6:8] = True
    active[1, 6:10] = True
    active[2, 8:10] = True
    wrapper = DPad(llada, window=64, sigma=0.0, scale=3.0)  # a phi(0) = 1.2: every mask kept
    assert bool(wrapper.kept(tokens, mask, active).all())
    got = wrapper(tokens, mask, active=active)
    want = llada(tokens, mask)
    torch.testing.assert_close(got[mask], want[mask], atol=1e-5, rtol=0)


def test_dropped_rows_are_not_computed_and_the_block_is_kept(llada):
    tokens = torch.full((1, 40), llada.mask_id)
    tokens[0, :4] = torch.tensor([1, 2, 3, 4])
    active = torch.zeros_like(tokens, dtype=torch.bool)
    active[0, 4:8] = True
    wrapper = DPad(llada, window=8)
    keep = wrapper.kept(tokens, None, active)
    assert bool(keep[0, :8].all()) and not bool(keep[0, 16:].any())  # beyond W = 8: dropped
    logits = wrapper(tokens, active=active)
    assert bool((logits[0, ~keep[0]] == 0).all())
    assert bool(torch.isfinite(logits[0, keep[0]][:, : llada.mask_id]).all())


def test_retention_frequencies_follow_the_rule(llada):
    """Kept frequency of each suffix distance over N seeds vs P(d): within 4.5 binomial
    standard errors (a false alarm has probability < 1e-4 over all distances)."""
    W, k, a, N = 12, 4.0, 2.0, 1500
    L, end = 24, 6
    tokens = torch.full((1, L), llada.mask_id)
    tokens[0, :3] = torch.tensor([5, 6, 7])
    active = torch.zeros_like(tokens, dtype=torch.bool)
    active[0, 3:end] = True
    counts = torch.zeros(L, dtype=torch.float64)
    for seed in range(N):
        counts += (
            DPad(llada, window=W, sigma=k, scale=a, seed=seed)
            .kept(tokens, None, active)[0]
            .double()
        )
    freq = counts / N
    assert bool((freq[:end] == 1).all())
    for col in range(end, L):
        p = _paper_p(col - end + 1, W, k, a)
        tol = 4.5 * math.sqrt(p * (1 - p) / N)
        assert abs(float(freq[col]) - p) <= tol, (col - end + 1, float(freq[col]), p)


def _reference_dpad_greedy(llada, prompt, gen_length, block_length, W, k, a, seed):
    """Greedy low-confidence decoding with DPad, one token per step, from the paper: per block,
    draw the kept suffix masks once, then run [prefix .. block end] + kept suffix at the kept
    tokens' original positions through the raw LLaDA module."""
    P = len(prompt)
    x = torch.tensor(prompt + [llada.mask_id] * gen_length)
    L = x.numel()
    for start in range(P, L, block_length):
        end = min(start + block_length, L)
        kept = list(range(end))
        for col in range(end, L):
            d = col - end + 1
            key = kernels.fold(kernels.fold(seed, torch.tensor([end])), torch.tensor([d]))
            if float(kernels.uniform(key, dtype=torch.float64)[0]) < _paper_p(d, W, k, a):
                kept.append(col)
        for _ in range(end - start):
            with torch.no_grad():
                logits, _ = llada.model.model(
                    x[kept].unsqueeze(0), position_ids=torch.tensor(kept).unsqueeze(0)
                )
            logits = logits[0, :, : llada.vocab_size].float()  # (L', V)
            logits[:, llada.mask_id] = float("-inf")
            probs = logits.softmax(-1)
            best, best_conf, best_tok = None, -1.0, None
            for i in range(start, end):
                if int(x[i]) != llada.mask_id:
                    continue
                row = kept.index(i)
                tok = int(probs[row].argmax())
                if float(probs[row, tok]) > best_conf:
                    best, best_conf, best_tok = i, float(probs[row, tok]), tok
            x[best] = best_tok
    return x


@pytest.mark.parametrize("pruned", [True, False])
def test_greedy_low_confidence_matches_the_pruned_reference_loop(llada, pruned):
    prompt, G, block, W = [1, 2, 3], 12, 4, 6
    wrapper = DPad(llada, window=W, seed=3, pruned=pruned)
    sampler = build("low_confidence", block_length=block, steps=G)
    got = remask.generate(wrapper, [prompt], sampler, gen_length=G, seed=0)
    want = _reference_dpad_greedy(llada, prompt, G, block, W, 4.0, 2.0, 3)
    assert got.tokens[0].tolist() == want.tolist()
    assert got.nfe.tolist() == [G]
    plain = remask.generate(llada, [prompt], sampler, gen_length=G, seed=0)
    assert plain.tokens[0].tolist() != want.tolist(), (
        "the dropout changed nothing: the check is vacuous"
    )


def test_rows_are_their_own_alone(llada):
    """The kept sets are keyed by the row's own tokens (real tokens before the block end), so a
    left-padded row decodes as it does alone."""
    wrapper = DPad(llada, window=4, seed=5)
    sampler = build("low_confidence", block_length=3)
    prompts = [[1, 2, 3, 4, 5], [6, 7]]
    batch = remask.generate(wrapper, prompts, sampler, gen_length=9, seed=0)
    for r, prompt in enumerate(prompts):
        alone = remask.generate(wrapper, [prompt], sampler, gen_length=9, seed=0)
        assert (
            alone.tokens[0, len(prompt) :].tolist() == batch.tokens[r, len(prompts[0]) :].tolist()
        )


@pytest.mark.parametrize("name", available())
def test_every_sampler_runs_through_dpad(llada, name):
    sampler = build(name, **sampler_class(name).example_configs[0])
    out = remask.generate(
        DPad(llada, window=3), [[1, 2], [3, 4]], sampler, gen_length=8, seed=[0, 1]
    )
    assert not bool((out.tokens == llada.mask_id).any())


def test_bad_input(llada):
    with pytest.raises(TypeError, match="accepts_attention_bias"):
        DPad(load_model("oracle:markov?vocab=4&length=8&seed=0"))

    for kwargs, match in (
        ({"window": 0}, "window"),
        ({"window": 2.0}, "window"),
        ({"sigma": -1.0}, "sigma"),
        ({"scale": 0.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"seed": -1}, "seed"),
    ):
        with pytest.raises((TypeError, ValueError), match=match):
            DPad(llada, **kwargs)
