"""lm-eval tasks as lists of requests, one per document, scored one document at a time.

The sweep needs what ``lm_eval.evaluate`` does, but per request (so that rows can be written
as they finish and a rerun can skip them): build the task's instances, answer a document's
instances, run the task's filters on them and ``process_results`` for its metrics.
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["LMEvalRequests", "load_tasks", "quiet", "task_manager"]


def quiet() -> None:
    """lm-eval's per-task notices and datasets' progress bars off (command-line runs)."""
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def task_manager(names: list[str], include_path: str | list[str] | None):
    """A TaskManager that knows ``names``: the include path alone when it has them all (fast:
    lm-eval's thousands of built-in task files are not indexed), else with the built-ins.
    An unknown name raises ``ValueError`` naming it."""
    from lm_eval.tasks import TaskManager

    if include_path:
        manager = TaskManager(include_path=include_path, include_defaults=False)
        if all(n in manager.all_tasks for n in names):
            return manager
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        where = f" (include path {include_path!r})" if include_path else ""
        raise ValueError(
            f"unknown lm-eval task(s) {unknown}{where}; `lm-eval ls tasks` lists the built-in ones, "
            "--include-path adds a folder of task YAMLs"
        )
    return manager


def load_tasks(
    names: list[str],
    include_path=None,
    *,
    num_fewshot: int | None = None,
    fewshot_seed: int = 1234,
    manager=None,
) -> dict:
    """name -> lm-eval Task for each name (groups are refused: name their tasks).

    ``manager`` (from :func:`task_manager`) saves indexing the task folders again.
    """
    from lm_eval.api.task import Task
    from lm_eval.tasks import get_task_dict

    manager = manager if manager is not None else task_manager(names, include_path)
    if hasattr(
        manager, "load"
    ):  # lm-eval >= 0.4.10: flat dicts (get_task_dict is deprecated there)
        loaded = manager.load(list(names))["tasks"]
    else:
        loaded = get_task_dict(list(names), manager)
    out = {}
    for name in names:
        task = loaded.get(name)
        if not isinstance(task, Task):
            raise ValueError(
                f"lm-eval task {name!r} is a group of tasks; list the tasks it holds instead"
            )
        # As lm_eval.simple_evaluate: num_fewshot overrides the YAML's unless it pins 0.
        if num_fewshot is not None and task.get_config("num_fewshot") != 0:
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=fewshot_seed)
        out[name] = task
    return out


class LMEvalRequests:
    """The requests (documents) of one lm-eval task.

    Parameters
    ----------
    task : lm_eval Task
    limit : int, optional
        The first ``limit`` documents.
    lm : RemaskLM, optional
        Needed with ``apply_chat_template`` (the model's template renders the prompts).
    apply_chat_template : bool
    """

    def __init__(
        self, task, *, limit: int | None = None, lm=None, apply_chat_template: bool = False
    ):
        self.task = task
        self.name = task.config.task
        self.output_type = task.OUTPUT_TYPE
        if self.output_type == "loglikelihood_rolling":
            raise ValueError(
                f"lm-eval task {self.name!r} needs loglikelihood_rolling (perplexity), which remask does "
                "not implement for masked diffusion models: use a multiple-choice or generate_until task"
            )
        chat = bool(apply_chat_template)
        task.build_all_requests(
            limit=limit,
            rank=0,
            world_size=1,
            apply_chat_template=chat,
            chat_template=lm.apply_chat_template if chat else None,
            tokenizer_name=lm.tokenizer_name if chat else "",
        )
        by_doc = defaultdict(list)
        for instance in task.instances:
            by_doc[instance.doc_id].append(instance)
        self.instances = {d: sorted(v, key=lambda i: i.idx) for d, v in sorted(by_doc.items())}
        self.kind = "generate_until" if self.output_type == "generate_until" else "loglikelihood"

    @property
    def doc_ids(self) -> list[int]:
        return list(self.instances)

    def score(self, doc_id: int, responses: list) -> dict:
        """The task's metrics for one document given its responses (one per instance)."""
        instances = self.instances[doc_id]
        for instance, response in zip(instances, responses):
            instance.resps = [response]
            instance.filtered_resps = {}
        for ensemble in getattr(self.task, "_filters", []):
            ensemble.apply(instances)
        metrics = {}
        keys = list(instances[0].filtered_resps) or ["none"]
        for key in keys:
            values = self.task.process_results(
                instances[0].doc, [i.filtered_resps.get(key, i.resps[0]) for i in instances]
            )
            for metric, value in values.items():
                name = metric if key == "none" else f"{metric},{key}"
                metrics[name] = _plain(value)
        return metrics

    def first_metric(self) -> str | None:
        """The metric the sweep calls ``accuracy`` (the task's first listed metric)."""
        listed = [
            m.get("metric") for m in (self.task.config.metric_list or []) if isinstance(m, dict)
        ]
        return listed[0] if listed and isinstance(listed[0], str) else None


def _plain(value):
    """JSON-ready metric value (numpy scalars to floats; anything else as its repr)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)
