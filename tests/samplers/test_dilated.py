"""dilated (DUS, arXiv 2506.19037): level sets for any block size against the reference's
own construction, a slow per-row loop, the confidence floor with rescheduling, NFE."""

from __future__ import annotations

import math

import pytest
import torch
from reference.dilated import (
    dus_binary_search_levels,
    dus_dilated_unmask_levels,
    dus_generate,
    dus_merge_last_level,
)

import remask
from remask.samplers import build
from remask.samplers.dilated import binary_levels, dilated_levels

PROMPTS = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]]


def _as_table(levels, n):
    table = [None] * n
    for k, level in enumerate(levels):
        for i in level:
            assert table[i] is None
            table[i] = k
    return tuple(table)


@pytest.mark.parametrize("base,skip_exp", [(2, 1), (2, 2), (3, 1), (1, 1), (4, 1)])
def test_dilated_levels_match_the_reference_for_every_size(base, skip_exp):
    for n in range(1, 70):
        levels = dus_merge_last_level(dus_dilated_unmask_levels(10, 10 + n - 1, base, skip_exp))
        expected = _as_table([[i - 10 for i in level] for level in levels], n)
        assert dilated_levels(n, base, skip_exp) == expected, n


def test_binary_levels_match_the_reference_for_every_size():
    for n in range(1, 70):
        assert binary_levels(n) == _as_table(
            dus_merge_last_level(dus_binary_search_levels(0, n - 1)), n
        ), n


def test_level_sets_are_dilated_and_about_log2_many():
    assert dilated_levels(32) == tuple(
        0 if i % 16 == 0 else 1 if i % 8 == 0 else 2 if i % 4 == 0 else 3 if i % 2 == 0 else 4
        for i in range(32)
    )
    for n in (4, 8, 16, 32, 64, 128):
        assert max(dilated_levels(n)) + 1 == int(math.log2(n))
    for n in range(2, 200):
        levels = dilated_levels(n)
        assert max(levels) + 1 <= math.ceil(math.log2(n)) + 1
        first = [i for i in range(n) if levels[i] == 0]
        if max(levels) > 0:  # unless the block is one level, the first is spread out
            assert min(b - a for a, b in zip(first, first[1:])) >= 2


SETTINGS = [  # (gen_length, config)
    (9, dict()),  # defaults: block 32 (one short block), floor 0.3
    (10, dict(block_length=4, confidence_threshold=None)),
    (11, dict(block_length=5, confidence_threshold=0.5)),
    (9, dict(block_length=None, schedule="binary", confidence_threshold=0.4)),
    (12, dict(block_length=6, base=3, confidence_threshold=0.6)),
    (8, dict(block_length=4, cfg_scale=1.5, confidence_threshold=0.3)),
]


@pytest.mark.parametrize("gen_length,config", SETTINGS)
def test_greedy_equals_reference_loop(tiny64, gen_length, config):
    out = remask.generate(
        tiny64, PROMPTS, build("dilated", **config), gen_length=gen_length, seed=0
    )
    width = max(map(len, PROMPTS))
    reference = {k: v for k, v in config.items() if k != "block_length"}
    reference.setdefault("confidence_threshold", 0.3)
    for row, prompt in enumerate(PROMPTS):
        expected, nfe = dus_generate(
            tiny64,
            prompt,
            gen_length=gen_length,
            block_length=config.get("block_length", 32),
            **reference,
        )
        assert out.tokens[row, width - len(prompt) :].tolist() == expected, f"row {row}"
        assert int(out.nfe[row]) == nfe


def test_nfe_is_the_number_of_levels(tiny64, counting):
    model = counting(tiny64)
    out = remask.generate(model, [[1, 2]], build("dilated", block_length=32), gen_length=32, seed=0)
    assert out.nfe.tolist() == [5] and model.calls == 5  # log2(32)
    # Blocks 8, 8, 4: 3 + 3 + 2 levels.
    out = remask.generate(tiny64, [[1]], build("dilated", block_length=8), gen_length=20, seed=0)
    assert out.nfe.tolist() == [8]


# ----------------------------------------------------------------------------- the floor
class Scripted:
    """Fixed logits; position 3's proposal is unsure (prob < 0.5), the others are sure."""

    vocab_size, mask_id = 4, 4

    def __call__(self, tokens, attention_mask=None):
        B, L = tokens.shape
        logits = torch.full((B, L, 4), -4.0)
        logits[..., 1] = 4.0
        logits[:, 3] = torch.tensor([0.0, 0.2, 0.1, 0.0])
        return logits


def test_floor_defers_and_reschedules_so_no_mask_survives():
    commits = []
    sampler = build("dilated", block_length=8, confidence_threshold=0.5)
    out = remask.generate(
        Scripted(),
        [[0]],
        sampler,
        gen_length=8,
        seed=0,
        callbacks=[lambda s, i: commits.append(i.committed[0].nonzero().flatten().tolist())],
    )
    # Offsets (position - 1) by level for n = 8: {0, 4}, {2, 6}, {1, 3, 5, 7}. Position 3 is
    # offset 2 (level 1): refused by the floor there, then committed on the last level, which
    # ignores the floor. The reference would leave it masked (its levels are disjoint).
    assert commits == [[1, 5], [7], [2, 3, 4, 6, 8]]
    assert not bool((out.tokens == Scripted.mask_id).any())
    assert out.nfe.tolist() == [3]


def test_floor_refused_positions_are_retried_before_the_last_level():
    commits = []
    sampler = build("dilated", block_length=16, confidence_threshold=0.5)

    class Changing(Scripted):
        calls = 0

        def __call__(self, tokens, attention_mask=None):
            logits = super().__call__(tokens, attention_mask)
            Changing.calls += 1
            if Changing.calls > 1:  # position 9 (offset 8, level 0) becomes sure at step 2
                return logits
            logits[:, 9] = torch.tensor([0.0, 0.2, 0.1, 0.0])
            return logits

    remask.generate(
        Changing(),
        [[0]],
        sampler,
        gen_length=16,
        seed=0,
        callbacks=[lambda s, i: commits.append(i.committed[0].nonzero().flatten().tolist())],
    )
    # Levels for n = 16: {0, 8}, {4, 12}, {2, 6, 10, 14}, odd offsets. Offset 8 (position 9) is
    # refused at step 1 and retried with level 1 at step 2; position 3 (offset 2, level 2) is
    # refused at every non-final level.
    assert commits[0] == [1]
    assert commits[1] == [5, 9, 13]
    assert 3 not in commits[2] and 3 in commits[3]


@pytest.mark.parametrize(
    "config,error",
    [
        (dict(base=0), ValueError),
        (dict(skip_exp=0), ValueError),
        (dict(base=2.0), TypeError),
        (dict(schedule="linear"), ValueError),
        (dict(confidence_threshold=1.5), ValueError),
        (dict(confidence_threshold=-0.1), ValueError),
        (dict(temperature=-1.0), ValueError),
    ],
)
def test_bad_config_names_the_value(config, error):
    with pytest.raises(error) as excinfo:
        build("dilated", **config)
    key, value = next(iter(config.items()))
    assert key in str(excinfo.value) or repr(value) in str(excinfo.value)
