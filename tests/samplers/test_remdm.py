"""remdm: the sigma schedules, the transition probabilities, termination."""

from __future__ import annotations

import math

import pytest
import torch
from reference.remdm import loop_schedule

import remask
from remask.models import MarkovChainOracle
from remask.samplers import build


def test_loop_schedule_phases():
    s = build("remdm", schedule="loop")
    t = torch.tensor([1.0, 0.8, 0.55, 0.3, 0.05, 0.025, 0.0], dtype=torch.float64)
    alpha, _ = s._alphas(t, t)
    expected = [0.0, 0.9 * 0.2 / 0.45, 0.9, 0.9, 0.9, 0.95, 1.0]
    assert torch.allclose(alpha, torch.tensor(expected, dtype=torch.float64))
    sigma = s._row_sigma(t, torch.ones_like(t))
    assert sigma.tolist() == [0.0, 0.0, 0.02, 0.02, 0.0, 0.0, 0.0]  # eta only in the loop phase
    assert (
        build("remdm").eta_value == 0.008 and build("remdm", schedule="rescale").eta_value == 0.015
    )


def _loop_rates(sampler, n_rows, gen_length, seed):
    """Per step: (unmasked, masked before) and (remasked, decoded before) counts over a run."""
    counts: dict[int, list[int]] = {}

    def record(state, info):
        masked_before = info.score > float("-inf")  # (B, L) the proposals are made at the masks
        decoded_before = info.sigma > 0  # (B, L) the decoded tokens of the block (sigma > 0 there)
        c = counts.setdefault(len(counts), [0, 0, 0, 0])  # every row takes every step
        c[0] += int(info.unmasked.sum())
        c[1] += int(masked_before.sum())
        c[2] += int(info.remasked.sum())
        c[3] += int((decoded_before | info.remasked).sum())

    remask.generate(
        MarkovChainOracle(3, gen_length, seed=0),
        [[]] * n_rows,
        sampler,
        gen_length=gen_length,
        seed=seed,
        callbacks=[record],
    )
    return counts


@pytest.mark.statistical
@pytest.mark.parametrize("steps,eta", [(16, 0.02), (10, 0.1)])
def test_loop_moves_follow_the_reference_step_by_step(steps, eta):
    """Every step of the "loop" schedule unmasks and remasks with the reference's probabilities
    (reference.remdm: phase from t, alpha_t and alpha_s from that phase, loop sigma = eta). With
    16 steps the step crossing t_on unmasks every mask left (a piecewise alpha(s) gives 0.2)."""
    expected = loop_schedule(steps, eta=eta)
    if steps == 16:
        assert expected[7][0] == pytest.approx(1.0)  # t = 0.5625 -> 0.5 crosses t_on = 0.55
    sampler = build("remdm", schedule="loop", steps=steps, eta=eta, top_p=None)
    counts = _loop_rates(sampler, 1500, 8, seed=5)
    checked = 0
    for k, (p_unmask, sigma) in enumerate(expected[:-1]):  # the last step fills by construction
        unmasked, masked, remasked, decoded = counts.get(k, [0, 0, 0, 0])
        for hits, n, p in ((unmasked, masked, p_unmask), (remasked, decoded, sigma)):
            if n < 200:
                continue
            checked += 1
            if p in (0.0, 1.0):
                assert hits == p * n, (k, hits, n, p)
            else:  # 5 standard errors: a deterministic pass for this seed; 0.2 vs 1.0 is far out
                assert abs(hits / n - p) < 5 * math.sqrt(p * (1 - p) / n), (k, hits / n, p)
    assert checked >= steps  # most steps had enough masks / decoded tokens to be checked


def test_loop_eta_above_the_phase_bound_is_refused():
    # Loop phase: a mask stays masked with (1 - alpha_on - eta alpha_on) / (1 - alpha_on) < 0.
    with pytest.raises(ValueError, match="eta"):
        build("remdm", schedule="loop", eta=0.5)
    with pytest.raises(ValueError, match="alpha_on"):
        build("remdm", schedule="loop", alpha_on=0.99)  # the default eta 0.02 > 0.0101
    assert build("remdm", schedule="loop", eta=0.1).eta_value == 0.1  # 0.1 <= 0.111: allowed


def test_conf_gives_the_least_confident_token_the_largest_share():
    s = build("remdm", schedule="conf")
    decoded = torch.tensor([[True, True, True, False]])
    psi = torch.tensor([[0.9, 0.2, 0.5, float("inf")]])
    sigma = s._sigma(None, torch.tensor([0.6], dtype=torch.float64), decoded, psi)
    weights = torch.tensor([-0.9, -0.2, -0.5]).double().softmax(-1) * 0.6
    assert torch.allclose(sigma[0, :3], weights) and sigma[0, 3] == 0
    assert sigma[0].argmax() == 1


@pytest.mark.parametrize("schedule", ["cap", "rescale", "conf", "loop"])
@pytest.mark.parametrize("steps", [1, 3, 20])
def test_every_mask_is_filled_and_nfe_equals_steps(markov, schedule, steps):
    eta = {"conf": {}, "loop": {"eta": 0.1}}.get(
        schedule, {"eta": 0.5}
    )  # loop: eta <= 1/9 at alpha_on 0.9
    sampler = build("remdm", schedule=schedule, steps=steps, **eta)
    out = remask.generate(markov, [[0, 1], [2], []], sampler, gen_length=6, seed=1)
    assert not bool((out.tokens == markov.mask_id).any())
    assert out.nfe.tolist() == [steps] * 3 and out.tokens[0, :2].tolist() == [0, 1]


@pytest.mark.statistical
def test_move_probabilities_match_the_remdm_posterior():
    """Three steps on t = 1, 2/3, 1/3, 0. Step 1 goes t = 2/3 -> 1/3: alpha_t = 1/3, alpha_s = 2/3,
    sigma_max = 1, cap eta = 0.3: decoded tokens are remasked w.p. 0.3 and masks unmasked w.p.
    (2/3 - 0.7/3) / (2/3) = 0.65. Step 0 unmasks w.p. alpha_s = 1/3."""
    chain = MarkovChainOracle(3, 8, seed=0)
    counts = {"m0": [0, 0], "r1": [0, 0], "u1": [0, 0]}

    steps = []

    def record(state, info):
        steps.append(None)  # len(steps): the step just taken (the state keeps no counter)
        prev_masked = info.unmasked | (info.score > float("-inf"))
        if len(steps) == 1:
            counts["m0"][0] += int(info.unmasked.sum())
            counts["m0"][1] += int(prev_masked.sum())
        if len(steps) == 2:
            decoded = info.sigma > 0
            counts["r1"][0] += int(info.remasked.sum())
            counts["r1"][1] += int(decoded.sum())
            counts["u1"][0] += int(info.unmasked.sum())
            counts["u1"][1] += int(prev_masked.sum())

    sampler = build("remdm", schedule="cap", eta=0.3, steps=3, top_p=None)
    remask.generate(chain, [[]] * 2000, sampler, gen_length=8, seed=3, callbacks=[record])
    for key, p in (("m0", 1 / 3), ("r1", 0.3), ("u1", 0.65)):
        hits, n = counts[key]
        assert n > 1000
        # 5 standard errors: a deterministic pass for this seed, and an effect of 0.05 is caught.
        assert abs(hits / n - p) < 5 * math.sqrt(p * (1 - p) / n), (key, hits / n, p)


def test_eta_zero_never_remasks(markov):
    remasked = []
    sampler = build("remdm", schedule="cap", eta=0.0, steps=6)
    remask.generate(
        markov,
        [[1]] * 50,
        sampler,
        gen_length=6,
        seed=0,
        callbacks=[lambda s, i: remasked.append(int(i.remasked.sum()))],
    )
    assert sum(remasked) == 0
    remask.generate(
        markov,
        [[1]] * 50,
        build("remdm", schedule="cap", eta=1.0, steps=6),
        gen_length=6,
        seed=0,
        callbacks=[lambda s, i: remasked.append(int(i.remasked.sum()))],
    )
    assert sum(remasked) > 0


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="conf"):
        build("remdm", schedule="conf", eta=0.1)
    with pytest.raises(ValueError, match="t_off"):
        build("remdm", schedule="loop", t_on=0.1, t_off=0.2)
    with pytest.raises(ValueError, match="alpha_on"):
        build("remdm", alpha_on=1.0)
    with pytest.raises(ValueError, match="steps=1"):
        remask.generate(
            MarkovChainOracle(3, 4), [[0]], build("remdm", steps=1, block_length=2), gen_length=4
        )


class _FixedProbs:
    """Every position predicts tokens 0..3 with probabilities [0.5, 0.3, 0.15, 0.05]."""

    vocab_size, mask_id = 4, 4

    def __call__(self, tokens, attention_mask=None):
        probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
        return probs.log().expand(*tokens.shape, 4).clone()


def test_nucleus_is_the_references_strict_one():
    # ReMDM's _nucleus_sample keeps tokens with cumulative probability <= top_p (plus the
    # top-1): at top_p = 0.9 the third token (cumulative 0.95) is never drawn; Dream's rule
    # would draw it 0.15 / 0.95 of the time.
    sampler = build("remdm", schedule="cap", steps=4, top_p=0.9, temperature=1.0)
    out = remask.generate(_FixedProbs(), [[]] * 300, sampler, gen_length=4, seed=1)
    counts = torch.bincount(out.tokens.flatten(), minlength=5)
    assert counts[2] == 0 and counts[3] == 0 and counts[0] > 0 and counts[1] > 0, counts


def test_a_complete_canvas_runs_its_schedule_to_the_end(markov):
    """Termination is ReMDM's ``finished`` (the schedule ended), not ``canvas.done`` (no mask):
    the 16-step loop schedule fills every mask at the step crossing t_on, then keeps
    remasking and refilling for the rest of its steps."""
    seen = []
    sampler = build("remdm", schedule="loop", steps=16)
    out = remask.generate(
        markov,
        [[1]] * 64,
        sampler,
        gen_length=6,
        seed=0,
        callbacks=[
            lambda s, i: seen.append(
                (bool(s.canvas.done.all()), bool(sampler.finished(s).any()), int(i.remasked.sum()))
            )
        ],
    )
    assert len(seen) == 16 and out.nfe.tolist() == [16] * 64
    complete_early = [k for k, (done, finished, _) in enumerate(seen[:-1]) if done and not finished]
    assert complete_early, "no step left a complete canvas before the schedule ended"
    assert sum(r for _, _, r in seen[complete_early[0] + 1 :]) > 0  # and it was revised after
    assert seen[-1][:2] == (True, True)
