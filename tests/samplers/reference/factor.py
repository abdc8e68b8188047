"""Fast-dLLM's factor rule (Wu et al., arXiv 2505.22618, Thm. 1): the count our ``factor`` sampler
defines and the count the reference code computes (its quirk included). The decoding loop
is Fast-dLLM's, in ``reference.threshold`` (one paper, one loop; it takes ``factor=``).
"""

from __future__ import annotations


def factor_count_defined(confidences: list[float], factor: float) -> int:
    """Our factor rule: the leading run of ranks n with c(n) >= 1 - f/(n+1), rank 1 forced."""
    ranked = sorted(confidences, reverse=True)
    count = 0
    for n, c in enumerate(ranked, start=1):
        if n > 1 and c < 1 - factor / (n + 1):
            break
        count = n
    return count


def factor_count_reference(confidences: list[float], factor: float) -> int:
    """Fast-dLLM's ``get_transfer_index_dynamic`` count, quirk included: the
    index is M - 1 both when the loop runs out and when it breaks at the last rank, then + 1."""
    ranked = sorted(confidences, reverse=True)
    thresholds = [1 - factor / (n + 1) for n in range(1, len(ranked) + 1)]
    thresholds[0] = -1
    top_i = 0
    for top_i in range(len(thresholds)):
        if ranked[top_i] < thresholds[top_i]:
            break
    if top_i == 0 or top_i == len(thresholds) - 1:
        top_i += 1
    return top_i
