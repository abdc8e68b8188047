"""Real-model paths with no download: batched prompts on the golden checkpoints, and every
registered sampler through the CLI on LLaDA, Dream and a tiny saved BertForMaskedLM."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from click.testing import CliRunner

import remask
import remask.models
from remask.cli import main
from remask.models.checkpoints import load_checkpoint
from remask.samplers import available, build, sampler_class

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
PROMPTS = [[1, 2, 3], [5, 6, 7, 8, 9, 10], [11]]  # different lengths: left padding
GEN_LENGTH = 8

#: (sampler, model kind) pairs that cannot run, with the clear error they must fail with.
#: A sampler that fails anywhere else fails the smoke test: fix it, or record its genuine
#: capability limit here (the test then checks that the error stays this clear).
EXPECTED_FAILURES: dict[tuple[str, str], str] = {}


@pytest.fixture(autouse=True)
def _torch_kernels():
    # These tests exercise models, padding and the CLI, not the kernel backends (tested in
    # tests/kernels); the torch reference spares them numba's one-off compilation.
    with remask.kernels.use_backend("torch"):
        yield


# ---------------------------------------------------------------- batched prompts
@pytest.fixture(scope="module", params=["llada_tiny", "dream_tiny"])
def checkpoint(request):
    return load_checkpoint(GOLDEN / request.param)


@pytest.mark.parametrize("config", [{"block_length": 4}, {"steps": 4}])
def test_batched_prompts_equal_one_by_one(checkpoint, config):
    sampler = build("low_confidence", **config)
    batch = remask.generate(checkpoint, PROMPTS, sampler, gen_length=GEN_LENGTH, seed=0)
    width = max(map(len, PROMPTS))
    assert batch.tokens.shape == (3, width + GEN_LENGTH)
    for row, prompt in enumerate(PROMPTS):
        alone = remask.generate(checkpoint, [prompt], sampler, gen_length=GEN_LENGTH, seed=0)
        pad = width - len(prompt)
        assert not bool(batch.attention_mask[row, :pad].any())
        assert batch.tokens[row, pad:].tolist() == alone.tokens[0].tolist(), f"row {row}"
        assert int(batch.nfe[row]) == int(alone.nfe[0])


def test_batched_tensor_prompt_with_attention_mask(checkpoint):
    # The tensor form (already left-padded, with a mask) gives the same as the list form.
    sampler = build("low_confidence", block_length=4)
    width = max(map(len, PROMPTS))
    tokens = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[False] * (width - len(p)) + [True] * len(p) for p in PROMPTS])
    listed = remask.generate(checkpoint, PROMPTS, sampler, gen_length=GEN_LENGTH, seed=0)
    tensor = remask.generate(
        checkpoint, tokens, sampler, gen_length=GEN_LENGTH, seed=0, attention_mask=mask
    )
    assert torch.equal(tensor.tokens[tensor.attention_mask], listed.tokens[listed.attention_mask])


def test_dream_empty_prompt_is_a_clear_error():
    dream = load_checkpoint(GOLDEN / "dream_tiny")
    sampler = build("low_confidence")
    for prompts in ([[]], None, [[1, 2], []]):
        with pytest.raises(ValueError, match="needs a non-empty prompt.*bos_id=253"):
            remask.generate(dream, prompts, sampler, gen_length=4, seed=0)
    result = _invoke("generate", "--model", str(GOLDEN / "dream_tiny"), "--gen-length", "4")
    assert result.exit_code == 2 and "non-empty prompt" in result.output


# ---------------------------------------------------------------- the CLI smoke path
def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _vocab(size: int) -> list[str]:
    words = [f"w{i}" for i in range(size)]
    words[0] = "<unk>"
    return words


def _save_word_tokenizer(path: Path, words: list[str], chat_template: str | None) -> None:
    """A whitespace word-level tokenizer: ``"w5 w6"`` -> ``[5, 6]``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(path)


#: Chat template of the test tokenizers: w5 <message> w6 ... then w7 for the reply.
CHAT = (
    "{% for m in messages %}w5 {{ m['content'] }} w6 {% endfor %}"
    "{% if add_generation_prompt %}w7{% endif %}"
)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Model kind -> (directory, prompt ids): golden LLaDA, golden Dream, a tiny BERT MLM."""
    bert = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat"]
    (bert / "vocab.txt").write_text("\n".join(words) + "\n")
    config = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(bert)
    transformers.BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    return {
        "llada": (GOLDEN / "llada_tiny", [[1, 2, 3], [4]]),
        "dream": (GOLDEN / "dream_tiny", [[1, 2, 3], [4]]),
        "bert": (bert, [[2, 5, 6], [2]]),
    }


@pytest.fixture
def memo_loads(monkeypatch):
    """Load each directory once per test module (the first load goes through the real path)."""
    real = remask.models.load_model
    cache = _LOADED

    def load(spec, **kwargs):
        key = (str(spec), tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = real(spec, **kwargs)
        return cache[key]

    monkeypatch.setattr(remask.models, "load_model", load)


_LOADED: dict = {}


def _check_output(result, prompts, mask_id: int, gen_length: int = GEN_LENGTH) -> dict:
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["rows"]) == len(prompts) and data["steps"] >= 1
    for row, prompt in zip(data["rows"], prompts):
        assert row["tokens"][: len(prompt)] == prompt
        assert len(row["generated"]) == gen_length
        assert mask_id not in row["generated"], row
        assert row["nfe"] >= 1
    return data


@pytest.mark.parametrize("kind", ["llada", "dream", "bert"])
@pytest.mark.parametrize("name", available())
def test_every_sampler_runs_through_the_cli(name, kind, model_dirs, memo_loads):
    path, prompts = model_dirs[kind]
    args = [
        "generate",
        "--model",
        path,
        "--sampler",
        name,
        "--gen-length",
        GEN_LENGTH,
        "--seed",
        0,
        "--json",
        "--no-progress",
    ]
    for prompt in prompts:
        args += ["--prompt-ids", ",".join(map(str, prompt))]
    result = _invoke(*args)
    expected = EXPECTED_FAILURES.get((name, kind))
    if expected is not None:
        # A recorded capability limit: a usage error (exit 2) with the recorded message.
        assert result.exit_code == 2, (
            f"{name} on {kind} now exits {result.exit_code}: "
            f"update EXPECTED_FAILURES\n{result.output}"
        )
        assert isinstance(result.exception, SystemExit)
        assert re.search(expected, result.output), result.output
        return
    assert result.exit_code == 0, (
        f"sampler {name!r} (default config) failed on the {kind} checkpoint: fix it, or, if the "
        f"model lacks a capability it needs, record the clear error in EXPECTED_FAILURES.\n"
        f"{result.output}\n{result.exception!r}"
    )
    model = remask.models.load_model(str(path))
    _check_output(result, prompts, model.mask_id)
    assert sampler_class(name).name == name


def test_registry_is_iterated_at_test_time():
    # Samplers are added concurrently; the smoke test covers whatever is registered now.
    assert "low_confidence" in available() and len(available()) >= 1


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_golden_dirs_have_no_tokenizer_so_text_prompts_are_refused(kind, model_dirs):
    path, _ = model_dirs[kind]
    assert not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
    result = _invoke("generate", "--model", path, "--gen-length", 4, "--prompt", "hello")
    assert result.exit_code == 2 and "no tokenizer" in result.output


def test_bert_text_prompt_and_missing_chat_template(model_dirs):
    path, _ = model_dirs["bert"]
    result = _invoke(
        "generate",
        "--model",
        path,
        "--gen-length",
        4,
        "--prompt",
        "the cat",
        "--prompt",
        "mat",
        "--json",
        "--no-progress",
    )
    # [CLS] (2) opens each prompt as BERT was trained; the closing [SEP] is dropped.
    data = _check_output(result, [[2, 5, 6], [2, 9]], mask_id=4, gen_length=4)
    assert all(isinstance(row["text"], str) for row in data["rows"])
    result = _invoke(
        "generate", "--model", path, "--gen-length", 4, "--prompt", "the cat", "--chat"
    )
    assert result.exit_code == 2 and "no chat template" in result.output


@pytest.fixture(scope="module")
def tokenized_dirs(tmp_path_factory):
    """Copies of the golden checkpoints with a word-level tokenizer and a chat template."""
    dirs = {}
    for kind, name, size in (("llada", "llada_tiny", 300), ("dream", "dream_tiny", 250)):
        target = tmp_path_factory.mktemp(kind) / name
        shutil.copytree(
            GOLDEN / name, target, ignore=shutil.ignore_patterns("golden_io.safetensors")
        )
        for path in target.iterdir():
            path.chmod(0o644)
        _save_word_tokenizer(target, _vocab(size), CHAT)
        dirs[kind] = target
    return dirs


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_text_prompt_on_golden_checkpoint_with_tokenizer(kind, tokenized_dirs):
    result = _invoke(
        "generate",
        "--model",
        tokenized_dirs[kind],
        "--gen-length",
        6,
        "--prompt",
        "w10 w11 w12",
        "--prompt",
        "w13",
        "--json",
        "--no-progress",
    )
    model = load_checkpoint(tokenized_dirs[kind])
    data = _check_output(result, [[10, 11, 12], [13]], model.mask_id, gen_length=6)
    assert [row["text"] for row in data["rows"]] == [
        model.tokenizer.decode(row["generated"], skip_special_tokens=True) for row in data["rows"]
    ]


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_chat_prompt_on_golden_checkpoint_with_tokenizer(kind, tokenized_dirs):
    result = _invoke(
        "generate",
        "--model",
        tokenized_dirs[kind],
        "--gen-length",
        6,
        "--prompt",
        "w10 w11",
        "--chat",
        "--json",
        "--no-progress",
    )
    model = load_checkpoint(tokenized_dirs[kind])
    _check_output(result, [[5, 10, 11, 6, 7]], model.mask_id, gen_length=6)


def test_guidance_on_shifted_model_keeps_the_first_token():
    """Dream predicts position i from output i - 1: CFG's unconditional branch must keep BOS."""
    model = load_checkpoint(GOLDEN / "dream_tiny")
    calls = []

    class Spy:
        mask_id, vocab_size, shift = model.mask_id, model.vocab_size, model.shift

        def __call__(self, tokens, attention_mask=None):
            calls.append(tokens.clone())
            return model(tokens, attention_mask)

    out = remask.generate(
        Spy(), [[7, 8, 9]], build("low_confidence", cfg_scale=1.0, steps=2), gen_length=4, seed=0
    )
    assert not bool((out.tokens == model.mask_id).any())
    unconditional = calls[0][1]
    assert unconditional[0].item() == 7 and unconditional[1:3].tolist() == [model.mask_id] * 2


def test_cli_cache_option_matches_uncached_with_refresh_every_step():
    args = [
        "generate",
        "--model",
        str(GOLDEN / "llada_tiny"),
        "--prompt-ids",
        "5,6,7",
        "--gen-length",
        "8",
        "--set",
        "block_length=4",
        "--json",
        "--no-progress",
    ]
    plain = json.loads(_invoke(*args).stdout)
    cached = _invoke(*args, "--cache", "dual", "--cache-refresh", "1")
    assert cached.exit_code == 0, cached.output
    assert json.loads(cached.stdout)["rows"] == plain["rows"]
    bad = _invoke("generate", "--model", "tiny", "--gen-length", "4", "--cache", "prefix")
    assert bad.exit_code == 2 and "Error" in bad.output
