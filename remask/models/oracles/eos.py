"""T6, variable-length sequences padded with EOS (or rainbow padding): exact by summing over the length."""

from __future__ import annotations

import math

import numpy as np
import torch

from remask.models.oracles.base import (
    ExactOracle,
    _as_int,
    _as_positive,
    _dirichlet,
    _log_onehot,
    _safe_log,
)

__all__ = ["EOSPaddedOracle"]


class EOSPaddedOracle(ExactOracle):
    """T6: variable-length sequences padded to a fixed canvas.

    A content length ℓ ∈ {0..seq_len} is drawn from ``length_probs``; positions ``< ℓ`` hold a
    stationary Markov chain over the ``n_content`` content tokens (Dirichlet(``concentration``)
    rows); positions ``>= ℓ`` hold padding:

    - ``padding="eos"``: every padding position is EOS (LLaDA-Instruct's SFT convention, the
      source of the EOS attractor);
    - ``padding="rainbow"``: EOS at position ℓ, then a cycle of ``n_pad`` distinct pad tokens
      (Rainbow Padding, arXiv 2510.03680).

    Exact marginals sum over ℓ of the prefix chain's forward-backward with hard evidence.

    Parameters
    ----------
    n_content : int
        Content tokens (ids ``0 .. n_content-1``; >= 1).
    seq_len : int
        Canvas length (>= 1).
    seed : int
        Seed of the content chain.
    length_probs : sequence of float, optional
        Probabilities of ℓ = 0..seq_len (``seq_len + 1`` numbers); uniform over
        ``1..seq_len`` by default.
    padding : {"eos", "rainbow"}
    n_pad : int
        Number of distinct pad tokens for rainbow padding (>= 1).
    concentration : float
        Dirichlet concentration of the content chain rows.

    Attributes
    ----------
    eos_id : int
        ``n_content``.
    pad_ids : list of int
        The rainbow pad tokens (empty for EOS padding).
    """

    def __init__(
        self,
        n_content: int,
        seq_len: int,
        seed: int = 0,
        *,
        length_probs=None,
        padding: str = "eos",
        n_pad: int = 3,
        concentration: float = 0.5,
    ):
        self.n_content = _as_int("n_content", n_content, 1)
        self.seq_len = _as_int("seq_len", seq_len, 1)
        if padding not in ("eos", "rainbow"):
            raise ValueError(f"padding must be 'eos' or 'rainbow', got {padding!r}")
        self.padding = padding
        self.n_pad = _as_int("n_pad", n_pad, 1) if padding == "rainbow" else 0
        self.concentration = _as_positive("concentration", concentration)
        self.seed = int(seed)
        L = self.seq_len
        if length_probs is None:
            lp = torch.cat(
                [
                    torch.zeros(1, dtype=torch.float64),
                    torch.full((L,), 1.0 / L, dtype=torch.float64),
                ]
            )
        else:
            lp = torch.as_tensor(np.asarray(length_probs, dtype=np.float64))
            if lp.shape != (L + 1,) or bool((lp < 0).any()) or not float(lp.sum()) > 0:
                raise ValueError(
                    f"length_probs must be {L + 1} non-negative numbers (lengths 0..{L}), got {length_probs!r}"
                )
            lp = lp / lp.sum()
        self.length_probs = lp  # (L + 1,)
        self.eos_id = self.n_content
        self.pad_ids = list(range(self.n_content + 1, self.n_content + 1 + self.n_pad))
        self.pad_id = self.pad_ids[0] if self.pad_ids else self.eos_id
        self.vocab_size = self.n_content + 1 + self.n_pad
        self.token_names = (
            [f"c{k}" for k in range(self.n_content)]
            + ["EOS"]
            + [f"PAD{k}" for k in range(self.n_pad)]
        )
        rng = np.random.default_rng(self.seed)
        C = self.n_content
        self.transition = _dirichlet(rng, self.concentration, (C, C))  # (C, C)
        evals, evecs = np.linalg.eig(self.transition.numpy().T)
        pi = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
        self.initial = torch.from_numpy(pi / pi.sum()).double()  # (C,)
        # pad_tokens[l, i]: the token at position i when the content length is l (-1 inside content).
        pad = torch.full((L + 1, L), -1, dtype=torch.int64)
        for ell in range(L + 1):
            for i in range(ell, L):
                k = i - ell
                pad[ell, i] = (
                    self.eos_id
                    if (padding == "eos" or k == 0)
                    else self.pad_ids[(k - 1) % self.n_pad]
                )
        self.pad_tokens = pad

    def __repr__(self) -> str:
        return (
            f"EOSPaddedOracle(n_content={self.n_content}, seq_len={self.seq_len}, seed={self.seed}, "
            f"padding={self.padding!r}, n_pad={self.n_pad})"
        )

    def _log_marginals(self, tokens):
        B, L = tokens.shape
        C, V = self.n_content, self.vocab_size
        masked = tokens == self.mask_id
        content_obs = (~masked) & (tokens < C)
        # Content evidence: all ones where masked, one-hot for observed content, zero for an
        # observed special token (that position cannot be content).
        ev = torch.zeros(B, L, C, dtype=torch.float64)
        ev[masked] = 1.0
        ev[content_obs] = torch.nn.functional.one_hot(tokens[content_obs], C).double()
        logev = _safe_log(ev)  # (B, L, C)
        logT = self.transition.log()
        # Forward log-messages (prefix-independent): la[:, i, v] = log p(evidence 0..i, x_i = v).
        la = torch.empty(B, L, C, dtype=torch.float64)
        prev = self.initial.log().expand(B, C)
        for i in range(L):
            cur = prev if i == 0 else torch.logsumexp(prev.unsqueeze(-1) + logT, dim=1)
            cur = cur + logev[:, i]
            la[:, i] = cur
            prev = cur
        # Backward log-messages for every content length ℓ: lb[:, ℓ, i, v] = log p(evidence
        # i+1..ℓ-1 | x_i = v); zero at i = ℓ-1.
        lb = torch.zeros(B, L + 1, L, C, dtype=torch.float64)
        for ell in range(2, L + 1):
            nxt = torch.zeros(B, C, dtype=torch.float64)
            for i in range(ell - 2, -1, -1):
                nxt = torch.logsumexp(
                    logT.unsqueeze(0) + (logev[:, i + 1] + nxt).unsqueeze(1), dim=-1
                )
                lb[:, ell, i] = nxt
        # Weight of each length: log p(ℓ) + log p(content evidence | ℓ) + padding consistency.
        logZ = torch.zeros(B, L + 1, dtype=torch.float64)
        logZ[:, 1:] = torch.logsumexp(la, dim=-1)  # (B, L): prefix normaliser for ℓ = i+1
        pad_ok = (
            (self.pad_tokens.unsqueeze(0) == tokens.unsqueeze(1))
            | masked.unsqueeze(1)
            | (self.pad_tokens.unsqueeze(0) < 0)
        ).all(-1)  # (B, L+1)
        logw = self.length_probs.log().unsqueeze(0) + logZ
        logw = torch.where(pad_ok, logw, torch.full_like(logw, -math.inf))
        empty = torch.isinf(logw.max(-1).values)
        post = torch.softmax(
            torch.where(empty.unsqueeze(-1), torch.zeros_like(logw), logw), dim=-1
        )  # (B, L+1)
        # Content part: for ℓ > i, p(x_i = v | ℓ, evidence) ∝ alpha_i(v) beta^ℓ_i(v).
        lc = la.unsqueeze(1) + lb  # (B, L+1, L, C)
        within = torch.arange(L).unsqueeze(0) < torch.arange(L + 1).unsqueeze(1)  # (L+1, L): i < ℓ
        cond = torch.softmax(
            torch.where(within[None, :, :, None], lc, torch.zeros_like(lc)), dim=-1
        )
        cond = torch.nan_to_num(cond, nan=0.0)
        content_probs = torch.einsum(
            "bl,bliv->biv", post * 1.0, cond * within[None, :, :, None]
        )  # (B, L, C)
        probs = torch.zeros(B, L, V, dtype=torch.float64)
        probs[..., :C] = content_probs
        pad_tok = self.pad_tokens.clamp_min(0)  # (L+1, L)
        pad_onehot = torch.nn.functional.one_hot(pad_tok, V).double() * (~within).unsqueeze(
            -1
        )  # (L+1, L, V)
        probs = probs + torch.einsum("bl,liv->biv", post, pad_onehot)
        logits = _safe_log(probs)
        logits = torch.where(empty[:, None, None], torch.full_like(logits, -math.log(V)), logits)
        return torch.where(masked.unsqueeze(-1), logits, _log_onehot(tokens, V))

    def _log_prob(self, tokens):
        B, L = tokens.shape
        C = self.n_content
        is_content = tokens < C
        # ℓ = index of the first non-content token (L if none).
        first = (
            torch.where(~is_content, torch.arange(L).expand(B, L), torch.full_like(tokens, L))
            .min(-1)
            .values
        )
        pad_ok = ((self.pad_tokens[first] == tokens) | (self.pad_tokens[first] < 0)).all(-1)
        logT = self.transition.log()
        tok = tokens.clamp_max(C - 1)
        steps = logT[tok[:, :-1], tok[:, 1:]]  # (B, L-1)
        use = torch.arange(1, L).unsqueeze(0) < first.unsqueeze(1)  # transitions inside content
        chain = torch.where(
            first > 0, self.initial.log()[tok[:, 0]], torch.zeros(B, dtype=torch.float64)
        )
        chain = chain + torch.where(use, steps, torch.zeros_like(steps)).sum(-1)
        lp = self.length_probs.log()[first] + chain
        return torch.where(pad_ok, lp, torch.full_like(lp, -math.inf))

    def _sample(self, n, generator):
        L = self.seq_len
        ell = torch.multinomial(self.length_probs.expand(n, -1), 1, generator=generator)[:, 0]
        out = torch.empty(n, L, dtype=torch.int64)
        out[:, 0] = torch.multinomial(self.initial.expand(n, -1), 1, generator=generator)[:, 0]
        for t in range(1, L):
            out[:, t] = torch.multinomial(self.transition[out[:, t - 1]], 1, generator=generator)[
                :, 0
            ]
        pad = self.pad_tokens[ell]  # (n, L)
        return torch.where(pad >= 0, pad, out)
