"""The CLI on real checkpoint directories and hub ids: device/dtype, prompts files, JSONL
output, traces, argument checks before loading, warnings (no download: a tiny BERT written to
a temporary directory, the golden LLaDA, and a pre-populated hub cache in offline mode)."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from _tiny_bert import write_tiny_bert  # noqa: E402
from click.testing import CliRunner

from remask.cli import main

transformers = pytest.importorskip("transformers")

GOLDEN = pathlib.Path(__file__).resolve().parent / "data" / "golden"
MISSING = "/nonexistent/remask-model"  # a model that cannot load: errors must come first


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert_cli"), max_position_embeddings=32)


def test_text_prompts_file_out_jsonl_and_trace(bert_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('the cat\n\n{"prompt": "a dog"}\n[2, 5, 6]\n{"prompt_ids": [2, 9]}\n')
    out = tmp_path / "rows.jsonl"
    picture = tmp_path / "decode.png"
    result = _invoke(
        "generate",
        "--model",
        bert_dir,
        "--prompts-file",
        prompts,
        "--gen-length",
        4,
        "--set",
        "temperature=1.0",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--out",
        out,
        "--trace",
        picture,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["the cat", "a dog", [2, 5, 6], [2, 9]]
    for row in rows:
        assert len(row["tokens"]) == 4 and row["nfe"] >= 1 and isinstance(row["text"], str)
        assert row["sampler"] == "low_confidence" and row["config"]["temperature"] == 1.0
        assert not set(row["tokens"]) & {0, 1, 2, 3, 4}, (
            "special tokens are never proposed by default"
        )
    # one PNG per row
    pictures = sorted(p.name for p in tmp_path.glob("decode.*.png"))
    assert pictures == [f"decode.{b}.png" for b in range(4)]
    assert (tmp_path / "decode.0.png").read_bytes()[:4] == b"\x89PNG"
    assert "Loading weights" not in result.output  # transformers' bar is silenced


def test_text_prompt_keeps_cls_and_drops_closing_sep(bert_dir):
    result = _invoke(
        "generate", "--model", bert_dir, "--prompt", "the cat", "--gen-length", 3, "--json"
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    assert row["tokens"][:3] == [2, 5, 6]  # [CLS] the cat — no [SEP] before the answer


def test_unknown_dominated_prompt_warns(bert_dir):
    result = _invoke("generate", "--model", bert_dir, "--prompt", "zzz qqq", "--gen-length", 2)
    assert result.exit_code == 0, result.output
    assert "unknown token" in result.stderr


def test_trace_text_in_terminal(bert_dir):
    result = _invoke(
        "generate",
        "--model",
        bert_dir,
        "--prompt-ids",
        "2,5",
        "--gen-length",
        4,
        "--set",
        "steps=2",
        "--trace",
        "-",
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if " |" in line]
    assert len(lines) == 2 and all(
        line.rstrip().endswith(("+2 nfe=1", "+2 nfe=2")) for line in lines
    )
    result = _invoke(
        "generate",
        "--model",
        bert_dir,
        "--prompt-ids",
        "2,5",
        "--gen-length",
        4,
        "--set",
        "steps=2",
        "--trace",
        "-",
        "--json",
    )
    assert (
        result.exit_code == 0 and json.loads(result.stdout)["steps"] == 2
    )  # the trace went to stderr
    assert result.stderr.count(" |") == 2


def test_gen_length_beyond_max_length_is_a_usage_error(bert_dir):
    result = _invoke("generate", "--model", bert_dir, "--prompt-ids", "2,5", "--gen-length", 40)
    assert (
        result.exit_code == 2 and "32 tokens" in result.output and "--gen-length" in result.output
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,text",
    [
        (["generate", "--gen-length", 2, "--prompt-ids", "1,2", "--chat"], "--chat"),
        (["generate", "--gen-length", 2, "--prompt-ids", "1,x"], "'x'"),
        (
            ["generate", "--gen-length", 2, "--prompts-file", "/nonexistent/prompts.txt"],
            "prompts.txt",
        ),
        (["generate", "--gen-length", 2, "--trace", "out.svg"], ".html or .png"),
        (["generate", "--gen-length", 2, "--set", "stepz=3"], "stepz"),
        (["infill", "--tokens", "2,8,22,X,3"], "'X'"),
        (["infill", "--tokens", "2,8"], "nothing to fill"),
    ],
)
def test_arguments_are_checked_before_the_model_loads(args, text):
    result = _invoke(*args[:1], "--model", MISSING, *args[1:])
    assert result.exit_code == 2, result.output
    assert text in result.output and MISSING not in result.output.split("Error:")[-1]


def test_out_and_trace_paths_are_checked_before_the_model_loads(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for option, name in (("--out", "out.jsonl"), ("--trace", "decode.png")):
        result = _invoke("generate", "--model", MISSING, "--gen-length", 2, option, blocker / name)
        assert result.exit_code == 2 and option in result.output, result.output
    result = _invoke("generate", "--model", MISSING, "--gen-length", 2, "--out", tmp_path)
    assert result.exit_code == 2 and "directory" in result.output


def test_prompts_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('"fine"\n{"prompt": 3}\n')
    result = _invoke("generate", "--model", MISSING, "--gen-length", 2, "--prompts-file", bad)
    assert result.exit_code == 2 and "p.jsonl:2" in result.output


def test_device_is_validated(bert_dir):
    result = _invoke(
        "generate", "--model", bert_dir, "--prompt-ids", "2", "--gen-length", 2, "--device", "gpu0"
    )
    assert result.exit_code == 2 and "gpu0" in result.output
    if not torch.cuda.is_available():
        result = _invoke(
            "generate",
            "--model",
            bert_dir,
            "--prompt-ids",
            "2",
            "--gen-length",
            2,
            "--device",
            "cuda",
        )
        assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_cache_with_a_single_block_warns():
    llada = GOLDEN / "llada_tiny"
    common = [
        "generate",
        "--model",
        llada,
        "--prompt-ids",
        "5,6,7",
        "--gen-length",
        8,
        "--cache",
        "prefix",
    ]
    result = _invoke(*common)
    assert result.exit_code == 0, result.output
    assert "single block" in result.stderr
    result = _invoke(*common, "--set", "block_length=4")
    assert result.exit_code == 0, result.output
    assert "single block" not in result.stderr


def test_wino_emulation_cost_warns():
    result = _invoke("generate", "--model", "tiny", "--sampler", "wino", "--gen-length", 12)
    assert result.exit_code == 0, result.output
    assert "1 + W = 13 forward passes" in result.stderr
    result = _invoke(
        "generate",
        "--model",
        "tiny",
        "--sampler",
        "wino",
        "--set",
        "block_length=4",
        "--gen-length",
        12,
    )
    assert result.exit_code == 0 and "forward passes" not in result.stderr


def test_wino_emulation_picks_a_bounded_width():
    # One block over 64 masks would cost 65 forward passes a step; the CLI picks blocks of 32.
    result = _invoke(
        "generate", "--model", "tiny", "--sampler", "wino", "--gen-length", 64, "--json"
    )
    assert result.exit_code == 0, result.output
    assert "using block_length=32 (33 per step)" in result.stderr
    record = json.loads(result.stdout)
    # 1 + 32 evaluations a step: both blocks are full (a shorter last block would cost less).
    assert record["rows"][0]["nfe"] == 33 * record["steps"]


def test_threads_option_sets_the_libraries(monkeypatch):
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        result = _invoke("--threads", 2, "generate", "--model", "tiny", "--gen-length", 2)
        assert result.exit_code == 0, result.output
        import os

        assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["NUMBA_NUM_THREADS"] == "2"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert _invoke("--threads", 0, "list").exit_code == 2


def test_help_imports_neither_torch_nor_numba(fresh_python):
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom remask.cli import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'numba', 'transformers') if m in sys.modules))"
    )
    assert fresh_python(code) == "[]"


def _hub_cache(root: pathlib.Path, repo: str, source: pathlib.Path) -> None:
    """The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<sha>/}."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (snapshot / name).write_bytes((source / name).read_bytes())
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(sha)


def test_hub_id_from_an_offline_cache(tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    _hub_cache(tmp_path, "remask-test/llada-tiny", GOLDEN / "llada_tiny")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # were anything fetched, it would fail

    from remask.models import load_model

    model = load_model("remask-test/llada-tiny")
    assert type(model).__name__ == "LLaDADenoiser"
    result = _invoke(
        "generate",
        "--model",
        "remask-test/llada-tiny",
        "--prompt-ids",
        "5,6",
        "--gen-length",
        3,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["rows"][0]["generated"]) == 3
    result = _invoke(
        "generate", "--model", "remask-test/absent", "--prompt-ids", "5", "--gen-length", 2
    )
    assert (
        result.exit_code == 2
        and "remask-test/absent" in result.output
        and "offline" in result.output
    )


def test_trace_html_page_with_token_text(bert_dir, tmp_path):
    page = tmp_path / "decode.html"
    result = _invoke(
        "generate", "--model", bert_dir, "--prompt", "the cat", "--gen-length", 4, "--trace", page
    )
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    data = json.loads(text.split('type="application/json">')[1].split("</script>")[0])
    assert len(data["steps"]) >= 1 and data["length"] == 3 + 4
    assert data["labels"]["2"] == "[CLS]" and data["labels"]["5"] == "the"  # the tokenizer's tokens
