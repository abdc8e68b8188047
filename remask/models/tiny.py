"""A seeded, randomly initialised bidirectional transformer denoiser for fast tests."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TinyTransformer"]


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, h: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(h)
        h = h + self.attn(x, x, x, key_padding_mask=key_padding, need_weights=False)[0]
        return h + self.mlp(self.norm2(h))


class TinyTransformer(nn.Module):
    """Bidirectional transformer over a canvas with a mask token, as a Denoiser (trainable).

    The mask token is the last id (``mask_id = vocab_size - 1``), a logit column like in
    LLaDA; its logit is forced to -inf so no sampler can propose it. Position ids are counted
    from the first real (non-padding) token, so a left-padded row gives the same logits on its
    real tokens as the unpadded row (up to float rounding).

    Parameters
    ----------
    vocab_size : int
        Number of logit columns V, including the mask token (>= 2).
    width, depth, heads : int
        Model width, number of layers and attention heads (width divisible by heads).
    max_len : int
        Longest canvas the positional table covers.
    seed : int
        Seed of the random initialisation.
    logit_scale : float
        Multiplies the output logits; larger values give peakier, more confident predictions.
    dtype : torch.dtype
        Parameter dtype (float32 by default; float64 for bit-stable equivalence tests).

    Examples
    --------
    >>> model = TinyTransformer(vocab_size=32, seed=0)
    >>> model(torch.full((2, 8), model.mask_id)).shape
    torch.Size([2, 8, 32])
    """

    def __init__(
        self,
        vocab_size: int = 32,
        *,
        width: int = 32,
        depth: int = 2,
        heads: int = 4,
        max_len: int = 256,
        seed: int = 0,
        logit_scale: float = 4.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        for name, value, low in (
            ("vocab_size", vocab_size, 2),
            ("width", width, 1),
            ("depth", depth, 1),
            ("heads", heads, 1),
            ("max_len", max_len, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if width % heads:
            raise ValueError(f"width={width} is not divisible by heads={heads}")
        self.vocab_size = vocab_size
        self.mask_id = vocab_size - 1
        self.max_len = max_len
        self.logit_scale = float(logit_scale)
        self.config = dict(
            vocab_size=vocab_size,
            width=width,
            depth=depth,
            heads=heads,
            max_len=max_len,
            seed=seed,
            logit_scale=logit_scale,
        )
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # nn init draws from the global generator; restored below
        try:
            self.embed = nn.Embedding(vocab_size, width)
            self.position = nn.Embedding(max_len, width)
            self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
            self.norm = nn.LayerNorm(width)
            self.head = nn.Linear(width, vocab_size)
            with torch.no_grad():
                self.position.weight.mul_(0.5)
        finally:
            torch.random.set_rng_state(generator_state)
        self.to(dtype)
        self.eval()

    def forward(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits for every position.

        In eval mode (the default after construction) no autograd graph is built, so sampling
        costs no gradient memory; after ``model.train()`` the call is differentiable.

        Parameters
        ----------
        tokens : (B, L) int64
        attention_mask : (B, L) bool, optional
            False on padding.

        Returns
        -------
        (B, L, V) float, with the mask column at -inf.
        """
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            return self._logits(tokens, attention_mask)

    def _logits(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        B, L = tokens.shape
        if L > self.max_len:
            raise ValueError(f"canvas length {L} exceeds max_len={self.max_len}")
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # (B, L)
        h = self.embed(tokens) + self.position(positions)  # (B, L, D)
        key_padding = ~attention_mask.bool()  # (B, L): True where attention must not look
        # A fully padded row would make softmax over no keys NaN; such rows never occur in a
        # canvas (the generated region is always real), so only guard the degenerate case.
        key_padding = key_padding & attention_mask.any(-1, keepdim=True)
        for block in self.blocks:
            h = block(h, key_padding)
        logits = self.head(self.norm(h)) * self.logit_scale  # (B, L, V)
        # Out of place, so the -inf column also holds under autograd in train mode.
        return logits.masked_fill(self._mask_column, float("-inf"))

    @property
    def _mask_column(self) -> torch.Tensor:
        return torch.arange(self.vocab_size, device=self.head.weight.device) == self.mask_id
