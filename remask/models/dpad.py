"""DPad suffix dropout (Chen et al., "DPad: Efficient Diffusion Language Models with Suffix
Dropout", arXiv 2508.14148) as a denoiser wrapper that every sampler can use.

A blockwise sampler decodes one block at a time, yet every step attends to all the masks
after it (the "suffix"). DPad keeps the prefix up to the end of the active block and only a
random subset of the suffix masks, near ones more often: a suffix mask at distance d >= 1
after the block end is kept with probability

    ``P(d) = a * phi(k * (d - 1) / (W - 1))``  for 1 <= d <= W, and 0 beyond W,

where phi is the standard normal density, W the window, k (``sigma``) the number of standard
deviations the window spans and a (``scale``) the scale — the paper's ``a * N(k d / W; 0, 1)``
discretised as the reference code (Crys-Chen/DPad, ``GaussianSampler``) does, with the
first suffix position at 0 and the last one of the window at k. A probability above 1 keeps
the position. The reference defaults (``llada/params.py``): W = 256, k = 4, a = 2. Kept
tokens keep their original positions (the reference keeps their RoPE positions), and the kept
set is drawn once per block: here from the wrapper's ``seed`` folded by the number of real
tokens before the block end and by the distance d (a pure function of the row; no global
RNG).

Semantics of a call
-------------------
The wrapper declares ``accepts_active``: samplers hand it the active block (B, L) bool, and
the block end of a row is the column after its last active position. Prefix tokens, fixed
tokens after the block (infilling) and kept suffix masks are the keys every query sees;
dropped masks are not seen. The rows of dropped positions are returned as zeros (a uniform
prediction: "not computed"); samplers only commit inside the active block, which is never
dropped, so a dropped position is predicted again, with its context, once its block is
active. A call with no active block (no sampler context, or a row whose active block is
empty) drops nothing.

Cost: the pruned forward
------------------------
When the inner model declares the protocol's gathered capability (``accepts_gathered``,
:mod:`remask.models.protocol`; remask's LLaDA and Dream adapters), a call is DPad's pruned
forward: the kept real columns of each row are gathered into a shorter sequence (right-padded
to the longest row of the batch), run through the model at their original positions, and the
rows are scattered back to (B, L, V). The forward then costs a sequence of the prefix, the
block and about ``a (W - 1) / k * (Phi(k) - 1/2)`` kept suffix masks (Phi the normal CDF;
about 64 at the reference defaults) instead of the whole canvas, which is DPad's speed-up:
measured by ``bench/dpad.py`` on a random-weight LLaDA shape (64 + 512 tokens, block 32, one
CPU thread), 392 columns per forward on average against 576, and a forward 1.39x faster in
CPU time than the plain model's (see the README for the setting). Otherwise (an inner model
with only the attention-bias capability, e.g. behind :class:`~remask.models.wrappers.Guided`)
the same result is computed as one forward over the whole canvas with the dropped columns hidden as
keys: equal up to float rounding, none of the speed-up. ``pruned=`` forces either path.
``evaluations`` is the inner model's either way (1 per row and call).

Shifted models (Dream)
----------------------
Dream predicts column c from the output at column c - 1. The reference code's Dream
generation (``dream/model/generation_utils_block.py``) shifts the logits of the pruned
sequence, so a kept column is read from the previous *kept* column. Inside the prefix and the active block every column
is kept, so there the two readings agree and equal the plain model's with the dropped keys
hidden. After the block they differ: the previous kept column's output predicts the dropped
column right after it, not c. The wrapper therefore returns zeros ("not computed") for every
kept column whose previous column is not kept (dropped, or padding for a row's first real
token, a decided one), on both paths; the reference's value there is
never committed (samplers commit in the active block only), so decoding is unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from remask import kernels
from remask.models.protocol import call, capabilities
from remask.models.wrappers import _Wrapper

__all__ = ["DPad", "retention_probability"]


def retention_probability(
    distance: torch.Tensor, window: int, sigma: float, scale: float
) -> torch.Tensor:
    """DPad's probability of keeping a suffix mask at ``distance`` after the block end.

    Parameters
    ----------
    distance : integer tensor, any shape
        d = column - block end + 1 (1 for the first position after the block).
    window, sigma, scale : int, float, float
        W, k and a of the module docstring.

    Returns
    -------
    float64 tensor of ``distance``'s shape: ``min(1, a * phi(k (d - 1) / (W - 1)))`` for
    1 <= d <= W, else 0.
    """
    d = distance.to(torch.float64)
    x = sigma * (d - 1) / (window - 1) if window > 1 else torch.zeros_like(d)
    p = scale * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    inside = (d >= 1) & (d <= window)
    return torch.where(inside, p.clamp(max=1.0), torch.zeros_like(p))


class DPad(_Wrapper):
    """Suffix dropout (DPad, arXiv 2508.14148) for any blockwise sampler.

    Parameters
    ----------
    model : Denoiser
        Declares the gathered capability (``accepts_gathered``: the pruned forward) or the
        attention-bias one (``accepts_attention_bias``: the hidden-keys forward); remask's
        LLaDA and Dream adapters declare both.
    window : int
        W >= 1: suffix masks further than W positions after the block end are always dropped
        (reference 256).
    sigma : float
        k >= 0: the window's end lies at k standard deviations (reference 4).
    scale : float
        a > 0: the retention probability at the block end is a * phi(0) (reference 2.0).
    seed : int
        Seed of the kept sets, in [0, 2**63).
    pruned : bool or None
        True: the pruned forward (the model must declare ``accepts_gathered``); False: the
        hidden-keys forward (``accepts_attention_bias``); None (default): pruned when the
        model declares it, else hidden keys. Both give the same logits up to float rounding.

    Attributes
    ----------
    accepts_active : bool
        True: samplers pass the active block.
    pruned : bool
        The path the calls take (the resolved ``pruned`` argument).
    evaluations : int
        The inner model's (see the module docstring on cost).

    Examples
    --------
    >>> import remask
    >>> from remask.models import DPad
    >>> from remask.models.checkpoints import load_checkpoint  # doctest: +SKIP
    >>> model = DPad(load_checkpoint("tests/data/golden/llada_tiny"), window=8)  # doctest: +SKIP
    >>> remask.generate(model, [[1, 2]], remask.samplers.build("low_confidence", block_length=4),
    ...                 gen_length=16).tokens.shape  # doctest: +SKIP
    torch.Size([1, 18])
    """

    def __init__(
        self,
        model: Any,
        *,
        window: int = 256,
        sigma: float = 4.0,
        scale: float = 2.0,
        seed: int = 0,
        pruned: bool | None = None,
    ) -> None:
        super().__init__(model)
        caps = capabilities(model)
        if pruned is not None and not isinstance(pruned, bool):
            raise TypeError(f"pruned must be True, False or None, got {pruned!r}")
        if pruned is None:
            pruned = caps.gathered
        name = type(model).__name__
        if pruned and not caps.gathered:
            raise TypeError(
                f"DPad(pruned=True) needs a denoiser that runs on gathered columns "
                f"(accepts_gathered = True, e.g. remask's LLaDA adapter); {name} does not "
                "declare it"
            )
        if not pruned and not caps.attention_bias:
            raise TypeError(
                f"DPad needs a denoiser that runs on gathered columns (accepts_gathered = True) "
                f"or takes an attention pattern and positions (accepts_attention_bias = True), "
                f"e.g. remask's LLaDA adapter; {name} declares neither"
                + ("" if pruned is None else " that pruned=False can use")
            )
        self.accepts_gathered = False  # DPad gathers columns itself
        if caps.shift > 1:
            raise TypeError(
                f"DPad handles a logit shift of 0 or 1 (Dream); {name} has shift={caps.shift}"
            )
        if isinstance(window, bool) or not isinstance(window, int):
            raise TypeError(f"window must be an int, got {window!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        for label, value, low_open in (("sigma", sigma, False), ("scale", scale, True)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{label} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0 or (low_open and value == 0):
                raise ValueError(
                    f"{label} must be finite and {'> 0' if low_open else '>= 0'}, got {value!r}"
                )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
        self.window, self.sigma, self.scale, self.seed = window, float(sigma), float(scale), seed
        self.pruned = pruned
        self.shift = caps.shift
        self._memo: tuple[torch.Tensor, torch.Tensor] | None = None  # see _draw
        self.accepts_active = True
        # The wrapper uses the inner model's attention pattern itself: it takes none from outside.
        self.accepts_attention_bias = False

    def _rewrap(self, inner: Any) -> DPad:
        return DPad(
            inner,
            window=self.window,
            sigma=self.sigma,
            scale=self.scale,
            seed=self.seed,
            pruned=self.pruned,
        )

    def __repr__(self) -> str:
        return (
            f"DPad({self.inner!r}, window={self.window}, sigma={self.sigma}, scale={self.scale}, "
            f"seed={self.seed}, pruned={self.pruned})"
        )

    def kept(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None, active: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) bool: the positions a call keeps (every one but the dropped suffix masks).

        Parameters
        ----------
        tokens : (B, L) int64
        attention_mask : (B, L) bool or None
        active : (B, L) bool
            The active block; a row without one keeps everything.
        """
        B, L = tokens.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        cols = torch.arange(L, device=tokens.device).expand(B, L)  # (B, L)
        has_block = active.any(-1)  # (B,)
        end = torch.where(active, cols, -1).amax(-1) + 1  # (B,) column after the active block
        end = torch.where(has_block, end, L)
        distance = cols - end.unsqueeze(-1) + 1  # (B, L): 1 at the first suffix column
        # The draw of a block: seed, folded by the real tokens before the block end (the same
        # for the block whatever the padding) and by the distance.
        anchor = (attention_mask & (cols < end.unsqueeze(-1))).sum(-1)  # (B,)
        lucky = self._draw(anchor)  # (B, W): distance d = 1 .. W drawn as kept
        inside = (distance >= 1) & (distance <= self.window)  # (B, L)
        drawn = inside & lucky.gather(1, (distance - 1).clamp(0, self.window - 1))  # (B, L)
        suffix_mask = (distance >= 1) & (tokens == self.mask_id)
        return ~suffix_mask | drawn

    def _draw(self, anchor: torch.Tensor) -> torch.Tensor:
        """(B, W) bool: ``u(seed, anchor, d) < P(d)`` for d = 1 .. W, per row's anchor (B,).

        The draw is a pure function of the anchor, and the anchor stays the same through all
        the steps of a block: the last draw is kept and reused while the anchors repeat
        (Philox on (B, W) keys costs tens of small tensor operations per call)."""
        memo = self._memo
        if (
            memo is not None
            and memo[0].shape == anchor.shape
            and memo[0].device == anchor.device
            and torch.equal(memo[0], anchor)
        ):
            return memo[1]
        distance = torch.arange(1, self.window + 1, device=anchor.device)  # (W,)
        keys = kernels.fold(kernels.fold(self.seed, anchor).unsqueeze(-1), distance)  # (B, W)
        u = kernels.uniform(keys, dtype=torch.float64)  # (B, W)
        p = retention_probability(distance, self.window, self.sigma, self.scale)  # (W,)
        lucky = u < p
        self._memo = (anchor, lucky)
        return lucky

    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        active: torch.Tensor | None = None,
        **extra: torch.Tensor,
    ) -> torch.Tensor:
        """The inner model's logits (B, L, V) computed on the kept columns only, the rows
        that are not computed set to zeros (see the module docstring).

        ``extra`` holds other (B, L) per-position arguments of the protocol (``editable=``),
        handed to the inner model as they are, or gathered with the tokens on the pruned path.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        if active is None:
            logits, _ = call(self.inner, tokens, attention_mask, **extra)
            return logits
        keep = self.kept(tokens, attention_mask, active) & attention_mask  # (B, L) real, kept
        computed = keep
        if self.shift:
            # Column c is read from the output at c - 1: computed only when c - 1 is kept too.
            computed = keep & torch.nn.functional.pad(keep[:, :-1], (1, 0), value=False)
        if self.pruned:
            logits = self._pruned(tokens, keep, active, extra)  # (B, L, V), ours
            if self.shift:
                # The gathered call zeroes the rows after a column it did not get; what is
                # left is a row's first real column, which has no previous column at all.
                logits.masked_fill_(~computed.unsqueeze(-1), 0.0)
            return logits  # unshifted: the columns not kept are zeros already
        logits = self._hidden(tokens, attention_mask, keep, active, extra)  # (B, L, V)
        return torch.where(
            computed.unsqueeze(-1),
            logits,
            torch.zeros((), dtype=logits.dtype, device=logits.device),
        )

    def _hidden(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor,
        keep: torch.Tensor,
        active: torch.Tensor,
        extra: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """One forward over the whole canvas, the columns not kept hidden as keys."""
        B, L = tokens.shape
        keys = keep.unsqueeze(1).expand(B, L, L)  # (B, L, L): query i sees key j
        columns = torch.arange(L, device=tokens.device).expand(B, L)  # original positions
        logits, _ = call(
            self.inner,
            tokens,
            attention_mask,
            active=active,
            attention_bias=keys,
            position_ids=columns,
            **extra,
        )  # (B, L, V)
        return logits

    def _pruned(
        self,
        tokens: torch.Tensor,
        keep: torch.Tensor,
        active: torch.Tensor,
        extra: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """DPad's pruned forward: the kept columns gathered (right-padded to the longest row),
        one forward of that length at their own positions, the rows scattered back."""
        B, L = tokens.shape
        counts = keep.sum(-1)  # (B,)
        K = int(counts.max()) if B else 0  # host synchronisation: the gathered length
        # A permutation of each row's columns: the kept ones first, in canvas order, then the
        # others. Its first K entries are the gathered columns (on a shorter row, the tail of
        # those K is padding: columns that are not kept, hidden from the model).
        slot = torch.where(
            keep, keep.cumsum(-1) - 1, counts.unsqueeze(-1) + (~keep).cumsum(-1) - 1
        )  # (B, L)
        cols = torch.arange(L, device=tokens.device).expand(B, L)  # (B, L)
        order = torch.empty_like(cols).scatter_(1, slot, cols)[:, :K]  # (B, K)
        real = torch.arange(K, device=tokens.device) < counts.unsqueeze(-1)  # (B, K)
        gathered = {name: value.gather(1, order) for name, value in extra.items()}
        logits, _ = call(
            self.inner,
            tokens.gather(1, order),
            real,
            active=active.gather(1, order),
            columns=order,
            **gathered,
        )  # (B, K, V)
        V = logits.shape[-1]
        # Whole rows copied to their columns (an index per row, not per logit); the padded
        # rows go to one spare row at the end, so the columns not kept stay zeros ("not
        # computed"), and the leading B * L rows are the (contiguous) result.
        out = logits.new_zeros(B * L + 1, V)
        rows = order + L * torch.arange(B, device=tokens.device).unsqueeze(-1)  # (B, K)
        rows = torch.where(real, rows, B * L).view(-1)  # (B K,)
        out.index_copy_(0, rows, logits.reshape(B * K, V))
        return out[: B * L].view(B, L, V)
