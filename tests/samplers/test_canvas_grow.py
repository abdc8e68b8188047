"""canvas.grow / canvas.follow: vectorised insertion checked against per-row list splicing."""

from __future__ import annotations

import pytest
import torch

from remask.samplers.canvas import commit, follow, grow, make_canvas

MASK = 9


def _splice(row: list, counts: list[int], fill) -> list:
    """Insert counts[j] copies of ``fill`` after element j, keep the first len(row)."""
    out = []
    for value, n in zip(row, counts):
        out.append(value)
        out.extend([fill] * n)
    return out[: len(row)]


def _random_canvas(g, B=5, L=12, block_length=3):
    tokens = torch.randint(0, MASK, (B, L), generator=g)
    editable = torch.rand(B, L, generator=g) < 0.7
    tokens = torch.where(editable & (torch.rand(B, L, generator=g) < 0.6), MASK, tokens)
    real = torch.ones(B, L, dtype=torch.bool)
    pad = torch.randint(0, 4, (B,), generator=g)  # right padding of each row
    real &= torch.arange(L) < (L - pad).unsqueeze(-1)
    editable &= real
    canvas = make_canvas(tokens, editable, real, block_length)
    # Bring window/done to what commit would have made them.
    none = torch.zeros(B, L, dtype=torch.bool)
    return commit(canvas, none, tokens, MASK, evaluations=0)


@pytest.mark.parametrize("seed", range(6))
def test_grow_equals_list_splicing(seed):
    g = torch.Generator().manual_seed(seed)
    canvas = _random_canvas(g)
    B, L = canvas.tokens.shape
    counts = torch.randint(0, 3, (B, L), generator=g) * (torch.rand(B, L, generator=g) < 0.2)
    counts[0] = 0  # a row that does not grow keeps every field
    token = torch.tensor([MASK, MASK, 7, MASK, 7])
    editable = torch.tensor([True, True, False, True, False])
    grown, source = grow(canvas, counts, token, editable, MASK, block_length=3)
    for b in range(B):
        c = counts[b].tolist()
        t, e = int(token[b]), bool(editable[b])
        assert grown.tokens[b].tolist() == _splice(canvas.tokens[b].tolist(), c, t)
        assert grown.editable[b].tolist() == _splice(canvas.editable[b].tolist(), c, e)
        assert grown.attention_mask[b].tolist() == _splice(
            canvas.attention_mask[b].tolist(), c, True
        )
        assert source[b].tolist() == _splice(list(range(L)), c, -1)
        if sum(c) == 0:
            for field in ("block", "window", "done", "nfe"):
                assert torch.equal(getattr(grown, field)[b], getattr(canvas, field)[b])
    # Blocks and windows of the grown rows are those of a freshly built canvas.
    fresh = commit(
        make_canvas(grown.tokens, grown.editable, grown.attention_mask, 3),
        torch.zeros(B, L, dtype=torch.bool),
        grown.tokens,
        MASK,
        evaluations=0,
    )
    rows = counts.sum(-1) > 0
    assert torch.equal(grown.block[rows], fresh.block[rows])
    assert torch.equal(grown.done[rows], fresh.done[rows])
    live = rows & ~fresh.done
    assert torch.equal(grown.window[live], fresh.window[live])
    assert torch.equal(grown.nfe, canvas.nfe)


def test_grow_drops_what_falls_off_the_edge_and_follow_moves_other_tensors():
    tokens = torch.tensor([[1, 2, MASK, 4, 5]])
    canvas = make_canvas(tokens, torch.ones(1, 5, dtype=torch.bool), torch.ones(1, 5).bool(), 2)
    counts = torch.tensor([[0, 0, 2, 0, 0]])
    grown, source = grow(canvas, counts, MASK, True, MASK, block_length=2)
    assert grown.tokens.tolist() == [[1, 2, MASK, MASK, MASK]]  # 4 and 5 fell off
    assert source.tolist() == [[0, 1, 2, -1, -1]]
    assert grown.block.tolist() == [[0, 0, 1, 1, 2]]
    assert int(grown.window[0]) == 1
    score = torch.tensor([[0.5, 1.5, 2.5, 3.5, 4.5]])
    assert follow(score, source, float("-inf")).tolist() == [[0.5, 1.5, 2.5] + [float("-inf")] * 2]
    # A (B, L, V) tensor moves along its first two dimensions.
    logits = torch.arange(10.0).reshape(1, 5, 2)
    moved = follow(logits, source, 0.0)
    assert moved[0, :3].tolist() == logits[0, :3].tolist() and moved[0, 3:].abs().sum() == 0


def test_grow_with_no_insertion_is_the_identity():
    g = torch.Generator().manual_seed(11)
    canvas = _random_canvas(g)
    counts = torch.zeros_like(canvas.tokens)
    grown, source = grow(canvas, counts, MASK, True, MASK, block_length=None)
    for a, b in zip(grown, canvas):
        assert torch.equal(a, b)
    assert torch.equal(source, torch.arange(canvas.tokens.shape[1]).expand_as(source))
