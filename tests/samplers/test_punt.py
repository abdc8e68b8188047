"""punt: the reference loop, the selection rule on handcrafted denoisers, exact total
correlation of the committed sets on the oracles, and exact sampling of the joint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference.punt import punt_generate
from test_exactness import ALPHA, _chi_square_pvalue, _counts

import remask
from remask.analysis import total_correlation
from remask.models import MarkovChainOracle, as_denoiser, load_model
from remask.samplers import build

PROMPTS = [[3, 1, 4], [1], [5, 9, 2, 6]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
INF = float("inf")


# ----------------------------------------------------------------------------- reference loop
@pytest.mark.parametrize(
    "epsilon,block_length,score",
    [
        (0.05, None, "prob"),
        (0.0, 4, "prob"),
        (0.5, None, "margin"),
        (0.05, 3, "entropy"),
        (INF, 4, "prob"),
    ],
)
def test_greedy_equals_reference_loop(tiny64, epsilon, block_length, score):
    sampler = build("punt", epsilon=epsilon, block_length=block_length, score=score)
    batch = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=0)
    width = max(map(len, PROMPTS))
    for row, prompt in enumerate(PROMPTS):
        ref, calls = punt_generate(
            tiny64, prompt, gen_length=10, block_length=block_length, epsilon=epsilon, score=score
        )
        assert batch.tokens[row, width - len(prompt) :].tolist() == ref
        assert int(batch.nfe[row]) == calls


def test_golden_llada_checkpoint_equals_reference_loop():
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / "llada_tiny")
    prompts = [[5, 7, 11], [13, 2]]
    out = remask.generate(model, prompts, build("punt", block_length=4), gen_length=8, seed=0)
    for row, prompt in enumerate(prompts):
        ref, calls = punt_generate(model, prompt, gen_length=8, block_length=4, epsilon=0.05)
        assert out.tokens[row, 3 - len(prompt) :].tolist() == ref
        assert int(out.nfe[row]) == calls


# ----------------------------------------------------------------------------- the selection rule
V = 4


def _pair_denoiser(first_conf: float, second_conf: float):
    """Three positions: 0 and 1 depend on each other (each one's prediction sharpens once the
    other is written), 2 is independent of both. Confidences of 0 and 1 while both are masked
    are ``first_conf`` and ``second_conf``; position 2 has 0.8."""

    def row(conf: float, token: int) -> list[float]:
        rest = (1 - conf) / (V - 1)
        return [conf if t == token else rest for t in range(V)]

    def fn(tokens, mask=None):
        B, L = tokens.shape
        probs = torch.empty(B, L, V, dtype=torch.float64)
        for b in range(B):  # a test fixture, not a sampler: plain loops are fine
            zero_known, one_known = tokens[b, 0] != V, tokens[b, 1] != V
            probs[b, 0] = torch.tensor(row(0.97 if one_known else first_conf, 1))
            probs[b, 1] = torch.tensor(row(0.97 if zero_known else second_conf, 2))
            probs[b, 2] = torch.tensor(row(0.8, 3))
        return probs.log()

    return as_denoiser(fn, mask_id=V, vocab_size=V)


def _rounds(model, epsilon: float):
    infos = []
    out = remask.infill(
        model,
        [[V, V, V]],
        build("punt", epsilon=epsilon),
        seed=0,
        callbacks=[lambda s, i: infos.append(i)],
    )
    return out, infos


@pytest.mark.parametrize("first,second,kept", [(0.9, 0.7, 0), (0.7, 0.9, 1)])
def test_the_less_confident_of_a_dependent_pair_is_dropped(first, second, kept):
    out, infos = _rounds(_pair_denoiser(first, second), epsilon=0.05)
    dropped = 1 - kept
    # Round 1: predict, then 2 levels (K = 3). Level 1 reveals ranks 0, 1 (the confident one of
    # the pair and position 2) and tests rank 2; level 2 tests position 2 against rank 0.
    assert [i.committed[0].tolist() for i in infos[:3]] == [
        [False] * 3,
        [False] * 3,
        [kept == 0, kept == 1, True],
    ]
    assert bool(infos[1].dropped[0, dropped]) and not bool(infos[2].dropped[0].any())
    # Round 2: one candidate left, committed in its predict step.
    assert infos[3].committed[0].tolist() == [dropped == 0, dropped == 1, False]
    assert out.tokens[0].tolist() == [1, 2, 3] and out.steps == 4 and int(out.nfe[0]) == 4


def test_epsilon_inf_commits_every_candidate_in_one_call():
    out, infos = _rounds(_pair_denoiser(0.9, 0.7), epsilon=INF)
    assert out.steps == 1 and infos[0].committed[0].tolist() == [True] * 3
    assert not bool(infos[0].tested.any())


def test_a_tiny_shift_passes_a_loose_test_and_fails_a_strict_one():
    model = _pair_denoiser(0.9, 0.95)  # 0 and 1: KL of the shift is small but positive
    loose, _ = _rounds(model, epsilon=0.5)
    strict, _ = _rounds(model, epsilon=1e-3)
    assert loose.steps == 3  # one round: predict + 2 levels, nothing dropped
    assert strict.steps == 4


# ----------------------------------------------------------------------------- exact total correlation
def _committed_sets(oracle, canvases, sampler):
    """(canvas before the commit, committed positions) of every row's every commit."""
    sets = []

    def record(state, info):
        before = torch.where(info.committed, oracle.mask_id, state.canvas.tokens)
        for b in range(before.shape[0]):
            positions = info.committed[b].nonzero().flatten().tolist()
            if positions:
                sets.append((before[b], positions, info.score[b]))

    remask.infill(oracle, canvases, sampler, seed=0, callbacks=[record])
    return sets


def test_committed_sets_are_exactly_independent_on_the_markov_oracle():
    """Fixed tokens cut the chain into independent segments: with a strict test PUNT commits
    across segments in one step, and the exact total correlation of every committed set is 0;
    committing every candidate at once (epsilon = inf) has a positive one."""
    oracle = MarkovChainOracle(vocab_size=3, seq_len=8, seed=0, concentration=0.5)
    m = oracle.mask_id
    canvases = [[m, m, 2, m, m, 0, m, m], [m, 1, m, m, m, m, 2, m]]
    strict = _committed_sets(oracle, canvases, build("punt", epsilon=1e-6))
    assert max(len(p) for _, p, _ in strict) >= 3  # parallel commits happen
    for before, positions, _ in strict:
        if len(positions) > 1:
            assert float(total_correlation(oracle, before, positions).tc[0]) < 1e-9
    loose = _committed_sets(oracle, canvases, build("punt", epsilon=INF))
    assert max(float(total_correlation(oracle, before, p).tc[0]) for before, p, _ in loose) > 0.01


@pytest.mark.parametrize("spec", ["markov", "oracle:hmm?vocab=4&length=8&seed=0"])
def test_committed_sets_carry_less_dependence_than_confidence_top_k(spec):
    """At every step PUNT commits a set S; confidence top-k would have committed the |S|
    best-scored candidates. Summed over the run, the exact total correlation of PUNT's sets is
    lower (the HMM's hidden state couples every pair, so neither is 0 there)."""
    oracle = (
        MarkovChainOracle(vocab_size=3, seq_len=8, seed=0, concentration=2.0)
        if spec == "markov"
        else load_model(spec)
    )
    m = oracle.mask_id
    sets = _committed_sets(oracle, [[m] * oracle.seq_len], build("punt", epsilon=0.05))
    ours = theirs = 0.0
    for before, positions, score in sets:
        if len(positions) < 2:
            continue
        top = (
            torch.where(before == m, score, float("-inf"))
            .topk(len(positions))
            .indices.sort()
            .values
        )
        ours += float(total_correlation(oracle, before, positions).tc[0])
        theirs += float(total_correlation(oracle, before, top.tolist()).tc[0])
    assert theirs > 0 and ours < theirs


# ----------------------------------------------------------------------------- exact sampling
@pytest.mark.statistical
def test_sampling_with_a_strict_test_is_exact():
    """T = 1, a score that does not look at the sampled token, epsilon ~ 0: every committed set
    is independent, so the law of the output is the oracle's conditional joint (chi-square at
    level ALPHA, N = 2500 over 81 completions) although positions commit in parallel."""
    oracle = MarkovChainOracle(vocab_size=3, seq_len=5, seed=0, concentration=0.5)
    m = oracle.mask_id
    sequences = oracle.all_sequences()
    p = oracle.log_prob(sequences).exp() * (sequences[:, 2] == 1)
    sizes = []
    sampler = build("punt", epsilon=1e-6, temperature=1.0, score="margin")
    out = remask.infill(
        oracle,
        [[m, m, 1, m, m]] * 2500,
        sampler,
        seed=5,
        callbacks=[lambda s, i: sizes.append(int(i.committed[0].sum()))],
    )
    assert max(sizes) >= 2
    assert _chi_square_pvalue(_counts(oracle, out.tokens), p / p.sum()) > ALPHA
    # The same test rejects committing everything at once (positions 3, 4 are dependent).
    joint = remask.infill(
        oracle,
        [[m, m, 1, m, m]] * 2500,
        build("punt", epsilon=INF, temperature=1.0, score="margin"),
        seed=5,
    )
    assert _chi_square_pvalue(_counts(oracle, joint.tokens), p / p.sum()) < ALPHA


# ----------------------------------------------------------------------------- config
def test_config_validates():
    assert build("punt", epsilon=INF).epsilon == INF
    with pytest.raises(ValueError, match="epsilon"):
        build("punt", epsilon=-0.1)
    with pytest.raises(ValueError, match="score"):
        build("punt", score="nope")
    assert build("punt", score="random").stochastic and not build("punt").stochastic


def test_row_select_equals_torch_where_and_skips_the_pass_when_rows_agree():
    from remask.samplers.punt import _levels, _row_select

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 5, generator=gen), torch.randn(3, 4, 5, generator=gen)
    for rows in ([True, False, True], [True] * 3, [False] * 3):
        rows = torch.tensor(rows)
        assert torch.equal(_row_select(rows, a, b), torch.where(rows.view(3, 1, 1), a, b))
    assert _row_select(torch.ones(3, dtype=torch.bool), a, b) is a  # no (B, L, V) copy
    assert _row_select(torch.zeros(3, dtype=torch.bool), a, b) is b
    # The levels are the bit length of the largest rank, count - 1, as the rounds need them.
    count = torch.tensor([0, 1, 2, 3, 4, 5, 8, 9, 129, 2**40 + 1])
    want = [0, 0, 1, 2, 2, 3, 3, 4, 8, 41]  # ceil(log2 count)
    assert _levels(count).tolist() == want
