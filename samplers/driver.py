"""The step loop: ``generate`` (append ``gen_length`` masks to a prompt) and ``infill``.

The driver is deliberately thin: build the canvas, derive each row's random key, call
``sampler.step`` until ``sampler.finished(state)`` holds for every row, call the callbacks. It
syncs with the host once per step (that check).

Randomness is explicit (:mod:`remask.kernels._philox`): each row has a 64-bit key — its own
seed when ``seed`` is a list, ``fold(seed, r)`` for row r when it is one int — and every step
receives the rows' keys folded by the step number (``sampler.key_step``). Samplers fold those
by purpose and position (counted from the row's first real token), so a sampled row's tokens
depend on its seed, its prompt, the sampler and the model only: not on its batch neighbours,
its batch index or its padding.

With ``stop_at_eos=True`` the driver also applies the EOS early stop after every step
(:func:`remask.samplers.canvas.eos_cut`): a row that has committed EOS with everything before
it decided is cut there, frozen and no longer charged — the same rule for every sampler.

Everything a caller passes is checked before any allocation that scales with it (see
:func:`generate`), and the result is checked once at the end: no editable position may still
hold the mask (unless the sampler sets ``may_leave_masks``). When one does, or a run hits
``sampler.max_steps``, the error names the sampler, the step and the cause — usually a
denoiser that gave the mask token a finite logit (the protocol asks for -inf).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Sequence as _SequenceABC
from typing import NamedTuple

import torch

from remask import kernels
from remask.models.protocol import capabilities, start_run
from remask.samplers.base import Sampler
from remask.samplers.canvas import eos_cut, make_canvas

__all__ = ["GenerateOutput", "decode", "generate", "infill"]


class GenerateOutput(NamedTuple):
    """Result of :func:`generate` / :func:`infill`.

    Attributes
    ----------
    tokens : (B, L) int64
        The decoded canvas (for ``generate``, L = P + gen_length with the prompt left-padded).
    nfe : (B,) int64
        Denoiser evaluations each row consumed.
    attention_mask : (B, L) bool
        False on padding (whose token values are meaningless filler).
    steps : int
        Sampler steps taken (batched forward passes).
    text : list of str or None
        When the model has a ``tokenizer``: each row decoded (special tokens skipped) — the
        generated tokens for ``generate``, the whole canvas for ``infill``. Else None.
    """

    tokens: torch.Tensor
    nfe: torch.Tensor
    attention_mask: torch.Tensor
    steps: int
    text: list[str] | None = None


def decode(output: GenerateOutput, tokenizer, *, start: int = 0) -> list[str]:
    """Each row of ``output`` as text: columns ``start:`` without padding, special tokens skipped.

    Parameters
    ----------
    output : GenerateOutput
    tokenizer : transformers tokenizer
        Anything with ``decode(ids, skip_special_tokens=True)``.
    start : int
        First column to decode (``generate`` uses the prompt width P: only generated tokens).

    Returns
    -------
    list of str, one per row.
    """
    if not hasattr(tokenizer, "decode"):
        raise TypeError(f"tokenizer must have a decode method, got {type(tokenizer).__name__}")
    tokens = output.tokens[:, start:].cpu()  # (B, L - start)
    keep = output.attention_mask[:, start:].cpu()  # (B, L - start)
    return [
        tokenizer.decode(row[mask].tolist(), skip_special_tokens=True)
        for row, mask in zip(tokens, keep)
    ]


def _with_text(output: GenerateOutput, model, start: int) -> GenerateOutput:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "decode"):
        return output
    return output._replace(text=decode(output, tokenizer, start=start))


def generate(
    model,
    prompt,
    sampler: Sampler,
    *,
    gen_length: int,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    callbacks: Sequence[Callable] = (),
    progress: bool = False,
    stop_at_eos: bool = False,
) -> GenerateOutput:
    """Generate ``gen_length`` tokens after each prompt with ``sampler``.

    Parameters
    ----------
    model : Denoiser
        See :class:`remask.models.Denoiser`. When it declares a maximum canvas length
        (an int ``max_length``, else ``max_len``), P + gen_length is checked against it
        before anything is allocated.
    prompt : (B, P) int64 tensor, (P,) tensor, list of ints, list of lists of ints, or None
        Prompts; lists of different lengths are left-padded and the padding is hidden from the
        model through the attention mask. P may be 0 (unconditional generation); None means
        one empty prompt.
    sampler : Sampler
        From :func:`remask.samplers.build`.
    gen_length : int
        Tokens to generate per row (>= 1).
    seed : int, sequence of B ints, or (B,) integer tensor, optional
        Seeds of the rows' random streams, each in [0, 2**63). One int per row
        (``seed=[s_1, ..., s_B]``): row i's tokens are a function of ``s_i``, its prompt, the
        sampler and the model only — the same alone, in any batch, at any position of the
        batch and with any left padding. One int ``s``: row r gets the key
        ``remask.kernels.fold(s, r)`` (independent rows, reproducible as a whole batch; row r
        alone is reproduced with the 64-bit key ``fold(s, r)``, not with ``s``). None draws
        one int from torch's global generator. Greedy samplers ignore it.
    attention_mask : (B, P) bool tensor, optional
        For a tensor prompt: False on padding. Boolean-valued (bool, or 0/1 of another
        dtype); padding must be on the left (each row False...False True...True): right
        padding or holes raise ``ValueError`` naming the row, unless the model sets
        ``accepts_any_padding = True``.
    callbacks : sequence of callables
        Each is called ``fn(state, info)`` after every step; ``info.committed`` is a (B, L)
        bool tensor over the whole canvas marking what the step wrote.
    progress : bool
        Show a tqdm progress bar over the tokens still to decode.
    stop_at_eos : bool
        EOS early stop (as LLaDA's, Dream's and Fast-dLLM's/DPad's ``early_termination``),
        for every sampler: once a row has committed the model's ``eos_id`` at an editable
        position and every editable position before it is decided, the row stops — every
        editable position from that EOS on becomes EOS, the row counts as done and its
        ``nfe`` stops growing while the other rows go on (a stopped row's forward passes, if
        the batch still runs, are neither charged nor kept). For a sampler that may rewrite
        committed tokens (``edits_committed``) the EOS counts only once its block is no
        longer active, and later revisions the sampler would have made are forgone. The
        output of every row is cut the same way at the end, so it always reads: tokens up to
        the first EOS, then EOS. A row stops on its own tokens only, so its output does not
        depend on its batch neighbours. For a sampler that never rewrites committed tokens,
        the tokens before the EOS are exactly those of the run without the stop.

    Returns
    -------
    GenerateOutput
        ``tokens`` (B, P + gen_length): prompt positions unchanged, no mask left.

    Raises
    ------
    TypeError, ValueError
        Bad input, naming the offending value: token ids outside the vocabulary (checked
        before any tensor conversion), the mask id in a prompt, an empty batch (B = 0), a
        non-boolean or not left-padded attention mask, a seed outside [0, 2**63), a per-row
        seed list whose length is not B or that holds a non-int, a
        ``gen_length`` beyond the model's maximum length, ``callbacks`` that is not a
        sequence of callables, ``stop_at_eos`` for a model without an ``eos_id``.
    RuntimeError
        The run ended (or hit ``sampler.max_steps``) with masks left; the message names the
        sampler, the step and the cause.

    Examples
    --------
    >>> import remask
    >>> from remask.models import load_model
    >>> model = load_model("oracle:markov?vocab=4&length=8&seed=0")
    >>> sampler = remask.samplers.build("low_confidence", temperature=1.0)
    >>> remask.generate(model, [[0, 1], [2]], sampler, gen_length=4, seed=0).tokens.shape
    torch.Size([2, 6])
    """
    _check_sampler(sampler)
    if isinstance(gen_length, bool) or not isinstance(gen_length, int):
        raise TypeError(f"gen_length must be an int, got {gen_length!r}")
    if gen_length <= 0:
        raise ValueError(f"gen_length must be >= 1, got {gen_length}")
    _check_run_options(callbacks, progress)
    eos_id = _stop_eos_id(model, stop_at_eos)
    seed = _check_seed(seed)
    tokens, real = _as_batch(prompt, attention_mask, model, allow_mask=False, what="prompt")
    B, P = tokens.shape
    keys = _row_keys(seed, B, tokens.device)  # (B,)
    limit = _max_length(model)
    if limit is not None and P + gen_length > limit:
        raise ValueError(
            f"gen_length={gen_length} after a prompt of width {P} gives a canvas of "
            f"{P + gen_length} tokens; {type(model).__name__} handles at most {limit}"
        )
    tokens = torch.cat(
        [
            tokens,
            torch.full((B, gen_length), model.mask_id, dtype=torch.int64, device=tokens.device),
        ],
        dim=1,
    )  # (B, P + G)
    real = torch.cat(
        [real, torch.ones(B, gen_length, dtype=torch.bool, device=tokens.device)], dim=1
    )
    editable = torch.zeros_like(real)
    editable[:, -gen_length:] = True
    # Block-diffusion models count blocks from the first real token: the first generated
    # block is cut short so that every block is whole model blocks (as their generate() does).
    offset = real[:, :-gen_length].sum(-1)  # (B,) prompt lengths
    return _with_text(
        _run(
            model, sampler, tokens, editable, real, keys, callbacks, progress, offset, eos_id=eos_id
        ),
        model,
        P,
    )


def infill(
    model,
    tokens,
    sampler: Sampler,
    *,
    seed: int | Sequence[int] | torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    callbacks: Sequence[Callable] = (),
    progress: bool = False,
    stop_at_eos: bool = False,
) -> GenerateOutput:
    """Fill every ``mask_id`` position of the given canvases; all other tokens stay fixed.

    Text infilling and constrained generation with fixed tokens anywhere. Blocks
    (``block_length``) cover the masked positions of each row left to right.

    Parameters
    ----------
    model : Denoiser
    tokens : (B, L) int64 tensor or list of lists of ints
        Canvases holding ``model.mask_id`` at the positions to fill; lists of different
        lengths are left-padded.
    sampler, seed, attention_mask, callbacks, progress, stop_at_eos
        As in :func:`generate` (the EOS stop writes EOS only at positions to fill; fixed
        tokens after the EOS stay).

    Returns
    -------
    GenerateOutput
    """
    _check_sampler(sampler)
    _check_run_options(callbacks, progress)
    eos_id = _stop_eos_id(model, stop_at_eos)
    seed = _check_seed(seed)
    tokens, real = _as_batch(tokens, attention_mask, model, allow_mask=True, what="tokens")
    if tokens.shape[1] == 0:
        raise ValueError("tokens is empty (L = 0): give canvases with at least one position")
    limit = _max_length(model)
    if limit is not None and tokens.shape[1] > limit:
        raise ValueError(
            f"tokens has length {tokens.shape[1]}; {type(model).__name__} handles at most {limit}"
        )
    editable = real & (tokens == model.mask_id)  # (B, L)
    keys = _row_keys(seed, tokens.shape[0], tokens.device)  # (B,)
    return _with_text(
        _run(model, sampler, tokens, editable, real, keys, callbacks, progress, eos_id=eos_id),
        model,
        0,
    )


# ---------------------------------------------------------------------------- internals
def _block_length(sampler, model) -> int | None:
    """The canvas's block length: the sampler's, checked against a block-diffusion model's
    ``block_size`` (which is also the default when the sampler has none)."""
    size = getattr(model, "block_size", None)
    if size is None:
        return sampler.block_length
    if sampler.block_length is None:
        return int(size)
    if sampler.block_length % size:
        raise ValueError(
            f"block_length={sampler.block_length} is not a multiple of the model's block size "
            f"{size}: a block-diffusion model (and its exact block cache) decodes whole blocks"
        )
    return sampler.block_length


def _run(
    model,
    sampler,
    tokens,
    editable,
    real,
    keys,
    callbacks,
    progress,
    offset=None,
    *,
    eos_id: int | None = None,
) -> GenerateOutput:
    block_length = _block_length(sampler, model)
    if getattr(model, "block_size", None) is None or block_length is None:
        offset = None
    elif offset is not None:
        offset = offset % block_length
    canvas = make_canvas(tokens, editable, real, block_length, offset)
    # The sampler's model-side sugar (cfg_scale -> Guided ...) and a fresh per-run session
    # (a KV cache): nothing one run computes reaches the next.
    model = start_run(sampler.wrap(model))
    state = sampler.init(canvas, model)
    limit = sampler.max_steps(canvas)
    mask_id = model.mask_id
    # Per step, the rows that committed a position whose proposal was the mask token: kept on
    # the device (no extra sync per step) and read only to explain a failure (one (B,) bool
    # per step; reduced to each row's first such step only then, not at every step).
    proposed_mask: list[torch.Tensor] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(editable.sum()), desc=sampler.name, unit="tok")
    # EOS early stop: rows that stopped, with their cut tokens and nfe frozen at the stop.
    stopped = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)  # (B,)
    frozen_tokens, frozen_nfe = state.canvas.tokens, state.canvas.nfe
    step_key = _StepKeys(sampler, keys)
    steps = 0
    try:
        while not bool(
            (sampler.finished(state) if eos_id is None else sampler.finished(state) | stopped).all()
        ):
            if steps >= limit:
                raise RuntimeError(
                    _unfinished(
                        sampler,
                        state.canvas,
                        mask_id,
                        steps,
                        proposed_mask,
                        f"did not finish within {limit} steps",
                    )
                )
            # The rows' step keys: folded by the step number (or the sampler's per-row count).
            step_keys = step_key(state, steps)  # (B,)
            state, info = sampler.step(state, model, step_keys)
            steps += 1
            proposed_mask.append((info.committed & (info.proposal == mask_id)).any(-1))  # (B,)
            if eos_id is not None:
                state, stopped, frozen_tokens, frozen_nfe = _stop_at_eos(
                    state,
                    stopped,
                    frozen_tokens,
                    frozen_nfe,
                    eos_id,
                    mask_id,
                    sampler.edits_committed,
                )
            for callback in callbacks:
                callback(state, info)
            if bar is not None:
                bar.update(int(info.committed.sum()))
    finally:
        if bar is not None:
            bar.close()
    canvas = state.canvas
    if eos_id is not None:  # every row reads: tokens up to its first EOS, then EOS
        canvas = canvas._replace(tokens=eos_cut(canvas, eos_id, mask_id)[1])
    # The postcondition: no editable position still holds the mask.
    if not sampler.may_leave_masks and bool((canvas.editable & (canvas.tokens == mask_id)).any()):
        raise RuntimeError(
            _unfinished(
                sampler,
                canvas,
                mask_id,
                steps,
                proposed_mask,
                f"finished after {steps} steps with masks left",
            )
        )
    return GenerateOutput(
        tokens=canvas.tokens, nfe=canvas.nfe, attention_mask=canvas.attention_mask, steps=steps
    )


class _StepKeys:
    """The rows' step keys, ``fold(keys, sampler.key_step(state, step))`` (B,) int64.

    Folding is a Philox hash whose cost hardly depends on its size (~0.9 ms at B = 1 on one
    CPU thread in torch ops, ~0.15 ms through Numba): per step it was the largest fixed cost
    of a small batch. When ``key_step`` returns the plain step number (every sampler but those
    whose rows keep their own counts) the keys of ``CHUNK`` steps are folded in one call and
    handed out one row at a time; the values are the same (Philox is elementwise).
    """

    CHUNK = 128

    def __init__(self, sampler, keys: torch.Tensor):
        self.sampler, self.keys = sampler, keys  # (B,)
        self.first, self.block = 0, None  # block: the (B,) keys of steps first, first + 1, ...

    def __call__(self, state, step: int) -> torch.Tensor:
        data = self.sampler.key_step(state, step)
        if isinstance(data, torch.Tensor) or isinstance(data, bool) or not isinstance(data, int):
            return kernels.fold(self.keys, data)  # (B,): a per-row count
        if self.block is None or not 0 <= data - self.first < self.CHUNK:
            self.first = data
            counts = torch.arange(data, data + self.CHUNK, device=self.keys.device)  # (CHUNK,)
            block = kernels.fold(self.keys.unsqueeze(0), counts.unsqueeze(-1))  # (CHUNK, B)
            self.block = block.unbind(0)  # CHUNK views (B,): one op, not one index per step
        return self.block[data - self.first]  # (B,)


def _stop_at_eos(
    state, stopped, frozen_tokens, frozen_nfe, eos_id: int, mask_id: int, settled_only: bool
):
    """Stop the rows that reached a stopping EOS (:func:`~remask.samplers.canvas.eos_cut`).

    A stopped row's tokens (cut at the EOS) and nfe are frozen and written back into the
    state's canvas after every step, marked done: whatever the sampler still computes for it
    in the batch is neither kept nor charged. Works for any sampler state (a NamedTuple whose
    ``canvas`` field is the canvas) without touching the sampler's other fields.
    """
    canvas = state.canvas
    hit, cut = eos_cut(canvas, eos_id, mask_id, settled_only)  # (B,), (B, L)
    new = hit & ~stopped  # (B,)
    frozen_tokens = torch.where(new.unsqueeze(-1), cut, frozen_tokens)  # (B, L)
    frozen_nfe = torch.where(new, canvas.nfe, frozen_nfe)  # (B,)
    stopped = stopped | new
    canvas = canvas._replace(
        tokens=torch.where(stopped.unsqueeze(-1), frozen_tokens, canvas.tokens),
        nfe=torch.where(stopped, frozen_nfe, canvas.nfe),
        done=canvas.done | stopped,
    )
    return state._replace(canvas=canvas), stopped, frozen_tokens, frozen_nfe


def _stop_eos_id(model, stop_at_eos) -> int | None:
    """The EOS id the early stop uses (None when off); a model without one raises."""
    if not isinstance(stop_at_eos, bool):
        raise TypeError(f"stop_at_eos must be a bool, got {stop_at_eos!r}")
    if not stop_at_eos:
        return None
    eos_id = capabilities(model).eos_id
    if eos_id is None:
        raise ValueError(
            f"stop_at_eos=True needs the model's eos_id, but {type(model).__name__} declares "
            "none (eos_id is None)"
        )
    return eos_id


def _first_bad_step(bad: list[torch.Tensor], batch: int, device) -> torch.Tensor:
    """(B,) int64: first step (1-based) at which each row committed a proposed mask token, 0
    for none, from the driver's per-step (B,) bool flags."""
    if not bad:
        return torch.zeros(batch, dtype=torch.int64, device=device)
    hits = torch.stack(bad)  # (steps, B)
    first = hits.to(torch.int8).argmax(0) + 1  # (B,) the first True (argmax of a 0/1 column)
    return torch.where(hits.any(0), first, 0)


def _unfinished(
    sampler, canvas, mask_id: int, steps: int, proposed_mask: list[torch.Tensor], what: str
) -> str:
    """The message of a run that ends with masks: sampler, step, where, and why."""
    proposed_mask = _first_bad_step(proposed_mask, canvas.tokens.shape[0], canvas.tokens.device)
    left = canvas.editable & (canvas.tokens == mask_id)  # (B, L)
    row, col = (int(i) for i in left.nonzero()[0]) if bool(left.any()) else (-1, -1)
    where = (
        f"{int(left.sum())} mask(s) remain (first at row {row}, position {col})" if row >= 0 else ""
    )
    culprits = proposed_mask.nonzero()
    if culprits.numel():
        bad_row = int(culprits[0, 0])
        cause = (
            f"cause: the denoiser proposed the mask token (mask_id={mask_id}) and it was committed "
            f"at step {int(proposed_mask[bad_row])} (row {bad_row}); a denoiser must give mask_id "
            "a logit of -inf"
        )
    else:
        cause = "cause: the sampler stopped committing tokens (its schedule ended or it made no progress)"
    return f"sampler {sampler.name!r} {what}: " + "; ".join(p for p in (where, cause) if p)


def _check_seed(seed):
    """Validate ``seed``: None, an int, or one int per row; returns None, an int or a list."""
    if seed is None:
        return None
    if isinstance(seed, torch.Tensor):
        if seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool:
            raise TypeError(f"seed tensor must hold integers, got dtype {seed.dtype}")
        if seed.dim() != 1:
            raise ValueError(
                f"seed tensor must be 1-D (one seed per row), got shape {tuple(seed.shape)}"
            )
        seed = seed.tolist()
    if isinstance(seed, (list, tuple)):
        for i, value in enumerate(seed):
            if isinstance(value, bool) or not hasattr(value, "__index__"):
                raise TypeError(f"seed[{i}] must be an int, got {value!r}")
            if not 0 <= int(value) < 2**63:
                raise ValueError(f"seed[{i}] must be in [0, 2**63), got {int(value)}")
        return [int(value) for value in seed]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(
            f"seed must be an int, a list of ints (one per row) or None, got {seed!r:.80}"
        )
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return seed


def _row_keys(seed, batch: int, device: torch.device) -> torch.Tensor:
    """(B,) int64: each row's key (see :func:`generate`'s ``seed``)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    if isinstance(seed, list):
        if len(seed) != batch:
            raise ValueError(
                f"seed has {len(seed)} values but the batch has {batch} rows; "
                "give one seed per row or a single int"
            )
        return torch.tensor(seed, dtype=torch.int64, device=device)
    return kernels.split(seed, batch, device=device)


def _check_run_options(callbacks, progress) -> None:
    if (
        callable(callbacks)
        or not isinstance(callbacks, _SequenceABC)
        or isinstance(callbacks, (str, bytes))
    ):
        raise TypeError(
            f"callbacks must be a sequence of callables (e.g. [fn]), got {callbacks!r:.80}"
        )
    for i, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(f"callbacks[{i}] is not callable: {callback!r:.80}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {progress!r}")


def _max_length(model) -> int | None:
    """The longest canvas the model declares it handles (None when it declares none)."""
    for name in ("max_length", "max_len"):
        value = getattr(model, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _check_sampler(sampler) -> None:
    if not isinstance(sampler, Sampler):
        raise TypeError(
            f"sampler must be a remask Sampler (from remask.samplers.build), got {type(sampler).__name__}"
        )


def _filler(model) -> int:
    """Token written at padding positions. Its value never matters (the attention mask hides
    padding); the model's pad or EOS id keeps outputs readable."""
    for name in ("pad_id", "eos_id"):
        value = getattr(model, name, None)
        if value is not None:
            return int(value)
    return 0


def _model_device(model, fallback: torch.device) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, (torch.device, str)):
        return torch.device(device)
    return fallback


def _as_batch(data, attention_mask, model, *, allow_mask: bool, what: str):
    """Normalise prompt/canvas input to ((B, L) int64, (B, L) bool real-token mask)."""
    for attr in ("mask_id", "vocab_size"):
        if not isinstance(getattr(model, attr, None), int):
            hint = (
                "; wrap a plain function with remask.models.as_denoiser(fn, mask_id=..., vocab_size=...)"
                if callable(model)
                else ""
            )
            raise TypeError(
                f"model must be a Denoiser with an int {attr!r} attribute, got "
                f"{type(model).__name__}{hint}"
            )
    if data is None:
        data = [[]]
    if isinstance(data, torch.Tensor):
        if data.dtype.is_floating_point or data.dtype == torch.bool:
            raise TypeError(f"{what} must hold integer token ids, got dtype {data.dtype}")
        tokens = data.long()
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.dim() != 2:
            raise ValueError(f"{what} must be (B, L), got shape {tuple(data.shape)}")
        if tokens.shape[0] == 0:
            raise ValueError(
                f"{what} is an empty batch (B = 0, shape {tuple(tokens.shape)}); give at least one row"
            )
        if attention_mask is None:
            real = torch.ones_like(tokens, dtype=torch.bool)
        else:
            real = _as_attention_mask(attention_mask, tokens, model)
    else:
        if attention_mask is not None:
            raise ValueError(
                "attention_mask is only accepted with a tensor input; lists are padded internally"
            )
        if not isinstance(data, (list, tuple)):
            raise TypeError(
                f"{what} must be a tensor or a list of token-id lists, got {type(data).__name__}"
            )
        rows = [data] if len(data) == 0 or not isinstance(data[0], (list, tuple)) else list(data)
        for r, row in enumerate(rows):
            if not isinstance(row, (list, tuple)) or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in row
            ):
                raise TypeError(f"{what} rows must be lists of ints, got {row!r:.80}")
            # Range-checked here, before torch.tensor (which overflows on ids >= 2**63).
            for c, t in enumerate(row):
                if not 0 <= t < model.vocab_size and not (allow_mask and t == model.mask_id):
                    raise ValueError(
                        f"{what} token id {t} at row {r}, position {c + _width_pad(rows, row)} "
                        f"is outside the vocabulary [0, {model.vocab_size})"
                    )
        width = max(len(row) for row in rows)
        filler = _filler(model)
        tokens = torch.tensor(
            [[filler] * (width - len(r)) + list(r) for r in rows], dtype=torch.int64
        )
        tokens = tokens.reshape(len(rows), width)
        real = torch.tensor(
            [[False] * (width - len(r)) + [True] * len(r) for r in rows], dtype=torch.bool
        )
        real = real.reshape(len(rows), width)
    device = _model_device(model, tokens.device)
    tokens, real = tokens.to(device), real.to(device)
    tokens = torch.where(real, tokens, _filler(model))
    _check_ids(tokens, real, model, allow_mask=allow_mask, what=what)
    return tokens, real


def _width_pad(rows, row) -> int:
    """Left padding the row gets in the padded batch (positions are reported padded)."""
    return max(len(r) for r in rows) - len(row)


def _as_attention_mask(attention_mask, tokens: torch.Tensor, model) -> torch.Tensor:
    """(B, L) bool from a boolean-valued, left-padded mask; anything else raises."""
    try:
        mask = torch.as_tensor(attention_mask, device=tokens.device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"attention_mask must be a (B, L) bool tensor, got {type(attention_mask).__name__}: "
            f"{error}"
        ) from None
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    if mask.shape != tokens.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)}, expected {tuple(tokens.shape)}"
        )
    if mask.dtype != torch.bool:
        if mask.dtype.is_complex:
            raise TypeError(f"attention_mask must be boolean-valued, got dtype {mask.dtype}")
        bad = (mask != 0) & (mask != 1)  # NaN lands here too
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"attention_mask must be boolean-valued (bool or 0/1); got {mask[row, col].item()!r} "
                f"at row {row}, position {col}"
            )
        mask = mask != 0
    if not getattr(model, "accepts_any_padding", False):
        # Left padding only: once a row's real tokens start, no padding may follow.
        holes = mask[:, :-1] & ~mask[:, 1:]  # (B, L - 1): real token followed by padding
        if bool(holes.any()):
            row, col = (int(i) for i in holes.nonzero()[0])
            raise ValueError(
                f"attention_mask row {row} is not left-padded: position {col} is a real token "
                f"but position {col + 1} is padding; only left padding is supported "
                "(put the padding before the tokens)"
            )
    return mask


def _check_ids(tokens, real, model, *, allow_mask: bool, what: str) -> None:
    mask_id, vocab = model.mask_id, model.vocab_size
    is_mask = real & (tokens == mask_id)
    if not allow_mask and bool(is_mask.any()):
        row, col = (int(i) for i in is_mask.nonzero()[0])
        raise ValueError(
            f"{what} contains mask_id={mask_id} at row {row}, position {col}; "
            "prompts must be fully observed (use remask.infill to fill masks)"
        )
    bad = real & ~is_mask & ((tokens < 0) | (tokens >= vocab))
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{what} token id {int(tokens[row, col])} at row {row}, position {col} "
            f"is outside the vocabulary [0, {vocab})"
        )
