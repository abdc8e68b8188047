"""ReMDM (Wang, Schiff, Sahoo, Kuleshov, arXiv 2503.00307): the per-step move probabilities of
the reference sampler (``kuleshov-group/remdm``, ``diffusion.py``), one scalar step at a time.

ReMDM moves every position independently, so a step is fully described by two numbers: the
probability that a masked position is unmasked and the probability ``sigma`` that a decoded
token is remasked. This loop recomputes both from the reference's formulas, in Python floats,
on the reference's time grid read as ``t_k = 1 - k / steps`` (remask's grid; the reference uses
``linspace(1, eps)`` plus a final argmax pass, so the last step is not compared).

The reference's "loop" schedule decides the *phase* from the current time t alone and
evaluates alpha at both t and s = t - dt with that phase's formula:

* t > t_on:           MDLM with alpha(u) = alpha_on (1 - u) / (1 - t_on)   (extrapolated at s)
* t <= t_off:         MDLM with alpha(u) = 1 - (1 - alpha_on) u / t_off
* t_off < t <= t_on:  alpha_t = alpha_s = alpha_on and sigma = eta (not clamped).

In the MDLM phases a masked position is unmasked with (alpha_s - alpha_t) / (1 - alpha_t) and
nothing is remasked; in the loop phase the ReMDM posterior gives
(alpha_on - (1 - eta) alpha_on) / (1 - alpha_on) and sigma = eta.
"""

from __future__ import annotations


def loop_step(
    t: float, s: float, *, eta: float, t_on: float, t_off: float, alpha_on: float
) -> tuple[float, float]:
    """(p_unmask, sigma) of one reference "remdm-loop" step from t to s (probabilities clipped
    to [0, 1]: on a coarse grid the extrapolated alpha_s of the first phase exceeds 1)."""
    if t > t_on:
        alpha_t = alpha_on * (1 - t) / (1 - t_on)
        alpha_s = alpha_on * (1 - s) / (1 - t_on)
        p_unmask, sigma = (alpha_s - alpha_t) / (1 - alpha_t), 0.0
    elif t <= t_off:
        alpha_t = 1 - (1 - alpha_on) * t / t_off
        alpha_s = 1 - (1 - alpha_on) * s / t_off
        p_unmask, sigma = (alpha_s - alpha_t) / (1 - alpha_t), 0.0
    else:
        p_unmask = (alpha_on - (1 - eta) * alpha_on) / (1 - alpha_on)
        sigma = eta
    return min(max(p_unmask, 0.0), 1.0), sigma


def loop_schedule(
    steps: int, *, eta: float = 0.02, t_on: float = 0.55, t_off: float = 0.05, alpha_on: float = 0.9
) -> list[tuple[float, float]]:
    """[(p_unmask, sigma)] of every step of a ``steps``-step run on t_k = 1 - k / steps."""
    out = []
    for k in range(steps):
        t, s = 1 - k / steps, 1 - (k + 1) / steps
        out.append(loop_step(t, s, eta=eta, t_on=t_on, t_off=t_off, alpha_on=alpha_on))
    return out
