"""Shared pieces of the remask.eval tests: no network, the local task folder, the golden LLaDA."""

from __future__ import annotations

import os

import pytest

from _eval_paths import LLADA_TINY, TASKS_DIR

# lm-eval and datasets must never reach the network in these tests.
for _name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"


@pytest.fixture(scope="session")
def tasks_dir():
    return str(TASKS_DIR)


@pytest.fixture(scope="session")
def llada_tiny_dir():
    return str(LLADA_TINY)
