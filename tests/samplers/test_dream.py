"""dream (Dream's diffusion_generate) against a slow loop, its count rule, alg_temp and origin laws."""

from __future__ import annotations

import pytest
import torch
from reference._common import FixedConfidence
from reference.ancestral import ancestral_law
from reference.dream import _dream_filter, dream_generate
from scipy import stats
from test_exactness import ALPHA, N, _chi_square_pvalue, _counts

import remask
from remask import kernels
from remask.samplers import build
from remask.samplers.schedules import dream_count

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]

SETTINGS = [  # (gen_length, steps, alg, block_length, top_p, top_k)
    (8, 8, "maskgit_plus", None, None, None),  # steps == tokens: the reference wastes step 0
    (10, 4, "topk_margin", None, None, None),
    (12, 30, "entropy", None, None, None),  # more steps than tokens
    (9, 6, "maskgit_plus", 4, None, None),  # blocks 4, 4, 1 with steps 2, 2, 2
    (8, 5, "maskgit_plus", None, 0.5, None),  # top-p changes the confidence even at T = 0
    (8, 5, "entropy", None, None, 3),  # top-k likewise
    (7, 7, "topk_margin", 3, 0.7, 4),
]


@pytest.mark.parametrize("gen_length,steps,alg,block_length,top_p,top_k", SETTINGS)
def test_greedy_equals_reference_loop(tiny64, gen_length, steps, alg, block_length, top_p, top_k):
    sampler = build(
        "dream", steps=steps, alg=alg, block_length=block_length, top_p=top_p, top_k=top_k
    )
    out = remask.generate(tiny64, PROMPTS, sampler, gen_length=gen_length, seed=0)
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        expected, reference_nfe, commits = dream_generate(
            tiny64,
            prompt,
            gen_length=gen_length,
            steps=steps,
            alg=alg,
            block_length=block_length,
            top_p=top_p,
            top_k=top_k,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected
        # Same tokens, minus the forward passes of the zero-commit steps.
        assert reference_nfe == steps
        assert int(out.nfe[row]) == sum(c > 0 for c in commits)


def test_zero_commit_steps_are_skipped(tiny64, counting):
    _, reference_nfe, commits = dream_generate(tiny64, [1], gen_length=16, steps=16, alg="entropy")
    assert commits[0] == 0 and reference_nfe == 16  # the reference pays for its zero-commit steps
    model = counting(tiny64)
    seen = []
    out = remask.generate(
        model,
        [[1]],
        build("dream", steps=16, alg="entropy"),
        gen_length=16,
        seed=0,
        callbacks=[lambda s, i: seen.append(int(i.committed.sum()))],
    )
    assert seen == [c for c in commits if c > 0] and min(seen) >= 1
    assert model.calls == out.steps == int(out.nfe[0]) == 16 - commits.count(0)


def _nfe_table(max_masks: int, max_steps: int) -> torch.Tensor:
    """(masks, steps) table of forward passes the count rule takes (all rows in one batch)."""
    masks, steps = torch.meshgrid(
        torch.arange(1, max_masks + 1), torch.arange(1, max_steps + 1), indexing="ij"
    )
    masks, steps = masks.flatten(), steps.flatten()
    grid, nfe = torch.zeros_like(masks), torch.zeros_like(masks)
    left = masks.clone()
    for _ in range(max_steps):
        taken, k = dream_count(left, grid, steps, 1e-3, max_steps)
        nfe += (left > 0).long()
        assert bool((k[left > 0] >= 1).all())  # every step commits something
        left, grid = left - k, taken + 1
    assert bool((left == 0).all())
    return nfe.reshape(max_masks, max_steps)


def test_more_steps_never_raise_tokens_per_step():
    """Metamorphic, exhaustively: NFE of the count rule never decreases as steps grow."""
    nfe = _nfe_table(24, 40)
    assert bool((nfe[:, 1:] >= nfe[:, :-1]).all())
    masks = torch.arange(1, 25).unsqueeze(-1)
    assert bool((nfe <= masks).all()) and bool((nfe <= torch.arange(1, 41)).all())
    assert nfe[:, 0].tolist() == [1] * 24  # one step commits everything
    # steps >> masks: one token per step except the forced last step, which always takes the
    # last two (floor(M (1 - s/t)) rounds the final single token down to the last step).
    assert nfe[:, -1].tolist() == [max(1, m - 1) for m in range(1, 25)]


def test_count_schedule_matches_the_reference_rule():
    # 256 tokens / 128 steps: Dream's floor(M (1 - s/t)) gives [1, 2, 2, ..., 3]-like counts; replay it.
    seen, left, grid = [], torch.tensor([256]), torch.tensor([0])
    while int(left) > 0:
        taken, k = dream_count(left, grid, torch.tensor([128]), 1e-3, 128)
        seen.append(int(k))
        left, grid = left - k, taken + 1
    assert sum(seen) == 256 and seen[0] == 1 and seen[-1] >= 2


def test_propose_filter_matches_dreams_top_p_and_top_k():
    # Dream's categorical as the sampler asks kernels.propose for it: the "sampled" statistics
    # at T = 0 are those of softmax(Dream's filtered logits) (reference: _dream_filter).
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 2
    for top_p, top_k in [(0.5, None), (0.9, None), (None, 3), (0.8, 4), (1.0, None), (0.01, None)]:
        out = kernels.propose(
            logits, top_p=top_p, top_k=top_k, nucleus="crossing", stats="sampled", backend="torch"
        )
        for b in range(3):
            for j in range(5):
                q = torch.softmax(_dream_filter(logits[b, j].double(), top_p, top_k), -1)
                top = q.topk(2).values
                assert out.prob[b, j].item() == pytest.approx(top[0].item(), rel=1e-6)
                assert out.margin[b, j].item() == pytest.approx(
                    (top[0] - top[1]).item(), rel=1e-6, abs=1e-7
                )


def test_alg_temp_samples_positions_from_softmax_of_scores():
    """Gumbel-top-k: with a count of 1, position j is drawn with softmax(score / alg_temp)_j."""
    confidences = [0.9, 0.6, 0.3]
    model = FixedConfidence(confidences)
    alg_temp = 0.2
    first = []
    # 3 masks, 3 steps: counts [0 (skipped), 1, 2]: the first real step commits one position.
    out = remask.generate(
        model,
        [[]] * N,
        build("dream", alg="maskgit_plus", steps=3, alg_temp=alg_temp),
        gen_length=3,
        seed=5,
        callbacks=[lambda s, i: first.append(i.committed.clone())],
    )
    assert out.nfe.tolist() == [2] * N
    counts = first[0].sum(0).double()  # (3,)
    assert bool((first[0].sum(-1) == 1).all())
    expected = torch.softmax(torch.tensor(confidences, dtype=torch.float64) / alg_temp, -1)
    assert stats.chisquare(counts.numpy(), (expected * N).numpy()).pvalue > ALPHA
    # negative control: the test distinguishes alg_temp = 0.2 from alg_temp = 1
    wrong = torch.softmax(torch.tensor(confidences, dtype=torch.float64), -1)
    assert stats.chisquare(counts.numpy(), (wrong * N).numpy()).pvalue < ALPHA


def test_alg_temp_zero_is_topk(tiny64):
    a = remask.generate(
        tiny64, PROMPTS, build("dream", alg="entropy", steps=5), gen_length=8, seed=0
    )
    b = remask.generate(
        tiny64, PROMPTS, build("dream", alg="entropy", steps=5, alg_temp=0.0), gen_length=8, seed=1
    )
    assert torch.equal(a.tokens, b.tokens)
    assert not build("dream", alg="entropy", alg_temp=0.0).stochastic


@pytest.mark.statistical
def test_origin_law_is_the_grid_walk(markov):
    """Skipping no-flip grid steps leaves origin's law exactly the step-by-step one."""
    sampler = build("dream", alg="origin", steps=3, temperature=1.0)
    out = remask.generate(markov, [[]] * N, sampler, gen_length=markov.seq_len, seed=21)
    law = ancestral_law(markov, markov.seq_len, steps=3, eps=1e-3, last_step_all=True)
    assert _chi_square_pvalue(_counts(markov, out.tokens), law) > ALPHA
    joint = markov.log_prob(markov.all_sequences()).exp()
    assert (law - joint).abs().sum() / 2 > 0.05  # 3 steps are visibly not exact...
    assert _chi_square_pvalue(_counts(markov, out.tokens), joint) < ALPHA  # ...and detected


@pytest.mark.statistical
def test_origin_is_exact_with_many_steps(markov, counting):
    model = counting(markov)
    sampler = build("dream", alg="origin", steps=1_000_000, temperature=1.0)
    out = remask.generate(model, [[]] * N, sampler, gen_length=markov.seq_len, seed=22)
    joint = markov.log_prob(markov.all_sequences()).exp()
    assert _chi_square_pvalue(_counts(markov, out.tokens), joint) > ALPHA
    assert model.calls <= markov.seq_len  # a million grid steps, at most one pass per token


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(alg="greedy"), ValueError),
        (dict(steps=0), ValueError),
        (dict(steps=3.0), TypeError),
        (dict(alg_temp=-1.0), ValueError),
        (dict(top_p=0.0), ValueError),
        (dict(top_p=1.5), ValueError),
        (dict(top_k=0), ValueError),
        (dict(top_k=2.5), TypeError),
        (dict(eps=0.0), ValueError),
        (dict(eps=1.0), ValueError),
        (dict(temperature=-0.1), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("dream", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)


def test_defaults_are_the_references():
    s = build("dream")
    assert (s.steps, s.eps, s.alg, s.alg_temp, s.temperature, s.top_p, s.top_k) == (
        512,
        1e-3,
        "origin",
        None,
        0.0,
        None,
        None,
    )
    assert s.stochastic and not build("dream", alg="entropy").stochastic


def test_nucleus_keeps_the_crossing_token():
    # Dream's top_p keeps the token whose cumulative probability crosses p: at probabilities
    # [0.5, 0.3, 0.15, 0.05] and top_p = 0.9 the third token is drawn 0.15 / 0.95 of the time.
    class FixedProbs:
        vocab_size, mask_id = 4, 4

        def __call__(self, tokens, attention_mask=None):
            return torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(*tokens.shape, 4).clone()

    sampler = build("dream", alg="origin", steps=4, top_p=0.9, temperature=1.0)
    out = remask.generate(FixedProbs(), [[]] * 500, sampler, gen_length=4, seed=2)
    counts = torch.bincount(out.tokens.flatten(), minlength=5)
    n, p = counts.sum().item(), 0.15 / 0.95
    assert counts[3] == 0
    assert abs(counts[2].item() / n - p) < 5 * (p * (1 - p) / n) ** 0.5, counts


def test_dream_alg_names_are_aliases_of_the_shared_scores():
    """One score vocabulary (prob | margin | entropy | random): Dream's alg names and LLaDA's
    remasking name resolve to it, and greedy tokens are the same under either name."""
    from remask.kernels.score import SCORE_ALIASES, score_proposals

    assert SCORE_ALIASES == {
        "low_confidence": "prob",
        "maskgit_plus": "prob",
        "topk_margin": "margin",
    }
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    proposal = kernels.propose(logits, stats="sampled")
    for alias, name in SCORE_ALIASES.items():
        assert torch.equal(score_proposals(proposal, alias), score_proposals(proposal, name))
    with pytest.raises(ValueError, match="alias"):
        score_proposals(proposal, "confidence")
    assert build("low_confidence").score_kind == "prob"
    assert build("low_confidence", remasking="random").score_kind == "random"
