"""The sweep SPEC: a TOML file naming models, samplers with grids of settings, and tasks.

::

    seed = 0                  # every request's seed derives from (seed, task, request id)
    batch_size = 8            # rows per generate call (optional)

    [[models]]
    spec = "oracle:markov?vocab=4&length=8&seed=0"   # anything remask.models.load_model takes
    # name = "markov"         # optional label (default: the spec)

    [[samplers]]
    name = "low_confidence"
    grid = { steps = [4, 8], temperature = [1.0] }   # the cross product of the lists
    # set = { block_length = 8 }                     # fixed settings (optional)

    [[tasks]]
    kind = "oracle"           # unconditional samples scored by the oracle's exact joint
    samples = 64
    gen_length = 8

    [[tasks]]
    kind = "lm_eval"          # an lm-evaluation-harness task
    # models = ["llada"]      # (any task) only these models (default: every model)
    name = "gsm8k"
    gen_length = 256          # generate_until tasks
    # include_path = "my_tasks"   limit = 100   num_fewshot = 5   apply_chat_template = true
    # mc_num = 128   loglikelihood_batch_size = 32   elbo = "llada"   (loglikelihood tasks)

Relative paths (a checkpoint directory, ``include_path``) are read relative to the SPEC
file's folder. Every key is checked when the file is read: an unknown key, an unknown sampler, an empty
grid, a grid value that is not a list, or a setting the sampler rejects raises ``ValueError``
naming it (and the file), before any model is loaded.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field

__all__ = ["ModelEntry", "SamplerSetting", "SweepSpec", "TaskEntry", "load_spec", "parse_spec"]

_TOP = {"seed", "batch_size", "models", "samplers", "tasks"}
_MODEL = {"spec", "name", "device", "dtype"}
_SAMPLER = {"name", "grid", "set"}
_ORACLE_TASK = {"kind", "name", "samples", "gen_length", "models"}
_LM_TASK = {
    "kind",
    "name",
    "models",
    "gen_length",
    "include_path",
    "limit",
    "num_fewshot",
    "apply_chat_template",
    "mc_num",
    "loglikelihood_batch_size",
    "elbo",
}
_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelEntry:
    """A model: its ``load_model`` spec, a label, and optional device/dtype."""

    spec: str
    name: str
    device: str | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class SamplerSetting:
    """One point of a sampler's grid: the name and its settings."""

    name: str
    settings: dict

    @property
    def label(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in sorted(self.settings.items()))
        return f"{self.name}({inner})"

    def key(self) -> str:
        return json.dumps([self.name, self.settings], sort_keys=True)


@dataclass(frozen=True)
class TaskEntry:
    """A task: ``kind`` "oracle" or "lm_eval" and its options."""

    kind: str
    name: str
    gen_length: int | None = None
    samples: int | None = None
    include_path: str | None = None
    limit: int | None = None
    num_fewshot: int | None = None
    apply_chat_template: bool = False
    mc_num: int = 128
    loglikelihood_batch_size: int = 32
    elbo: str = "llada"
    models: tuple | None = None  # names of the models it runs on (None: all)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated SPEC (see the module docstring)."""

    seed: int
    batch_size: int
    models: tuple
    settings: tuple
    tasks: tuple
    source: str = field(default="<spec>", compare=False)


def _where(source: str) -> str:
    return f"sweep spec {source}"


def _unknown(table: dict, known: set, what: str, source: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise ValueError(
            f"{_where(source)}: unknown key(s) {extra} in {what}; known: {sorted(known)}"
        )


def _int(value, what: str, source: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{_where(source)}: {what} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{_where(source)}: {what} must be >= {low}, got {value}")
    return value


def _table_list(data: dict, key: str, source: str) -> list:
    value = data.get(key)
    if value is None:
        raise ValueError(f"{_where(source)}: no [[{key}]] entries; give at least one")
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise ValueError(
            f"{_where(source)}: {key} must be a non-empty array of tables ([[{key}]]), got {value!r:.80}"
        )
    return value


def _expand(entry: dict, n: int, source: str) -> list[SamplerSetting]:
    from remask.samplers import available, build

    name = entry.get("name")
    if not isinstance(name, str):
        raise ValueError(f"{_where(source)}: samplers[{n}] needs a name (a string), got {name!r}")
    if name not in available():
        raise ValueError(
            f"{_where(source)}: unknown sampler {name!r} in samplers[{n}]; available: {available()}"
        )
    grid = entry.get("grid", {})
    fixed = entry.get("set", {})
    for what, table in (("grid", grid), ("set", fixed)):
        if not isinstance(table, dict):
            raise ValueError(
                f"{_where(source)}: samplers[{n}] ({name}) {what} must be a table, got {table!r:.80}"
            )
    if "grid" in entry and not grid:
        raise ValueError(
            f"{_where(source)}: samplers[{n}] ({name}) has an empty grid; give lists of values or drop it"
        )
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ValueError(
                f"{_where(source)}: samplers[{n}] ({name}) grid value {key} = {values!r} is not a list; "
                f"write {key} = [{values!r}]"
            )
        if not values:
            raise ValueError(f"{_where(source)}: samplers[{n}] ({name}) grid {key} = [] is empty")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ValueError(
            f"{_where(source)}: samplers[{n}] ({name}) sets {both} both in grid and in set"
        )
    keys = sorted(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        settings = {**fixed, **dict(zip(keys, combo))}
        try:
            build(name, **settings)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{_where(source)}: samplers[{n}] ({name}) setting {settings} is rejected: {error}"
            ) from None
        out.append(SamplerSetting(name, settings))
    return out


def _task_models(entry: dict, n: int, source: str):
    if "models" not in entry:
        return None
    names = entry["models"]
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        raise ValueError(
            f"{_where(source)}: tasks[{n}].models must be a non-empty list of model names, got {names!r}"
        )
    return tuple(names)


def _base(source: str) -> str:
    return os.path.dirname(os.path.abspath(source)) if os.path.isfile(source) else os.getcwd()


def _task(entry: dict, n: int, source: str) -> TaskEntry:
    kind = entry.get("kind")
    if kind == "oracle":
        _unknown(entry, _ORACLE_TASK, f"tasks[{n}] (kind oracle)", source)
        samples = _int(entry.get("samples"), f"tasks[{n}].samples", source)
        gen_length = _int(entry.get("gen_length"), f"tasks[{n}].gen_length", source)
        name = entry.get("name", "oracle")
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{_where(source)}: tasks[{n}].name must be a non-empty string, got {name!r}"
            )
        return TaskEntry(
            kind="oracle",
            name=name,
            samples=samples,
            gen_length=gen_length,
            models=_task_models(entry, n, source),
        )
    if kind == "lm_eval":
        _unknown(entry, _LM_TASK, f"tasks[{n}] (kind lm_eval)", source)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(
                f'{_where(source)}: tasks[{n}] (kind lm_eval) needs name = "<lm-eval task>", got {name!r}'
            )
        kwargs = {}
        for key in ("gen_length", "limit", "mc_num", "loglikelihood_batch_size"):
            if key in entry:
                kwargs[key] = _int(entry[key], f"tasks[{n}].{key}", source)
        if "num_fewshot" in entry:
            kwargs["num_fewshot"] = _int(
                entry["num_fewshot"], f"tasks[{n}].num_fewshot", source, low=0
            )
        if "include_path" in entry:
            path = entry["include_path"]
            if not isinstance(path, str):
                raise ValueError(
                    f"{_where(source)}: tasks[{n}].include_path must be a string, got {path!r}"
                )
            path = os.path.join(_base(source), os.path.expanduser(path))
            if not os.path.isdir(path):
                raise ValueError(
                    f"{_where(source)}: tasks[{n}].include_path {entry['include_path']!r} is not a directory"
                )
            kwargs["include_path"] = path
        if "apply_chat_template" in entry:
            if not isinstance(entry["apply_chat_template"], bool):
                raise ValueError(
                    f"{_where(source)}: tasks[{n}].apply_chat_template must be true or false"
                )
            kwargs["apply_chat_template"] = entry["apply_chat_template"]
        if "elbo" in entry:
            from remask.eval.likelihood import VARIANTS

            if entry["elbo"] not in VARIANTS:
                raise ValueError(
                    f"{_where(source)}: tasks[{n}].elbo must be one of {list(VARIANTS)}, got {entry['elbo']!r}"
                )
            kwargs["elbo"] = entry["elbo"]
        return TaskEntry(kind="lm_eval", name=name, models=_task_models(entry, n, source), **kwargs)
    raise ValueError(
        f'{_where(source)}: tasks[{n}].kind must be "oracle" or "lm_eval", got {kind!r}'
    )


def parse_spec(data: dict, source: str = "<spec>") -> SweepSpec:
    """Validate a SPEC given as a dict (the parsed TOML)."""
    if not isinstance(data, dict):
        raise ValueError(f"{_where(source)}: expected a table, got {type(data).__name__}")
    _unknown(data, _TOP, "the top level", source)
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"{_where(source)}: seed must be an integer in [0, 2**63), got {seed!r}")
    batch_size = _int(data.get("batch_size", 8), "batch_size", source)
    models = []
    for n, entry in enumerate(_table_list(data, "models", source)):
        _unknown(entry, _MODEL, f"models[{n}]", source)
        spec = entry.get("spec")
        if not isinstance(spec, str) or not spec:
            raise ValueError(
                f'{_where(source)}: models[{n}] needs spec = "<model spec or directory>", got {spec!r}'
            )
        name = entry.get("name", spec)
        local = os.path.join(_base(source), os.path.expanduser(spec))
        if (
            not os.path.isabs(spec)
            and not spec.startswith(("oracle:", "tiny"))
            and os.path.isdir(local)
        ):
            spec = local  # a checkpoint directory next to the SPEC
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{_where(source)}: models[{n}].name must be a non-empty string, got {name!r}"
            )
        dtype = entry.get("dtype")
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(
                f"{_where(source)}: models[{n}].dtype must be one of {list(_DTYPES)}, got {dtype!r}"
            )
        device = entry.get("device")
        if device is not None and not isinstance(device, str):
            raise ValueError(
                f"{_where(source)}: models[{n}].device must be a string, got {device!r}"
            )
        models.append(ModelEntry(spec=spec, name=name, device=device, dtype=dtype))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(
            f"{_where(source)}: model names repeat ({names}); give each [[models]] its own name"
        )
    settings = []
    for n, entry in enumerate(_table_list(data, "samplers", source)):
        _unknown(entry, _SAMPLER, f"samplers[{n}]", source)
        settings.extend(_expand(entry, n, source))
    keys = [s.key() for s in settings]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"{_where(source)}: a sampler setting appears twice; each grid point must be unique"
        )
    tasks = tuple(
        _task(entry, n, source) for n, entry in enumerate(_table_list(data, "tasks", source))
    )
    task_names = [t.name for t in tasks]
    if len(set(task_names)) != len(task_names):
        raise ValueError(
            f"{_where(source)}: task names repeat ({task_names}); give each oracle task a name"
        )
    for n, task in enumerate(tasks):
        unknown = sorted(set(task.models or ()) - set(names))
        if unknown:
            raise ValueError(
                f"{_where(source)}: tasks[{n}].models names unknown model(s) {unknown}; models: {names}"
            )
    return SweepSpec(
        seed=seed,
        batch_size=batch_size,
        models=tuple(models),
        settings=tuple(settings),
        tasks=tasks,
        source=source,
    )


def load_spec(path) -> SweepSpec:
    """Read and validate a SPEC file (TOML)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"sweep spec {path!r} is not a file")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"sweep spec {path}: not valid TOML ({error})") from None
    return parse_spec(data, path)
