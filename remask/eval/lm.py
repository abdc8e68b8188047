"""``RemaskLM``: any remask model and sampler as an lm-evaluation-harness model.

>>> import lm_eval                                            # doctest: +SKIP
>>> from remask.eval import RemaskLM
>>> lm = RemaskLM("GSAI-ML/LLaDA-8B-Instruct", sampler="threshold",
...               settings={"threshold": 0.9, "block_length": 32}, gen_length=256)
>>> lm_eval.simple_evaluate(model=lm, tasks=["gsm8k"])        # doctest: +SKIP
>>> lm.costs()        # NFE, tokens per forward, seconds, tokens/s per request

- ``generate_until``: the sampler through ``remask.generate``, requests batched
  (``batch_size`` rows, left padding, sorted by prompt length), ``gen_length`` tokens
  decoded per row; the text is cut at the first EOS and then at the first stop string of
  the request's ``until``. ``stop_at_eos=True`` stops charging forward passes to a row once
  its answer has ended (``remask.generate``'s EOS early stop; the model needs an ``eos_id``). The canvas length is this model's ``gen_length``, not the task's
  ``max_gen_toks`` (a masked diffusion model decodes a fixed canvas, as LLaDA's and Dream's
  evaluations do). Each request's random stream is keyed by
  ``request_seed(seed, "task/doc_id/idx")``: its tokens do not depend on the batch it ran in.
- ``loglikelihood``: the ELBO of :mod:`remask.eval.likelihood` (``mc_num`` masked copies,
  ``loglikelihood_batch_size`` per call, ``elbo`` variant ``"llada"`` or ``"dream"``); the
  exact log-probability for an exact oracle. ``is_greedy`` by greedy one-token decoding
  (``greedy_check=False`` skips it and reports False).
- ``loglikelihood_rolling`` raises ``NotImplementedError``.

Every request's cost goes to :meth:`RemaskLM.costs`: ``nfe``, ``generated_tokens`` (the
decoded positions, prompt excluded), ``tokens_per_forward`` (generated tokens / NFE),
``seconds`` (the request's share of its batch's wall time: batch time / rows) and
``tokens_per_second`` (generated tokens / seconds).
"""

from __future__ import annotations

import time

from lm_eval.api.model import LM

from remask.eval.decoding import decode_rows
from remask.eval.likelihood import (
    VARIANTS,
    elbo_loglikelihood,
    exact_loglikelihood,
    greedy_match,
    is_exact_oracle,
    supports_loglikelihood,
)
from remask.eval.seeds import request_seed
from remask.eval.text import TextCodec, cut_at_stop

__all__ = ["RemaskLM"]


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class RemaskLM(LM):
    """An lm-eval model that decodes with a remask sampler (see the module docstring).

    Parameters
    ----------
    model : str or Denoiser
        A model spec / checkpoint directory / hub id for :func:`remask.models.load_model`,
        or a loaded denoiser.
    sampler : str
        Registered sampler name.
    settings : dict, optional
        Sampler settings (``remask.samplers.build(sampler, **settings)``).
    gen_length : int
        Tokens decoded per ``generate_until`` request.
    batch_size : int
        Rows per ``generate`` call.
    mc_num : int
        Monte-Carlo samples per ``loglikelihood`` request.
    loglikelihood_batch_size : int
        Masked copies per denoiser call in the ELBO.
    elbo : {"llada", "dream"}
        ELBO variant.
    greedy_check : bool
        Compute ``is_greedy`` for loglikelihood requests (T extra calls per request).
    seed : int
        Seed from which every request's seed derives.
    device, dtype : optional
        For loading a checkpoint.
    """

    def __init__(
        self,
        model,
        sampler: str = "low_confidence",
        settings: dict | None = None,
        *,
        gen_length: int = 256,
        batch_size: int = 8,
        mc_num: int = 128,
        loglikelihood_batch_size: int = 32,
        elbo: str = "llada",
        greedy_check: bool = True,
        stop_at_eos: bool = False,
        seed: int = 0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        from remask.samplers import build

        self.gen_length = _positive("gen_length", gen_length)
        self.batch_size = _positive("batch_size", batch_size)
        self.mc_num = _positive("mc_num", mc_num)
        self.loglikelihood_batch_size = _positive(
            "loglikelihood_batch_size", loglikelihood_batch_size
        )
        if elbo not in VARIANTS:
            raise ValueError(f"elbo must be one of {list(VARIANTS)}, got {elbo!r}")
        self.elbo = elbo
        self.greedy_check = bool(greedy_check)
        if not isinstance(stop_at_eos, bool):
            raise TypeError(f"stop_at_eos must be a bool, got {stop_at_eos!r}")
        self.stop_at_eos = stop_at_eos
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
        self.seed = seed
        if settings is not None and not isinstance(settings, dict):
            raise TypeError(f"settings must be a dict of sampler settings, got {settings!r:.80}")
        self.settings = dict(settings or {})
        self.sampler = build(sampler, **self.settings)
        if isinstance(model, str):
            from remask.models import load_model

            self.model_name = model
            model = load_model(model, device=device, dtype=dtype)
        else:
            self.model_name = type(model).__name__
        for attr in ("mask_id", "vocab_size"):
            if not isinstance(getattr(model, attr, None), int):
                raise TypeError(
                    f"model must be a Denoiser with an int {attr!r}, got {type(model).__name__}"
                )
        self.model = model
        self.codec = TextCodec(model)
        self._costs: list[dict] = []

    # ------------------------------------------------------------------ lm-eval API
    @property
    def tokenizer_name(self) -> str:
        return self.codec.name

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                f"{self.model_name}: the model's tokenizer has no chat template; drop "
                "--apply-chat-template"
            )
        return tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def chat_template(self, chat_template=False):
        tokenizer = getattr(self.model, "tokenizer", None)
        return getattr(tokenizer, "chat_template", None) or ""

    def generate_until(self, requests, disable_tqdm: bool = True) -> list[str]:
        """Decode every request (``Instance.args = (context, gen_kwargs)``); returns the texts."""
        items = []
        for n, request in enumerate(requests):
            context, gen_kwargs = (
                request.args[0],
                (request.args[1] if len(request.args) > 1 else {}),
            )
            until = (gen_kwargs or {}).get("until")
            items.append((n, self.codec.encode(context), until, _request_id(request, n)))
        return self.generate_ids(items)

    def generate_ids(self, items) -> list[str]:
        """Decode ``(n, prompt_ids, until, request_id)`` items; results in the order given."""
        out = [""] * len(items)
        order = sorted(
            range(len(items)), key=lambda k: (-len(items[k][1]), k)
        )  # similar widths together
        for start in range(0, len(order), self.batch_size):
            ks = order[start : start + self.batch_size]
            chunk = [items[k] for k in ks]
            seeds = [request_seed(self.seed, item[3]) for item in chunk]
            decoded = decode_rows(
                self.model,
                [item[1] for item in chunk],
                self.sampler,
                gen_length=self.gen_length,
                seeds=seeds,
                stop_at_eos=self.stop_at_eos,
            )
            share = decoded.seconds / len(chunk)
            for k, item, tokens, nfe in zip(ks, chunk, decoded.tokens, decoded.nfe):
                out[k] = cut_at_stop(self.codec.decode(tokens), item[2])
                self._record(
                    item[3],
                    "generate_until",
                    nfe,
                    len(tokens),
                    share,
                    tokens=tokens,
                    prompt_tokens=len(item[1]),
                    batch_rows=len(chunk),
                )
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = True) -> list[tuple[float, bool]]:
        """``(log p(continuation | context), is_greedy)`` per request (``Instance.args = (context, continuation)``)."""
        why = supports_loglikelihood(self.model)
        if why is not None:
            names = sorted({str(getattr(r, "task_name", None)) for r in requests})
            raise ValueError(
                f"task(s) {names} need loglikelihood, which {self.model_name} cannot give: {why}"
            )
        results = []
        exact = is_exact_oracle(self.model)
        for n, request in enumerate(requests):
            context, continuation = request.args[0], request.args[1]
            ctx_ids, cont_ids = self.codec.encode_pair(context, continuation)
            if not cont_ids:
                raise ValueError(
                    f"request {_request_id(request, n)}: the continuation {continuation!r} encodes to no "
                    "tokens"
                )
            rid = _request_id(request, n)
            start = time.perf_counter()
            if exact:
                value, nfe = exact_loglikelihood(self.model, ctx_ids, cont_ids), 1
            else:
                estimate = elbo_loglikelihood(
                    self.model,
                    ctx_ids,
                    cont_ids,
                    mc_num=self.mc_num,
                    batch_size=self.loglikelihood_batch_size,
                    seed=request_seed(self.seed, rid),
                    variant=self.elbo,
                )
                value, nfe = estimate.value, estimate.nfe
            greedy = False
            if self.greedy_check:
                greedy = greedy_match(self.model, ctx_ids, cont_ids)
                nfe += len(cont_ids)
            self._record(
                rid,
                "loglikelihood",
                nfe,
                0,
                time.perf_counter() - start,
                prompt_tokens=len(ctx_ids),
            )
            results.append((value, greedy))
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = True):
        raise NotImplementedError(
            "loglikelihood_rolling (perplexity tasks such as wikitext) is not implemented for masked diffusion "
            "models: score a continuation with a loglikelihood task (multiple-choice), or use "
            "remask.eval.elbo_loglikelihood(model, context_ids, text_ids) directly on the text"
        )

    # ------------------------------------------------------------------ costs
    def _record(
        self, request_id: str, kind: str, nfe: int, generated: int, seconds: float, **extra
    ) -> None:
        row = {
            "request_id": request_id,
            "kind": kind,
            "nfe": int(nfe),
            "generated_tokens": int(generated),
            "tokens_per_forward": generated / nfe if nfe else 0.0,
            "seconds": seconds,
            "tokens_per_second": generated / seconds if seconds > 0 else 0.0,
        }
        row.update(extra)
        self._costs.append(row)

    def costs(self) -> list[dict]:
        """One dict per request answered so far (see the module docstring)."""
        return list(self._costs)

    def cost_summary(self) -> dict:
        """Totals over the ``generate_until`` requests: NFE, TPF, tokens/s (sums, not means of ratios)."""
        rows = [c for c in self._costs if c["kind"] == "generate_until"]
        tokens = sum(c["generated_tokens"] for c in rows)
        nfe = sum(c["nfe"] for c in rows)
        seconds = sum(c["seconds"] for c in rows)
        return {
            "requests": len(rows),
            "generated_tokens": tokens,
            "nfe": nfe,
            "nfe_per_request": nfe / len(rows) if rows else 0.0,
            "tokens_per_forward": tokens / nfe if nfe else 0.0,
            "seconds": seconds,
            "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        }


def _request_id(request, n: int) -> str:
    task = getattr(request, "task_name", None)
    doc = getattr(request, "doc_id", None)
    idx = getattr(request, "idx", 0)
    if task is None or doc is None:
        return f"request/{n}"
    return f"{task}/{doc}/{idx}"
