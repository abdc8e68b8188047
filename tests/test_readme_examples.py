"""The README's Python examples marked ``<!-- readme-test: NAME -->`` run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"<!-- readme-test: ([\w-]+)[^>]*-->\s*```python\n(.*?)```", re.S)


def _blocks() -> dict[str, str]:
    return {name: code for name, code in _BLOCK.findall(README.read_text(encoding="utf-8"))}


def test_the_marked_examples_exist():
    assert {"own-model", "hf-in-memory", "trace"} <= set(_blocks())


def test_own_model_example():
    namespace: dict = {}
    exec(compile(_blocks()["own-model"], "README:own-model", "exec"), namespace)
    out = namespace["out"]
    assert out.tokens.shape == (1, 3 + 8)
    assert out.tokens[0, :3].tolist() == [1, 2, 3]


def test_hf_in_memory_and_trace_examples(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_blocks()["hf-in-memory"], "README:hf-in-memory", "exec"), namespace)
    out = namespace["out"]
    assert isinstance(out.text, list) and len(out.text) == 1 and out.text[0].strip()
    generated = out.tokens[0, -4:].tolist()
    assert not set(generated) & {0, 1, 2, 3, 4}, "special tokens and the mask are never proposed"
    exec(compile(_blocks()["trace"], "README:trace", "exec"), namespace)
    assert (tmp_path / "decode.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"[CLS]"' in (tmp_path / "decode.html").read_text(encoding="utf-8")  # tokens as text
    printed = capsys.readouterr().out
    assert printed.count("\n") >= 2 and "█" in printed
