"""freedave: the base's output token for token, fewer model calls, honest evaluation counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference.freedave import freedave_generate
from reference.low_confidence import llada_generate
from test_exactness import ALPHA, _chi_square_pvalue, _counts

import remask
from remask.models import as_denoiser
from remask.samplers import build, from_config
from remask.samplers.freedave import _Replay

PROMPTS = [[3, 1, 4], [1], [5, 9, 2, 6]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _pair(model, base: dict, prompts, gen_length: int, seed: int = 0, draft_steps: int = 4, **kw):
    fast = remask.generate(
        model,
        prompts,
        build("freedave", base=base, draft_steps=draft_steps),
        gen_length=gen_length,
        seed=seed,
        **kw,
    )
    slow = remask.generate(
        model, prompts, from_config(base), gen_length=gen_length, seed=seed, **kw
    )
    return fast, slow


# ----------------------------------------------------------------------------- greedy equivalence
@pytest.mark.parametrize(
    "gen_length,block_length,steps,draft_steps",
    [
        (10, None, None, 4),
        (10, 4, None, 2),
        (12, 4, 6, 3),
        (9, None, 5, 5),
        (8, 3, None, 1),
    ],
)
def test_greedy_equals_reference_loop_and_base(
    tiny64, counting, gen_length, block_length, steps, draft_steps
):
    base = {"name": "low_confidence", "block_length": block_length, "steps": steps}
    model = counting(tiny64)
    sampler = build("freedave", base=base, draft_steps=draft_steps)
    for prompt in PROMPTS:
        model.calls = model.rows = 0
        out = remask.generate(model, [prompt], sampler, gen_length=gen_length, seed=0)
        ref, calls, evaluations = freedave_generate(
            tiny64,
            prompt,
            gen_length=gen_length,
            block_length=block_length,
            steps=steps,
            draft_steps=draft_steps,
        )
        base_tokens, base_nfe = llada_generate(
            tiny64, prompt, gen_length=gen_length, block_length=block_length, steps=steps
        )
        assert out.tokens[0].tolist() == ref == base_tokens
        assert (out.steps, int(out.nfe[0])) == (calls, evaluations)
        # The charge is what the model saw: every sequence of every batched call.
        assert model.calls == calls and model.rows == evaluations
        assert calls <= base_nfe


def test_batch_rows_accept_independently(tiny64):
    """Greedy bases: every row of a batch advances by its own verified prefix."""
    sampler = build("freedave", base={"name": "low_confidence"}, draft_steps=3)
    batch = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=0)
    fast, slow = _pair(tiny64, {"name": "low_confidence"}, PROMPTS, 10, draft_steps=3)
    assert torch.equal(fast.tokens, slow.tokens)
    width = max(map(len, PROMPTS))
    forwards = []
    for row, prompt in enumerate(PROMPTS):
        alone = remask.generate(tiny64, [prompt], sampler, gen_length=10, seed=0)
        assert batch.tokens[row, width - len(prompt) :].tolist() == alone.tokens[0].tolist()
        assert int(batch.nfe[row]) == int(alone.nfe[0])
        forwards.append(alone.steps)
    # Rows needing different numbers of calls exist here, so per-row acceptance was exercised.
    assert len(set(forwards)) > 1


@pytest.mark.parametrize(
    "base",
    [
        {"name": "threshold", "threshold": 0.3, "block_length": 4},
        {"name": "threshold", "threshold": 0.9, "block_length": None},
        {"name": "low_confidence", "cfg_scale": 1.0, "steps": 6},
        {"name": "low_confidence", "score": "margin", "block_length": 5},
        {"name": "dream", "steps": 6, "alg": "maskgit_plus"},
        {"name": "llada2", "block_length": 4, "threshold": 0.5},
    ],
)
def test_any_one_call_base_is_reproduced(tiny64, base):
    fast, slow = _pair(tiny64, base, PROMPTS, 11)
    assert torch.equal(fast.tokens, slow.tokens)
    assert int((fast.nfe >= slow.nfe).sum()) == len(PROMPTS)  # never fewer evaluations


def test_model_calls_drop_on_a_markov_oracle(markov, counting):
    """One token per step on a 3-state chain: drafts on stale logits are often right."""
    model = counting(markov)
    out = remask.generate(
        model,
        [[]] * 8,
        build("freedave", base="low_confidence", draft_steps=4),
        gen_length=4,
        seed=0,
    )
    base = remask.generate(markov, [[]] * 8, build("low_confidence"), gen_length=4, seed=0)
    assert torch.equal(out.tokens, base.tokens)
    assert base.steps == 4 and out.steps < base.steps
    assert model.calls == out.steps


# ----------------------------------------------------------------------------- golden checkpoints
@pytest.mark.parametrize(
    "family,base",
    [
        ("llada_tiny", {"name": "low_confidence", "block_length": 4}),
        ("dream_tiny", {"name": "dream", "steps": 8, "alg": "maskgit_plus"}),
    ],
)
def test_golden_checkpoint_tokens_equal_the_base(family, base):
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / family)
    prompts = [[5, 7, 11], [13, 2]]
    fast, slow = _pair(model, base, prompts, 8, draft_steps=3)
    assert torch.equal(fast.tokens, slow.tokens)
    assert fast.steps <= slow.steps


# ----------------------------------------------------------------------------- the verification rule
def _fixed(vocab: int = 6, length: int = 8):
    """A denoiser whose prediction never depends on the canvas: every draft is right."""
    table = torch.randn(length, vocab, generator=torch.Generator().manual_seed(0)).double()
    return as_denoiser(
        lambda tokens, mask=None: table.expand(tokens.shape[0], -1, -1).clone(),
        mask_id=vocab,
        vocab_size=vocab,
    )


def _shifting(vocab: int = 6):
    """A denoiser whose most confident position moves with every commit: drafts fail."""

    def fn(tokens, mask=None):
        B, L = tokens.shape
        masked = (tokens == vocab).double()  # (B, L)
        n = masked.sum(-1, keepdim=True)  # (B, 1)
        pos = torch.arange(L).double()
        # The peak sits on the masked position at rank (masks left) mod 3: changes per commit.
        rank = masked.cumsum(-1) - 1
        peak = (rank == (n % 3).clamp_max(n - 1)) & (masked > 0)
        logits = torch.zeros(B, L, vocab, dtype=torch.float64)
        token = (torch.arange(L) % vocab).expand(B, L).unsqueeze(-1)  # (B, L, 1)
        logits.scatter_(-1, token, torch.where(peak, 5.0, 1.0 + 0.01 * pos).unsqueeze(-1))
        return logits

    return as_denoiser(fn, mask_id=vocab, vocab_size=vocab)


def test_every_draft_verified_when_predictions_never_change():
    infos = []
    out = remask.generate(
        _fixed(),
        [[]],
        build("freedave", base="low_confidence", draft_steps=4),
        gen_length=8,
        seed=0,
        callbacks=[lambda s, i: infos.append(i)],
    )
    # First call: no stale logits, one base step; then D = 4 base steps per call.
    assert [int(i.advanced[0]) for i in infos] == [1, 4, 3]
    assert out.steps == 3 and int(out.nfe[0]) == 1 + 4 + 4


def test_no_draft_verified_when_the_peak_moves_every_step():
    infos = []
    out = remask.generate(
        _shifting(),
        [[]],
        build("freedave", base="low_confidence", draft_steps=3),
        gen_length=6,
        seed=0,
        callbacks=[lambda s, i: infos.append(i)],
    )
    base = remask.generate(_shifting(), [[]], build("low_confidence"), gen_length=6, seed=0)
    assert torch.equal(out.tokens, base.tokens)
    assert sum(int(i.advanced[0]) for i in infos) == base.steps == 6
    # Only the last call may verify a draft (two masks left: the peak happens to stay put).
    assert all(int(i.advanced[0]) == 1 for i in infos[:-1])
    assert out.steps >= base.steps - 1


# ----------------------------------------------------------------------------- sampling bases
def test_sampling_drafts_share_their_targets_random_numbers():
    """A sampling base: with predictions that never change, a draft made on the frozen logits
    and the step it guesses draw the same random numbers, so every draft is verified."""
    infos = []
    base = {"name": "low_confidence", "temperature": 1.0}
    out = remask.generate(
        _fixed(),
        [[], []],
        build("freedave", base=base, draft_steps=4),
        gen_length=8,
        seed=3,
        callbacks=[lambda s, i: infos.append(i)],
    )
    assert [i.advanced.tolist() for i in infos] == [[1, 1], [4, 4], [3, 3]]
    assert not bool((out.tokens == 6).any())
    # The rows draw from their own keys: the two rows' samples differ somewhere.
    assert not torch.equal(out.tokens[0], out.tokens[1])


@pytest.mark.statistical
def test_sampling_base_law_is_the_exact_joint(markov):
    """Random-order one-token-per-step decoding is exact on the oracle; FreeDave around it must
    be too (chi-square at level ALPHA over the 81 sequences, N = 4000)."""
    sampler = build(
        "freedave", base={"name": "low_confidence", "remasking": "random", "temperature": 1.0}
    )
    last = {}
    out = remask.generate(
        markov,
        [[]] * 4000,
        sampler,
        gen_length=markov.seq_len,
        seed=7,
        callbacks=[lambda s, i: last.__setitem__("state", s)],
    )
    p = markov.log_prob(markov.all_sequences()).exp()
    assert _chi_square_pvalue(_counts(markov, out.tokens), p) > ALPHA
    # Drafts were accepted along the way: fewer model calls per row than the base's 4.
    assert float(last["state"].forwards.double().mean()) < markov.seq_len - 0.5


# ----------------------------------------------------------------------------- config and errors
def test_config_round_trips_and_validates():
    a = build("freedave", base={"name": "low_confidence", "steps": 3}, draft_steps=2)
    assert a == build("freedave", base=build("low_confidence", steps=3), draft_steps=2)
    assert from_config(a.to_config()) == a and hash(a) == hash(a)
    assert build("freedave", block_length=4).base_sampler.block_length == 4
    with pytest.raises(ValueError, match="contradicts"):
        build("freedave", base={"name": "low_confidence", "block_length": 3}, block_length=4)
    with pytest.raises(ValueError, match="draft_steps"):
        build("freedave", draft_steps=0)
    with pytest.raises(ValueError, match="base 'low_confidence'.*temperature"):
        build("freedave", base={"name": "low_confidence", "temperature": -1.0})


def test_wrapping_bases_and_second_calls_are_refused(tiny64):
    with pytest.raises(ValueError, match="base 'gibbs' wraps another sampler"):
        build("freedave", base={"name": "gibbs", "base": {"name": "low_confidence", "steps": 3}})
    with pytest.raises(ValueError, match="base 'freedave' wraps"):
        build("freedave", base={"name": "freedave"})
    # The guard that answers a base step's one call refuses a second one, naming the base.
    replay = _Replay(tiny64, torch.zeros(1, 2, tiny64.vocab_size), "low_confidence")
    tokens = torch.zeros(1, 2, dtype=torch.long)
    assert replay(tokens).shape == (1, 2, tiny64.vocab_size)
    with pytest.raises(RuntimeError, match="base 'low_confidence' called the denoiser twice"):
        replay(tokens)
