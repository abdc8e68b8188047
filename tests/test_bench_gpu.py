"""The GPU benchmark's CPU path and its reference-loop ports (speed is never asserted)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "samplers"))  # the slow paper loops live there
from reference.low_confidence import llada_generate as slow_llada_generate
from reference.threshold import fastdllm_generate

import remask
from remask.bench import gpu
from remask.bench.reference_loops import (
    fastdllm_dual_cache_generate,
    llada_generate,
    num_transfer_tokens,
)
from remask.models.cache import CachedDenoiser


@pytest.fixture(scope="module")
def llada_tiny():
    return gpu.build_denoiser(
        "llada-8b", quick=True, device=torch.device("cpu"), dtype=torch.float32
    )


def _prompts(model, batch: int, length: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.mask_id - 1, (batch, length), generator=gen)


def test_num_transfer_tokens_splits_evenly_remainder_first():
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[0, :32] = True
    mask[1, :7] = True
    counts = num_transfer_tokens(mask, 5)
    assert counts.tolist() == [[7, 7, 6, 6, 6], [2, 2, 1, 1, 1]]


@pytest.mark.parametrize(
    "gen_length, block_length, steps", [(12, 4, 12), (12, 4, 6), (12, 12, 5), (8, 2, 8)]
)
def test_llada_port_equals_the_slow_paper_loop(llada_tiny, gen_length, block_length, steps):
    prompts = _prompts(llada_tiny, 3, 5, seed=gen_length + steps)
    tokens, nfe = llada_generate(
        llada_tiny, prompts, steps=steps, gen_length=gen_length, block_length=block_length
    )
    for row in range(3):
        want, want_nfe = slow_llada_generate(
            llada_tiny,
            prompts[row].tolist(),
            gen_length=gen_length,
            block_length=block_length,
            steps=steps,
        )
        assert tokens[row].tolist() == want
        assert nfe == want_nfe


def test_llada_port_equals_remask_low_confidence(llada_tiny):
    prompts = _prompts(llada_tiny, 2, 6, seed=3)
    sampler = remask.samplers.build("low_confidence", steps=16, block_length=4)
    out = remask.generate(llada_tiny, prompts, sampler, gen_length=16, seed=0)
    tokens, nfe = llada_generate(llada_tiny, prompts, steps=16, gen_length=16, block_length=4)
    assert torch.equal(out.tokens, tokens)
    assert out.nfe.tolist() == [nfe, nfe]


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.9])
def test_dual_cache_port_equals_remask_threshold_with_dual_cache(llada_tiny, threshold):
    prompts = _prompts(llada_tiny, 1, 6, seed=4)
    sampler = remask.samplers.build("threshold", threshold=threshold, block_length=4)
    out = remask.generate(
        CachedDenoiser(llada_tiny, mode="dual"), prompts, sampler, gen_length=12, seed=0
    )
    tokens, nfe = fastdllm_dual_cache_generate(
        llada_tiny, prompts, gen_length=12, block_length=4, threshold=threshold
    )
    assert torch.equal(out.tokens, tokens)
    assert int(out.nfe[0]) == nfe
    if threshold == 0.0:  # everything commits in the block-start pass
        assert nfe == 3


def test_dual_cache_port_without_reuse_is_the_uncached_threshold_loop(llada_tiny):
    # With one-token blocks every step is a block start (a full pass), so the cache is never
    # read: the port must then equal the slow uncached Fast-dLLM loop written from the paper.
    prompts = _prompts(llada_tiny, 2, 4, seed=5)
    tokens, nfe = fastdllm_dual_cache_generate(
        llada_tiny, prompts, gen_length=6, block_length=1, threshold=0.5
    )
    for row in range(2):
        want, want_nfe = fastdllm_generate(
            llada_tiny, prompts[row].tolist(), gen_length=6, block_length=1, threshold=0.5
        )
        assert tokens[row].tolist() == want and nfe == want_nfe == 6


def test_ports_reject_what_the_references_reject(llada_tiny):
    prompts = _prompts(llada_tiny, 1, 3, seed=6)
    with pytest.raises(ValueError, match="multiple of block_length"):
        llada_generate(llada_tiny, prompts, steps=10, gen_length=10, block_length=4)
    with pytest.raises(ValueError, match="multiple of the number of blocks"):
        llada_generate(llada_tiny, prompts, steps=5, gen_length=8, block_length=4)
    with pytest.raises(ValueError, match="threshold"):
        fastdllm_dual_cache_generate(
            llada_tiny, prompts, gen_length=8, block_length=4, threshold=1.5
        )


def test_timed_denoiser_is_transparent_and_counts_forwards(llada_tiny):
    timed = gpu.TimedDenoiser(llada_tiny)
    prompts = _prompts(llada_tiny, 1, 4, seed=7)
    sampler = remask.samplers.build("threshold", threshold=0.9, block_length=4)
    plain = remask.generate(
        CachedDenoiser(llada_tiny, mode="dual"), prompts, sampler, gen_length=8, seed=0
    )
    timed.reset()
    wrapped = remask.generate(
        CachedDenoiser(timed, mode="dual"), prompts, sampler, gen_length=8, seed=0
    )
    assert torch.equal(plain.tokens, wrapped.tokens)
    assert len(timed._marks) == int(wrapped.nfe[0])  # one timing per forward, full or window
    assert timed.forward_ms() > 0


def test_quick_run_writes_every_part(tmp_path):
    logs: list[str] = []
    written = gpu.main(
        quick=True,
        out=tmp_path,
        models=("llada-8b", "dream-7b"),
        test_select="philox and known",
        log=logs.append,
    )
    with open(written["tests"], newline="") as f:
        tests = list(csv.DictReader(f))
    assert tests and all(r["outcome"] == "passed" for r in tests), tests
    with open(written["propose"], newline="") as f:
        propose = list(csv.DictReader(f))
    assert {r["name"] for r in propose} == {"copy", "propose_t0", "propose_t1", "propose_t1_top_p"}
    assert {r["variant"] for r in propose} == {"bfloat16", "float32"}
    for r in propose:
        assert float(r["derived"]) > 0 and json.loads(r["config"])["V"] == 1000
    with open(written["e2e"], newline="") as f:
        e2e = list(csv.DictReader(f))
    # two models x (two loops x two sides + the float32-confidence reference)
    assert len(e2e) == 10
    assert {(r["loop"], r["impl"]) for r in e2e} >= {
        ("low_confidence", "remask"),
        ("threshold_dual_cache", "reference"),
    }
    for r in e2e:
        # float32 on CPU: remask and the reference loops make the same decisions
        assert r["tokens_equal_other_side"] == "True", r
        assert int(r["nfe"]) >= 16 // 4 and float(r["forward_share"]) > 0
    assert any("of copy bandwidth" in line for line in logs)


def test_divergence_replay_finds_no_difference_where_none_exists():
    from remask.bench import divergence

    assert divergence.main() == [None]


def test_cli_bench_gpu_checks_its_output_folder_first(tmp_path):
    from click.testing import CliRunner

    from remask.cli import main as cli

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["bench", "gpu", "--quick", "--out", str(blocker)])
    assert result.exit_code == 2
    assert "--out" in result.output and "Traceback" not in result.output
