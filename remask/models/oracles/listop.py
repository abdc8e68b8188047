"""T5, ParallelBench's list operations: exact by enumerating the answers of the prompt."""

from __future__ import annotations

import itertools
import math

import torch

from remask.models.oracles.base import _MAX_SUPPORT, ExactOracle, _as_int, _log_onehot, _safe_log
from remask.models.oracles.finite import _support_marginals

__all__ = ["ListOpOracle"]


class ListOpOracle(ExactOracle):
    """T5: ParallelBench "waiting line" list operations (Kang et al., arXiv 2510.04767).

    A sequence is ``[prompt | answer]``, ``seq_len = 2 n``. The prompt is a uniformly random
    list of ``n`` distinct items drawn from ``n_items`` (ids ``0 .. n_items-1``); the answer
    is a function of the prompt, random for some operations:

    - ``copy``: the prompt itself (C(Y|X) = 0);
    - ``reverse``: the prompt reversed (C = 0);
    - ``sort``: the prompt sorted by id (C = 0);
    - ``shuffle``: a uniformly random permutation of the prompt (C = n log n − log n!);
    - ``replace_random``: the prompt with one uniformly random position replaced by the token
      ``NEW`` (id ``n_items``) (C = (n−1) log(n/(n−1)));

    where C(Y|X) is the total correlation of the answer given the prompt. Exact marginals
    enumerate the answers of the observed prompt (n! at most); a partially masked prompt is
    handled by also enumerating the prompts consistent with it.

    Parameters
    ----------
    op : str
        One of ``copy``, ``reverse``, ``sort``, ``shuffle``, ``replace_random``.
    n : int
        List length (>= 1; shuffle needs n <= 8).
    n_items : int, optional
        Item vocabulary size (>= n); ``n`` by default.

    Attributes
    ----------
    vocab_size : int
        ``n_items + 1`` (the items and ``NEW``).
    new_id : int
        Id of the replacement token ``NEW``.
    """

    OPS = ("copy", "reverse", "sort", "shuffle", "replace_random")

    def __init__(self, op: str, n: int, n_items: int | None = None):
        if op not in self.OPS:
            raise ValueError(f"unknown list operation {op!r}; available: {list(self.OPS)}")
        self.op = op
        self.n = _as_int("n", n, 1)
        self.n_items = self.n if n_items is None else _as_int("n_items", n_items, 1)
        if self.n_items < self.n:
            raise ValueError(
                f"n_items={self.n_items} must be >= n={self.n} (prompt items are distinct)"
            )
        if op == "shuffle" and self.n > 8:
            raise ValueError(f"shuffle enumerates n! answers; n={self.n} > 8 is too many")
        self.new_id = self.n_items
        self.vocab_size = self.n_items + 1
        self.seq_len = 2 * self.n
        self.token_names = [f"i{k}" for k in range(self.n_items)] + ["NEW"]
        if op == "shuffle":
            self._perms = torch.tensor(
                list(itertools.permutations(range(self.n))), dtype=torch.int64
            )
        # log of the number of prompts, n_items! / (n_items - n)!
        self._log_n_prompts = math.lgamma(self.n_items + 1) - math.lgamma(self.n_items - self.n + 1)

    def __repr__(self) -> str:
        return f"ListOpOracle(op={self.op!r}, n={self.n}, n_items={self.n_items})"

    @property
    def n_answers(self) -> int:
        """Number of equally likely answers per prompt."""
        return {"shuffle": math.factorial(self.n), "replace_random": self.n}.get(self.op, 1)

    def answers(self, prompts: torch.Tensor) -> torch.Tensor:
        """All answers of each prompt, each equally likely.

        Parameters
        ----------
        prompts : (G, n) int64

        Returns
        -------
        (G, A, n) int64, A = ``n_answers``.
        """
        if self.op == "copy":
            return prompts.unsqueeze(1).clone()
        if self.op == "reverse":
            return prompts.flip(-1).unsqueeze(1)
        if self.op == "sort":
            return prompts.sort(-1).values.unsqueeze(1)
        if self.op == "shuffle":
            return prompts[:, self._perms]  # (G, n!, n)
        out = prompts.unsqueeze(1).repeat(1, self.n, 1)  # replace_random: (G, n, n)
        idx = torch.arange(self.n)
        out[:, idx, idx] = self.new_id
        return out

    def _valid_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        in_range = (prompts < self.n_items).all(-1)
        distinct = (prompts.sort(-1).values.diff(dim=-1) != 0).all(-1) if self.n > 1 else in_range
        return in_range & distinct

    def _log_marginals(self, tokens):
        n, V = self.n, self.vocab_size
        out = _log_onehot(tokens, V)
        prompt, answer = tokens[:, :n], tokens[:, n:]
        full = (prompt != self.mask_id).all(-1)  # (B,)
        rows = torch.nonzero(full & self._valid_prompts(prompt.clamp_max(V - 1))).flatten()
        if len(rows):
            obs = answer[rows]  # (b, n)
            masked = obs == self.mask_id
            probs, empty = self._answer_probs(prompt[rows], obs)  # (b, n, V), (b,)
            logits = _safe_log(probs)
            logits = torch.where(
                empty[:, None, None], torch.full_like(logits, -math.log(V)), logits
            )
            out[rows, n:] = torch.where(masked.unsqueeze(-1), logits, out[rows, n:])
        # Rows whose prompt is partly masked (or invalid): enumerate consistent prompts.
        for b in torch.nonzero(~full).flatten().tolist():
            out[b] = self._slow_row(tokens[b])
        invalid_full = full & ~self._valid_prompts(prompt.clamp_max(V - 1))
        for b in torch.nonzero(invalid_full).flatten().tolist():
            masked = tokens[b] == self.mask_id
            out[b] = torch.where(
                masked.unsqueeze(-1),
                torch.full((self.seq_len, V), -math.log(V), dtype=torch.float64),
                out[b],
            )
        return out

    def _answer_probs(self, prompt: torch.Tensor, obs: torch.Tensor):
        """Exact answer marginals given a full valid prompt and partly observed answer.

        Closed forms per operation (the answers of a prompt are equally likely), so the cost
        is O(b n²) instead of enumerating n! answers per row.

        Returns
        -------
        probs : (b, n, V) float64
        empty : (b,) bool
            The observed answer tokens are impossible for this prompt.
        """
        b, n = prompt.shape
        V = self.vocab_size
        masked = obs == self.mask_id
        onehot = lambda t: torch.nn.functional.one_hot(t.clamp_max(V - 1), V).double()
        if self.op in ("copy", "reverse", "sort"):
            ans = self.answers(prompt)[:, 0]  # (b, n): deterministic
            empty = ((ans != obs) & ~masked).any(-1)
            return onehot(ans), empty
        if self.op == "shuffle":
            # Masked positions are uniform over the prompt items not yet seen in the answer.
            in_prompt = (obs.unsqueeze(-1) == prompt.unsqueeze(1)).any(-1)  # (b, n)
            seen = (
                onehot(torch.where(masked, prompt[:, :1], obs)) * (~masked).unsqueeze(-1).double()
            )
            seen_count = seen.sum(1)  # (b, V)
            avail = onehot(prompt).sum(1) - seen_count  # (b, V): remaining items (0/1)
            empty = ((~masked) & ~in_prompt).any(-1) | (seen_count > 1).any(-1)
            k = avail.sum(-1, keepdim=True).clamp_min(1.0)  # (b, 1)
            probs = (avail.clamp_min(0.0) / k).unsqueeze(1).expand(b, n, V).clone()
            return probs, empty
        # replace_random: the replaced index r is uniform over the indices consistent with obs.
        idx = torch.arange(n)
        is_new = obs == self.new_id
        same = obs == prompt
        # r is consistent iff obs_r ∈ {NEW, mask} and every other observed j equals prompt_j.
        bad_other = (~masked) & ~same  # (b, n): observed positions that must be r
        ok_r = masked | is_new  # (b, n)
        n_bad = bad_other.sum(-1, keepdim=True)  # (b, 1)
        consistent = ok_r & ((n_bad == 0) | ((n_bad == 1) & bad_other))  # (b, n)
        consistent &= ~((~masked) & ~same & ~is_new)  # an observed wrong item is never r
        tot = consistent.double().sum(-1, keepdim=True)
        empty = tot.squeeze(-1) == 0
        pr = consistent.double() / tot.clamp_min(1.0)  # (b, n): posterior of r
        probs = onehot(prompt) * (1 - pr).unsqueeze(-1)
        probs[:, idx, self.new_id] += pr
        return probs, empty

    def _slow_row(self, row: torch.Tensor) -> torch.Tensor:
        n = self.n
        choices = [range(self.n_items) if int(t) == self.mask_id else [int(t)] for t in row[:n]]
        count = math.prod(len(c) for c in choices)
        if count * self.n_answers > _MAX_SUPPORT:
            raise ValueError(
                f"a prompt with {sum(int(t) == self.mask_id for t in row[:n])} masked items needs "
                f"{count * self.n_answers} support rows (limit {_MAX_SUPPORT})"
            )
        prompts = torch.tensor(list(itertools.product(*choices)), dtype=torch.int64).reshape(-1, n)
        prompts = prompts[self._valid_prompts(prompts)]
        if prompts.shape[0] == 0:
            masked = row == self.mask_id
            return torch.where(
                masked.unsqueeze(-1),
                torch.full(
                    (self.seq_len, self.vocab_size), -math.log(self.vocab_size), dtype=torch.float64
                ),
                _log_onehot(row[None], self.vocab_size)[0],
            )
        ans = self.answers(prompts)  # (G, A, n)
        G, A, _ = ans.shape
        support = torch.cat([prompts.unsqueeze(1).expand(G, A, n), ans], -1).reshape(G * A, 2 * n)
        logw = torch.zeros(G * A, dtype=torch.float64)
        return _support_marginals(row[None], self.mask_id, support, logw, self.vocab_size)[0]

    def _log_prob(self, tokens):
        n = self.n
        prompt, answer = tokens[:, :n], tokens[:, n:]
        valid = self._valid_prompts(prompt)
        ans = self.answers(prompt.clamp_max(self.n_items - 1))  # (B, A, n)
        hit = (ans == answer.unsqueeze(1)).all(-1).any(-1)  # (B,)
        lp = torch.full(
            (tokens.shape[0],), -self._log_n_prompts - math.log(self.n_answers), dtype=torch.float64
        )
        return torch.where(valid & hit, lp, torch.full_like(lp, -math.inf))

    def _sample(self, n, generator):
        prompts = torch.stack(
            [torch.randperm(self.n_items, generator=generator)[: self.n] for _ in range(n)]
        )
        ans = self.answers(prompts)  # (n, A, n)
        pick = torch.randint(ans.shape[1], (n,), generator=generator)
        return torch.cat([prompts, ans[torch.arange(n), pick]], -1)

    def prompts(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` random prompts (uniform distinct-item lists), (n, self.n) int64."""
        return self.sample(n, seed)[:, : self.n]
