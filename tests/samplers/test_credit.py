"""credit (CreditDecoding) against a slow loop, a golden checkpoint, the threshold sampler it
reduces to, and hand-computed credits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from reference._common import FixedConfidence
from reference.credit import credit_generate

import remask
from remask.samplers import build

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _check_rows(model, sampler, prompts, gen_length, **kw):
    out = remask.generate(model, prompts, sampler, gen_length=gen_length, seed=0)
    width = max(map(len, prompts))
    boosted = 0
    for row, prompt in enumerate(prompts):
        expected, nfe, b = credit_generate(model, prompt, gen_length=gen_length, **kw)
        boosted += b
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe, f"row {row}"
    return boosted


@pytest.mark.parametrize(
    "block_length,threshold,credit_alpha,boost_gamma,decay_beta",
    [
        (32, 0.9, 0.7, 0.2, 0.8),  # the defaults
        (4, 0.5, 0.7, 0.2, 0.8),
        (None, 0.3, 2.0, 0.2, 1.0),
        (3, 0.6, 1.0, 0.0, 0.5),
        (5, 0.4, 0.7, 1.0, 0.0),
    ],
)
def test_greedy_equals_reference_loop(
    tiny64, block_length, threshold, credit_alpha, boost_gamma, decay_beta
):
    kw = dict(
        block_length=block_length,
        threshold=threshold,
        credit_alpha=credit_alpha,
        boost_gamma=boost_gamma,
        decay_beta=decay_beta,
    )
    boosted = _check_rows(tiny64, build("credit", **kw), PROMPTS, 10, **kw)
    assert boosted > 0  # the credit changed a decision somewhere: the check is not vacuous


def test_golden_llada_equals_reference_loop():
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / "llada_tiny")
    kw = dict(block_length=4, threshold=0.2, credit_alpha=1.5, boost_gamma=0.2, decay_beta=0.8)
    with torch.no_grad():
        assert _check_rows(model, build("credit", **kw), [[5, 17, 42], [7]], 8, **kw) > 0


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_zero_alpha_is_the_threshold_sampler(tiny64, temperature):
    """Without fusion the rule is Fast-dLLM's; sampled runs draw with the same per-position
    keys (the credit window gathers them by canvas column), so they agree token for token."""
    for block_length, tau in ((4, 0.3), (None, 0.6)):
        kw = dict(threshold=tau, block_length=block_length, temperature=temperature)
        a = remask.generate(
            tiny64, PROMPTS, build("credit", credit_alpha=0.0, **kw), gen_length=9, seed=3
        )
        b = remask.generate(tiny64, PROMPTS, build("threshold", **kw), gen_length=9, seed=3)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe)


def _fused_conf(p: float, credit: float, alpha: float, vocab: int = 4) -> float:
    """softmax(z + alpha log(1 + C)) at the credited top-1 token, the rest sharing 1 - p."""
    boosted = p * math.exp(alpha * math.log1p(credit))
    return boosted / (boosted + (1 - p))


def _trace(model, sampler, gen_length):
    seen = []
    remask.generate(
        model,
        [[]],
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[
            lambda s, i: seen.append(
                (i.committed[0].nonzero().flatten().tolist(), i.score[0].tolist())
            )
        ],
    )
    return seen


def test_credit_accumulates_decays_and_resets_per_block():
    p, alpha, gamma, beta = 0.6, 0.7, 0.2, 0.8
    model = FixedConfidence([p] * 4, tokens=[1] * 4)
    boost = p**gamma
    c1, c2, c3 = boost, beta * boost + boost, beta * (beta * boost + boost) + boost
    expected = [_fused_conf(p, c, alpha) for c in (c1, c2, c3)]
    assert expected[1] < 0.75 <= expected[2]  # the hand computation crosses 0.75 at step 3
    seen = _trace(model, build("credit", block_length=None, threshold=0.75), 4)
    assert [c for c, _ in seen] == [[0], [1], [2, 3]]
    for step, (_, score) in enumerate(seen):
        for j in range(step, 4):  # still masked at this step
            assert score[j] == pytest.approx(expected[step], abs=1e-5)
    # Without credit every step commits only the fallback top-1.
    assert [
        c
        for c, _ in _trace(
            model, build("credit", block_length=None, threshold=0.75, credit_alpha=0.0), 4
        )
    ] == [[0], [1], [2], [3]]
    # decay_beta = 0: only the current step's boost counts, every step.
    seen = _trace(model, build("credit", block_length=None, threshold=0.75, decay_beta=0.0), 4)
    assert all(s[3] == pytest.approx(expected[0], abs=1e-5) for _, s in seen)
    # A new block starts from zero credit: block 2's first step scores like step 1.
    seen = _trace(model, build("credit", block_length=2, threshold=0.75), 4)
    assert [c for c, _ in seen] == [[0], [1], [2], [3]]
    assert seen[2][1][2] == pytest.approx(expected[0], abs=1e-5)


class _Switching:
    """Call t: every position's top token is ``(t + j) % 3`` (j its column) with logit
    ``1 + 0.25 t`` over zeros elsewhere; ``mask_id = vocab_size`` (no column). Each slot's
    top-1 moves through three tokens and comes back, so credited tokens accumulate and merge."""

    vocab_size, mask_id = 6, 6

    def __init__(self):
        self.calls = []

    def __call__(self, tokens, attention_mask=None):
        B, L = tokens.shape
        t = len(self.calls)
        logits = torch.zeros(B, L, self.vocab_size)
        top = (t + torch.arange(L)) % 3  # (L,)
        logits[:, torch.arange(L), top] = 1.0 + 0.25 * t
        self.calls.append(logits)
        return logits


@pytest.mark.parametrize("block_length", [None, 2])
def test_sparse_credit_is_the_dense_recurrence(block_length):
    """The state keeps the credited tokens only; rebuilt dense, it is the paper's
    C <- beta C; C[argmax z] += p_max ** gamma at every masked position of the block, zero
    when a block starts (computed here in float64 from the logits of each call)."""
    alpha, gamma, beta = 0.7, 0.5, 0.8
    model, states = _Switching(), []
    sampler = build(
        "credit",
        block_length=block_length,
        threshold=1.0,
        credit_alpha=alpha,
        boost_gamma=gamma,
        decay_beta=beta,
    )
    remask.generate(
        model, [[1]], sampler, gen_length=4, seed=0, callbacks=[lambda s, i: states.append(s)]
    )
    assert len(states) == len(model.calls) == 4  # threshold 1.0: one commit per step
    V, W = model.vocab_size, 4 if block_length is None else block_length
    masked = torch.ones(4, dtype=torch.bool)  # the generated columns 1..4, before step 0
    dense = torch.zeros(W, V, dtype=torch.float64)
    most = 0
    for t, (state, logits) in enumerate(zip(states, model.calls, strict=True)):
        first = 0 if block_length is None else (4 - int(masked.sum())) // W * W  # block start
        if block_length is not None and (4 - int(masked.sum())) % W == 0:
            dense.zero_()  # a new block (or the first): credit starts from zero
        dense *= beta
        p = torch.softmax(logits[0, 1:].double(), -1)  # (4, V)
        for k in range(W):
            if masked[first + k]:
                top = int(p[first + k].argmax())
                dense[k, top] += float(p[first + k, top]) ** gamma
        got = state.dense_credit(V)[0]  # (W, V)
        assert torch.allclose(got.double(), dense, rtol=1e-6, atol=0), f"step {t}"
        most = max(most, int((state.credit_tokens[0] >= 0).sum(-1).max()))
        masked = state.canvas.tokens[0, 1:] == model.mask_id  # (4,) before the next step
    assert most == min(W, 3)  # a slot held several tokens: the merging was exercised


def test_credit_can_change_the_proposed_token():
    """A token predicted for several steps keeps its credit after the model switches: the
    fused argmax stays with the old token while the credit outweighs the new margin."""

    class Switching:
        vocab_size, mask_id = 4, 4

        def __init__(self):
            self.calls = 0

        def __call__(self, tokens, attention_mask=None):
            self.calls += 1
            B, L = tokens.shape
            # Three calls favour token 1 (p = 0.5), then token 2 narrowly (0.35 vs 0.25).
            row = [0.1, 0.5, 0.1, 0.3] if self.calls <= 3 else [0.1, 0.25, 0.35, 0.3]
            probs = torch.tensor(row, dtype=torch.float64).expand(B, L, 4)
            return probs.log()

    def proposals(alpha):
        seen = []
        # threshold 1: one commit per step, so positions 3 and 4 are still masked at step 4.
        remask.generate(
            Switching(),
            [[]],
            build("credit", block_length=None, threshold=1.0, credit_alpha=alpha),
            gen_length=5,
            seed=0,
            callbacks=[lambda s, i: seen.append(i.proposal[0].tolist())],
        )
        return seen

    assert proposals(0.0)[3][4] == 2  # plain: the model's new favourite
    assert proposals(1.0)[3][4] == 1  # credit 0.5**0.2 (0.8 + 0.64 + 0.512) keeps token 1 ahead


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(threshold=1.5), ValueError),
        (dict(credit_alpha=-1.0), ValueError),
        (dict(boost_gamma=float("nan")), ValueError),
        (dict(decay_beta=1.5), ValueError),
        (dict(decay_beta="0.8"), TypeError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("credit", **config)
    assert next(iter(config)) in str(excinfo.value)


def test_defaults_are_dinfers():
    s = build("credit")
    assert (
        s.block_length,
        s.threshold,
        s.credit_alpha,
        s.boost_gamma,
        s.decay_beta,
        s.temperature,
    ) == (32, 0.9, 0.7, 0.2, 0.8, 0.0)
