"""`remask analyze ...` through click's test runner: files written, JSON keys, usage errors."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from remask.cli import main

ORACLE = "oracle:markov?vocab=3&length=6&concentration=0.5"


def _invoke(*args):
    return CliRunner().invoke(main, ["analyze", *args])


def _summary(path):
    with open(path / "summary.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def plotting():
    pytest.importorskip("matplotlib")


def test_homogenization_on_an_oracle(tmp_path, plotting):
    result = _invoke(
        "homogenization",
        "--model",
        ORACLE,
        "--n-canvases",
        "3",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert s["command"] == "homogenization" and s["config"]["gen_length"] == 5
    byd = s["by_distance"]
    assert byd["distance"] == [1, 2, 3, 4, 5] and sum(byd["count"]) == 3 * 5
    # Exact Markov marginals homogenize: KL to the stationary law falls with distance.
    assert all(a > b for a, b in zip(byd["kl_unigram"], byd["kl_unigram"][1:]))
    assert 0 < s["kl_decay_rate_per_token"] < 1
    assert (tmp_path / "homogenization.png").stat().st_size > 1000
    assert "distance" in result.output and "kl_unigram" in result.output


def test_homogenization_of_a_trained_toy_against_its_oracle(tmp_path, plotting):
    from remask.analysis import train_toy
    from remask.models import load_model

    train_toy(load_model(ORACLE), steps=5, batch_size=8, out=tmp_path / "toy", progress=False)
    result = _invoke(
        "homogenization",
        "--model",
        str(tmp_path / "toy"),
        "--reference",
        ORACLE,
        "--n-canvases",
        "2",
        "--out",
        str(tmp_path / "h"),
        "--no-plots",
    )
    assert result.exit_code == 0, result.output
    byd = _summary(tmp_path / "h")["by_distance"]
    assert {"kl_to_reference", "reference_kl_unigram", "ratio"} <= set(byd)
    assert not (tmp_path / "h" / "homogenization.png").exists()


def test_cmi_on_a_tiny_transformer(tmp_path, plotting):
    canvases = tmp_path / "canvases.txt"
    canvases.write_text("0 _ _ _ _\n2, _, _, _, _\n")
    result = _invoke(
        "cmi",
        "--model",
        "tiny:transformer?vocab=6&seed=1",
        "--canvases",
        str(canvases),
        "--top-k",
        "3",
        "--max-batch",
        "2",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert (
        s["config"]["mode"] == "top_k=3"
        and s["matrix_positions"] == [1, 2, 3, 4]
        and s["matrix_is_mean"]
    )
    assert s["model"] == "tiny:transformer?vocab=6&seed=1" and s["canvases"]["n_canvases"] == 2
    assert len(s["canvases"]["sha256"]) == 64 and s["environment"]["sha"]
    assert len(s["matrix"]) == 4 and s["matrix"][0][0] is None  # diagonal undefined
    assert s["by_separation"]["separation"] == [1, 2, 3]
    assert 0 < s["missed_mass_mean"] < 1  # 3 of 5 tokens: some probability is not clamped
    assert {"adjacent_mean", "distant_mean", "asymmetry_mean"} <= set(s)
    assert (tmp_path / "cmi.png").stat().st_size > 1000


def test_cmi_exact_on_an_oracle_is_symmetric(tmp_path):
    result = _invoke("cmi", "--model", ORACLE, "--out", str(tmp_path), "--no-plots")
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert s["config"]["mode"] == "exact" and s["missed_mass_mean"] == 0
    assert s["asymmetry_mean"] < 1e-9 and s["adjacent_mean"] > 5 * s["distant_mean"]


def test_coherence(tmp_path, plotting):
    result = _invoke(
        "coherence",
        "--model",
        ORACLE,
        "--set",
        "temperature=1.0",
        "--samples",
        "300",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert {"tv", "kl", "validity", "tv_floor", "kl_floor"} <= set(s["sampler_error"])
    parts = s["partitions"]
    assert set(parts) == {
        "AR (1/step)",
        "L2R blocks of 2",
        "dilated (even, odd)",
        "contiguous halves",
        "one step",
    }
    for p in parts.values():  # the chain rule: KL(p‖q) = Σ_t E[TC(S_t)]
        assert p["kl"] == pytest.approx(p["sum_E_tc"], abs=1e-5)
    assert parts["AR (1/step)"]["kl"] == pytest.approx(0, abs=1e-9)
    assert s["tc_total"] == parts["one step"]["kl"] > parts["dilated (even, odd)"]["kl"]
    assert (tmp_path / "coherence.png").stat().st_size > 1000
    assert "partition" in result.output


def test_coherence_needs_an_exact_oracle(tmp_path):
    result = _invoke("coherence", "--model", "tiny:transformer?vocab=5", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "needs an exact oracle" in result.output
    assert not (tmp_path / "summary.json").exists()


def test_order(tmp_path, plotting):
    result = _invoke(
        "order",
        "--model",
        "tiny:transformer?vocab=8&seed=2",
        "--set",
        "steps=3",
        "--gen-length",
        "6",
        "--rows",
        "2",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    s = _summary(tmp_path)
    assert {"kendall_tau", "afp", "global_ar@1", "local_ar@1", "mean_frontier_distance"} <= set(
        s["metrics"]
    )
    assert {"eb_proxy", "fast_dllm_factor", "frechet"} == set(s["certificates"])
    assert s["steps"] == 3 and s["metrics"]["tokens_per_step"] == 2
    assert len(s["commit_step"]) == 2 and len(s["commit_step"][0]) == 6
    assert (tmp_path / "decode_order.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (("order", "--model", ORACLE, "--gen-length", "9"), "gen_length=9"),
        (("homogenization", "--model", "oracle:nope"), "oracle kind"),
        (("cmi", "--model", ORACLE, "--top-k", "2", "--samples", "3"), "at most one"),
        (("order", "--model", ORACLE, "--sampler", "low_confidence", "--set", "steps=-1"), "steps"),
    ],
)
def test_usage_errors(tmp_path, args, message):
    result = _invoke(*args, "--out", str(tmp_path), "--no-plots")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_matplotlib_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = _invoke("cmi", "--model", ORACLE, "--out", str(tmp_path))
    assert result.exit_code == 2
    assert 'pip install "remask[plot]"' in result.output
    assert _invoke("cmi", "--model", ORACLE, "--out", str(tmp_path), "--no-plots").exit_code == 0
