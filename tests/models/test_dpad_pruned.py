"""DPad's pruned forward: the protocol's gathered call (``columns=``) and DPad(pruned=True).

Checked: the gathered call on a ragged, right-padded batch equals each row run alone on its
kept columns through the raw module; DPad's pruned forward equals its hidden-keys forward on
every computed row (float32 tolerance) on a random LLaDA-shaped model and on the golden LLaDA
and Dream checkpoints, left-padded ragged batches included; greedy decoding through either
path gives the same tokens and NFE (low_confidence, threshold, llada2); on Dream, greedy
decoding equals a slow loop written from the reference code's Dream generation (pruned
sequence, logits shifted within it); bad ``columns=`` and ``pruned=`` are refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import remask
from remask import kernels
from remask.models import DPad
from remask.models.checkpoints import load_checkpoint
from remask.models.dpad import retention_probability
from remask.models.protocol import call, capabilities
from remask.samplers import build

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


@pytest.fixture(autouse=True)
def _torch_kernels():
    with remask.kernels.use_backend("torch"):
        yield


@pytest.fixture(scope="module")
def llada():
    return load_checkpoint(GOLDEN / "llada_tiny")


@pytest.fixture(scope="module")
def dream():
    return load_checkpoint(GOLDEN / "dream_tiny")


@pytest.fixture(scope="module")
def random_llada():
    """A random-weight LLaDA-shaped model (the benchmark's architecture, smaller)."""
    from remask.models.llada import LLaDAConfig, LLaDADenoiser, LLaDAModelLM

    vocab = 512
    config = LLaDAConfig(
        d_model=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=4,
        mlp_hidden_size=128,
        vocab_size=vocab,
        embedding_size=vocab,
        max_sequence_length=512,
        mask_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    torch.manual_seed(0)
    model = LLaDAModelLM(config)
    return LLaDADenoiser(
        model, mask_id=vocab - 2, vocab_size=vocab, embedding_rows=vocab, eos_id=vocab - 1
    )


@pytest.fixture(scope="module")
def random_dream():
    """A random-weight Dream-shaped model: the golden tiny Dream decodes one token over and
    over, which would make token-level comparisons vacuous."""
    from remask.models.dream import DreamConfig, DreamDenoiser, DreamModel

    vocab = 512
    config = DreamConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        mask_token_id=vocab - 1,
        pad_token_id=vocab - 2,
        eos_token_id=vocab - 2,
        bos_token_id=vocab - 3,
    )
    torch.manual_seed(0)
    model = DreamModel(config)
    return DreamDenoiser(
        model,
        mask_id=vocab - 1,
        vocab_size=vocab,
        embedding_rows=vocab,
        eos_id=vocab - 2,
        pad_id=vocab - 2,
        bos_id=vocab - 3,
    )


def _ragged_canvas(model, seed=0):
    """A left-padded batch of 3 rows: different prompts, active blocks and suffix lengths."""
    g = torch.Generator().manual_seed(seed)
    B, L = 3, 48
    tokens = torch.randint(0, min(model.mask_id, 250), (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, :3] = False
    mask[2, :7] = False
    active = torch.zeros(B, L, dtype=torch.bool)
    for row, (start, stop) in enumerate(((8, 12), (10, 14), (20, 24))):
        tokens[row, start:] = model.mask_id
        tokens[row, stop + 4] = 7  # a fixed token after the block (infilling): always kept
        active[row, start:stop] = True
    return tokens, mask, active


@pytest.mark.parametrize("name", ["random_llada", "llada", "dream", "random_dream"])
def test_pruned_forward_equals_hidden_keys(name, request):
    """Pruned and hidden-keys forwards agree on every computed row, and zero the same rows."""
    model = request.getfixturevalue(name)
    tokens, mask, active = _ragged_canvas(model)
    pruned = DPad(model, window=12, seed=1, pruned=True)
    hidden = DPad(model, window=12, seed=1, pruned=False)
    keep = pruned.kept(tokens, mask, active) & mask
    counts = keep.sum(-1)
    assert len(set(counts.tolist())) == 3, "rows should gather different numbers of columns"
    assert bool((~keep & mask).any()), "nothing dropped: the check is vacuous"
    got = pruned(tokens, mask, active=active)
    want = hidden(tokens, mask, active=active)
    computed = got.abs().amax(-1) > 0  # (B, L)
    assert torch.equal(computed, want.abs().amax(-1) > 0)
    assert bool(computed[active].all())  # the active block is always computed
    if capabilities(model).shift:
        # A kept suffix column after a dropped one is not computed on a shifted model.
        previous = torch.nn.functional.pad(keep[:, :-1], (1, 0), value=False)
        assert torch.equal(computed, keep & previous)
        assert bool((keep & ~previous & active.cumsum(-1).bool()).any())
    else:
        assert torch.equal(computed, keep)
    torch.testing.assert_close(got[computed], want[computed], atol=2e-5, rtol=1e-5)


def test_gathered_call_on_a_padded_batch_is_each_row_alone(llada):
    """Right padding of the gathered batch changes nothing: each row equals the raw module run
    on that row's columns alone, at those columns as rotary positions."""
    rows = [[0, 1, 2, 3, 9, 15], [2, 3, 4, 30], [5, 6, 7, 8, 9, 10, 40, 41]]
    g = torch.Generator().manual_seed(3)
    K = max(map(len, rows))
    tokens = torch.randint(0, 300, (len(rows), K), generator=g)
    columns = torch.zeros(len(rows), K, dtype=torch.int64)
    real = torch.zeros(len(rows), K, dtype=torch.bool)
    for r, cols in enumerate(rows):
        columns[r, : len(cols)] = torch.tensor(cols)
        real[r, : len(cols)] = True
    tokens[0, 2] = llada.mask_id
    got, evaluations = call(llada, tokens, real, columns=columns)
    assert evaluations == 1
    for r, cols in enumerate(rows):
        n = len(cols)
        with torch.no_grad():
            alone, _ = llada.model.model(tokens[r : r + 1, :n], position_ids=columns[r : r + 1, :n])
        alone = alone[0, :, : llada.vocab_size].clone()
        alone[:, llada.mask_id] = float("-inf")
        torch.testing.assert_close(got[r, :n], alone, atol=2e-5, rtol=1e-5)
        assert bool((got[r, n:, : llada.mask_id] == 0).all())  # padding: not computed


PROMPTS = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]


@pytest.mark.parametrize(
    "sampler_name, config",
    [
        ("low_confidence", {"block_length": 4}),
        ("threshold", {"threshold": 0.3, "block_length": 4}),
        ("llada2", {"block_length": 4, "steps": 2}),
    ],
)
@pytest.mark.parametrize("name", ["llada", "random_dream"])
def test_greedy_decoding_pruned_equals_hidden(name, sampler_name, config, request):
    """Token for token and NFE for NFE, on a left-padded ragged batch."""
    model = request.getfixturevalue(name)
    sampler = build(sampler_name, **config)
    outs = {}
    for pruned in (True, False):
        wrapper = DPad(model, window=5, seed=2, pruned=pruned)
        outs[pruned] = remask.generate(wrapper, PROMPTS, sampler, gen_length=16, seed=0)
    assert outs[True].tokens.tolist() == outs[False].tokens.tolist()
    assert outs[True].nfe.tolist() == outs[False].nfe.tolist()
    assert not bool((outs[True].tokens == model.mask_id).any())


@pytest.mark.parametrize("name", ["llada", "random_dream"])
def test_dropout_changes_decoding(name, request):
    """Non-vacuity of the equivalence above: the dropout does change the greedy tokens."""
    model = request.getfixturevalue(name)
    sampler = build("low_confidence", block_length=4)
    dpad = remask.generate(DPad(model, window=5, seed=2), PROMPTS, sampler, gen_length=16, seed=0)
    plain = remask.generate(model, PROMPTS, sampler, gen_length=16, seed=0)
    assert dpad.tokens.tolist() != plain.tokens.tolist()


def _reference_dream_dpad_greedy(dream, prompt, gen_length, block_length, W, seed):
    """Greedy low-confidence decoding with DPad on Dream, one token per step, written from the
    reference code's Dream generation: per block, the kept columns (prefix up to the block end
    + kept suffix masks) run alone at their positions through the raw Dream module, and the
    raw logits are shifted right by one *within the pruned sequence*. (The rule P(d) is
    checked against the paper in test_dpad.py; here it is the implementation's.)"""
    P = len(prompt)
    x = torch.tensor(prompt + [dream.mask_id] * gen_length)
    L = x.numel()
    for start in range(P, L, block_length):
        end = min(start + block_length, L)
        kept = list(range(end))
        for col in range(end, L):
            d = col - end + 1
            key = kernels.fold(kernels.fold(seed, torch.tensor([end])), torch.tensor([d]))
            p = float(retention_probability(torch.tensor(d), W, 4.0, 2.0))
            if float(kernels.uniform(key, dtype=torch.float64)[0]) < p:
                kept.append(col)
        for _ in range(end - start):
            with torch.no_grad():
                raw = dream.model(
                    x[kept].unsqueeze(0), position_ids=torch.tensor(kept).unsqueeze(0)
                ).logits[0]  # (L', V)
            logits = torch.cat([raw[:1], raw[:-1]]).float()  # shifted in the pruned sequence
            logits[:, dream.mask_id] = float("-inf")
            probs = logits.softmax(-1)
            best, best_conf, best_tok = None, -1.0, None
            for i in range(start, end):
                if int(x[i]) != dream.mask_id:
                    continue
                row = kept.index(i)
                tok = int(probs[row].argmax())
                if float(probs[row, tok]) > best_conf:
                    best, best_conf, best_tok = i, float(probs[row, tok]), tok
            x[best] = best_tok
    return x


def test_dream_greedy_matches_the_reference_loop(random_dream):
    dream = random_dream
    prompt, G, block, W = [dream.bos_id, 1, 2], 12, 4, 6
    sampler = build("low_confidence", block_length=block, steps=G)
    got = remask.generate(DPad(dream, window=W, seed=3), [prompt], sampler, gen_length=G, seed=0)
    want = _reference_dream_dpad_greedy(dream, prompt, G, block, W, 3)
    assert got.tokens[0].tolist() == want.tolist()
    assert got.nfe.tolist() == [G]
    plain = remask.generate(dream, [prompt], sampler, gen_length=G, seed=0)
    assert plain.tokens[0].tolist() != want.tolist(), "the dropout changed nothing"


class _BiasOnly:
    """A denoiser that takes an attention pattern and positions but no gathered call."""

    accepts_attention_bias = True

    def __init__(self, inner):
        self.inner, self.mask_id, self.vocab_size = inner, inner.mask_id, inner.vocab_size

    def __call__(self, tokens, attention_mask=None, **extra):
        return self.inner(tokens, attention_mask, **extra)


def test_pruned_is_the_default_when_declared(llada):
    from remask.models.wrappers import Guided, Suppress

    assert DPad(llada).pruned is True
    # Suppress (per column) and Guided (per batch row) pass the gathered call through.
    assert DPad(Suppress(llada, [5])).pruned is True
    assert DPad(Guided(llada, 1.0)).pruned is True
    assert DPad(_BiasOnly(llada)).pruned is False
    assert not capabilities(DPad(llada)).gathered  # DPad gathers itself: no nesting
    assert "pruned=False" in repr(DPad(llada, pruned=False))


@pytest.mark.parametrize("name", ["llada", "random_dream"])
def test_pruned_through_guidance_and_suppression(name, request):
    """Guided and Suppress inside DPad: the pruned forward equals the hidden-keys one."""
    from remask.models.wrappers import Guided, Suppress

    model = request.getfixturevalue(name)
    tokens, mask, active = _ragged_canvas(model)
    editable = tokens == model.mask_id
    inner = Suppress(Guided(model, 1.5), [5])
    got = DPad(inner, window=12, seed=1, pruned=True)(
        tokens, mask, active=active, editable=editable
    )
    want = DPad(inner, window=12, seed=1, pruned=False)(
        tokens, mask, active=active, editable=editable
    )
    computed = got.abs().amax(-1) > 0  # (B, L)
    assert torch.equal(computed, want.abs().amax(-1) > 0)
    assert bool(computed[active].all())
    assert bool((got[computed][:, 5] == float("-inf")).all())
    torch.testing.assert_close(got[computed], want[computed], atol=5e-5, rtol=1e-5)


def test_bad_input(llada):

    tokens = torch.tensor([[1, 2, 3, 4]])
    real = torch.ones_like(tokens, dtype=torch.bool)
    good = torch.tensor([[0, 1, 5, 9]])
    for columns, error, match in (
        (good.int(), TypeError, "int64"),
        (good.float(), TypeError, "int64"),
        ([[0, 1, 5, 9]], TypeError, "int64"),
        (good[:, :3], ValueError, "shape"),
        (torch.tensor([[-1, 1, 5, 9]]), ValueError, ">= 0"),
        (torch.tensor([[0, 5, 5, 9]]), ValueError, "increase"),
        (torch.tensor([[0, 6, 5, 9]]), ValueError, "increase"),
    ):
        with pytest.raises(error, match=match):
            llada(tokens, real, columns=columns)
    holes = torch.tensor([[True, False, True, True]])
    with pytest.raises(ValueError, match="right only"):
        llada(tokens, holes, columns=good)
    # Padding after the real entries is fine, whatever its columns say.
    right = torch.tensor([[True, True, False, False]])
    out = llada(tokens, right, columns=torch.tensor([[3, 4, 0, 0]]))
    assert bool((out[0, 2:, : llada.mask_id] == 0).all())
    bias = torch.ones(1, 4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match="not both"):
        llada(tokens, real, attention_bias=bias, position_ids=good, columns=good)
    with pytest.raises(TypeError, match="accepts_gathered"):
        call(_BiasOnly(llada), tokens, real, columns=good)
    with pytest.raises(TypeError, match="pruned"):
        DPad(llada, pruned="yes")
    with pytest.raises(TypeError, match="accepts_gathered"):
        DPad(_BiasOnly(llada), pruned=True)

    class Shifted:
        mask_id, vocab_size, shift, accepts_attention_bias = 3, 4, 2, True

        def __call__(self, tokens, attention_mask=None, **extra):
            return torch.zeros(*tokens.shape, 4)

    with pytest.raises(TypeError, match="shift=2"):
        DPad(Shifted())
