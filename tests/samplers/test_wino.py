"""wino: the shadow forward, wide-in / narrow-out rules, and the reference loop."""

from __future__ import annotations

import pytest
import torch
from reference.wino import BiasMarkov, BiasTiny, wino_reference

import remask
from remask.samplers import build

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]


def test_bias_tiny_with_the_plain_pattern_is_the_plain_model(tiny64):
    tokens = torch.tensor([[0, 0, 3, 23, 5, 23], [1, 2, 23, 4, 23, 23]])
    mask = torch.tensor([[False, True, True, True, True, True], [True] * 6])
    assert torch.allclose(
        BiasTiny(tiny64)(tokens, mask)[mask], tiny64(tokens, mask)[mask], atol=1e-10
    )


def test_needs_the_capability_when_asked(tiny64):
    with pytest.raises(TypeError, match="accepts_attention_bias"):
        remask.generate(tiny64, [[1]], build("wino", shadow="attention"), gen_length=4, seed=0)
    assert build("wino").uses_attention(BiasTiny(tiny64))
    assert not build("wino").uses_attention(tiny64)


@pytest.mark.parametrize(
    "gen_length,block_length,tau_in,tau_out", [(8, 4, 0.6, 0.9), (10, 10, 0.05, 0.99)]
)
def test_greedy_equals_reference_loop(tiny64, gen_length, block_length, tau_in, tau_out):
    model = BiasTiny(tiny64)
    sampler = build(
        "wino",
        block_length=block_length,
        threshold_in=tau_in,
        threshold_out=tau_out,
        shadow="attention",
    )
    remasked = []
    out = remask.generate(
        model,
        PROMPTS,
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[lambda s, i: remasked.append(int(i.remasked.sum()))],
    )
    width = max(map(len, PROMPTS))
    steps = []
    for row, prompt in enumerate(PROMPTS):
        expected, n = wino_reference(
            model,
            prompt,
            gen_length=gen_length,
            block_length=block_length,
            threshold=tau_in,
            threshold_back=tau_out,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        assert int(out.nfe[row]) == n
        steps.append(n)
    if gen_length == block_length and tau_in < 0.5:  # this setting exercises narrow-out
        assert sum(remasked) > 0


def test_shadow_attention_equals_exact_leave_one_out_on_the_oracle(markov):
    """On an exact oracle the shadow block's prediction *is* p(x_j | x_-j): both modes agree."""
    prompts = [[0, 1], [2], [1, 1, 0]]
    config = dict(threshold_in=0.3, threshold_out=0.95, accept_min=2)
    a = remask.generate(
        BiasMarkov(markov),
        prompts,
        build("wino", shadow="attention", **config),
        gen_length=6,
        seed=0,
    )
    e = remask.generate(
        markov, prompts, build("wino", shadow="emulate", **config), gen_length=6, seed=0
    )
    assert torch.equal(a.tokens, e.tokens)
    assert (a.nfe * 7 == e.nfe).all()  # emulation pays 1 + W (W = 6) evaluations per step


class _Fixed:
    """Position-dependent fixed logits for real queries; shadow queries (by position id) get
    ``back`` logits. Implements the capability without looking at the pattern."""

    accepts_attention_bias = True

    def __init__(self, probs, back):
        self.vocab_size, self.mask_id = 4, 4
        self.probs, self.back = torch.tensor(probs).log(), torch.tensor(back).log()

    def __call__(self, tokens, attention_mask=None, *, attention_bias=None, position_ids=None):
        B, L = tokens.shape
        n = self.probs.shape[0]
        out = self.probs[position_ids.clamp_max(n - 1)]
        if L > n:
            out[:, n:] = self.back[position_ids[:, n:]]
        return out


def test_wide_in_commits_the_confident_up_to_the_cap_and_narrow_out_revokes():
    # Six positions; confidences of token 0 at each: 0.9, 0.8, 0.7, 0.65, 0.3, 0.2.
    conf = [0.9, 0.8, 0.7, 0.65, 0.3, 0.2]
    probs = [[c, (1 - c) / 3, (1 - c) / 3, (1 - c) / 3] for c in conf]
    back = [[0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3]] + [[0.95, 0.05 / 3, 0.05 / 3, 0.05 / 3]] * 5
    model = _Fixed(probs, back)
    sampler = build("wino", accept_min=2, accept_max=3, shadow="attention")
    canvas = remask.samplers.canvas.make_canvas(
        torch.full((1, 6), 4),
        torch.ones(1, 6, dtype=torch.bool),
        torch.ones(1, 6, dtype=torch.bool),
        None,
    )
    state = sampler.init(canvas, model)
    g = remask.kernels.split(0, 1)  # (B,) step keys
    state, info = sampler.step(state, model, g)
    # > 0.6: four positions, capped at clamp(floor(0.7 * 6), 2, 3) = 3, the most confident.
    assert info.accepted[0].tolist() == [True, True, True, False, False, False]
    assert not info.remasked.any()
    state, info = sampler.step(state, model, g)
    # 3 masks left: only 0.65 clears 0.6 -> one accepted -> no narrow-out this step.
    assert info.accepted[0].tolist() == [False, False, False, True, False, False]
    assert not info.remasked.any()
    # Lower tau_in: three accepted, then two (cap clamp(floor(0.7 * 3), 2, 3) = 2), so narrow-out
    # runs: position 0's leave-one-out 0.5 < 0.9 is revoked (cap: 3 accepted last step - 1 = 2).
    low = build("wino", accept_min=2, accept_max=3, threshold_in=0.1, shadow="attention")
    state2 = low.init(canvas, model)
    state2, info = low.step(state2, model, g)
    assert info.accepted[0].sum() == 3
    state2, info = low.step(state2, model, g)
    assert (
        info.accepted[0].tolist()
        == [False, False, False, True, True, True][:3] + [True, True, False]
        or info.accepted[0].sum() == 2
    )
    assert info.remasked[0].tolist() == [True, False, False, False, False, False]
    assert int((state2.canvas.tokens == 4).sum()) == 2  # 3 masks - 2 accepted + 1 revoked


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="accept_max"):
        build("wino", accept_min=5, accept_max=2)
    with pytest.raises(ValueError, match="shadow"):
        build("wino", shadow="nope")


def test_emulation_charges_each_row_for_its_own_block(markov):
    """Infilling rows with different numbers of masks: a row's tokens and NFE in the batch
    equal the row decoded alone (no charge for the slots a longer neighbour adds)."""
    M = markov.mask_id
    canvases = [[0, M, M, M], [1, 2, M, 0], [M, M, 1, 0]]
    sampler = build("wino", shadow="emulate", threshold_in=0.3, temperature=1.0)
    batch = remask.infill(markov, canvases, sampler, seed=[5, 6, 7])
    for row, (canvas, seed) in enumerate(zip(canvases, (5, 6, 7))):
        alone = remask.infill(markov, [canvas], sampler, seed=[seed])
        assert batch.tokens[row].tolist() == alone.tokens[0].tolist()
        assert int(batch.nfe[row]) == int(alone.nfe[0])
    # One mask: one step, which pays the draft and one leave-one-out canvas.
    assert int(batch.nfe[1]) == 2
