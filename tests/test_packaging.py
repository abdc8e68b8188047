"""The namespace of docs/design.md §1: research folders install under remask.*."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import remask

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_subpackages_resolve_to_the_top_level_folders():
    import remask.analysis
    import remask.kernels
    import remask.samplers

    assert pathlib.Path(remask.samplers.__file__).parent == ROOT / "samplers"
    assert pathlib.Path(remask.kernels.__file__).parent == ROOT / "kernels"
    assert pathlib.Path(remask.analysis.__file__).parent == ROOT / "analysis"
    assert pathlib.Path(remask.__file__).parent == ROOT / "remask"


def test_import_works_outside_the_repository(tmp_path):
    code = "import remask, remask.samplers, remask.kernels, remask.analysis; print(remask.samplers.available())"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "low_confidence" in result.stdout


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "remask.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and remask.__version__ in result.stdout


def test_test_file_basenames_are_unique():
    """pytest's default import mode needs unique test-module basenames across folders."""
    names = [p.name for p in (ROOT / "tests").rglob("*.py") if p.name != "conftest.py"]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"rename these test modules: {duplicates}"


def test_every_package_folder_is_listed_for_a_regular_install():
    """`pip install .` (not only editable) ships exactly the folders listed in pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = setup["package-dir"]
    assert sorted(setup["packages"]) == sorted(dirs)
    roots = {pathlib.PurePosixPath(d).parts[0] for d in dirs.values()}
    on_disk = {
        p.parent.relative_to(ROOT).as_posix()
        for r in roots
        for p in (ROOT / r).rglob("__init__.py")
    }
    assert on_disk == set(dirs.values()), f"unlisted: {sorted(on_disk - set(dirs.values()))}"
