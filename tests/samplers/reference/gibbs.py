"""The Gibbs corrector (``remask.samplers.gibbs``), one row, greedy, after LLaDA's greedy
low-confidence base on one block.

The corrector is remask's own (informed correctors, Zhao et al., arXiv 2407.21243, and P2,
Peng et al., arXiv 2502.03540, describe the idea; neither ships this procedure), so the loop
follows its documented definition step by step:

* a row clock counts the steps the row takes part in; each position remembers the clock of
  the step that last wrote it;
* a check is made at every ``every``-th step while the base decodes (not at step 0), and at
  each of ``sweeps`` final steps after it: candidates are decoded positions written 1 to
  ``window`` clock ticks ago, of one parity class (rank among the editable positions; the
  class alternates from check to check), while ``max_revisions`` lasts;
* the candidates are masked in a copy of the canvas *before* the base's step and the model
  predicts them; those whose current token has probability below ``threshold`` are
  re-sampled (here: argmax), least probable first, within the budget, over the base's step.

Returns (tokens, nfe).
"""

from __future__ import annotations

import torch


def gibbs_generate(
    model,
    prompt: list[int],
    *,
    gen_length: int,
    steps: int,
    threshold: float,
    window: int,
    every: int,
    sweeps: int,
    max_revisions: int,
):
    mask = model.mask_id
    P = len(prompt)
    x = list(prompt) + [mask] * gen_length
    editable = list(range(P, P + gen_length))
    written_at = {j: -1 for j in editable}
    clock = checks = revisions = nfe = 0
    step = sweeps_done = 0

    def probs(tokens):
        logits = model(torch.tensor([tokens]))[0].double()  # (L, V)
        if mask < logits.shape[-1]:
            logits[:, mask] = float("-inf")
        return torch.softmax(logits, -1)

    while True:
        base_over = all(x[j] != mask for j in editable)
        if base_over and sweeps_done >= sweeps:
            return x, nfe
        final = base_over
        check = final or (step > 0 and step % every == 0)
        candidates = []
        if check:
            for rank, j in enumerate(editable):
                age = clock - written_at[j]
                if (
                    x[j] != mask
                    and written_at[j] >= 0
                    and 1 <= age <= window
                    and rank % 2 == checks % 2
                    and revisions < max_revisions
                ):
                    candidates.append(j)
        verify = {}
        if check:
            copy = [mask if j in candidates else v for j, v in enumerate(x)]
            p = probs(copy)
            nfe += 1
            verify = {j: (float(p[j, x[j]]), int(p[j].argmax())) for j in candidates}
        base_written = []
        if not final:  # LLaDA's greedy step: the k most probable argmaxes of the block's masks
            p = probs(x)
            nfe += 1
            masked = [j for j in editable if x[j] == mask]
            k = gen_length // steps + (1 if step < gen_length % steps else 0)
            ranked = sorted(masked, key=lambda j: (-float(p[j].max()), j))[:k]
            for j in ranked:
                x[j] = int(p[j].argmax())
            base_written = ranked
        doubtful = sorted((prob, j) for j, (prob, _) in verify.items() if prob < threshold)
        revised = [j for _, j in doubtful[: max(max_revisions - revisions, 0)]]
        for j in revised:
            x[j] = verify[j][1]
        for j in base_written + revised:
            written_at[j] = clock
        clock += 1
        checks += int(check)
        revisions += len(revised)
        sweeps_done += int(final)
        step += 1
