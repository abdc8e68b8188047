"""FreeDave: lossless draft-and-verify for any base sampler (Wu & Zhang, "Free Draft-and-
Verification: Toward Lossless Parallel Decoding for Diffusion Large Language Models", arXiv
2510.00294; reference code ``cychomatica/FreeDave``, ``generate_with_prefix_cache_FreeDave``).

A masked-diffusion sampler is a deterministic map ``s' = F(s, logits(s))`` once its random
stream is fixed. FreeDave runs ``F`` ahead on logits it already has and checks the guesses
with one batched forward pass:

1. **Draft.** From the exact state ``c_0`` (the state the base sampler would be in) and the
   logits of the *previous* exact state (the most recent forward pass), apply the base's step
   ``D - 1`` more times with those frozen logits: ``c_k = F(c_{k-1}, stale)``, k = 1..D-1
   (``D = draft_steps``), while the row stays in the block those logits were computed for.
   For LLaDA's top-k schedule this is the reference's draft: ``c_k`` commits the next
   ``n_s + ... + n_{s+k}`` most confident positions of one prediction.
2. **Verify.** Evaluate the denoiser on all D states in one batched call and compute the
   targets ``t_k = F(c_k, logits(c_k))`` — the step the base sampler itself would take
   from ``c_k``. Draft ``c_{k+1}`` is verified when ``t_k == c_{k+1}`` (the whole base state,
   not only the tokens); ``m`` is the number of leading verified drafts.
3. **Accept** ``t_m``: by induction every ``c_k`` with ``k <= m`` is the base's own state after
   ``k`` steps, so ``t_m`` is the base's state after ``m + 1`` steps, bit for bit. The logits
   of ``c_m`` become the frozen logits of the next draft.

So a greedy base's output is reproduced **token for token**, while the number of sequential
forward passes drops to one per ``m + 1`` base steps. The first step has no earlier logits, so
it evaluates ``c_0`` alone.

Randomness. The base step taken from chain state ``c_i`` draws from the key
``fold(fold(step key, Purpose.BASE), i)``, the same in the draft ``c_{i+1}`` and in the
target ``t_i``, so a draft guesses the step the base would take with the same random numbers.
Every base step on the accepted path draws from a key that nothing before it has used (the
choice between ``i + 1`` and a fresh call depends only on steps already taken), so a sampling
base's output has exactly the base's **law** — not its seed-for-seed output, since the base
alone keys its step ``s`` by ``s``, a number FreeDave cannot fold from its own step keys.

Cost accounting (``canvas.nfe``, what the rest of remask compares): a verification call
evaluates ``D`` sequences for every row (``2 D`` with classifier-free guidance), and each row
still decoding is charged exactly that: FreeDave spends *more* sequence evaluations than its
base, never fewer. What it saves is sequential model calls (latency on hardware with spare
batch capacity); they are counted per row in ``FreeDaveState.forwards`` (one per call the row
took part in while unfinished) and in ``FreeDaveInfo.advanced`` (base steps per call). The
reference reports only the second number, as "NFE".

Config round trip: ``base`` is stored frozen as a tuple of ``(key, value)`` pairs with the
base's name first, so ``from_config(s.to_config()) == s``; it also accepts a registry name, a
config dict or a sampler instance. ``block_length`` is the base's.

Departures from the reference (all deliberate):

- Any registered base whose step makes exactly one denoiser call is drafted (the reference
  hard-codes LLaDA/Dream/SDAR top-k decoding and refuses its threshold rule). A base that calls
  the denoiser twice in a step raises ``RuntimeError`` naming it; a base that wraps another
  sampler (``gibbs``, ``freedave``) is refused at build.
- Verification compares the base's whole state (schedule counters, carried logits, ...) row
  by row, which reduces to the reference's token comparison for top-k decoding.
- Batches: each row takes its own longest verified prefix (the rows of a batch advance by
  different numbers of base steps, and a row's tokens and cost never depend on its
  batch-mates). The reference is B = 1 only (``matched_steps.item()``). A base whose state
  carries per-run values (not one per row) that differ between the accepted states accepts
  the shortest verified prefix of the batch's unfinished rows instead — tokens unchanged,
  each row may then make more calls than alone; that path syncs with the host once per step.
  No registered base needs it.
- Every call evaluates D states per row, also where a row has nothing to draft (at the first
  call of a block, where the reference runs one plain forward pass; the frozen logits then
  belong to the previous block): the row's spare states repeat it, fail verification and
  are charged like the others, so a row's cost never depends on its batch-mates. As in the
  reference, drafts stay in the block the frozen logits were computed for.
- No KV cache or tree attention here: caching is a denoiser wrapper's job (an exact block
  cache such as ``BlockDiffusionDenoiser`` gives the same tokens and counts), and the drafts
  go through the model as ordinary batch rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from remask import kernels
from remask.models import protocol
from remask.samplers.base import Canvas, Sampler, _check_int
from remask.samplers.registry import WrapsBase, frozen, register, resolve_base

__all__ = ["FreeDave", "FreeDaveState", "FreeDaveInfo"]


class FreeDaveState(NamedTuple):
    """State of :class:`FreeDave`.

    Attributes
    ----------
    canvas : Canvas
        The base's exact canvas, with ``nfe`` counting FreeDave's sequence evaluations.
    base : NamedTuple
        The base sampler's exact state (its canvas's ``nfe`` is what the base alone would
        have charged).
    stale : (B', L', V) float tensor or None
        The raw denoiser output at the state before ``base`` (the frozen logits of the next
        draft; B' = B, or 2B with guidance); None before the first call.
    stale_window : (B,) int64
        The active block of each row's state that ``stale`` was computed for.
    forwards : (B,) int64
        Denoiser calls each row took part in while unfinished.
    """

    canvas: Canvas
    base: Any
    stale: torch.Tensor | None
    stale_window: torch.Tensor
    forwards: torch.Tensor


class FreeDaveInfo(NamedTuple):
    """What a FreeDave step did.

    Attributes
    ----------
    committed : (B, L) bool
        Positions written by the accepted base steps.
    proposal : (B, L) int64
        The last accepted base step's proposals.
    score : (B, L) float
        The last accepted base step's scores.
    advanced : (B,) int64
        Base steps accepted this step on unfinished states (1 .. D for a row still decoding,
        0 for a finished row).
    drafts : int
        Sequences evaluated per row in this step's call (1 on the first step, else D).
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    advanced: torch.Tensor
    drafts: int


class _Captured(Exception):
    """Raised by :class:`_Recorder` to stop a base step at its denoiser call."""


class _StandIn:
    """Shows a base step the real denoiser's attributes (mask_id, vocab_size, shift, ...), so
    the base makes exactly the call it would make on the real one."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class _Recorder(_StandIn):
    """Records the call a base step makes and stops the step there."""

    def __init__(self, inner):
        super().__init__(inner)
        self.call: tuple | None = None

    def __call__(self, tokens, attention_mask=None, **extra):
        self.call = (tokens, attention_mask, extra)
        raise _Captured


class _Replay(_StandIn):
    """Answers a base step's one call with a given output."""

    def __init__(self, inner, output: torch.Tensor, base_name: str):
        super().__init__(inner)
        self._output = output
        self._base_name = base_name
        self._used = False

    def __call__(self, tokens, attention_mask=None, **extra):
        if self._used:
            raise RuntimeError(
                f"freedave's base {self._base_name!r} called the denoiser twice in one "
                "step; freedave drafts bases whose step makes exactly one call"
            )
        self._used = True
        return self._output


class _NotMixable(Exception):
    """The accepted base states differ in a per-run (non-row) value: accept in lock-step."""


def _is_rows(value: Any, B: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == B


def _rows_equal(a: Any, b: Any, B: int, device: torch.device) -> torch.Tensor:
    """(B,) bool: rows on which two base states agree in every field (NaN equals NaN)."""
    if _is_rows(a, B) and _is_rows(b, B):
        if a.shape != b.shape or a.dtype != b.dtype:
            return torch.zeros(B, dtype=torch.bool, device=device)
        same = a == b
        if a.is_floating_point():
            same = same | (a.isnan() & b.isnan())
        return same.reshape(B, -1).all(-1)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        equal = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
        return torch.full((B,), equal, dtype=torch.bool, device=device)
    if isinstance(a, tuple) and isinstance(b, tuple):
        if type(a) is not type(b) or len(a) != len(b):
            return torch.zeros(B, dtype=torch.bool, device=device)
        out = torch.ones(B, dtype=torch.bool, device=device)
        for x, y in zip(a, b):
            out = out & _rows_equal(x, y, B, device)
        return out
    return torch.full((B,), bool(a == b), dtype=torch.bool, device=device)


def _where_rows(rows: torch.Tensor, a: Any, b: Any, B: int) -> Any:
    """Row b of ``a`` where ``rows[b]``, else of ``b``, field by field; per-run values from ``a``."""
    if _is_rows(a, B) and _is_rows(b, B) and a.shape == b.shape:
        return torch.where(rows.view(B, *([1] * (a.dim() - 1))), a, b)
    if (
        isinstance(a, tuple)
        and type(a) is type(b)
        and len(a) == len(b)
        and not isinstance(a, torch.Tensor)
    ):
        parts = [_where_rows(rows, x, y, B) for x, y in zip(a, b)]
        return type(a)(*parts) if hasattr(a, "_fields") else tuple(parts)
    return a


def _mix(values: list, index: torch.Tensor, B: int, name: str = "") -> Any:
    """Row b of the result is row b of ``values[index[b]]``, field by field.

    Per-run values (not one per row) must agree across ``values``; raises
    :class:`_NotMixable` otherwise.
    """
    first = values[0]
    if all(_is_rows(v, B) for v in values) and len({(v.shape, v.dtype) for v in values}) == 1:
        stacked = torch.stack(values)  # (n, B, ...)
        return stacked[index, torch.arange(B, device=index.device)]
    if isinstance(first, torch.Tensor):
        if all(
            isinstance(v, torch.Tensor) and v.shape == first.shape and bool(torch.equal(v, first))
            for v in values
        ):
            return first
        raise _NotMixable(name)
    if isinstance(first, tuple) and all(
        type(v) is type(first) and len(v) == len(first) for v in values
    ):
        fields = getattr(first, "_fields", None)
        parts = [
            _mix([v[i] for v in values], index, B, fields[i] if fields else "")
            for i in range(len(first))
        ]
        return type(first)(*parts) if fields else tuple(parts)
    if all(v is first or v == first for v in values):
        return first
    raise _NotMixable(name)


@register("freedave")
@dataclass(frozen=True, kw_only=True)
class FreeDave(WrapsBase, Sampler):
    """FreeDave draft-and-verify around any base sampler: the base's tokens, fewer model calls.

    Parameters
    ----------
    base : str, dict, tuple of pairs or Sampler
        The base sampler: a registry name, a config dict (``{"name": ..., **fields}``) or a
        sampler; stored as its full config, frozen. Its step must make one denoiser call.
    draft_steps : int
        D, states evaluated per call (the exact one and D - 1 drafts); the reference's
        default 4. D = 1 is the base sampler itself.
    block_length : int, optional
        Must agree with the base's; taken from the base when omitted.

    Examples
    --------
    >>> import remask
    >>> from remask.models import load_model
    >>> model = load_model("oracle:markov?vocab=4&length=8&seed=0")
    >>> sampler = remask.samplers.build("freedave", base={"name": "low_confidence"}, draft_steps=4)
    >>> fast = remask.generate(model, [[1]], sampler, gen_length=6, seed=0)
    >>> slow = remask.generate(model, [[1]], remask.samplers.build("low_confidence"), gen_length=6, seed=0)
    >>> bool((fast.tokens == slow.tokens).all()), fast.steps <= slow.steps
    (True, True)
    """

    example_configs = (
        {"base": {"name": "low_confidence", "steps": 4, "block_length": 4}, "draft_steps": 3},
        {"base": {"name": "low_confidence", "temperature": 1.0}, "draft_steps": 2},
        {"base": {"name": "threshold", "threshold": 0.3, "block_length": 4}},
        {"base": {"name": "low_confidence", "cfg_scale": 1.0, "steps": 5}, "draft_steps": 3},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens: the same
        law as the base (lossless), so the rows show the cost side."""
        return (
            ("LLaDA 1 tok/step, D=4", {"base": {"name": "low_confidence", "temperature": 1.0}}),
            (
                "LLaDA 2 tok/step, D=4",
                {"base": {"name": "low_confidence", "temperature": 1.0, "steps": max(G // 2, 1)}},
            ),
        )

    base: Any = "low_confidence"
    draft_steps: int = 4

    def __post_init__(self) -> None:
        sampler = resolve_base(self.base, self.block_length)
        if hasattr(sampler, "base_sampler"):
            raise ValueError(
                f"base {sampler.name!r} wraps another sampler; freedave drafts a plain "
                "sampler (put the wrapper around freedave instead)"
            )
        object.__setattr__(self, "base", frozen(sampler.to_config()))
        object.__setattr__(self, "block_length", sampler.block_length)
        super().__post_init__()
        _check_int(self.draft_steps, "draft_steps", low=1)

    def finished(self, state: FreeDaveState) -> torch.Tensor:
        return self.base_sampler.finished(state.base)

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> FreeDaveState:
        base_state = self.base_sampler.init(canvas, denoiser)
        return FreeDaveState(
            canvas=base_state.canvas._replace(nfe=canvas.nfe.clone()),
            base=base_state,
            stale=None,
            stale_window=canvas.window.clone(),
            forwards=torch.zeros_like(canvas.nfe),
        )

    # ------------------------------------------------------------------ step
    def step(self, state: FreeDaveState, denoiser, key: torch.Tensor):
        base = self.base_sampler
        B = state.canvas.tokens.shape[0]
        device = state.canvas.tokens.device
        live = ~base.finished(state.base)  # (B,) rows charged for this step
        # The base step from chain state i draws from key_i, in its draft and in its target
        # alike (so a draft and the step it guesses see the same random numbers).
        base_key = kernels.fold(key, kernels.Purpose.BASE)  # (B,)
        keys = [kernels.fold(base_key, i) for i in range(self.draft_steps)]

        # 1. Draft: the exact state, then D - 1 base steps on the frozen logits.
        chain = [state.base]
        if state.stale is not None:
            for i in range(self.draft_steps - 1):
                previous = chain[-1]
                drafted = base.step(previous, _Replay(denoiser, state.stale, base.name), keys[i])[0]
                # Drafts stay in the block the frozen logits were computed for (the reference's
                # rule; outside its active block a denoiser may return stale rows): a row that
                # left it, or finished, repeats its state, which then fails verification.
                going = (previous.canvas.window == state.stale_window) & ~base.finished(
                    previous
                )  # (B,)
                chain.append(_where_rows(going, drafted, previous, B))
        n = len(chain)

        # 2. Verify: the base's own call for every state, batched into one model call.
        calls = [self._capture(state_k, denoiser, keys[i]) for i, state_k in enumerate(chain)]
        tokens, attention_mask, extra = self._batch(calls)
        rows = calls[0][0].shape[0]  # B, or 2B with guidance
        out = denoiser(tokens, attention_mask, **extra)  # (n * rows, L', V)
        outputs = list(out.split(rows))
        targets, infos = zip(
            *(
                base.step(c, _Replay(denoiser, o, base.name), keys[i])
                for i, (c, o) in enumerate(zip(chain, outputs))
            )
        )

        # 3. Accept the longest verified prefix (a finished row accepts anything).
        verified = [
            _rows_equal(targets[k], chain[k + 1], B, device) | base.finished(chain[k])
            for k in range(n - 1)
        ]  # n - 1 of (B,)
        if verified:
            accepted = torch.stack(verified).long().cumprod(0).sum(0)  # (B,) m per row
        else:
            accepted = torch.zeros(B, dtype=torch.int64, device=device)
        try:
            new_base = _mix(list(targets), accepted, B)
        except _NotMixable:
            new_base = None
        if new_base is None:  # lock-step: the batch's shortest verified prefix (host sync)
            m = int(torch.where(live, accepted, n - 1).min())
            accepted = torch.full_like(accepted, m)
            new_base = targets[m]
            stale = outputs[m].clone()  # a copy frees the other drafts' logits
        else:
            pick = accepted[
                torch.arange(rows, device=device) % B
            ]  # (rows,) draft of each output row
            # Whole (L', V) blocks by index_select on the flat (n * rows, L' * V) view: one copy
            # per row, where advanced indexing computes an offset per element.
            flat = pick * rows + torch.arange(rows, device=device)  # (rows,) rows of ``out``
            stale = out.reshape(n * rows, -1).index_select(0, flat).view(rows, *out.shape[1:])
        windows = torch.stack([c.canvas.window for c in chain])  # (n, B)
        stale_window = windows[accepted, torch.arange(B, device=device)]  # (B,)

        # The info of the accepted path: every base step up to and including t_m.
        upto = torch.arange(n, device=device).unsqueeze(-1) <= accepted  # (n, B)
        committed = (torch.stack([i.committed for i in infos]) & upto.unsqueeze(-1)).any(
            0
        )  # (B, L)
        last = torch.arange(B, device=device)
        proposal = torch.stack([i.proposal for i in infos])[accepted, last]  # (B, L)
        score = torch.stack([i.score for i in infos])[accepted, last]  # (B, L)

        # Sequences evaluated per row in this call (a guided denoiser costs 2 per input row).
        evaluations = n * (rows // B) * protocol.capabilities(denoiser).evaluations
        nfe = state.canvas.nfe + evaluations * live.long()
        new_state = FreeDaveState(
            canvas=new_base.canvas._replace(nfe=nfe),
            base=new_base,
            stale=stale,
            stale_window=stale_window,
            forwards=state.forwards + live.long(),
        )
        # Base steps taken on unfinished states (a finished draft's "step" changes nothing).
        moving = ~torch.stack([base.finished(c) for c in chain])  # (n, B)
        info = FreeDaveInfo(
            committed=committed,
            proposal=proposal,
            score=score,
            advanced=(moving & upto).sum(0),
            drafts=n,
        )
        return new_state, info

    # ------------------------------------------------------------------ helpers
    def _capture(self, base_state, denoiser, key: torch.Tensor) -> tuple:
        """The (tokens, attention_mask, extra) of the call the base makes from ``base_state``."""
        recorder = _Recorder(denoiser)
        try:
            self.base_sampler.step(base_state, recorder, key)
        except _Captured:
            return recorder.call
        raise RuntimeError(
            f"freedave's base {self.base_sampler.name!r} took a step without calling the "
            "denoiser; freedave drafts bases whose step makes exactly one call"
        )

    def _batch(self, calls: list[tuple]) -> tuple:
        """Concatenate the captured calls along the batch (they must have one layout)."""
        tokens = [c[0] for c in calls]
        if len({t.shape for t in tokens}) != 1 or len({tuple(sorted(c[2])) for c in calls}) != 1:
            raise RuntimeError(
                f"freedave's base {self.base_sampler.name!r} made calls of different "
                "shapes from its drafts; they cannot share one batch"
            )
        masks = [c[1] for c in calls]
        if any(m is None for m in masks):
            mask = (
                None
                if all(m is None for m in masks)
                else torch.cat(
                    [
                        torch.ones_like(t, dtype=torch.bool) if m is None else m
                        for t, m in zip(tokens, masks)
                    ]
                )
            )
        else:
            mask = torch.cat(masks)
        extra = {}
        for key in calls[0][2]:
            values = [c[2][key] for c in calls]
            if not all(
                isinstance(v, torch.Tensor) and v.shape[:1] == tokens[0].shape[:1] for v in values
            ):
                raise RuntimeError(
                    f"freedave cannot batch the keyword {key!r} of base "
                    f"{self.base_sampler.name!r}'s denoiser call (not a per-row tensor)"
                )
            extra[key] = torch.cat(values)
        return torch.cat(tokens), mask, extra
