"""The Denoiser protocol (docs/design.md §2): what every sampler talks to, and its capabilities.

A denoiser is anything with ``mask_id``, ``vocab_size`` and ``__call__(tokens,
attention_mask) -> logits``. Everything else a denoiser can do is a *capability*, declared
once on the class and documented here, and a sampler asks for it through this module only —
:func:`capabilities` (a frozen record) and :func:`call` (the one model call) — never by
probing attributes itself.

Capabilities
------------
Each is declared by a class (or instance) attribute; absent means the default.

``accepts_active = True`` (default False)
    The denoiser wants the sampler's active block: it is called with
    ``active=`` (B, L) bool, True on the positions of each row's active block. KV-caching
    wrappers (:class:`remask.models.cache.Cached`) use it to recompute only that window.
``accepts_editable = True`` (default False)
    The denoiser wants to know which positions the sampler may write: it is called with
    ``editable=`` (B, L) bool (False on the prompt, fixed infill tokens and padding).
    Classifier-free guidance (:class:`remask.models.wrappers.Guided`) masks the others in
    its unconditional branch.
``accepts_attention_bias = True`` (default False)
    The denoiser takes a custom attention pattern and explicit positions (WINO's shadow
    block): it is called with ``attention_bias=`` (B, L', L') bool — ``bias[b, i, j]`` True
    iff query i may attend to key j; every row allows at least one key — and
    ``position_ids=`` (B, L') int64, the *canvas column* whose position each token takes:
    the tokens of the canvas itself carry their own column ``0 .. L - 1``; extra tokens
    appended after it (a shadow slot) carry the column of the token they stand in for, so two
    tokens may share a position. The denoiser maps columns to positions by its own rule —
    the one its plain call uses, e.g. the column itself (LLaDA), or the column's rank among
    the row's real tokens (Dream, learned-position models) — so left padding gives the same
    positions as the plain call. Row i of the result predicts the token at column
    ``position_ids[i]`` from what query i may see. remask's LLaDA and Dream adapters
    implement it (one forward of length L').
``accepts_gathered = True`` (default False)
    The denoiser can run on a *gathered* subset of a canvas's columns (DPad's pruned
    forward): it is called with ``columns=`` (B, K) int64 and ``tokens`` (B, K), where
    ``tokens[b, i]`` is the token of canvas column ``columns[b, i]``. The columns of a row
    are its kept real columns in increasing order, padded on the right to the longest row
    with ``attention_mask`` False (the value of ``columns`` there is ignored; the canvas's
    own padding is not gathered). Every gathered token takes the position its column has in
    the plain call on the whole canvas — the column itself (LLaDA), or the column's rank
    among the row's real tokens, which needs the row's first real column gathered and the
    canvas padded on the left only (Dream) — and sees every real gathered token and nothing
    else: the result equals the plain call on the canvas with the columns that were not
    gathered hidden as keys, at the cost of a forward of length K. Row i of the (B, K, V)
    result predicts column ``columns[b, i]``; rows on the padding, and rows a shifted model
    cannot predict (the column before them not gathered), are zeros ("not computed"; the
    mask column -inf, as in every row).
    Exclusive with ``attention_bias``. remask's LLaDA and Dream adapters implement it.
    :class:`remask.models.dpad.DPad` gathers, calls and scatters the rows back to (B, L, V).
``shift`` (int, default 0)
    Informational: the logit shift the adapter already undoes (1 for Dream, whose raw output
    i predicts position i + 1). The logits a denoiser returns are always unshifted; a
    shifted model cannot predict its first real position, which therefore stays a decided
    token (guidance keeps it in the unconditional branch).
``evaluations`` (int, default 1)
    Sequence evaluations one call costs per input row — what samplers charge to ``nfe``.
    :class:`~remask.models.wrappers.Guided` doubles its inner model's count.
``eos_id``, ``eot_id``, ``pad_id`` (int or None, default None)
    End of sequence, end of turn and padding ids, for samplers with an EOS policy and for
    the driver's padding filler.

Per-run state
-------------
A denoiser that keeps state across the calls of one run (a KV cache) defines
``session() -> Denoiser``: :func:`start_run` calls it once per run and the run talks to
the session only, so nothing a run leaves behind affects the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

__all__ = [
    "Capabilities",
    "Denoiser",
    "call",
    "capabilities",
    "check_logits",
    "exclude_mask",
    "start_run",
]


@runtime_checkable
class Denoiser(Protocol):
    """Anything that predicts every position of a partially masked canvas.

    Attributes
    ----------
    mask_id : int
        Token id of the mask. Either a logit column whose logit the denoiser keeps at -inf
        (LLaDA, BERT), or ``vocab_size`` itself (a mask with no column, as in MDLM).
    vocab_size : int
        Number of logit columns V.

    Optional: ``tokenizer`` (for text in and out) and the capabilities of the module
    docstring (read through :func:`capabilities`).

    ``__call__(tokens, attention_mask=None) -> logits``: ``tokens`` (B, L) int64 holds
    ``mask_id`` at undecided positions; ``attention_mask`` (B, L) bool is False on padding;
    the result is float logits (B, L, V) whose row i is the prediction for position i.
    The mask token is never proposed whatever its logit: :func:`call` sets its column to
    -inf on the returned tensor (in place: the tensor belongs to the caller once returned).
    Adapters set it too, which only saves that fill. Wrap a plain function with
    :func:`remask.models.as_denoiser`.
    """

    mask_id: int
    vocab_size: int

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class Capabilities:
    """What a denoiser declares beyond the protocol (see the module docstring).

    Attributes
    ----------
    active, editable, attention_bias, gathered : bool
        Whether it is called with ``active=``, ``editable=``, ``attention_bias=`` plus
        ``position_ids=``, and ``columns=`` (a gathered call).
    shift : int
        Logit shift the adapter undoes (1 for Dream).
    evaluations : int
        Sequence evaluations per input row and call.
    eos_id, eot_id, pad_id : int or None
    """

    active: bool = False
    editable: bool = False
    attention_bias: bool = False
    gathered: bool = False
    shift: int = 0
    evaluations: int = 1
    eos_id: int | None = None
    eot_id: int | None = None
    pad_id: int | None = None


_FLAGS = {
    "active": "accepts_active",
    "editable": "accepts_editable",
    "attention_bias": "accepts_attention_bias",
    "gathered": "accepts_gathered",
}


# Every declaration capabilities() reads, with its default.
_DECLARED = (
    *((attribute, False) for attribute in _FLAGS.values()),
    ("shift", 0),
    ("evaluations", 1),
    ("eos_id", None),
    ("eot_id", None),
    ("pad_id", None),
)
# (declared values, their types) -> the checked record: the checks run once per distinct
# declaration, not at every model call (the types are part of the key: True == 1 in a dict).
_checked: dict[tuple, Capabilities] = {}


def capabilities(denoiser) -> Capabilities:
    """The capabilities ``denoiser`` declares, checked (a bad declaration raises ``TypeError``).

    The one place that reads the declarations; samplers and wrappers ask here. The
    declarations are read at every call (they may change); a set of values already checked
    is not checked again.
    """
    raw = tuple([getattr(denoiser, attribute, default) for attribute, default in _DECLARED])
    try:
        key = (raw, tuple(map(type, raw)))
        caps = _checked.get(key)
    except TypeError:  # an unhashable declaration (a list): the checks below reject it
        key, caps = None, None
    if caps is None:
        caps = _check_capabilities(denoiser)
        if key is not None and len(_checked) < 256:
            _checked[key] = caps
    return caps


def _check_capabilities(denoiser) -> Capabilities:
    """:func:`capabilities` without the memo: read and check every declaration."""
    values: dict = {}
    for field, attribute in _FLAGS.items():
        flag = getattr(denoiser, attribute, False)
        if not isinstance(flag, bool):
            raise TypeError(f"{type(denoiser).__name__}.{attribute} must be a bool, got {flag!r}")
        values[field] = flag
    for field, default, low in (("shift", 0, 0), ("evaluations", 1, 1)):
        value = getattr(denoiser, field, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TypeError(
                f"{type(denoiser).__name__}.{field} must be an int >= {low}, got {value!r}"
            )
        values[field] = value
    for field in ("eos_id", "eot_id", "pad_id"):
        value = getattr(denoiser, field, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(
                f"{type(denoiser).__name__}.{field} must be an int or None, got {value!r}"
            )
        values[field] = value
    return Capabilities(**values)


def call(
    denoiser,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    active: torch.Tensor | None = None,
    editable: torch.Tensor | None = None,
    attention_bias: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    columns: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Call a denoiser the way every sampler does: the one model call.

    ``active`` and ``editable`` are handed over only to a denoiser that declares it wants
    them (and dropped otherwise: they are information, not a request). ``attention_bias``
    and ``position_ids``, or ``columns``, change what is computed, so a denoiser without
    that capability raises ``TypeError``.

    Parameters
    ----------
    denoiser : Denoiser
    tokens : (B, L) int64
    attention_mask : (B, L) bool
        False on padding.
    active, editable : (B, L) bool, optional
        The sampler's active block and writable positions.
    attention_bias : (B, L, L) bool, optional
    position_ids : (B, L) int64, optional
        Canvas columns; see the module docstring.
    columns : (B, K) int64, optional
        A gathered call: ``tokens`` (B, K) are these canvas columns (see the module
        docstring); exclusive with ``attention_bias``/``position_ids``.

    Returns
    -------
    logits : (B, L, V) float
        Checked against the canvas; the mask column set to -inf.
    evaluations : int
        Sequence evaluations per input row that the call cost (``capabilities().evaluations``).
    """
    caps = capabilities(denoiser)
    extra: dict[str, torch.Tensor] = {}
    if caps.active and active is not None:
        extra["active"] = active
    if caps.editable and editable is not None:
        extra["editable"] = editable
    if attention_bias is not None or position_ids is not None:
        if not caps.attention_bias:
            raise TypeError(
                f"{type(denoiser).__name__} does not declare accepts_attention_bias = True: "
                "it cannot be called with an attention pattern"
            )
        extra["attention_bias"] = attention_bias
        extra["position_ids"] = position_ids
    if columns is not None:
        if not caps.gathered:
            raise TypeError(
                f"{type(denoiser).__name__} does not declare accepts_gathered = True: "
                "it cannot be called on gathered columns"
            )
        if "attention_bias" in extra:
            raise TypeError("give either attention_bias/position_ids or columns, not both")
        extra["columns"] = columns
    logits = check_logits(denoiser(tokens, attention_mask, **extra), tokens, denoiser.vocab_size)
    return exclude_mask(logits, denoiser.mask_id), caps.evaluations


def start_run(denoiser):
    """The denoiser one run talks to: ``denoiser.session()`` when it keeps per-run state,
    else ``denoiser`` itself. The driver calls this once per run."""
    session = getattr(denoiser, "session", None)
    return session() if callable(session) else denoiser


def exclude_mask(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Set the mask token's column of (B, L, V) ``logits`` to -inf, in place when possible.

    A mask with no column (``mask_id == V``, MDLM-style) needs nothing. Writing in place
    avoids a (B, L, V) copy per step; a tensor that cannot be written (an expanded view whose
    elements share memory, a read-only inference tensor) is copied once instead.
    """
    if not 0 <= mask_id < logits.shape[-1]:
        return logits
    try:
        logits[..., mask_id] = float("-inf")
    except RuntimeError:  # overlapping memory (expand) or an inference-mode tensor
        logits = logits.clone()
        logits[..., mask_id] = float("-inf")
    return logits


def check_logits(logits: object, tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Validate a denoiser's output against the canvas it was given.

    Parameters
    ----------
    logits : object
        What the denoiser returned; must be a floating tensor of shape (B, L, V).
    tokens : (B, L) int64
        The canvas that was passed in.
    vocab_size : int
        The denoiser's declared V.

    Returns
    -------
    (B, L, V) float tensor, unchanged.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"denoiser must return a torch.Tensor of logits, got {type(logits).__name__}"
        )
    expected = (*tokens.shape, vocab_size)
    if tuple(logits.shape) != expected:
        raise ValueError(
            f"denoiser returned logits of shape {tuple(logits.shape)}, expected (B, L, V) = {expected}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"denoiser must return floating-point logits, got dtype {logits.dtype}")
    return logits
