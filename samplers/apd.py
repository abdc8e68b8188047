"""APD: adaptive parallel decoding with a verifier (Israel, Van den Broeck, Grover, "Accelerating
Diffusion LLMs via Adaptive Parallel Decoding", arXiv 2506.00413, NeurIPS 2025).

Decoding is left to right. Each step the diffusion model drafts the first ``max_lookahead``
masked positions in one forward pass (independent samples from its marginals). A causal
*verifier* scores the drafted prefix in one pass, and the target distribution at each drafted
position is the multiplicative mixture

    log q_i  =  R log p_dlm(x_i | canvas)  +  (1 - R) log p_ver(x_i | x_{<i})   (+ const)

with mixture weight R (higher = trust the diffusion model more = faster). Target and draft
are sampled with the **same random numbers** (a coupling), and the longest prefix on which
they agree is committed, together with the target's token at the first disagreement.

Why the extra token makes it exact: every committed token is the *target* sample y_i, drawn
from q_i given the committed prefix (on the agreeing prefix, draft = target, so the prefix
the verifier conditioned on is exactly what is committed). The coupling only decides where a
step stops, which is a stopping time, so the committed sequence is distributed as the
left-to-right chain of q. With R = 0 and an exact verifier that is the exact joint (tested by
chi-square on the Markov oracle); R = 1 commits the whole draft (the product of marginals).

Checked against ``danielmisrael/apd/dream/generation_utils.py::apd_sample``. Reference
defaults: R = 0.7, max lookahead M = 100, temperature 0.2, top_p 0.95.

The verifier protocol
---------------------
Any object with ``vocab_size: int`` (equal to the denoiser's) and::

    verifier(tokens, attention_mask) -> (B, L, V) float logits

with ``tokens`` (B, L) int64 (never the mask id: undrafted masked positions hold token 0),
``attention_mask`` (B, L) bool (False on left padding), and row i the **left-to-right
conditional of the token at position i**, log p(x_i | x_{<i}) up to a per-row constant
(already aligned: an autoregressive LM adapter shifts its next-token logits right by one;
the first real position gets the unconditional distribution). Rows at positions after the
drafted window are ignored. :class:`MarkovCausalVerifier` gives a Markov oracle's exact
conditionals; :func:`as_verifier` adapts known models.

How APD gets its verifier (configs stay frozen and round-trip): ``verifier`` in the config is
a model spec string resolved at ``init`` with :func:`remask.models.load_model` and
:func:`as_verifier` (e.g. ``"oracle:markov?vocab=8&length=16&seed=0"``); when it is None the
denoiser's ``verifier`` attribute is used (wrap a denoiser with :class:`WithVerifier` to
attach any verifier object). With neither, APD warns and verifies the draft by itself
(q = p_dlm: the whole window is committed, the R -> 1 limit).

Departures from the reference code (deliberate):

- Acceptance is the coupled comparison done correctly: the target is sampled with the same
  random numbers as the draft at the same temperature (the reference compares against the
  target's *argmax* — its accept call leaves temperature at 0 — and draws the draft at an
  effective temperature of T^2: it divides the logits by T and also raises its exponential
  noise to the power T), and the target's token at the first
  disagreement is committed too (the reference re-drafts it), which makes the output law the
  exact chain of the mixture. ``top_p`` filters the target as it filters the draft (the
  reference's argmax target is unfiltered), so the chain is that of the filtered mixture.
- The first drafted position is not accepted unconditionally from the draft; it gets the
  target's token like every other (with an exact verifier and R = 0 this is what makes
  sampling exact).
- No KV caches (the reference crops a Dream cache to a window W = 16 and keeps one for the
  verifier); the full canvas is evaluated, the result is the same. Blocks restrict the
  lookahead to the active block; infill decodes the masked positions left to right.
- No stop at EOS: the reference's ``apd_sample`` ends a row's generation at its first EOS
  token; here every masked position is decoded (the driver's contract: no mask survives), so
  a row may go on after an EOS and the caller cuts the text there. With an exact verifier
  the tokens up to the first EOS have the same law either way (decoding is left to right).
- Tokens that the denoiser gives probability 0 (its mask column) stay impossible in the
  target, also at R = 0. Verifier evaluations are reported separately (``verifier_nfe``);
  ``nfe`` counts the diffusion model only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from remask import kernels
from remask.samplers.base import Canvas, Sampler, _check_float, _check_int
from remask.samplers.canvas import commit
from remask.samplers.canvas import eligible as eligible_positions
from remask.samplers.predict import denoise, proposal_keys
from remask.samplers.registry import register

__all__ = ["APD", "APDState", "APDInfo", "MarkovCausalVerifier", "WithVerifier", "as_verifier"]


class MarkovCausalVerifier:
    """Exact left-to-right conditionals of a :class:`~remask.models.MarkovChainOracle`.

    Row i is ``log transition[x_{i-1}]`` (``log initial`` at the first real position).

    Parameters
    ----------
    oracle : MarkovChainOracle

    Examples
    --------
    >>> from remask.models import MarkovChainOracle
    >>> chain = MarkovChainOracle(3, 4, seed=0)
    >>> MarkovCausalVerifier(chain)(torch.tensor([[0, 1, 2]]), None).shape
    torch.Size([1, 3, 3])
    """

    def __init__(self, oracle):
        self.oracle = oracle
        self.vocab_size = oracle.vocab_size

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(tokens, dtype=torch.bool)
        log_t = self.oracle.transition.log().to(tokens.device)  # (V, V)
        log_pi = self.oracle.initial.log().to(tokens.device)  # (V,)
        previous = tokens.roll(1, dims=1).clamp(0, self.vocab_size - 1)  # (B, L)
        first = attention_mask & ~attention_mask.roll(1, dims=1)  # (B, L) first real position
        first[:, 0] = attention_mask[:, 0]
        return torch.where(first.unsqueeze(-1), log_pi.expand(*tokens.shape, -1), log_t[previous])


class WithVerifier:
    """A denoiser with a ``verifier`` attribute attached (everything else delegated).

    Parameters
    ----------
    denoiser : Denoiser
    verifier : object following the verifier protocol (module docstring)
    """

    def __init__(self, denoiser, verifier):
        self.denoiser = denoiser
        self.verifier = verifier
        self.mask_id = denoiser.mask_id
        self.vocab_size = denoiser.vocab_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.denoiser, name)

    def __call__(self, tokens, attention_mask=None, **extra):
        return self.denoiser(tokens, attention_mask, **extra)


def as_verifier(model):
    """Adapt ``model`` to the verifier protocol: Markov oracles get their exact conditionals;
    any other callable with ``vocab_size`` is taken to follow the protocol already."""
    from remask.models import MarkovChainOracle

    if isinstance(model, MarkovChainOracle):
        return MarkovCausalVerifier(model)
    if callable(model) and isinstance(getattr(model, "vocab_size", None), int):
        return model
    raise TypeError(
        f"cannot use {type(model).__name__} as an APD verifier: it needs vocab_size and "
        "__call__(tokens, attention_mask) -> (B, L, V) left-to-right logits"
    )


class APDState(NamedTuple):
    """State of :class:`APD`.

    Attributes
    ----------
    canvas : Canvas
    verifier : object or None
        The resolved verifier (None: self-verification).
    verifier_nfe : (B,) int64
        Verifier evaluations per row.
    """

    canvas: Canvas
    verifier: Any
    verifier_nfe: torch.Tensor


class APDInfo(NamedTuple):
    """What an APD step did.

    Attributes
    ----------
    committed : (B, L) bool
        The accepted prefix (agreeing positions plus the first disagreement).
    proposal : (B, L) int64
        The target sample in the drafted window (-1 elsewhere).
    score : (B, L) float32
        Draft probability of the drafted token (-inf outside the window).
    draft : (B, L) int64
        The diffusion model's draft (-1 outside the window).
    window : (B, L) bool
        The drafted positions.
    """

    committed: torch.Tensor
    proposal: torch.Tensor
    score: torch.Tensor
    draft: torch.Tensor
    window: torch.Tensor


@register("apd")
@dataclass(frozen=True, kw_only=True)
class APD(Sampler):
    """Adaptive parallel decoding with a causal verifier (arXiv 2506.00413).

    Parameters
    ----------
    mixture_weight : float
        R in [0, 1]: weight of the diffusion model in the target mixture (reference 0.7).
    max_lookahead : int
        M: masked positions drafted per step, left to right (reference 100).
    temperature : float
        Sampling temperature of draft and target (reference 0.2; 0 = argmax).
    top_p : float, optional
        Nucleus filter applied to draft and target (reference 0.95: there it filters the
        draft only, its target being an unfiltered argmax); None or 1 disables.
    verifier : str, optional
        Model spec of the verifier (see the module docstring); None = ``denoiser.verifier``.
    block_length : int, optional
        Blocks cap the lookahead at the active block.

    Examples
    --------
    >>> import remask
    >>> from remask.models import MarkovChainOracle
    >>> chain = MarkovChainOracle(3, 6, seed=0)
    >>> model = WithVerifier(chain, MarkovCausalVerifier(chain))
    >>> sampler = remask.samplers.build("apd", mixture_weight=0.5, temperature=1.0, top_p=None)
    >>> remask.generate(model, [[0]], sampler, gen_length=5, seed=0).tokens.shape
    torch.Size([1, 6])
    """

    example_configs = (
        {"max_lookahead": 3, "temperature": 1.0, "top_p": None},
        {"block_length": 4, "temperature": 0.0},
    )

    @staticmethod
    def bench_configs(G: int) -> tuple[tuple[str, dict], ...]:
        """(label, config) settings of the quality benchmark for G generated tokens."""
        return (
            ("R=0.7", {"temperature": 1.0, "top_p": None}),
            ("R=0.3", {"temperature": 1.0, "mixture_weight": 0.3, "top_p": None}),
        )

    mixture_weight: float = 0.7
    max_lookahead: int = 100
    temperature: float = 0.2
    top_p: float | None = 0.95
    verifier: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_float(self.mixture_weight, "mixture_weight", low=0.0, high=1.0)
        _check_int(self.max_lookahead, "max_lookahead", low=1)
        _check_float(self.temperature, "temperature", low=0.0)
        if self.top_p is not None:
            _check_float(self.top_p, "top_p", low=0.0, high=1.0, low_open=True)
        if self.verifier is not None and not isinstance(self.verifier, str):
            raise TypeError(
                f"verifier must be a model spec string or None (attach objects with "
                f"WithVerifier), got {type(self.verifier).__name__}"
            )

    # ------------------------------------------------------------------ init
    def init(self, canvas: Canvas, denoiser) -> APDState:
        if self.verifier is not None:
            from remask.models import load_model

            verifier = as_verifier(load_model(self.verifier))
        else:
            verifier = getattr(denoiser, "verifier", None)
            if verifier is None:
                warnings.warn(
                    f"apd: no verifier (config verifier=None and {type(denoiser).__name__} has no "
                    "'verifier' attribute); the draft verifies itself and whole windows are "
                    "committed. Pass verifier='<model spec>' or wrap the denoiser with WithVerifier.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                verifier = as_verifier(verifier)
        if verifier is not None and verifier.vocab_size != denoiser.vocab_size:
            raise ValueError(
                f"verifier vocab_size={verifier.vocab_size} differs from the denoiser's "
                f"{denoiser.vocab_size}; APD mixes the two distributions token by token"
            )
        return APDState(canvas=canvas, verifier=verifier, verifier_nfe=torch.zeros_like(canvas.nfe))

    # ------------------------------------------------------------------ step
    def step(self, state: APDState, denoiser, key: torch.Tensor):
        canvas = state.canvas
        mask_id = denoiser.mask_id
        masked = eligible_positions(canvas, mask_id)  # (B, L): a finished row has no masks left
        rank = masked.long().cumsum(-1) - 1  # (B, L) left-to-right rank among the masks
        window = masked & (rank < self.max_lookahead)  # (B, L)

        logits, evaluations = denoise(denoiser, canvas)  # (B, L, V)
        # Dream's sample_tokens (APD runs on Dream): softmax(logits / T), nucleus keeping the
        # crossing token; "sampled" statistics are those of that distribution.
        filt = dict(
            temperature=self.temperature,
            key=proposal_keys(key, canvas, self.temperature),
            rows=window,
            top_p=self.top_p,
            nucleus="crossing",
            stats="sampled",
        )
        draft = kernels.propose(logits, **filt)

        if state.verifier is None:
            committed, tokens = window, draft.tokens
            verifier_nfe = state.verifier_nfe
        else:
            # The verifier reads the drafted prefix; masks beyond it are never looked at by a
            # causal scorer, but must be valid token ids.
            filled = torch.where(window, draft.tokens, canvas.tokens)  # (B, L)
            filled = torch.where(filled == mask_id, 0, filled)
            verifier_logits = state.verifier(filled, canvas.attention_mask)
            if verifier_logits.shape != logits.shape:
                raise ValueError(
                    f"verifier returned shape {tuple(verifier_logits.shape)}, expected "
                    f"{tuple(logits.shape)}"
                )
            # R log p_dlm + (1 - R) log p_ver equals R x + (1 - R) y up to a per-row constant,
            # which the softmax inside propose drops: float32 logits, no log-softmax.
            R = self.mixture_weight
            x, y = logits.float(), verifier_logits.float()  # (B, L, V) each
            if R == 1:
                mixture = x  # (1 - R) * (-inf) would be NaN
            else:
                mixed = R * x + (1 - R) * y if R > 0 else y  # (B, L, V)
                mixture = torch.where(torch.isfinite(x), mixed, float("-inf"))
            # Same keys as the draft: both read the same uniforms, so the target agrees with
            # the draft wherever the two distributions are close.
            target = kernels.propose(mixture, **filt)
            disagree = window & (target.tokens != draft.tokens)  # (B, L)
            big = torch.iinfo(torch.int64).max
            first_disagreement = torch.where(disagree, rank, big).amin(-1, keepdim=True)  # (B, 1)
            committed = window & (rank <= first_disagreement)  # (B, L) agreeing prefix + one
            tokens = target.tokens
            verifier_nfe = state.verifier_nfe + window.any(-1).long()

        new_canvas = commit(canvas, committed, tokens, mask_id, evaluations)
        new_state = APDState(canvas=new_canvas, verifier=state.verifier, verifier_nfe=verifier_nfe)
        info = APDInfo(
            committed=committed,
            proposal=torch.where(window, tokens, -1),
            score=torch.where(window, draft.prob, float("-inf")),
            draft=draft.tokens,
            window=window,
        )
        return new_state, info
