"""daedal (DAEDAL, arXiv 2508.00819) against a slow loop with growing lists, handcrafted
length-adjustment and insertion rules, and ragged batches of different final lengths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference.daedal import daedal_generate

import remask
from remask.samplers import build
from remask.samplers.canvas import make_canvas

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]
EOS = 5


class RisingEOS:
    """A deterministic random denoiser with a real EOS token: ``inner``'s logits plus
    ``slope * (rank - at)`` on the EOS column, rank counted among the row's real tokens (so
    EOS gets likelier towards the end of a long answer; left padding changes nothing)."""

    def __init__(self, inner, slope: float = 0.5, at: float = 10.0):
        self.inner, self.slope, self.at = inner, slope, at
        self.mask_id, self.vocab_size, self.eos_id = inner.mask_id, inner.vocab_size, EOS

    def __call__(self, tokens, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        logits = self.inner(tokens, attention_mask).clone()  # (B, L, V)
        rank = attention_mask.long().cumsum(-1) - 1  # (B, L)
        logits[..., EOS] += self.slope * (rank - self.at)
        return logits


@pytest.fixture(scope="module")
def eos_model(tiny64):
    return RisingEOS(tiny64)


def _check_rows(model, prompts, gen_length, **config) -> tuple[int, list[int]]:
    """Batch == the slow loop row by row: tokens, padding after the answer, NFE.
    Returns the expansion points of phase 2 over the batch and the final answer lengths."""
    out = remask.generate(model, prompts, build("daedal", **config), gen_length=gen_length)
    width = max(map(len, prompts))
    inserts, lengths = 0, []
    pad = getattr(model, "eos_id", None) or 0
    for row, prompt in enumerate(prompts):
        expected, nfe, n = daedal_generate(model, prompt, gen_length=gen_length, **config)
        used = width - len(prompt) + len(expected)
        assert out.tokens[row, width - len(prompt) : used].tolist() == expected, f"row {row}"
        assert out.attention_mask[row, width - len(prompt) : used].all()
        assert not out.attention_mask[row, used:].any()  # the unused columns are padding
        assert (out.tokens[row, used:] == pad).all()  # ... holding the EOS id
        assert int(out.nfe[row]) == nfe, f"row {row}"
        inserts += n
        lengths.append(len(expected) - len(prompt))
    return inserts, lengths


CONFIGS = [
    dict(initial_length=2, block_length=3, expansion_factor=3, eos_check_tokens=4),
    dict(
        initial_length=3,
        block_length=4,
        expansion_factor=4,
        eos_check_tokens=2,
        low_threshold=0.4,
        eos_threshold=0.2,
    ),
    dict(
        initial_length=4,
        block_length=None,
        threshold=0.5,
        low_threshold=0.6,
        expansion_factor=2,
        eos_check_tokens=3,
        eos_threshold=0.0,
        expand_eos_threshold=0.6,
    ),
    dict(initial_length=1, block_length=2, low_threshold=0.3, eos_threshold=0.05),
]


def test_greedy_equals_reference_loop(eos_model):
    inserts, lengths = 0, set()
    for config in CONFIGS:
        n, final = _check_rows(eos_model, PROMPTS, 24, **config)
        inserts += n
        lengths.add(tuple(final))
    # Not vacuous: phase 2 inserted masks, and rows of one batch ended at different lengths.
    assert inserts > 0
    assert any(len(set(final)) > 1 for final in lengths)


def test_golden_llada_equals_reference_loop():
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from remask.models.checkpoints import load_checkpoint

    model = load_checkpoint(GOLDEN / "llada_tiny")
    assert model.eos_id == 300  # the checkpoint's real EOS
    config = dict(
        initial_length=3,
        block_length=4,
        expansion_factor=3,
        eos_check_tokens=4,
        eos_threshold=0.0,  # no phase-1 growth: leave room for phase 2 to insert
        expand_eos_threshold=1.0,
        low_threshold=0.5,
    )
    with torch.no_grad():
        inserts, _ = _check_rows(model, [[5, 17, 42], [7]], 12, **config)
    assert inserts > 0


class EOSTable:
    """Handcrafted: each row's prediction depends on its number of real tokens n.

    At the last ``last`` real positions of a row (all of them when None) the argmax is EOS
    (id 1) with probability ``p_high`` once n >= ``need``, else ``p_low``; elsewhere token 0
    with probability 0.95. The mask has no logit column (``mask_id = vocab_size``)."""

    vocab_size, mask_id, eos_id = 4, 4, 1

    def __init__(self, need: int, last: int | None = None, p_low=0.3, p_high=0.95):
        self.need, self.last, self.p_low, self.p_high = need, last, p_low, p_high

    def __call__(self, tokens, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        n = attention_mask.sum(-1, keepdim=True)  # (B, 1)
        rank = attention_mask.long().cumsum(-1) - 1  # (B, L)
        tail = (
            torch.ones_like(rank, dtype=torch.bool) if self.last is None else rank >= n - self.last
        )
        p = torch.where(n >= self.need, self.p_high, self.p_low).double()  # (B, 1)
        top = torch.where(tail, 1, 0)  # (B, L)
        prob = torch.where(tail, p, 0.95)  # (B, L)
        probs = ((1 - prob) / 3).unsqueeze(-1).repeat(1, 1, 4)  # (B, L, V)
        probs.scatter_(-1, top.unsqueeze(-1), prob.unsqueeze(-1))
        return probs.log()


def _trace(model, sampler, prompts, gen_length):
    seen = []
    out = remask.generate(
        model,
        prompts,
        sampler,
        gen_length=gen_length,
        callbacks=[lambda s, i: seen.append((i.length.tolist(), i.eos_confidence.tolist()))],
    )
    return out, seen


def test_length_adjustment_appends_until_the_eos_confidence_is_high():
    # Answer 4 -> 12 -> 20 masks: at n = 1 + 20 real tokens the EOS confidence is 0.95.
    sampler = build(
        "daedal", initial_length=4, expansion_factor=8, eos_check_tokens=4, block_length=None
    )
    out, seen = _trace(EOSTable(need=21), sampler, [[2]], gen_length=40)
    lengths = [length[0] for length, _ in seen]
    assert lengths == [12, 20, 22, 22]  # +8, +8, then the EOS tail of 4 // 2, then denoise
    assert [round(c[0], 6) for _, c in seen[:3]] == [0.3, 0.3, 0.95]
    assert out.tokens[0, 1:23].tolist() == [1] * 22  # every mask committed at 0.95 > 0.9
    assert not out.attention_mask[0, 23:].any()
    assert out.nfe.tolist() == [4]  # three length checks, one denoising step
    # The capacity caps the growth (and the tail): 4 -> 12 -> 16, a check at 16, no tail;
    # then one commit per step (0.3 < 0.9: the most confident mask only), no room to insert.
    out, seen = _trace(EOSTable(need=21), sampler, [[2]], gen_length=16)
    assert [length[0] for length, _ in seen] == [12, 16] + [16] * 17
    assert out.attention_mask.all() and out.nfe.tolist() == [19]


def test_eos_confidence_divides_by_eos_check_tokens():
    # Only the last 2 positions predict EOS (p = 0.9): over 4 expected predictions the
    # confidence is 0.45 < 0.5, so the answer grows to the maximum; over 2 it is 0.9.
    table = EOSTable(need=0, last=2, p_high=0.9)
    grow = build("daedal", initial_length=4, expansion_factor=8, eos_check_tokens=4)
    _, seen = _trace(table, grow, [[2]], gen_length=20)
    assert [round(c[0], 6) for _, c in seen[:3]] == [0.45, 0.45, 0.45]
    assert [length[0] for length, _ in seen[:3]] == [12, 20, 20]
    stay = build("daedal", initial_length=4, expansion_factor=8, eos_check_tokens=2)
    _, seen = _trace(table, stay, [[2]], gen_length=20)
    assert round(seen[0][1][0], 6) == 0.9 and seen[0][0] == [5]  # no growth; tail of 1


class RankTable:
    """Handcrafted: at the row's k-th answer position (counted from ``start``) the argmax is
    ``tokens[k]`` with probability ``conf[k]`` (the other 63 tokens share the rest, so any
    confidence above 1/64 is the maximum); the EOS id is 1."""

    vocab_size, mask_id, eos_id = 64, 64, 1

    def __init__(self, start: int, conf, tokens=None):
        self.start = start
        self.conf = torch.tensor(conf, dtype=torch.float64)
        self.tokens = torch.tensor(tokens if tokens is not None else [0] * len(conf))

    def __call__(self, tokens, attention_mask=None):
        B, L = tokens.shape
        conf = torch.full((L,), 0.95, dtype=torch.float64)
        top = torch.zeros(L, dtype=torch.int64)
        n = min(len(self.conf), L - self.start)
        conf[self.start : self.start + n] = self.conf[:n]
        top[self.start : self.start + n] = self.tokens[:n]
        probs = ((1 - conf) / 63).unsqueeze(-1).repeat(1, 64)  # (L, V)
        probs.scatter_(-1, top.unsqueeze(-1), conf.unsqueeze(-1))
        return probs.log().expand(B, L, 64)


def _phase2_step(model, sampler, prompt_length, answer, capacity):
    """One phase-2 step on a canvas of ``prompt_length`` prompt tokens and ``answer`` masks,
    with room for ``capacity`` answer positions."""
    L = prompt_length + capacity
    tokens = torch.full((1, L), model.mask_id)
    tokens[0, :prompt_length] = 2
    editable = torch.zeros(1, L, dtype=torch.bool)
    editable[0, prompt_length:] = True
    canvas = make_canvas(tokens, editable, torch.ones_like(editable), sampler.block_length)
    state = sampler.init(canvas, model)
    assert state.length.tolist() == [answer]
    state = state._replace(adjusting=torch.zeros(1, dtype=torch.bool))
    return sampler.step(state, model, remask.kernels.split(0, 1))


def test_insertion_replaces_the_least_confident_mask_by_expansion_factor_masks():
    conf = [0.95, 0.05, 0.5, 0.02, 0.02, 0.99]
    model = RankTable(start=1, conf=conf)
    sampler = build("daedal", initial_length=6, block_length=None, expansion_factor=4)
    state, info = _phase2_step(model, sampler, 1, answer=6, capacity=20)
    m = model.mask_id
    # Commits 0.95 and 0.99 (> 0.9); points below 0.1: 1, 3, 4; the least confident, ties
    # to the lower position: answer position 3 becomes 4 masks.
    assert state.canvas.tokens[0, 1:10].tolist() == [0, m, m, m, m, m, m, m, 0]
    assert info.source[0, :10].tolist() == [0, 1, 2, 3, 4, -1, -1, -1, 5, 6][:10]
    assert info.committed[0, 1:10].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert state.length.tolist() == [9] and info.length.tolist() == [9]
    assert state.canvas.attention_mask[0].tolist() == [True] * 10 + [False] * 11
    assert state.canvas.editable[0].tolist() == [False] + [True] * 9 + [False] * 11


def test_no_insertion_when_the_eos_confidence_is_high_or_the_answer_is_full():
    conf = [0.95, 0.05, 0.5, 0.02, 0.92, 0.95]
    eos_tail = [0, 0, 0, 0, 1, 1]  # the last two positions predict EOS
    sampler = build("daedal", initial_length=6, block_length=None, eos_check_tokens=2)
    state, info = _phase2_step(RankTable(1, conf, eos_tail), sampler, 1, 6, 20)
    assert round(float(info.eos_confidence[0]), 6) == 0.935  # >= 0.9: no insertion
    assert state.length.tolist() == [6] and int((info.source < 0).sum()) == 0
    lower = build(
        "daedal", initial_length=6, block_length=None, eos_check_tokens=2, expand_eos_threshold=0.95
    )
    state, info = _phase2_step(RankTable(1, conf, eos_tail), lower, 1, 6, 20)
    assert state.length.tolist() == [13]  # 0.935 < 0.95: position 3 grows by 7
    # A full answer (length == capacity) never grows.
    state, info = _phase2_step(RankTable(1, conf), sampler, 1, 6, 6)
    assert state.length.tolist() == [6] and int((info.source < 0).sum()) == 0


def test_a_committed_position_is_never_an_expansion_point_and_overflow_is_dropped():
    # threshold 0.3 < low_threshold 0.5: 0.4 commits, so only 0.2 may expand.
    conf = [0.4, 0.2, 0.99]
    sampler = build("daedal", initial_length=3, block_length=None, threshold=0.3, low_threshold=0.5)
    state, info = _phase2_step(RankTable(1, conf, [3, 0, 2]), sampler, 1, 3, 6)
    m = RankTable.mask_id
    # Position 1 becomes 8 masks, capped at 6 answer positions: the committed 2 falls off.
    assert state.canvas.tokens[0, 1:].tolist() == [3, m, m, m, m, m]
    assert state.length.tolist() == [6]
    assert info.committed[0].tolist() == [False, True] + [False] * 5


def test_ragged_batch_rows_equal_rows_alone(eos_model):
    """Rows that end at different lengths decode in one batch as alone (greedy and sampled)."""
    config = dict(initial_length=2, block_length=3, expansion_factor=3, eos_check_tokens=4)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [9], [6, 5, 3], [1, 1]]
    width = max(map(len, prompts))
    for temperature, seeds in ((0.0, None), (1.0, [11, 2, 5, 8])):
        sampler = build("daedal", temperature=temperature, **config)
        batch = remask.generate(eos_model, prompts, sampler, gen_length=24, seed=seeds)
        used = batch.attention_mask.sum(-1) - width  # (B,): answer lengths
        assert len(set(used.tolist())) > 1  # the rows did end at different lengths
        for row, prompt in enumerate(prompts):
            seed = None if seeds is None else [seeds[row]]
            alone = remask.generate(eos_model, [prompt], sampler, gen_length=24, seed=seed)
            got = batch.tokens[row, width - len(prompt) :]
            assert got.tolist() == alone.tokens[0].tolist(), (temperature, row)
            assert batch.attention_mask[row, width - len(prompt) :].tolist() == (
                alone.attention_mask[0].tolist()
            )
            assert int(batch.nfe[row]) == int(alone.nfe[0])


def test_grown_blocks_keep_a_block_diffusion_models_grid(eos_model):
    """With a model that declares ``block_size``, the driver cuts the first block short so
    blocks are whole model blocks counted from the first real token; blocks recounted after
    every insertion keep that grid."""

    class Blocky(RisingEOS):
        block_size = 4

    model = Blocky(eos_model.inner)
    config = dict(initial_length=2, block_length=None, expansion_factor=3, low_threshold=0.5)
    checked, grew = [], []

    def check(state, info):
        canvas = state.canvas
        real_before = canvas.attention_mask & ~canvas.editable  # the prompt (no tail yet)
        rank = canvas.editable.long().cumsum(-1) - 1
        lead = (real_before & (rank < 0)).sum(-1, keepdim=True)  # prompt length
        expected = torch.where(canvas.editable, (rank + lead % 4) // 4, -1)
        checked.append(torch.equal(canvas.block, expected))
        grew.append(bool((info.source < 0).any()))

    remask.generate(model, PROMPTS, build("daedal", **config), gen_length=20, callbacks=[check])
    assert all(checked) and any(grew)


def test_without_an_eos_id_the_answer_grows_to_gen_length(tiny64):
    sampler = build("daedal", initial_length=2, expansion_factor=3, block_length=4)
    out = remask.generate(tiny64, PROMPTS, sampler, gen_length=10)
    assert out.attention_mask[:, -10:].all()  # confidence 0: phase 1 appends to the maximum
    assert not (out.tokens == tiny64.mask_id).any()
    # 2 -> 5 -> 8 -> 10, one check at 10, then at least one step per block of 4.
    assert (out.nfe >= 4 + 3).all()


def test_stop_at_eos_cuts_a_grown_answer(eos_model):
    sampler = build("daedal", initial_length=2, block_length=3, expansion_factor=3)
    out = remask.generate(eos_model, PROMPTS, sampler, gen_length=24, stop_at_eos=True)
    full = remask.generate(eos_model, PROMPTS, sampler, gen_length=24)
    assert bool((out.nfe < full.nfe).all())  # every row stopped early
    width = max(map(len, PROMPTS))
    for row in range(len(PROMPTS)):
        answer = out.tokens[row, width:][out.attention_mask[row, width:]].tolist()
        first = answer.index(EOS)  # everything after the first EOS is EOS
        assert set(answer[first:]) == {EOS}
        assert answer[:first] == full.tokens[row, width : width + first].tolist()


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(initial_length=0), ValueError),
        (dict(initial_length=2.5), TypeError),
        (dict(threshold=1.5), ValueError),
        (dict(low_threshold=-0.1), ValueError),
        (dict(eos_threshold=float("nan")), ValueError),
        (dict(expand_eos_threshold="high"), TypeError),
        (dict(expansion_factor=0), ValueError),
        (dict(expansion_factor=True), TypeError),
        (dict(eos_check_tokens=0), ValueError),
        (dict(temperature=-1.0), ValueError),
        (dict(block_length=0), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("daedal", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) and repr(value) in str(excinfo.value)


def test_defaults_are_the_references():
    s = build("daedal")
    assert (s.initial_length, s.block_length, s.threshold, s.low_threshold) == (64, 32, 0.9, 0.1)
    assert (s.eos_threshold, s.expand_eos_threshold) == (0.5, 0.9)
    assert (s.expansion_factor, s.eos_check_tokens, s.temperature) == (8, 32, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eos_id", [0, 3, 7])
def test_eos_confidence_is_the_argmax_rule(dtype, eos_id):
    """The EOS check (argmax is EOS, from two max reductions) against torch's first-index
    argmax and a float64 softmax, on logits rounded to a few values (ties at the maximum,
    EOS among them, in about half the columns), with ``first`` skipping leading columns."""
    from remask.samplers.daedal import eos_confidence

    g = torch.Generator().manual_seed(eos_id)
    B, L, V, count, first = 3, 12, 8, 4, 2
    logits = torch.randint(0, 3, (B, L, V), generator=g).to(dtype)  # (B, L, V) many ties
    logits[..., eos_id] += (torch.rand(B, L, generator=g) < 0.5).to(dtype)  # EOS often on top
    start = torch.tensor([2, 5, 9])  # (B,)
    answer = torch.arange(L) >= start.unsqueeze(-1)  # (B, L)
    got = eos_confidence(logits, answer, eos_id, count, first=first)
    expected = []
    for b in range(B):
        found = [
            float(torch.softmax(logits[b, j].double(), -1)[eos_id])
            for j in range(int(start[b]), L)
            if int(logits[b, j].argmax()) == eos_id
        ]
        expected.append(sum(found[-count:]) / count)
    top = logits == logits.amax(-1, keepdim=True)  # (B, L, V)
    assert (top[..., eos_id] & (top.sum(-1) > 1)).any()  # EOS tied at the top somewhere
    assert max(expected) > 0
    assert got.tolist() == pytest.approx(expected, abs=1e-6)
