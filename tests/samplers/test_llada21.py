"""llada21 (LLaDA 2.1 M2T + T2T editing) against a slow loop, golden checkpoints and
handcrafted scripts of each rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference.llada21 import llada21_generate

import remask
from remask.samplers import build

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _check_rows(model, sampler, prompts, gen_length, offsets=None, reference_model=None, **kw):
    out = remask.generate(model, prompts, sampler, gen_length=gen_length, seed=0)
    width = max(map(len, prompts))
    for row, prompt in enumerate(prompts):
        expected, nfe, _ = llada21_generate(
            reference_model or model,
            prompt,
            gen_length=gen_length,
            offset=0 if offsets is None else offsets[row],
            **kw,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe, f"row {row}"
    return out


@pytest.mark.parametrize(
    "block_length,threshold,edit_threshold,max_post_steps,num_to_transfer",
    [
        (32, 0.95, 0.9, 16, 1),  # the defaults
        (4, 0.5, 0.0, 16, 1),  # Speedy mode: every disagreement is edited
        (5, 0.7, 0.5, 2, 1),  # Quality mode, short post-fill budget
        (None, 0.3, 0.2, 3, 2),
        (3, 0.2, 0.1, 0, 1),  # no post-fill steps: edits only while masks remain
        (4, 1.0, 1.0, 16, 1),  # nothing passes: LLaDA one token per step, no edits
    ],
)
def test_greedy_equals_reference_loop(
    tiny64, block_length, threshold, edit_threshold, max_post_steps, num_to_transfer
):
    kw = dict(
        block_length=block_length,
        threshold=threshold,
        edit_threshold=edit_threshold,
        max_post_steps=max_post_steps,
        num_to_transfer=num_to_transfer,
    )
    _check_rows(tiny64, build("llada21", **kw), PROMPTS, 10, **kw)


def test_the_reference_loop_edits_on_these_cases(tiny64):
    """The equivalence above is not vacuous: the speedy setting does rewrite tokens."""
    _, _, edits = llada21_generate(
        tiny64,
        PROMPTS[0],
        gen_length=10,
        block_length=4,
        threshold=0.5,
        edit_threshold=0.0,
        max_post_steps=16,
    )
    assert edits > 0


@pytest.fixture(scope="module")
def golden_llada():
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    return load_checkpoint(GOLDEN / "llada_tiny")


@pytest.fixture(scope="module")
def golden_llada2():
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    # Block size 4 so that short prompts put several block boundaries in the generated span;
    # the sampler's copy keeps the exact KV cache of finished blocks, the reference's does not.
    cached = load_checkpoint(GOLDEN / "llada2_moe_tiny", mask_id=255, block_size=4)
    plain = load_checkpoint(GOLDEN / "llada2_moe_tiny", mask_id=255, block_size=4, cache=False)
    return cached, plain


def test_golden_llada_equals_reference_loop(golden_llada):
    kw = dict(
        block_length=4, threshold=0.3, edit_threshold=0.2, max_post_steps=4, num_to_transfer=1
    )
    with torch.no_grad():
        _check_rows(golden_llada, build("llada21", **kw), [[5, 17, 42], [7]], 8, **kw)


def test_golden_llada2_block_diffusion_equals_reference_loop(golden_llada2):
    cached, plain = golden_llada2
    prompts = [[5, 17, 42], [7, 8, 9, 10, 11, 12]]
    kw = dict(
        block_length=4, threshold=0.2, edit_threshold=0.1, max_post_steps=4, num_to_transfer=1
    )
    with torch.no_grad():
        # Blocks follow the model's grid from the first real token: offsets = prompt lengths.
        _check_rows(
            cached, build("llada21", **kw), prompts, 9, offsets=[3, 6], reference_model=plain, **kw
        )


class Scripted:
    """A denoiser that replays a script: call ``c`` predicts ``tokens[c][j]`` with probability
    ``conf[c][j]`` at generated position j (counted from the end, as FixedConfidence), the rest
    spread evenly; the last entry repeats. Prompt positions predict token 3 with certainty, so
    an edit of the prompt would show. ``mask_id = vocab_size`` (no column)."""

    vocab_size = 4
    mask_id = 4

    def __init__(self, script):
        self.script = script
        self.calls = 0

    def __call__(self, tokens, attention_mask=None):
        tokens_c, conf_c = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        B, L = tokens.shape
        probs = torch.zeros(B, L, self.vocab_size, dtype=torch.float64)
        probs[..., 3] = 1.0
        n = len(conf_c)
        conf = torch.tensor(conf_c, dtype=torch.float64)
        table = ((1 - conf) / (self.vocab_size - 1)).unsqueeze(-1).repeat(1, self.vocab_size)
        table.scatter_(-1, torch.tensor(tokens_c).unsqueeze(-1), conf.unsqueeze(-1))
        probs[:, L - n :] = table
        return probs.log()


def _trace(model, sampler, gen_length, prompt=(0, 0)):
    seen = []
    out = remask.generate(
        model,
        [list(prompt)],
        sampler,
        gen_length=gen_length,
        seed=0,
        callbacks=[
            lambda s, i: seen.append(
                (
                    i.committed[0].nonzero().flatten().tolist(),
                    i.edited[0].nonzero().flatten().tolist(),
                )
            )
        ],
    )
    return out, seen


P = 2  # prompt length used by _trace: generated position j is canvas column P + j


def test_m2t_threshold_t2t_edit_and_idle_post_step():
    script = [
        ([1, 1, 1], [0.95, 0.95, 0.3]),  # M2T: 0 and 1 pass 0.9
        ([2, 1, 1], [0.6, 0.99, 0.4]),  # M2T: none of the masks passes -> top-1 (2); T2T: 0 -> 2
        ([2, 3, 1], [0.9, 0.5, 0.9]),
    ]  # post-fill: 3 at p = 0.5 is not > 0.5 -> idle, close
    sampler = build("llada21", block_length=None, threshold=0.9, edit_threshold=0.5)
    out, seen = _trace(Scripted(script), sampler, 3)
    assert seen == [([P, P + 1], []), ([P, P + 2], [P]), ([], [])]
    assert out.tokens[0].tolist() == [0, 0, 2, 1, 1]  # the prompt (predicted 3 w.p. 1) unchanged
    assert out.nfe.tolist() == [3]
    # Without post-fill steps the block closes as soon as it is filled.
    out, seen = _trace(
        Scripted(script),
        build("llada21", block_length=None, threshold=0.9, edit_threshold=0.5, max_post_steps=0),
        3,
    )
    assert len(seen) == 2 and out.nfe.tolist() == [2]
    # edit_threshold = 1 never edits; 0 edits every disagreement.
    out, seen = _trace(
        Scripted(script), build("llada21", block_length=None, threshold=0.9, edit_threshold=1.0), 3
    )
    assert out.tokens[0].tolist() == [0, 0, 1, 1, 1] and all(e == [] for _, e in seen)
    out, seen = _trace(
        Scripted(script), build("llada21", block_length=None, threshold=0.9, edit_threshold=0.0), 3
    )
    assert seen[2] == ([P + 1], [P + 1])  # the post-fill step now edits 1 -> 3
    assert out.tokens[0].tolist() == [0, 0, 2, 3, 1]


def test_m2t_is_strict_and_num_to_transfer_is_a_floor():
    script = [([1, 1, 1, 1], [0.75, 0.95, 0.2, 0.3])]
    # A confidence equal to the threshold does not pass: the tie is set at the confidence the
    # kernel computes for position 0 on this backend (its exp is exact only to a few ulp).
    logits = Scripted(script)(torch.zeros(1, 4, dtype=torch.long))  # (1, 4, V)
    tie = float(remask.kernels.propose(logits).prob[0, 0])
    assert tie == pytest.approx(0.75, abs=1e-6)
    _, seen = _trace(Scripted(script), build("llada21", block_length=None, threshold=tie), 4)
    assert seen[0][0] == [P + 1]
    # One passes but two are required: the two most confident masks commit instead.
    _, seen = _trace(
        Scripted(script), build("llada21", block_length=None, threshold=0.92, num_to_transfer=2), 4
    )
    assert seen[0][0] == [P, P + 1]


def test_post_fill_steps_are_capped():
    # The proposal flips between 1 and 2 at every call with p = 0.99: every post-fill step edits.
    script = [([1, 1], [0.99, 0.99]), ([2, 2], [0.99, 0.99])] * 20
    out, seen = _trace(
        Scripted(script),
        build("llada21", block_length=None, threshold=0.9, edit_threshold=0.5, max_post_steps=3),
        2,
    )
    assert [len(e) for _, e in seen] == [0, 2, 2, 2]  # 1 M2T step, then 3 editing steps
    assert out.nfe.tolist() == [4]


def test_edits_stay_in_the_active_block():
    # Block 1 = generated 0..1, block 2 = 2..3. While block 2 is decoded the model wants to
    # rewrite block 1 with certainty; it must not.
    script = [
        ([1, 1, 1, 1], [0.99, 0.99, 0.1, 0.1]),
        ([2, 2, 1, 1], [0.99, 0.99, 0.1, 0.1]),  # post-fill of block 1: edits 0, 1 -> 2
        ([2, 2, 1, 1], [0.99, 0.99, 0.1, 0.1]),  # idle: block 1 closes
        ([3, 3, 1, 1], [0.999, 0.999, 0.99, 0.99]),
    ]  # block 2: block-1 edits not allowed
    out, seen = _trace(
        Scripted(script), build("llada21", block_length=2, threshold=0.9, edit_threshold=0.5), 4
    )
    assert out.tokens[0].tolist()[P:] == [2, 2, 1, 1]
    assert seen[:3] == [([P, P + 1], []), ([P, P + 1], [P, P + 1]), ([], [])]


def test_batch_rows_in_different_phases(tiny64):
    """A row editing its filled block while another still fills its own: each matches its
    own run alone (tokens and NFE)."""
    sampler = build("llada21", block_length=3, threshold=0.3, edit_threshold=0.2, max_post_steps=5)
    batch = remask.generate(tiny64, PROMPTS, sampler, gen_length=7, seed=0)
    width = max(map(len, PROMPTS))
    nfes = set()
    for row, prompt in enumerate(PROMPTS):
        alone = remask.generate(tiny64, [prompt], sampler, gen_length=7, seed=0)
        assert batch.tokens[row, width - len(prompt) :].tolist() == alone.tokens[0].tolist()
        assert int(batch.nfe[row]) == int(alone.nfe[0])
        nfes.add(int(alone.nfe[0]))
    assert len(nfes) > 1  # the rows did finish at different steps


def test_max_steps_bounds_the_run(tiny64):
    sampler = build("llada21", block_length=3, threshold=0.5, edit_threshold=0.0, max_post_steps=4)
    out = remask.generate(tiny64, PROMPTS, sampler, gen_length=10, seed=0)
    canvas_editable = torch.zeros(1, 10, dtype=torch.bool)
    # 10 positions in 4 blocks: at most 10 M2T steps + 4 * 4 post-fill steps (+1 slack).
    assert out.steps <= 10 + 4 * 4
    from remask.samplers.canvas import make_canvas

    canvas = make_canvas(
        torch.full((1, 10), tiny64.mask_id),
        ~canvas_editable,
        torch.ones(1, 10, dtype=torch.bool),
        3,
    )
    assert sampler.max_steps(canvas) == 10 + 4 * 4 + 1


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_without_edits_or_post_fill_it_is_the_threshold_rule(tiny64, temperature):
    """edit_threshold = 1 and max_post_steps = 0 leave Fast-dLLM's rule (strict > instead of
    >=, which no confidence here sits on); sampling draws with the same keys, so even sampled
    runs agree token for token."""
    kw = dict(block_length=4, threshold=0.3, temperature=temperature)
    a = remask.generate(
        tiny64,
        PROMPTS,
        build("llada21", edit_threshold=1.0, max_post_steps=0, **kw),
        gen_length=9,
        seed=5,
    )
    b = remask.generate(tiny64, PROMPTS, build("threshold", **kw), gen_length=9, seed=5)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.nfe, b.nfe)


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(threshold=1.5), ValueError),
        (dict(edit_threshold=-0.1), ValueError),
        (dict(max_post_steps=-1), ValueError),
        (dict(num_to_transfer=0), ValueError),
        (dict(max_post_steps=1.0), TypeError),
        (dict(edit_threshold="0.5"), TypeError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("llada21", **config)
    key = next(iter(config))
    assert key in str(excinfo.value)


def test_defaults_are_the_checkpoint_generates():
    s = build("llada21")
    assert (
        s.block_length,
        s.threshold,
        s.edit_threshold,
        s.max_post_steps,
        s.num_to_transfer,
        s.temperature,
    ) == (32, 0.95, 0.9, 16, 1, 0.0)
    assert s.edits_committed
