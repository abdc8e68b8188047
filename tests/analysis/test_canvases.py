"""Real canvases: file formats, tokenizer special tokens, seeded masking, CLI refusals (issue 16)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from remask.analysis.canvases import mask_canvases, read_canvases, special_ids
from remask.cli import main
from remask.models.tiny import TinyTransformer

TINY = "tiny:transformer?vocab=8&seed=1"


class _WordTokenizer:
    """A stand-in tokenizer: words are ids, [CLS]=0 and [SEP]=1 wrap every text, [MASK]=7."""

    vocab = {"[CLS]": 0, "[SEP]": 1, "a": 2, "b": 3, "c": 4, "d": 5, "e": 6, "[MASK]": 7}
    all_special_ids = [0, 1, 7]
    mask_token_id = 7

    def __call__(self, text, add_special_tokens=True):
        ids = [self.vocab[w] for w in text.split()]
        return {"input_ids": [0, *ids, 1] if add_special_tokens else ids}


class _WithTokenizer:
    def __init__(self):
        self.net = TinyTransformer(vocab_size=8, seed=1)
        self.mask_id, self.vocab_size = 7, 8
        self.tokenizer = _WordTokenizer()

    def __call__(self, tokens, attention_mask=None):
        return self.net(tokens, attention_mask)


def test_formats_and_special_tokens(tmp_path):
    model = _WithTokenizer()
    path = tmp_path / "c.txt"
    path.write_text(
        '# a comment\n2 _ 3, 4\n\n{"ids": [2, null, "_", 5]}\na [MASK] b\n{"text": "c d [MASK]"}\n'
    )
    c = read_canvases(path, model)
    assert [r.tolist() for r in c.rows] == [
        [2, 7, 3, 4],
        [2, 7, 7, 5],
        [0, 2, 7, 3, 1],
        [0, 4, 5, 7, 1],
    ]
    assert c.special[2].tolist() == [True, False, False, False, True]
    assert special_ids(model) == {0, 1}  # never the mask
    assert c.source["n_canvases"] == 4 and len(c.source["sha256"]) == 64


@pytest.mark.parametrize(
    "text, message",
    [
        ("2 9 _\n", "line 1: token id 9 is outside"),
        ('{"ids": [2, 3.5]}\n', "line 1: not a token id"),
        ('{"ids": [1], "text": "a"}\n', "exactly one of"),
        ("{bad json\n", "invalid JSON"),
        ("2 3 4\n", "canvas 1 has no masked position"),
        ("\n# only comments\n", "holds no canvas"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "c.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_canvases(path, TinyTransformer(vocab_size=8, seed=1))


def test_text_needs_a_tokenizer(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("hello world\n")
    with pytest.raises(ValueError, match="line 1 is text but TinyTransformer has no tokenizer"):
        read_canvases(path, TinyTransformer(vocab_size=8, seed=1))


def test_masking_is_seeded_and_spares_special_tokens(tmp_path):
    model = _WithTokenizer()
    path = tmp_path / "c.txt"
    path.write_text("a b c d e a b c\nb c d e a\n")
    one = read_canvases(path, model, mask_span=3, seed=5)
    two = read_canvases(path, model, mask_span=3, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(one.rows, two.rows))
    for row, sp in zip(one.rows, one.special):
        m = (row == 7).nonzero()[:, 0].tolist()
        assert len(m) == 3 and m == list(range(m[0], m[0] + 3)) and not bool(sp[m].any())
        assert row[0] == 0 and row[-1] == 1
    rate = read_canvases(path, model, mask_rate=0.5, seed=0)
    assert [int((r == 7).sum()) for r in rate.rows] == [4, 2]  # round(0.5 * 8), round(0.5 * 5)
    others = {
        tuple(read_canvases(path, model, mask_span=3, seed=s).rows[0].tolist()) for s in range(6)
    }
    assert len(others) > 1  # the seed moves the span
    assert one.source["mask_span"] == 3 and one.source["mask_seed"] == 5
    with pytest.raises(ValueError, match="fewer than mask_span=9"):
        read_canvases(path, model, mask_span=9)
    with pytest.raises(ValueError, match="at most one"):
        mask_canvases(one, 7, span=1, rate=0.5)


def _invoke(*args):
    return CliRunner().invoke(main, ["analyze", *args])


def test_a_checkpoint_without_canvases_refuses(tmp_path):
    for command in ("homogenization", "cmi"):
        result = _invoke(command, "--model", TINY, "--out", str(tmp_path / command), "--no-plots")
        assert (
            result.exit_code == 2 and "needs real canvases: pass --canvases FILE" in result.output
        )
        assert "Traceback" not in result.output
    result = _invoke(
        "homogenization", "--model", TINY, "--mask-span", "2", "--out", str(tmp_path / "h")
    )
    assert result.exit_code == 2 and "pass it too" in result.output
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 99\n")
    result = _invoke(
        "homogenization", "--model", TINY, "--canvases", str(bad), "--out", str(tmp_path / "h")
    )
    assert (
        result.exit_code == 2 and "token id 99" in result.output and "--canvases" in result.output
    )


def test_homogenization_on_real_canvases_records_its_inputs(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        "\n".join(json.dumps({"ids": list(range(1, 7)) + [2, 3, 4, 5]}) for _ in range(2)) + "\n"
    )
    out = tmp_path / "h"
    result = _invoke(
        "homogenization",
        "--model",
        TINY,
        "--dtype",
        "float32",
        "--canvases",
        str(path),
        "--mask-span",
        "5",
        "--seed",
        "3",
        "--out",
        str(out),
        "--no-plots",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == TINY and "0x" not in json.dumps(s)
    assert s["canvases"]["path"] == str(path) and s["canvases"]["mask_span"] == 5
    assert s["canvases"]["mask_seed"] == 3 and s["environment"]["versions"]["torch"]
    byd = s["by_distance"]
    assert sum(byd["count"]) == 2 * 5
    assert {"control_kl_unigram", "excess_kl_unigram", "kl_to_control"} <= set(byd)
    assert "excess_kl_unigram" in result.output
