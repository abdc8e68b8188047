"""klass (KLASS, arXiv 2511.05664): the readiness rule on scripted logits, the cheap carried
state against the naive float64 (L, V) history formulation, and the fallback."""

from __future__ import annotations

import pytest
import torch
from reference.klass import klass_generate

import remask
from remask import kernels
from remask.samplers import build

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]


SETTINGS = [  # (gen_length, config)
    (8, dict(block_length=None, steps=None, conf_threshold=0.2, kl_threshold=0.05, history=2)),
    (10, dict(block_length=4, steps=None, conf_threshold=0.1, kl_threshold=0.2, history=2)),
    (9, dict(block_length=3, steps=6, conf_threshold=0.3, kl_threshold=0.5, history=1)),
    (10, dict(block_length=5, steps=None, conf_threshold=0.0, kl_threshold=0.1, history=3)),
    (
        8,
        dict(
            block_length=4,
            steps=None,
            conf_threshold=0.2,
            kl_threshold=0.3,
            history=2,
            unmask_strategy="max_conf",
        ),
    ),
    (
        8,
        dict(
            block_length=None,
            steps=None,
            conf_threshold=0.1,
            kl_threshold=0.2,
            history=2,
            unmask_strategy="min_kl",
            cfg_scale=1.5,
        ),
    ),
]


@pytest.mark.parametrize("gen_length,config", SETTINGS)
def test_cheap_state_equals_naive_history_formulation(tiny64, gen_length, config):
    out = remask.generate(tiny64, PROMPTS, build("klass", **config), gen_length=gen_length, seed=0)
    width = max(map(len, PROMPTS))
    used_ready = 0
    for row, prompt in enumerate(PROMPTS):
        expected, nfe, ready_steps = klass_generate(tiny64, prompt, gen_length=gen_length, **config)
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe
        used_ready += ready_steps
    assert used_ready > 0, "setting meant to exercise the stability rule never did"


def test_carried_state_is_the_block_window_in_the_model_dtype(tiny64):
    states = []
    sampler = build("klass", block_length=4, kl_threshold=0.2, conf_threshold=0.1)
    remask.generate(
        tiny64, PROMPTS, sampler, gen_length=10, seed=0, callbacks=[lambda s, i: states.append(s)]
    )
    for state in states:
        assert state.previous.shape == (
            3,
            4,
            tiny64.vocab_size,
        )  # (B, block_length, V), not (B, L, V)
        assert (
            state.previous.dtype == torch.float64
        )  # tiny64's own logits dtype: no upcast/copy kind change
        assert state.streak.dtype == torch.int64 and state.streak.shape == state.canvas.tokens.shape
        # The window holds exactly the active block's positions (left to right).
        active = state.canvas.active
        for row in range(3):
            n = int(active[row].sum())
            assert state.index[row, :n].tolist() == active[row].nonzero().flatten().tolist()


# ----------------------------------------------------------------------------- scripted logits
class Scripted:
    """Four generated positions after a 1-token prompt, V = 3 (mask id 3):

    pos 1: sure and constant; pos 2: unsure (p ≈ 0.45) and constant; pos 3: sure but flipping
    between tokens 0 and 1 at every call; pos 4: fairly sure (p ≈ 0.96) and constant.
    """

    vocab_size, mask_id = 3, 3

    def __init__(self):
        self.calls = 0

    def __call__(self, tokens, attention_mask=None):
        B, L = tokens.shape
        logits = torch.zeros(B, L, 3)
        logits[:, 1] = torch.tensor([5.0, 0.0, 0.0])
        logits[:, 2] = torch.tensor([1.0, 0.9, 0.0])
        logits[:, 3] = (
            torch.tensor([5.0, 0.0, 0.0]) if self.calls % 2 == 0 else torch.tensor([0.0, 5.0, 0.0])
        )
        logits[:, 4] = torch.tensor([4.0, 0.0, 0.0])
        self.calls += 1
        return logits


def _commits(**config):
    commits = []
    config = {"block_length": None, "conf_threshold": 0.6, "kl_threshold": 0.015, **config}
    out = remask.generate(
        Scripted(),
        [[0]],
        build("klass", **config),
        gen_length=4,
        seed=0,
        callbacks=[lambda s, i: commits.append(i.committed[0].nonzero().flatten().tolist())],
    )
    assert not bool((out.tokens == Scripted.mask_id).any())
    return commits


def test_scripted_readiness_history_two():
    # Step 0: no previous distribution, nothing stable -> fallback top-1 (pos 1; ties with the
    # equally sure pos 3 go to the lower position). Step 1: one stable step is not enough for
    # H = 2 -> fallback: pos 3 (now token 1, p ≈ .99) beats pos 4 (.96). Step 2: pos 4 stable
    # for two steps and confident -> ready alone (pos 2 is stable but unsure). Step 3: the
    # block's last allotted step commits what is left.
    assert _commits(history=2) == [[1], [3], [4], [2]]


def test_scripted_readiness_history_one():
    # H = 1: at step 1 pos 4 is ready (pos 3 flipped, pos 2 unsure); step 2 has nothing ready
    # (pos 3 flips again) -> fallback pos 3.
    assert _commits(history=1) == [[1], [4], [3], [2]]


def test_scripted_lower_conf_threshold_commits_all_ready_positions():
    assert _commits(history=2, conf_threshold=0.4) == [[1], [3], [2, 4]]
    assert _commits(history=2, conf_threshold=0.4, unmask_strategy="max_conf") == [
        [1],
        [3],
        [4],
        [2],
    ]


def test_scripted_kl_threshold_above_the_flip_makes_everything_stable():
    # A KL threshold above the flipping position's KL (≈ 5 nats) makes it stable too.
    assert _commits(history=1, kl_threshold=100.0, conf_threshold=0.4) == [[1], [2, 3, 4]]


def test_the_kl_kernel_klass_uses_is_exact_and_handles_zero_probabilities():
    # KLASS's KL is remask.kernels.kl (float64 sums, float32 result): no copy of it lives here.
    def kl_divergence(a, b):
        return kernels.kl(a, b).double()

    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    p, q = torch.softmax(a.double(), -1), torch.softmax(b.double(), -1)
    assert torch.allclose(
        kl_divergence(a, b), (p * (p.log() - q.log())).sum(-1), rtol=1e-5, atol=1e-7
    )
    assert torch.allclose(kl_divergence(a, a), torch.zeros(5, dtype=torch.float64), atol=1e-7)
    minus_inf = float("-inf")
    assert float(
        kl_divergence(torch.tensor([[0.0, minus_inf]]), torch.tensor([[0.0, 0.0]]))[0]
    ) == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-6)
    assert float(
        kl_divergence(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, minus_inf]]))[0]
    ) == float("inf")


def test_random_strategy_is_stochastic_and_seeded(tiny64):
    sampler = build(
        "klass", unmask_strategy="random", kl_threshold=0.5, conf_threshold=0.0, block_length=4
    )
    assert sampler.stochastic and not build("klass").stochastic
    a = remask.generate(tiny64, PROMPTS, sampler, gen_length=8, seed=5).tokens
    assert torch.equal(a, remask.generate(tiny64, PROMPTS, sampler, gen_length=8, seed=5).tokens)


def test_fewer_steps_than_blocks_raises(tiny64):
    with pytest.raises(ValueError, match="steps=2 is fewer than the 3 blocks"):
        remask.generate(tiny64, [[1]], build("klass", steps=2, block_length=2), gen_length=6)


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(conf_threshold=1.5), ValueError),
        (dict(conf_threshold=-0.1), ValueError),
        (dict(kl_threshold=-1.0), ValueError),
        (dict(history=0), ValueError),
        (dict(history=2.0), TypeError),
        (dict(steps=0), ValueError),
        (dict(unmask_strategy="first"), ValueError),
        (dict(temperature=float("nan")), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("klass", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)
