"""The driver's step keys: folded a chunk of steps at a time, equal to one fold per step."""

from __future__ import annotations

import torch

from remask import kernels
from remask.samplers import build
from remask.samplers.driver import _StepKeys


class _PerRowCount:
    """A sampler stand-in whose rows keep their own step counts (as Gibbs' final sweeps)."""

    def key_step(self, state, step):
        return torch.tensor([step, 3 * step + 1])


def test_chunked_step_keys_equal_one_fold_per_step():
    keys = kernels.split(12345, 3)  # (3,)
    step_key = _StepKeys(build("low_confidence"), keys)
    # Across chunk boundaries, and back to an earlier step (a fresh chunk is folded).
    for step in [*range(0, 2 * _StepKeys.CHUNK + 5), 7, 200]:
        assert torch.equal(step_key(None, step), kernels.fold(keys, step)), step


def test_per_row_step_counts_are_folded_directly():
    keys = kernels.split(7, 2)  # (2,)
    step_key = _StepKeys(_PerRowCount(), keys)
    for step in (0, 5, 90):
        expected = kernels.fold(keys, torch.tensor([step, 3 * step + 1]))
        assert torch.equal(step_key(None, step), expected)
