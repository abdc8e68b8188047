"""WINO (Hong et al., "Wide-In, Narrow-Out: Revokable Decoding for Efficient and Effective
DLLMs"; code ``Feng-Hong/WINO-DLLM``): attention-bias denoisers for the shadow forward, and a slow
one-row WINO loop following ``decoding_wino`` of the reference code line by line.

``BiasTiny`` and ``BiasMarkov`` implement the ``accepts_attention_bias`` capability of
``remask.samplers.wino``.
"""

from __future__ import annotations

import torch


class BiasTiny:
    """A TinyTransformer called with a (B, L, L) attention pattern and explicit position ids."""

    accepts_attention_bias = True

    def __init__(self, tiny):
        self.tiny = tiny
        self.mask_id, self.vocab_size = tiny.mask_id, tiny.vocab_size

    @torch.no_grad()
    def __call__(self, tokens, attention_mask=None, *, attention_bias=None, position_ids=None):
        t = self.tiny
        B, L = tokens.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        if attention_bias is None:
            attention_bias = attention_mask.unsqueeze(1).expand(B, L, L)
        rank = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # (B, L): the model's positions
        # position_ids are canvas columns (the protocol's contract): map them to positions.
        position_ids = rank if position_ids is None else rank.gather(1, position_ids)
        h = t.embed(tokens) + t.position(position_ids)
        heads = t.blocks[0].attn.num_heads
        blocked = (~attention_bias).repeat_interleave(
            heads, dim=0
        )  # (B heads, L, L): True = hidden
        for block in t.blocks:
            x = block.norm1(h)
            h = h + block.attn(x, x, x, attn_mask=blocked, need_weights=False)[0]
            h = h + block.mlp(block.norm2(h))
        logits = t.head(t.norm(h)) * t.logit_scale
        logits[..., t.mask_id] = float("-inf")
        return logits


class BiasMarkov:
    """Exact Markov oracle under an attention pattern: query i predicts position
    ``position_ids[i]`` from the non-mask tokens it may attend to, placed at their positions."""

    accepts_attention_bias = True

    def __init__(self, oracle):
        self.oracle = oracle
        self.mask_id, self.vocab_size = oracle.mask_id, oracle.vocab_size

    def __call__(self, tokens, attention_mask=None, *, attention_bias=None, position_ids=None):
        if attention_bias is None:
            return self.oracle(tokens, attention_mask)
        B, L = tokens.shape
        if attention_mask is not None:  # canvas columns -> positions among the real tokens
            position_ids = (
                (attention_mask.long().cumsum(-1) - 1).clamp_min(0).gather(1, position_ids)
            )
        P = int(position_ids.max()) + 1
        seen = torch.where(
            attention_bias & (tokens != self.mask_id).unsqueeze(1),
            tokens.unsqueeze(1),
            self.mask_id,
        )  # (B, L, L) key values each query sees
        canvases = torch.full((B, L, P), self.mask_id, dtype=torch.int64)
        # mask_id is the largest id, so amin keeps a real token over a mask at a shared position.
        canvases = canvases.scatter_reduce(
            2, position_ids.unsqueeze(1).expand(B, L, L), seen, "amin"
        )
        out = self.oracle(canvases.reshape(B * L, P)).reshape(B, L, P, -1)
        return out.gather(2, position_ids[:, :, None, None].expand(B, L, 1, out.shape[-1])).squeeze(
            2
        )


def wino_reference(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int,
    threshold: float = 0.6,
    threshold_back: float = 0.9,
):
    """decoding_wino (B = 1, greedy) with the model called as model(x, attention_bias=, position_ids=).

    Returns (tokens list, steps).
    """
    mask_id = model.mask_id
    P = len(prompt)
    x = torch.full((1, P + gen_length + block_length), mask_id, dtype=torch.long)
    x[0, :P] = torch.tensor(prompt)
    assert gen_length % block_length == 0
    steps = 0
    for nb in range(gen_length // block_length):
        lo, hi = P + nb * block_length, P + (nb + 1) * block_length
        mask_block = x == mask_id
        mask_block[:, hi:] = False
        unmask_block = torch.zeros_like(mask_block)
        unmask_block[:, -block_length:] = ~mask_block[:, lo:hi]
        position_ids = torch.cat([torch.arange(P + gen_length), torch.arange(lo, hi)]).unsqueeze(0)
        bias = torch.ones(1, x.shape[1], x.shape[1], dtype=torch.bool)
        bias[:, :, -block_length:] = False
        bias[:, -block_length:, -block_length:] = True
        bias[:, -block_length:, lo:hi] = ~torch.eye(block_length, dtype=torch.bool)
        last_accept = 30
        while mask_block.any():
            max_accept = min(max(int(mask_block.sum() * 0.7), 5), 20)
            logits = model(
                x,
                torch.ones_like(x, dtype=torch.bool),
                attention_bias=bias,
                position_ids=position_ids,
            )
            x0 = logits.argmax(-1)
            shift_left = torch.zeros_like(unmask_block)
            shift_left[:, lo:hi] = unmask_block[:, -block_length:]
            x0[unmask_block] = x[shift_left]
            p = logits.double().softmax(-1)
            x0_p = p.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            x0 = torch.where(mask_block, x0, x)
            confidence = torch.where(mask_block, x0_p, -torch.inf)
            confidence_back = torch.where(unmask_block, x0_p, torch.inf)
            transfer = confidence > threshold
            if transfer.sum() > max_accept:
                _, idx = torch.topk(confidence, k=max_accept, largest=True)
                transfer = torch.zeros_like(transfer)
                transfer.view(-1)[idx] = True
            elif not transfer.any():
                transfer.view(-1)[torch.argmax(confidence)] = True
            x[transfer] = x0[transfer]
            num_accept = int(transfer.sum())
            if num_accept > 1:
                remask = confidence_back < threshold_back
                if remask.sum() >= last_accept:
                    flat = confidence_back.view(-1)
                    tmp = torch.zeros_like(flat, dtype=torch.bool)
                    _, idx = torch.topk(flat, k=last_accept - 1, largest=False)
                    tmp[idx] = True
                    remask = tmp.view(confidence_back.shape)
            else:
                remask = torch.zeros_like(transfer)
            remask_shift = torch.zeros_like(remask)
            remask_shift[:, lo:hi] = remask[:, -block_length:]
            x[remask_shift] = mask_id
            mask_block[transfer] = False
            mask_block[remask_shift] = True
            transfer_shift = torch.zeros_like(transfer)
            transfer_shift[:, -block_length:] = transfer[:, lo:hi]
            unmask_block[transfer_shift] = True
            unmask_block[remask] = False
            last_accept = num_accept
            steps += 1
    return x[0, : P + gen_length].tolist(), steps
