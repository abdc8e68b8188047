"""APD (Israel, Van den Broeck, Grover, arXiv 2506.00413): adaptive parallel decoding with a
causal verifier, one row, greedy, in float64.

Left to right inside each block: the diffusion model drafts the first ``max_lookahead`` masks
(argmax of p_dlm, one forward pass), the verifier scores the drafted canvas (masks read as
token 0), and the target at each drafted position is the argmax of the multiplicative mixture
R log p_dlm + (1 - R) log p_ver (tokens p_dlm rules out stay out). The agreeing prefix is
committed together with the target's token at the first disagreement (remask's coupled
acceptance; the reference re-drafts that token instead). Returns (tokens, nfe, verifier_nfe).
"""

from __future__ import annotations

import torch

from reference._common import block_bounds, row_logits


def apd_generate(
    model,
    verifier,
    prompt: list[int],
    *,
    gen_length: int,
    block_length: int | None,
    mixture_weight: float,
    max_lookahead: int,
):
    mask = model.mask_id
    x = list(prompt) + [mask] * gen_length
    nfe = verifier_nfe = 0
    R = mixture_weight
    for lo, hi in block_bounds(len(prompt), gen_length, block_length):
        while any(x[j] == mask for j in range(lo, hi)):
            log_dlm = torch.log_softmax(row_logits(model, x), -1)  # (L, V)
            nfe += 1
            window = [j for j in range(lo, hi) if x[j] == mask][:max_lookahead]
            draft = {j: int(log_dlm[j].argmax()) for j in window}
            filled = [draft.get(j, x[j]) for j in range(len(x))]
            filled = [0 if v == mask else v for v in filled]
            log_ver = torch.log_softmax(verifier(torch.tensor([filled]))[0].double(), -1)  # (L, V)
            verifier_nfe += 1
            for j in window:
                if R == 1:
                    mixture = log_dlm[j]
                else:
                    mixture = torch.where(
                        torch.isfinite(log_dlm[j]),
                        R * log_dlm[j] + (1 - R) * log_ver[j],
                        float("-inf"),
                    )
                target = int(mixture.argmax())
                x[j] = target
                if target != draft[j]:
                    break
    return x, nfe, verifier_nfe
