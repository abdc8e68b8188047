"""RemaskLM under lm-eval on the tiny local tasks (tests/data/eval_tasks): an exact oracle and
the golden LLaDA checkpoint, through the Python API and `remask eval`."""

from __future__ import annotations

import json

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from _eval_paths import MARKOV, TASKS_DIR  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from remask.cli import main  # noqa: E402
from remask.eval import RemaskLM, request_seed  # noqa: E402
from remask.eval.tasks import task_manager  # noqa: E402
from remask.eval.text import IdTokenizer, cut_at_stop  # noqa: E402
from remask.models import load_model  # noqa: E402
from remask.samplers import build, generate  # noqa: E402

TASKS = ["remask_copy", "remask_choice"]


@pytest.fixture(scope="module")
def oracle_run():
    lm = RemaskLM(
        MARKOV,
        "low_confidence",
        {"temperature": 1.0, "steps": 2},
        gen_length=4,
        batch_size=4,
        seed=3,
    )
    manager = task_manager(TASKS, str(TASKS_DIR))
    results = lm_eval.simple_evaluate(
        model=lm, tasks=TASKS, task_manager=manager, log_samples=True, bootstrap_iters=0
    )
    return lm, results


def test_multiple_choice_on_an_oracle_scores_the_exact_likelihood(oracle_run):
    """acc equals the fraction of documents whose label has the larger exact log p(choice | context)."""
    lm, results = oracle_run
    chain = lm.model
    hits = []
    for sample in results["samples"]["remask_choice"]:
        doc = sample["doc"]
        ctx = [int(t) for t in doc["context"].split()]
        scores = [
            float(chain.log_prob(torch.tensor([ctx + [int(t) for t in c.split()]])))
            for c in doc["choices"]
        ]
        hits.append(float(scores.index(max(scores)) == doc["label"]))
        got = [r[0][0] for r in sample["resps"]]
        base = float(chain.log_prob(torch.tensor([ctx])))
        assert got == pytest.approx([s - base for s in scores], abs=1e-9)
    assert results["results"]["remask_choice"]["acc,none"] == pytest.approx(sum(hits) / len(hits))


def test_generate_until_rows_equal_rows_decoded_alone(oracle_run):
    """Each response is what the sampler gives that prompt alone with the request's own seed,
    cut at the stop string; the costs are recorded per request."""
    lm, results = oracle_run
    ids = IdTokenizer(4)
    sampler = build("low_confidence", temperature=1.0, steps=2)
    samples = results["samples"]["remask_copy"]
    assert len(samples) == 6
    for sample in samples:
        prompt = ids.encode(sample["doc"]["prompt"])
        seed = request_seed(3, f"remask_copy/{sample['doc_id']}/0")
        alone = (
            generate(lm.model, [prompt], sampler, gen_length=4, seed=[seed]).tokens[0, -4:].tolist()
        )
        assert sample["resps"][0][0] == cut_at_stop(ids.decode(alone), ["3 3"])
        assert "3 3" not in sample["resps"][0][0]
    costs = [c for c in lm.costs() if c["kind"] == "generate_until"]
    assert len(costs) == 6
    for c in costs:
        assert c["nfe"] == 2 and c["generated_tokens"] == 4 and c["tokens_per_forward"] == 2.0
        assert c["seconds"] > 0 and c["tokens_per_second"] == pytest.approx(4 / c["seconds"])
    summary = lm.cost_summary()
    assert (
        summary["requests"] == 6 and summary["nfe"] == 12 and summary["tokens_per_forward"] == 2.0
    )


def test_cut_at_stop():
    assert cut_at_stop("1 2 3 3 0", ["3 3"]) == "1 2 "
    assert cut_at_stop("a\n\nb", ["b", "\n\n"]) == "a"
    assert cut_at_stop("abc", None) == "abc" and cut_at_stop("abc", "z") == "abc"
    with pytest.raises(TypeError, match="stop sequences must be strings"):
        cut_at_stop("abc", [3])


def test_rolling_and_capability_errors():
    lm = RemaskLM(MARKOV, gen_length=2)
    with pytest.raises(NotImplementedError, match="loglikelihood task"):
        lm.loglikelihood_rolling([])

    class Blocky:
        def __init__(self, inner):
            self.inner, self.mask_id, self.vocab_size, self.block_size = (
                inner,
                inner.mask_id,
                inner.vocab_size,
                2,
            )

        def __call__(self, tokens, attention_mask=None):
            return self.inner(tokens, attention_mask)

    from lm_eval.api.instance import Instance

    blocky = RemaskLM(Blocky(load_model(MARKOV)), gen_length=2)
    request = Instance("loglikelihood", {}, ("0 1", " 2"), 0, ("remask_choice", 0, 1))
    with pytest.raises(ValueError, match=r"remask_choice.*block-diffusion"):
        blocky.loglikelihood([request])
    with pytest.raises(ValueError, match="unknown sampler"):
        RemaskLM(MARKOV, "nope")
    with pytest.raises(ValueError, match="whitespace-separated token ids"):
        lm.codec.encode("hello")


def test_remask_eval_cli_on_the_golden_llada(tmp_path, llada_tiny_dir, tasks_dir):
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--model",
            llada_tiny_dir,
            "--sampler",
            "low_confidence",
            "--set",
            "steps=2",
            "--tasks",
            ",".join(TASKS),
            "--include-path",
            tasks_dir,
            "--gen-length",
            "4",
            "--mc-num",
            "8",
            "--limit",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["results"]) == set(TASKS)
    assert 0 <= summary["results"]["remask_choice"]["acc,none"] <= 1
    rows = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    gen = [r for r in rows if r["kind"] == "generate_until"]
    ll = [r for r in rows if r["kind"] == "loglikelihood"]
    assert len(gen) == 3 and len(ll) == 6  # 3 documents x 2 choices
    assert all(r["nfe"] == 2 and r["tokens_per_forward"] == 2.0 for r in gen)
    # ELBO (8 rows) + the greedy check (one call per continuation token, 2 here) per choice
    assert all(r["nfe"] == 8 + 2 for r in ll)
    assert "exact_match" in result.output


def test_remask_eval_bad_input(tmp_path, tasks_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--model",
            MARKOV,
            "--tasks",
            "remask_copy",
            "--include-path",
            tasks_dir,
            "--out",
            str(blocker),
        ],
    )
    assert result.exit_code == 2 and "is a file" in result.output
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--model",
            MARKOV,
            "--tasks",
            "remask_copy",
            "--include-path",
            tasks_dir,
            "--sampler",
            "nope",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "unknown sampler 'nope'" in result.output
