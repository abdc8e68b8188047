"""The decode trace viewer: a hand-built trace read back as states, text and a PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import remask
from remask.analysis.trace import Trace
from remask.trace_view import (
    COMMITTED,
    FIXED,
    KNOWN,
    MASKED,
    REMASKED,
    DecodeTracer,
    render_png,
    render_text,
    trace_grid,
    write_trace,
)

M = 9  # mask id


def _trace() -> Trace:
    """Position 0 is the prompt; step 1 commits 1 and 2, step 2 remasks 2 and commits 3,
    step 3 commits 2 again and 4."""
    F, T = False, True
    tokens = torch.tensor([[[0, 3, 4, M, M]], [[0, 3, M, 5, M]], [[0, 3, 6, 5, 7]]])  # (T, B, L)
    committed = torch.tensor([[[F, T, T, F, F]], [[F, F, F, T, F]], [[F, F, T, F, T]]])
    score = torch.tensor(
        [[[0, 0.9, 0.5, 0.1, 0.1]], [[0, 0, 0.2, 0.7, 0.1]], [[0, 0, 0.95, 0, 0.3]]]
    )
    return Trace(
        committed=committed,
        editable=torch.tensor([[F, T, T, T, T]]),
        attention_mask=torch.ones(1, 5, dtype=torch.bool),
        score=score,
        proposal=tokens.clone(),
        tokens=tokens,
        extra={"nfe": torch.tensor([[1], [2], [3]])},
    )


def test_trace_grid_states_by_hand():
    grid = trace_grid(_trace(), mask_id=M)
    assert grid["state"].tolist() == [
        [FIXED, COMMITTED, COMMITTED, MASKED, MASKED],
        [FIXED, KNOWN, REMASKED, COMMITTED, MASKED],
        [FIXED, KNOWN, COMMITTED, KNOWN, COMMITTED],
    ]
    assert grid["committed"].tolist() == [2, 1, 2] and grid["remasked"].tolist() == [0, 1, 0]
    expected = np.full((3, 5), np.nan, dtype=np.float32)
    expected[0, 1], expected[0, 2], expected[1, 3], expected[2, 2], expected[2, 4] = (
        0.9,
        0.5,
        0.7,
        0.95,
        0.3,
    )
    np.testing.assert_array_equal(grid["score"], expected)
    assert grid["nfe"].tolist() == [1, 2, 3]


def test_render_text_one_line_per_step():
    text = render_text(_trace(), mask_id=M, color=False)
    lines = text.splitlines()
    assert lines[1:] == [
        "   1 | ██··| +2 nfe=1",
        "   2 | ▒x█·| +1 -1 nfe=2",
        "   3 | ▒█▒█| +2 nfe=3",
    ]
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
    trace = Trace(
        committed=committed,
        editable=torch.ones(1, L, dtype=torch.bool),
        attention_mask=torch.ones(1, L, dtype=torch.bool),
        tokens=tokens,
    )
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
    no_tokens = Trace(
        committed=_trace().committed,
        editable=_trace().editable,
        attention_mask=_trace().attention_mask,
    )
    with pytest.raises(ValueError, match="no canvases"):
        trace_grid(no_tokens, mask_id=M)


def test_png_and_a_real_decode(tmp_path):
    pytest.importorskip("matplotlib")
    render_png(_trace(), tmp_path / "hand.png", mask_id=M)
    assert (tmp_path / "hand.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = remask.load_model("oracle:markov?vocab=4&length=10&seed=0")
    tracer = DecodeTracer()
    out = remask.generate(
        model,
        [[0], [1, 2]],
        remask.samplers.build("low_confidence", steps=4),
        gen_length=8,
        seed=0,
        callbacks=[tracer],
    )
    trace = tracer.trace(out)
    for row in range(2):
        grid = trace_grid(trace, mask_id=model.mask_id, row=row)
        assert grid["committed"].sum() == 8 and grid["committed"].tolist() == [2, 2, 2, 2]
        assert (grid["state"][-1][-8:] != MASKED).all()
        assert grid["nfe"].tolist() == [1, 2, 3, 4]
    write_trace(trace, str(tmp_path / "run.png"), mask_id=model.mask_id)
    assert sorted(p.name for p in tmp_path.glob("run.*.png")) == ["run.0.png", "run.1.png"]


def _page_parts(text: str) -> tuple[dict, str, list[str]]:
    """(embedded JSON, the viewer script, unbalanced tags) of a rendered page."""
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.problems, self.scripts, self._in = [], [], [], None

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "input", "br"):
                self.stack.append(tag)
            if tag == "script":
                self._in = dict(attrs).get("id", "")
                self.scripts.append([self._in, ""])

        def handle_endtag(self, tag):
            if not self.stack or self.stack.pop() != tag:
                self.problems.append(tag)
            self._in = None

        def handle_data(self, data):
            if self._in is not None:
                self.scripts[-1][1] += data

    parser = Parser()
    parser.feed(text)
    scripts = dict(parser.scripts)
    return (
        __import__("json").loads(scripts["trace-data"]),
        scripts[""],
        parser.problems + parser.stack,
    )


def test_html_page_embeds_the_decode(tmp_path):
    from remask.trace_view import render_html

    path = tmp_path / "t.html"
    render_html(_trace(), path, mask_id=M, title="a </script> title")
    data, script, unbalanced = _page_parts(path.read_text(encoding="utf-8"))
    assert unbalanced == []
    assert data["title"] == "a </script> title" and data["length"] == 5
    assert [s["state"] for s in data["steps"]] == ["02211", "03421", "03232"]
    assert data["steps"][0]["scores"] == {"1": 0.9, "2": 0.5}
    assert data["steps"][1]["tokens"] == [0, 3, M, 5, M] and data["steps"][1]["remasked"] == 1
    assert [s["nfe"] for s in data["steps"]] == [1, 2, 3]
    assert data["labels"][str(M)] == "·" and data["editable"] == [0, 1, 1, 1, 1]
    assert "ArrowRight" in script and "http" not in path.read_text(
        encoding="utf-8"
    )  # self-contained


def test_html_viewer_script_steps_through_the_decode(tmp_path):
    """Run the page's script under node against a minimal DOM stand-in (skipped without node)."""
    import json
    import shutil
    import subprocess

    from remask.trace_view import render_html

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    path = tmp_path / "t.html"
    render_html(_trace(), path, mask_id=M)
    data, script, _ = _page_parts(path.read_text(encoding="utf-8"))
    stub = (
        """
const els = {}; const listeners = {};
function el(id) { return els[id] || (els[id] = {id, children: [], style: {}, textContent: "", value: "",
  appendChild(c) { this.children.push(c); }, addEventListener(k, f) { listeners[id + ":" + k] = f; }}); }
el("trace-data").textContent = DATA;
global.document = { getElementById: el, createElement: () => el("cell" + Object.keys(els).length),
  addEventListener: (k, f) => { listeners["doc:" + k] = f; } };
"""
        + script
        + """
const view = () => el("canvas").children.map(c => [c.className, c.textContent]);
const out = [view(), el("where").textContent];
listeners["doc:keydown"]({key: "ArrowRight"}); out.push(view(), el("info").textContent);
listeners["doc:keydown"]({key: "End"}); listeners["doc:keydown"]({key: "ArrowRight"}); out.push(el("where").textContent);
console.log(JSON.stringify(out));
"""
    )
    code = stub.replace("DATA", json.dumps(json.dumps(data)))
    done = subprocess.run([node, "-e", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, where, second, info, last = json.loads(done.stdout)
    assert where == "step 1 / 3" and last == "step 3 / 3"
    assert first == [["c s0", "0"], ["c s2", "3"], ["c s2", "4"], ["c s1", "·"], ["c s1", "·"]]
    assert second == [["c s0", "0"], ["c s3", "3"], ["c s4", "·"], ["c s2", "5"], ["c s1", "·"]]
    assert "+1 committed" in info and "1 remasked" in info and "NFE 2" in info
