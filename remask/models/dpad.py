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
dropped masks are hidden as keys. The rows of dropped positions are returned as zeros
(a uniform prediction: "not computed"); samplers only commit inside the active block, which
is never dropped, so a dropped position is predicted again, with its context, once its block
is active. A call with no active block (no sampler context, or a row whose active block is
empty) drops nothing.

Cost
----
The result is that of DPad's pruned forward (only prefix and kept suffix, at their original
positions); it is computed as one forward over the whole canvas with the dropped keys hidden
through the protocol's attention-bias capability (:mod:`remask.models.protocol`), which keeps
every canvas column. So it is equivalent in result but not in cost: ``evaluations`` is the
inner model's (1 per row and call), and the speed-up of the paper needs a pruned call that
the protocol does not offer yet. The inner model must declare ``accepts_attention_bias``
(remask's LLaDA and Dream adapters do) and be unshifted (``shift == 0``: Dream's shift reads
a prediction from the previous column, which the pruned sequence changes).
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
        Declares ``accepts_attention_bias`` and ``shift == 0`` (e.g. remask's LLaDA adapter).
    window : int
        W >= 1: suffix masks further than W positions after the block end are always dropped
        (reference 256).
    sigma : float
        k >= 0: the window's end lies at k standard deviations (reference 4).
    scale : float
        a > 0: the retention probability at the block end is a * phi(0) (reference 2.0).
    seed : int
        Seed of the kept sets, in [0, 2**63).

    Attributes
    ----------
    accepts_active : bool
        True: samplers pass the active block.
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
    ) -> None:
        super().__init__(model)
        caps = capabilities(model)
        if not caps.attention_bias:
            raise TypeError(
                f"DPad needs a denoiser that takes an attention pattern and positions "
                f"(accepts_attention_bias = True, e.g. remask's LLaDA adapter); "
                f"{type(model).__name__} does not declare it"
            )
        if caps.shift:
            raise TypeError(
                f"DPad needs an unshifted denoiser (shift == 0); {type(model).__name__} has "
                f"shift={caps.shift}"
            )
        if isinstance(window, bool) or not isinstance(window, int):
            raise TypeError(f"window must be an int, got {window!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        for name, value, low_open in (("sigma", sigma, False), ("scale", scale, True)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0 or (low_open and value == 0):
                raise ValueError(
                    f"{name} must be finite and {'> 0' if low_open else '>= 0'}, got {value!r}"
                )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
        self.window, self.sigma, self.scale, self.seed = window, float(sigma), float(scale), seed
        self.accepts_active = True
        # The wrapper uses the inner model's attention pattern itself: it takes none from outside.
        self.accepts_attention_bias = False

    def _rewrap(self, inner: Any) -> DPad:
        return DPad(inner, window=self.window, sigma=self.sigma, scale=self.scale, seed=self.seed)

    def __repr__(self) -> str:
        return (
            f"DPad({self.inner!r}, window={self.window}, sigma={self.sigma}, scale={self.scale}, "
            f"seed={self.seed})"
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
        keys = kernels.fold(
            kernels.fold(self.seed, anchor).unsqueeze(-1), distance.clamp_min(0)
        )  # (B, L)
        u = kernels.uniform(keys, dtype=torch.float64)  # (B, L)
        p = retention_probability(distance, self.window, self.sigma, self.scale)  # (B, L)
        suffix_mask = (distance >= 1) & (tokens == self.mask_id)
        return ~suffix_mask | (u < p)

    def __call__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        active: torch.Tensor | None = None,
        **extra: torch.Tensor,
    ) -> torch.Tensor:
        """The inner model's logits (B, L, V) with the dropped suffix masks hidden as keys
        and their rows set to zeros (see the module docstring)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        if active is None:
            logits, _ = call(self.inner, tokens, attention_mask, **extra)
            return logits
        B, L = tokens.shape
        keep = self.kept(tokens, attention_mask, active)  # (B, L)
        keys = (keep & attention_mask).unsqueeze(1).expand(B, L, L)  # (B, L, L): query i sees key j
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
        return torch.where(
            keep.unsqueeze(-1), logits, torch.zeros((), dtype=logits.dtype, device=logits.device)
        )
