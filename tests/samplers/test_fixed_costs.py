"""The building blocks that replaced per-step work with once-per-run work (issue 18's fixed
per-step cost): each agrees with the per-step computation it replaced."""

from __future__ import annotations

import pytest
import torch

import remask
import remask.kernels as K
from remask.kernels import _dispatch
from remask.models import protocol
from remask.samplers.canvas import block_mask_count, commit, eligible, make_canvas
from remask.samplers.schedules import block_masks, even_split, split_table, table_count


def test_table_count_agrees_with_even_split_at_every_index():
    gen = torch.Generator().manual_seed(0)
    total = torch.randint(0, 40, (3, 5), generator=gen)  # (B, n_blocks)
    parts = torch.randint(1, 11, (3, 5), generator=gen)
    table = split_table(total, parts)
    assert table.width == int(parts.max()) + 1
    for j in range(5):
        block = torch.full((3,), j)
        # Indices past the schedule's end (a row that keeps stepping) included.
        for i in range(table.width + 4):
            index = torch.full((3,), i)
            expected = even_split(total[:, j], parts[:, j], index)  # (B,)
            assert torch.equal(table_count(table, block, index), expected), (j, i)


def test_block_masks_counts_the_masks_of_every_block():
    mask = 9
    tokens = torch.tensor([[1, 2, mask, mask, mask, mask, mask], [0, 0, 3, mask, mask, mask, mask]])
    real = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    editable = real & (tokens == mask)
    canvas = make_canvas(tokens, editable, real, block_length=2)
    canvas = canvas._replace(tokens=canvas.tokens.clone())
    canvas.tokens[0, 3] = 5  # a decided position of block 0 of row 0 is not a mask
    counts = block_masks(canvas, mask)  # (B, n_blocks)
    expected = [[1, 2, 1], [2, 2, 0]]
    assert counts.tolist() == expected
    # Block 0 is each row's active block: the same count as block_mask_count.
    assert torch.equal(counts[:, 0], block_mask_count(canvas, mask))


def test_eligible_and_commit_keep_their_definitions():
    """``eligible`` without ``editable`` and ``done`` from the window's minimum agree with the
    definitions (masked & active; no mask left), padding holding the mask id included."""
    mask = 9
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        B, L = 3, 8
        real = torch.rand(B, L, generator=gen) < 0.9
        tokens = torch.where(torch.rand(B, L, generator=gen) < 0.6, mask, 1)
        editable = real & (tokens == mask)
        # Padding may hold the mask id (a model whose pad id is its mask id): never eligible.
        canvas = make_canvas(tokens, editable, real, block_length=3)
        assert torch.equal(eligible(canvas, mask), editable & (tokens == mask) & canvas.active)
        committed = eligible(canvas, mask) & (torch.rand(B, L, generator=gen) < 0.7)
        after = commit(canvas, committed, torch.full((B, L), 4), mask, 1)
        masked = after.editable & (after.tokens == mask)
        assert torch.equal(after.done, ~masked.any(-1))
        first = torch.where(masked, after.block, L).amin(-1)
        assert torch.equal(after.window, torch.where(after.done, canvas.window, first))


def test_capabilities_are_checked_again_when_a_declaration_changes():
    class Declared:
        mask_id, vocab_size = 4, 5
        accepts_active = True
        evaluations = 2

    assert protocol.capabilities(Declared()).evaluations == 2
    Declared.evaluations = 0
    with pytest.raises(TypeError, match="evaluations must be an int >= 1"):
        protocol.capabilities(Declared())
    Declared.evaluations = 1
    Declared.accepts_active = 1  # equal to True, but not a bool: the memo must not accept it
    with pytest.raises(TypeError, match="accepts_active must be a bool"):
        protocol.capabilities(Declared())
    Declared.accepts_active = [True]  # unhashable: checked (and rejected), not memoised
    with pytest.raises(TypeError, match="accepts_active must be a bool"):
        protocol.capabilities(Declared())


def test_backend_memo_follows_the_loaded_modules(monkeypatch):
    monkeypatch.delenv("REMASK_BACKEND", raising=False)
    first = _dispatch.get_impl("propose_rows", None, torch.device("cpu"))[0]
    assert first == K.backends("cpu")[0]
    monkeypatch.setitem(_dispatch._loaded, "numba", "numba could not be imported: test")
    assert _dispatch.get_impl("propose_rows", None, torch.device("cpu"))[0] == "torch"
    monkeypatch.undo()
    assert _dispatch.get_impl("propose_rows", None, torch.device("cpu"))[0] == first


@pytest.mark.parametrize("backend", K.backends("cpu"))
def test_propose_takes_non_contiguous_rows_and_keys(backend):
    """Any leading layout gives the results of the contiguous, flattened call."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 10, 17, generator=gen)
    wide_rows = torch.rand(3, 20, generator=gen) < 0.6
    rows = wide_rows[:, ::2]  # (3, 10), not contiguous
    keys = K.split(5, (3, 20))[:, ::2]
    out = K.propose(logits, temperature=1.0, key=keys, rows=rows, backend=backend)
    flat = K.propose(
        logits.reshape(30, 17),
        temperature=1.0,
        key=keys.reshape(-1),
        rows=rows.reshape(-1),
        backend=backend,
    )
    for got, want in zip(out, flat, strict=True):
        assert got.shape == (3, 10)
        assert torch.equal(got.reshape(-1), want)


def test_the_failure_message_names_the_first_step_and_row_that_committed_the_mask(tiny64):
    from dataclasses import dataclass

    from remask.samplers.low_confidence import LowConfidence

    @dataclass(frozen=True, kw_only=True)
    class CommitsMaskLater(LowConfidence):
        """Commits the mask token in row 1 only, from its second step on."""

        def step(self, state, denoiser, key):
            second = (torch.arange(state.canvas.nfe.shape[0]) == 1) & (state.canvas.nfe >= 1)
            new, info = super().step(state, denoiser, key)
            bad = info.committed & second.unsqueeze(-1)  # (B, L)
            tokens = torch.where(bad, denoiser.mask_id, new.canvas.tokens)
            proposal = torch.where(bad, denoiser.mask_id, info.proposal)
            return new._replace(canvas=new.canvas._replace(tokens=tokens)), info._replace(
                proposal=proposal
            )

    with pytest.raises(RuntimeError, match=r"at step 2 \(row 1\)"):
        remask.generate(tiny64, [[1], [2]], CommitsMaskLater(), gen_length=4, seed=0)


def test_numpy_philox_paths_give_the_torch_bits():
    """fold and uniform on CPU go through numpy and the compiled Philox once Numba is loaded:
    the same bits as the torch block function, extreme keys and data included."""
    import importlib

    philox = importlib.import_module("remask.kernels._philox")
    if "numba" not in K.backends("cpu"):
        pytest.skip("needs numba")
    K.propose(torch.randn(1, 3), backend="numba")  # loads the compiled Philox
    fast = philox._compiled()
    assert fast is not None
    gen = torch.Generator().manual_seed(3)
    keys = torch.randint(-(2**63), 2**63 - 1, (5, 7), generator=gen)
    keys[0, :3] = torch.tensor([-1, -(2**63), 2**63 - 1])  # all-ones words, sign bit alone
    data = torch.randint(-(2**63), 2**63 - 1, (7,), generator=gen)

    def torch_fold(k, d):
        k, d = torch.broadcast_tensors(k, d)
        k0, k1 = philox.key_words(k)
        c = (d & philox._MASK32, (d >> 32) & philox._MASK32, torch.zeros_like(d))
        w0, w1, _, _ = philox._philox_torch(*c, torch.full_like(d, philox.STREAM_FOLD), k0, k1)
        return philox._join(w0, w1)

    assert torch.equal(K.fold(keys, data), torch_fold(keys, data))
    assert torch.equal(K.fold(keys[:, :1], 9), torch_fold(keys[:, :1], torch.tensor(9)))
    for dtype in (torch.float64, torch.float32):
        k0, k1 = philox.key_words(keys)
        zero = torch.zeros_like(keys)
        stream = torch.full_like(keys, philox.STREAM_UNIFORM)
        w0, w1, _, _ = philox._philox_torch(zero, zero, zero, stream, k0, k1)
        expected = philox._open_unit64(w0, w1) if dtype == torch.float64 else philox._to_unit32(w1)
        got = K.uniform(keys, dtype=dtype)
        assert got.dtype == dtype and torch.equal(got, expected)
