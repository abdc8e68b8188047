"""apd: coupled prefix acceptance, the verifier protocol, exactness on the Markov oracle."""

from __future__ import annotations

import pytest
import torch
from reference.apd import apd_generate
from test_exactness import ALPHA, _chi_square_pvalue, _counts

import remask
from remask.models import MarkovChainOracle
from remask.samplers import build
from remask.samplers.apd import MarkovCausalVerifier, WithVerifier

N = 20_000


def test_markov_verifier_gives_the_exact_left_to_right_conditionals(markov):
    tokens = torch.tensor([[0, 0, 2, 1, 0], [1, 2, 0, 0, 1]])
    mask = torch.tensor([[False, True, True, True, True], [True] * 5])
    logits = MarkovCausalVerifier(markov)(tokens, mask)
    for row in range(2):
        real = tokens[row][mask[row]]
        got = logits[row][mask[row]].gather(-1, real.unsqueeze(-1)).sum()
        assert torch.allclose(got, markov.log_prob(real.unsqueeze(0))[0])


class _FixedDenoiser:
    vocab_size, mask_id = 4, 4

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, tokens, attention_mask=None):
        return self.logits[: tokens.shape[1]].expand(tokens.shape[0], -1, -1).clone()


class _FixedVerifier:
    vocab_size = 4

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, tokens, attention_mask=None):
        return self.logits[: tokens.shape[1]].expand(tokens.shape[0], -1, -1).clone()


def test_greedy_commits_the_agreeing_prefix_plus_the_target_token():
    one_hot = torch.eye(4)
    draft = one_hot[[0, 1, 2, 3, 0]] * 3  # argmax 0 1 2 3 0
    verify = one_hot[[0, 1, 3, 3, 0]] * 10  # disagrees at position 2
    model = WithVerifier(_FixedDenoiser(draft), _FixedVerifier(verify))
    sampler = build("apd", mixture_weight=0.5, temperature=0.0)
    trace = []
    out = remask.generate(
        model,
        [[]],
        sampler,
        gen_length=5,
        seed=0,
        callbacks=[lambda s, i: trace.append(i.committed[0].tolist())],
    )
    assert trace[0] == [True, True, True, False, False]  # 0, 1 agree; 2 takes the target's 3
    assert out.tokens[0].tolist()[:3] == [0, 1, 3]
    # R = 1 trusts the draft: everything in one step.
    out = remask.generate(
        model, [[]], build("apd", mixture_weight=1.0, temperature=0.0), gen_length=5, seed=0
    )
    assert out.steps == 1 and out.tokens[0].tolist() == [0, 1, 2, 3, 0]
    # The lookahead caps a step.
    out = remask.generate(
        model,
        [[]],
        build("apd", mixture_weight=1.0, temperature=0.0, max_lookahead=2),
        gen_length=5,
        seed=0,
    )
    assert out.steps == 3


def test_spec_string_verifier_equals_an_attached_one(markov):
    spec = "oracle:markov?vocab=3&length=4&seed=0&concentration=2.0"
    a = build("apd", verifier=spec, temperature=1.0, top_p=None)
    b = build("apd", temperature=1.0, top_p=None)
    prompts = [[0], [1, 2], []]
    out_a = remask.generate(markov, prompts, a, gen_length=4, seed=5)
    out_b = remask.generate(
        WithVerifier(markov, MarkovCausalVerifier(markov)), prompts, b, gen_length=4, seed=5
    )
    assert torch.equal(out_a.tokens, out_b.tokens)


def test_verifier_errors(markov, tiny64):
    with pytest.raises(ValueError, match="vocab_size"):
        remask.generate(
            WithVerifier(tiny64, MarkovCausalVerifier(markov)), [[1]], build("apd"), gen_length=3
        )
    with pytest.raises(TypeError, match="spec string"):
        build("apd", verifier=MarkovCausalVerifier(markov))
    with pytest.warns(RuntimeWarning, match="no verifier"):
        remask.generate(tiny64, [[1]], build("apd"), gen_length=3, seed=0)


def _sample(markov, verifier, R, n=N):
    model = WithVerifier(markov, verifier)
    sampler = build("apd", mixture_weight=R, temperature=1.0, top_p=None)
    return remask.generate(model, [[]] * n, sampler, gen_length=markov.seq_len, seed=2024)


@pytest.mark.statistical
def test_exact_verifier_at_r0_samples_the_exact_joint(markov):
    out = _sample(markov, MarkovCausalVerifier(markov), 0.0)
    p = markov.log_prob(markov.all_sequences()).exp()
    assert _chi_square_pvalue(_counts(markov, out.tokens), p) > ALPHA
    assert (
        out.steps < markov.seq_len + 1 and float(out.nfe.double().mean()) < markov.seq_len
    )  # parallel


@pytest.mark.statistical
def test_the_test_rejects_the_draft_and_a_wrong_verifier(markov):
    p = markov.log_prob(markov.all_sequences()).exp()
    draft_only = _sample(markov, MarkovCausalVerifier(markov), 1.0, n=5000)  # product of marginals
    assert _chi_square_pvalue(_counts(markov, draft_only.tokens), p) < ALPHA
    other = MarkovChainOracle(3, 4, seed=5, concentration=2.0)
    wrong = _sample(markov, MarkovCausalVerifier(other), 0.0, n=5000)  # samples the other chain
    assert _chi_square_pvalue(_counts(markov, wrong.tokens), p) < ALPHA


@pytest.mark.parametrize(
    "R,lookahead,block_length", [(0.5, 100, None), (0.0, 3, 4), (0.8, 2, None), (1.0, 4, 3)]
)
def test_greedy_equals_the_reference_loop(tiny64, R, lookahead, block_length):
    """A TinyTransformer of another seed plays the causal verifier (any (B, L, V) scorer
    follows the protocol); greedy tokens, NFE and verifier NFE equal the slow loop's."""
    from remask.models import TinyTransformer

    verifier = TinyTransformer(
        vocab_size=24, width=32, depth=2, heads=4, seed=11, dtype=torch.float64
    )
    prompts = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
    sampler = build(
        "apd", mixture_weight=R, max_lookahead=lookahead, block_length=block_length, temperature=0.0
    )
    out = remask.generate(WithVerifier(tiny64, verifier), prompts, sampler, gen_length=9, seed=0)
    width = max(map(len, prompts))
    steps_saved = False
    for row, prompt in enumerate(prompts):
        expected, nfe, _ = apd_generate(
            tiny64,
            verifier,
            prompt,
            gen_length=9,
            block_length=block_length,
            mixture_weight=R,
            max_lookahead=lookahead,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe
        steps_saved |= nfe < 9
    if R >= 0.8:  # two unrelated random models rarely agree at lower R
        assert steps_saved, "setting meant to accept several drafted tokens per step never did"
