"""The decode trace viewer: a hand-built trace read back as states, text and a PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import remask
from remask.analysis.trace import Trace
from remask.trace_view import (COMMITTED, FIXED, KNOWN, MASKED, REMASKED, DecodeTracer, render_png,
                               render_text, trace_grid, write_trace)

M = 9  # mask id


def _trace() -> Trace:
    """Position 0 is the prompt; step 1 commits 1 and 2, step 2 remasks 2 and commits 3,
    step 3 commits 2 again and 4."""
    F, T = False, True
    tokens = torch.tensor([[[0, 3, 4, M, M]], [[0, 3, M, 5, M]], [[0, 3, 6, 5, 7]]])  # (T, B, L)
    committed = torch.tensor([[[F, T, T, F, F]], [[F, F, F, T, F]], [[F, F, T, F, T]]])
    score = torch.tensor([[[0, .9, .5, .1, .1]], [[0, 0, .2, .7, .1]], [[0, 0, .95, 0, .3]]])
    return Trace(committed=committed, editable=torch.tensor([[F, T, T, T, T]]),
                 attention_mask=torch.ones(1, 5, dtype=torch.bool), score=score, proposal=tokens.clone(),
                 tokens=tokens, extra={"nfe": torch.tensor([[1], [2], [3]])})


def test_trace_grid_states_by_hand():
    grid = trace_grid(_trace(), mask_id=M)
    assert grid["state"].tolist() == [
        [FIXED, COMMITTED, COMMITTED, MASKED, MASKED],
        [FIXED, KNOWN, REMASKED, COMMITTED, MASKED],
        [FIXED, KNOWN, COMMITTED, KNOWN, COMMITTED],
    ]
    assert grid["committed"].tolist() == [2, 1, 2] and grid["remasked"].tolist() == [0, 1, 0]
    expected = np.full((3, 5), np.nan, dtype=np.float32)
    expected[0, 1], expected[0, 2], expected[1, 3], expected[2, 2], expected[2, 4] = .9, .5, .7, .95, .3
    np.testing.assert_array_equal(grid["score"], expected)
    assert grid["nfe"].tolist() == [1, 2, 3]


def test_render_text_one_line_per_step():
    text = render_text(_trace(), mask_id=M, color=False)
    lines = text.splitlines()
    assert lines[1:] == ["   1 | ██··| +2 nfe=1", "   2 | ▒x█·| +1 -1 nfe=2", "   3 | ▒█▒█| +2 nfe=3"]
    coloured = render_text(_trace(), mask_id=M, color=True)
    assert "\x1b[32m█" in coloured and "\x1b[31m█" in coloured and "\x1b[35mx" in coloured


def test_wide_canvases_fold_to_the_width():
    L = 1024
    tokens = torch.full((2, 1, L), M)
    tokens[0, 0, 500] = 1
    tokens[1, 0, 500] = 1
    tokens[1, 0, 1023] = 2
    committed = tokens != M
    committed[1, 0, 500] = False
    trace = Trace(committed=committed, editable=torch.ones(1, L, dtype=torch.bool),
                  attention_mask=torch.ones(1, L, dtype=torch.bool), tokens=tokens)
    lines = render_text(trace, mask_id=M, width=64, color=False).splitlines()
    assert "16 positions" in lines[0]
    body = [line.split("|")[1] for line in lines[1:]]
    assert all(len(row) == 64 for row in body)
    assert body[0][500 // 16] == "█" and body[0].count("█") == 1 and body[0].count("·") == 63
    assert body[1][500 // 16] == "▒" and body[1][-1] == "█"


def test_bad_arguments():
    with pytest.raises(ValueError, match="row=3"):
        trace_grid(_trace(), mask_id=M, row=3)
    with pytest.raises(ValueError, match="width"):
        render_text(_trace(), mask_id=M, width=2)
    no_tokens = Trace(committed=_trace().committed, editable=_trace().editable,
                      attention_mask=_trace().attention_mask)
    with pytest.raises(ValueError, match="no canvases"):
        trace_grid(no_tokens, mask_id=M)


def test_png_and_a_real_decode(tmp_path):
    pytest.importorskip("matplotlib")
    render_png(_trace(), tmp_path / "hand.png", mask_id=M)
    assert (tmp_path / "hand.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = remask.load_model("oracle:markov?vocab=4&length=10&seed=0")
    tracer = DecodeTracer()
    out = remask.generate(model, [[0], [1, 2]], remask.samplers.build("low_confidence", steps=4),
                          gen_length=8, seed=0, callbacks=[tracer])
    trace = tracer.trace(out)
    for row in range(2):
        grid = trace_grid(trace, mask_id=model.mask_id, row=row)
        assert grid["committed"].sum() == 8 and grid["committed"].tolist() == [2, 2, 2, 2]
        assert (grid["state"][-1][-8:] != MASKED).all()
        assert grid["nfe"].tolist() == [1, 2, 3, 4]
    write_trace(trace, str(tmp_path / "run.png"), mask_id=model.mask_id)
    assert sorted(p.name for p in tmp_path.glob("run.*.png")) == ["run.0.png", "run.1.png"]
