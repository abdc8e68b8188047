"""Paths and specs shared by the remask.eval tests."""

import pathlib

TESTS = pathlib.Path(__file__).resolve().parents[1]
TASKS_DIR = TESTS / "data" / "eval_tasks"
LLADA_TINY = TESTS / "data" / "golden" / "llada_tiny"
MARKOV = "oracle:markov?vocab=4&length=8&seed=0"
