"""Shared pieces of the remask.eval tests: no network, the local task folder, the golden LLaDA."""

from __future__ import annotations

import os

import pytest
from _eval_paths import LLADA_TINY, TASKS_DIR

OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture(scope="module", autouse=True)
def offline():
    """lm-eval, datasets and transformers never reach the network in these tests (set for each
    module of this folder, restored after it: other tests keep their own settings)."""
    saved = {name: os.environ.get(name) for name in OFFLINE}
    os.environ.update({name: "1" for name in OFFLINE})
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def tasks_dir():
    return str(TASKS_DIR)


@pytest.fixture(scope="session")
def llada_tiny_dir():
    return str(LLADA_TINY)
