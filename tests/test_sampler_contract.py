"""The sampler contract describes itself: every registered sampler has what the README's
"Adding a sampler" section lists (its test file, its slow reference loop imported by that
test, its row in the README's sampler table, its benchmark settings), and that section lists
exactly the steps checked here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from remask.samplers import available, build, sampler_class

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "samplers"
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"### {title}\n")
    end = README.index("\n## ", start)
    return README[start:end]


@pytest.mark.parametrize("name", available())
def test_has_its_test_file_importing_its_reference_loop(name):
    test_file = TESTS / f"test_{name}.py"
    reference = TESTS / "reference" / f"{name}.py"
    assert test_file.is_file(), f"{name}: no tests/samplers/test_{name}.py"
    assert reference.is_file(), f"{name}: no slow reference loop tests/samplers/reference/{name}.py"
    imports = re.findall(
        r"^\s*from reference\.(\w+) import|^\s*import reference\.(\w+)",
        test_file.read_text(),
        flags=re.M,
    )
    assert name in {a or b for a, b in imports}, f"test_{name}.py does not import reference.{name}"


@pytest.mark.parametrize("name", available())
def test_has_a_readme_row(name):
    table = README[
        README.index("## Samplers (`remask.samplers`)") : README.index("### Adding a sampler")
    ]
    rows = [line for line in table.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, (
        f"{name}: expected one row in the README's sampler table, found {len(rows)}"
    )
    assert f"`samplers/{name}.py`" in rows[0]


def _check_bench_settings(name: str, cls) -> None:
    assert "bench_configs" in vars(cls), (
        f"{name}: no bench_configs on the class (the benchmark would skip it)"
    )
    settings = cls.bench_configs(8)
    assert settings, f"{name}: bench_configs(8) is empty"
    labels = [label for label, _ in settings]
    assert len(set(labels)) == len(labels), f"{name}: duplicate benchmark labels {labels}"
    for label, config in settings:
        assert isinstance(build(name, **config), cls), (name, label)


@pytest.mark.parametrize("name", available())
def test_has_its_own_benchmark_settings(name):
    _check_bench_settings(name, sampler_class(name))


def test_the_readme_lists_exactly_the_checked_steps():
    section = _section("Adding a sampler")
    steps = re.findall(r"^(\d+)\. (✓ )?", section, flags=re.M)
    assert [int(n) for n, _ in steps] == list(range(1, len(steps) + 1))
    checked = [n for n, mark in steps if mark]
    assert len(checked) == 4, f"the README marks steps {checked} as checked; this test checks four"
    for needle in (
        "bench_configs(G)",
        "tests/samplers/reference/<name>.py",
        "tests/samplers/test_<name>.py",
        "A row in the sampler table",
        "samplers/__init__.py",
        "example_configs",
        "finished(state)",
        "may_leave_masks",
        "tests/test_sampler_contract.py",
    ):
        assert needle in section, f"'Adding a sampler' no longer mentions {needle!r}"


def test_the_checks_fail_for_a_sampler_missing_its_pieces():
    """The meta-test can fail: an unknown name has no test file, no reference loop, no row, and
    a class that only inherits the base's empty bench_configs has no benchmark settings."""
    from dataclasses import dataclass

    from remask.samplers.base import Sampler

    with pytest.raises(AssertionError, match="no tests/samplers/test_"):
        test_has_its_test_file_importing_its_reference_loop("not_a_sampler")
    with pytest.raises(AssertionError, match="found 0"):
        test_has_a_readme_row("not_a_sampler")

    @dataclass(frozen=True, kw_only=True)
    class Bare(Sampler):
        pass

    with pytest.raises(AssertionError, match="no bench_configs"):
        _check_bench_settings("bare", Bare)
