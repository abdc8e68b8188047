"""entropy_bound (EB-Sampler, arXiv 2505.24857): the selection rule on handcrafted logits, its
monotonicity in γ, the spacing filter, a slow per-row reference loop, and exactness."""

from __future__ import annotations

import math

import pytest
import torch
from reference.entropy_bound import dus_spacing, eb_generate
from test_exactness import ALPHA, N, _chi_square_pvalue, _counts

import remask
from remask.kernels.select import spacing_filter
from remask.samplers import build
from remask.samplers.canvas import make_canvas

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]


# ----------------------------------------------------------------------------- fixtures
class FixedLogits:
    """A denoiser returning the same (L, V) logits for every row and call."""

    def __init__(self, logits: torch.Tensor, mask_id: int):
        self.logits, self.mask_id, self.vocab_size = logits, mask_id, logits.shape[-1]

    def __call__(self, tokens, attention_mask=None):
        return self.logits.expand(tokens.shape[0], -1, -1).clone()


def _entropy(p):
    return -sum(q * math.log(q) for q in p if q > 0)


# Five generated positions (after a 1-token prompt), V = 4. By entropy (nats):
# pos 3 (.168) < pos 1 (.325) < pos 5 (.367) < pos 4 (.611) < pos 2 (1.168); by the argmax's
# probability: pos 3 (.97) > pos 5 (.92) > pos 1 (.90) > pos 4 (.70) > pos 2 (.50).
DISTRIBUTIONS = [
    [0.90, 0.10, 0.00, 0.00],  # pos 1
    [0.50, 0.30, 0.10, 0.10],  # pos 2
    [0.97, 0.01, 0.01, 0.01],  # pos 3
    [0.70, 0.30, 0.00, 0.00],  # pos 4
    [0.92, 0.08 / 3, 0.08 / 3, 0.08 / 3],  # pos 5: more confident than pos 1, higher entropy
]
ENTROPY = [_entropy(p) for p in DISTRIBUTIONS]


def _fixed_model():
    mask_id = 4
    probs = torch.tensor([[0.25] * 4] + DISTRIBUTIONS, dtype=torch.float64)
    logits = torch.log(probs.clamp_min(1e-30)).float()  # (6, 4); prompt row arbitrary
    logits = torch.cat([logits, torch.full((6, 1), -1e9)], dim=-1)  # mask column, never proposed
    return FixedLogits(logits.unsqueeze(0), mask_id)


def _first_commit(model, **config):
    seen = []
    remask.generate(
        model,
        [[0]],
        build("entropy_bound", **config),
        gen_length=5,
        seed=0,
        callbacks=[lambda s, i: seen.append(set(i.committed[0].nonzero().flatten().tolist()))],
    )
    return seen[0], seen


def test_handcrafted_entropy_order_commits_the_exact_prefix():
    model = _fixed_model()
    H = {pos: ENTROPY[pos - 1] for pos in range(1, 6)}
    order = sorted(H, key=H.get)
    assert order == [3, 1, 5, 4, 2]
    # Σ H − max H of each prefix (entropy order: the max is the last element).
    excess = [sum(H[p] for p in order[:n]) - H[order[n - 1]] for n in range(1, 6)]
    for n in range(1, 6):
        # A budget just above the n-th prefix's excess and below the next one commits n positions.
        upper = excess[n] if n < 5 else excess[-1] + 1.0
        gamma = (excess[n - 1] + upper) / 2
        committed, _ = _first_commit(model, gamma=gamma)
        assert committed == set(order[:n]), (n, gamma, committed)
    assert _first_commit(model, gamma=0.0)[0] == {3}
    assert _first_commit(model, gamma=float("inf"))[0] == {1, 2, 3, 4, 5}


def test_handcrafted_confidence_order_differs_from_entropy_order():
    model = _fixed_model()
    # Probability order: 3 (.97), 5 (.94), 1 (.90), 4 (.70), 2 (.50). With budget between the
    # 2-prefix {3, 5} (excess H3) and the 3-prefix {3, 5, 1} (excess H3 + H1), commit {3, 5}.
    gamma = ENTROPY[2] + ENTROPY[0] / 2
    assert _first_commit(model, gamma=gamma, score="prob")[0] == {3, 5}
    # The entropy order puts pos 1 second instead: {3, 1} has excess H3, {3, 1, 4} has H3 + H1.
    assert _first_commit(model, gamma=gamma, score="entropy")[0] == {3, 1}


def test_at_least_one_and_entropy_reported_in_nats():
    model = _fixed_model()
    infos = []
    remask.generate(
        model,
        [[0]],
        build("entropy_bound", gamma=0.0),
        gen_length=5,
        seed=0,
        callbacks=[lambda s, i: infos.append(i)],
    )
    assert [int(i.committed.sum()) for i in infos] == [1] * 5
    first = infos[0]
    expected = torch.tensor(ENTROPY, dtype=torch.float32)
    assert torch.allclose(first.entropy[0, 1:], expected, atol=1e-5)


@pytest.mark.parametrize("score", ["entropy", "prob", "margin"])
def test_larger_gamma_never_commits_fewer(tiny64, score):
    """Metamorphic: on the same state, the committed sets are nested and grow with γ."""
    m = tiny64.mask_id
    tokens = torch.tensor([[3, 1, 4] + [m] * 9, [0, 0, 5] + [m] * 9])
    editable = tokens == m
    attention = torch.ones_like(editable)
    attention[1, :2] = False
    gammas = [0.0, 0.01, 0.1, 0.3, 1.0, 2.0, 4.0, 8.0, float("inf")]
    previous = None
    for block_length in (None, 4):
        canvas = make_canvas(tokens, editable, attention, block_length)
        for gamma in gammas:
            sampler = build("entropy_bound", gamma=gamma, score=score, block_length=block_length)
            key = remask.kernels.split(0, canvas.tokens.shape[0])  # (B,) step keys
            _, info = sampler.step(sampler.init(canvas, tiny64), tiny64, key)
            if previous is not None and gamma > 0:
                assert bool((previous & ~info.committed).sum() == 0), (
                    f"γ={gamma} dropped a position"
                )
            previous = info.committed
        assert torch.equal(
            previous.sum(-1), (editable & canvas.active).sum(-1)
        )  # γ = ∞: whole block
        previous = None


# ----------------------------------------------------------------------------- spacing


def test_spacing_filter_is_dus_greedy():
    # A monotone ramp (confidence falling with distance from the context) keeps every other one.
    selected = torch.ones(1, 7, dtype=torch.bool)
    score = torch.linspace(1, 0, 7).unsqueeze(0)
    assert spacing_filter(selected, score, 2)[0].nonzero().flatten().tolist() == [0, 2, 4, 6]
    assert spacing_filter(selected, score, 3)[0].nonzero().flatten().tolist() == [0, 3, 6]
    assert torch.equal(spacing_filter(selected, score, 1), selected)
    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        B, L = 3, 12
        selected = torch.rand(B, L, generator=generator) < 0.6
        score = torch.randint(0, 5, (B, L), generator=generator).float()  # ties on purpose
        gap = 2 + trial % 3
        got = spacing_filter(selected, score, gap)
        for row in range(B):
            positions = sorted(
                selected[row].nonzero().flatten().tolist(), key=lambda j: (-score[row, j], j)
            )
            assert got[row].nonzero().flatten().tolist() == sorted(dus_spacing(positions, gap))


def test_min_spacing_commits_far_apart_and_within_budget():
    model = _fixed_model()
    committed, steps = _first_commit(model, gamma=float("inf"), min_spacing=2)
    assert committed == {1, 3, 5}  # entropy order 3, 1, 5, 4, 2: 4 and 2 are too close
    assert set().union(*steps) == {1, 2, 3, 4, 5}
    committed, _ = _first_commit(model, gamma=float("inf"), min_spacing=3)
    assert committed == {3}  # 1 and 5 are 2 away from 3


SETTINGS = [  # (gen_length, config)
    (8, dict(gamma=0.1)),
    (8, dict(gamma=2.0, score="prob")),
    (10, dict(gamma=3.0, score="margin", block_length=4)),
    (9, dict(gamma=4.0, block_length=4, min_spacing=2)),
    (9, dict(gamma=float("inf"), min_spacing=3)),
    (7, dict(gamma=2.0, block_length=3, cfg_scale=1.5)),
]


@pytest.mark.parametrize("gen_length,config", SETTINGS)
def test_greedy_equals_reference_loop(tiny64, gen_length, config):
    out = remask.generate(
        tiny64, PROMPTS, build("entropy_bound", **config), gen_length=gen_length, seed=0
    )
    width = max(map(len, PROMPTS))
    parallel = False
    for row, prompt in enumerate(PROMPTS):
        expected, nfe = eb_generate(tiny64, prompt, gen_length=gen_length, **config)
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe
        parallel |= nfe < gen_length * (2 if config.get("cfg_scale") else 1)
    if config["gamma"] >= 2.0:
        assert parallel, "setting meant to exercise parallel commits never did"


# ----------------------------------------------------------------------------- exactness
def _pvalue(oracle, tokens):
    probs = oracle.log_prob(oracle.all_sequences()).exp()
    return _chi_square_pvalue(_counts(oracle, tokens), probs)


@pytest.mark.statistical
def test_gamma_zero_entropy_order_is_exact_and_gamma_inf_is_not(markov):
    """γ = 0 commits one token per step in an order that depends only on the revealed tokens
    (entropies, never the sampled values): the chain rule makes the output law the exact joint.
    γ = ∞ samples the product of marginals, which the same test must reject."""
    exact = remask.generate(
        markov,
        [[]] * N,
        build("entropy_bound", gamma=0.0, temperature=1.0),
        gen_length=markov.seq_len,
        seed=2024,
    )
    assert exact.nfe.eq(markov.seq_len).all()
    assert _pvalue(markov, exact.tokens) > ALPHA
    parallel = remask.generate(
        markov,
        [[]] * N,
        build("entropy_bound", gamma=float("inf"), temperature=1.0),
        gen_length=markov.seq_len,
        seed=2024,
    )
    assert _pvalue(markov, parallel.tokens) < ALPHA


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "config,error",
    [
        (dict(gamma=-0.1), ValueError),
        (dict(gamma=float("nan")), ValueError),
        (dict(gamma="1"), TypeError),
        (dict(score="random"), ValueError),
        (dict(min_spacing=0), ValueError),
        (dict(min_spacing=1.5), TypeError),
        (dict(temperature=-1.0), ValueError),
        (dict(block_length=0), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("entropy_bound", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)
