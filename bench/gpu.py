"""GPU benchmark: Triton compiled and tested, ``propose`` against a copy, 8B-scale decoding.

Run ``python -m remask.bench.gpu`` on a CUDA machine (about 5 minutes on one H100/H200), or
``python -m remask.bench.gpu --quick`` anywhere (tiny shapes; what CI runs). Three parts, each
written as CSV rows with device, versions, git sha, date and machine load:

1. **Kernel tests** (``gpu_kernel_tests_<device>.csv``): the kernel test suite
   (``tests/kernels``; on CUDA it also collects the compiled Triton suite case by case: every
   op, fp32/bf16/fp16, the Philox known answers and the χ² frequency tests) run through pytest,
   ``-k`` selecting; one row per test with its outcome.
2. **propose vs copy** (``gpu_propose_<device>.csv``, the shared schema of
   :mod:`remask.bench.common`): ``remask.kernels.propose`` at T = 0, T = 1 and T = 1 with
   ``top_p=0.95`` on (1, 1024, 126464) and (8, 1024, 126464) logits, bfloat16 and float32,
   against a device-to-device copy of the same logits (``triton.testing.do_bench`` medians).
   With the Triton backend also the kernels alone (``propose_t0_kernel``/``_t1_kernel``: no
   validation, no status check, so no host sync) at the default launch and, at the first
   shape, at every launch of :data:`SWEEP`. ``derived`` is GB/s: the logits' bytes once for
   ``propose`` (one read), read + write for the copy. Target: propose >= 80% of the copy's
   bandwidth.
3. **End-to-end decoding** (``gpu_e2e_<device>.csv``): an LLaDA-8B-shaped and a Dream-7B-shaped
   model (remask's own classes built from configs with the published dimensions, random
   weights, bfloat16, nothing downloaded) decode a 128-token prompt + 256 new tokens in blocks of
   32, greedily, four ways on the same weights and prompts:

   - ``low_confidence`` (remask, steps = 256) vs :func:`~remask.bench.reference_loops.llada_generate`
     (LLaDA's reference loop);
   - ``threshold`` (τ = 0.9) through :class:`~remask.models.cache.CachedDenoiser` ``mode="dual"``
     vs :func:`~remask.bench.reference_loops.fastdllm_dual_cache_generate` (Fast-dLLM v1).

   Per loop: wall seconds per run (median of ``repeats`` after one warm-up run), NFE, ms per
   step, generated tokens/s, the forward's share of the run (CUDA events around every forward,
   full or cached) and the time outside the forward relative to the forward (target <= 5%),
   and whether the tokens equal the other side's. The reference LLaDA loop takes its confidence
   in the logits' dtype (bfloat16, as the current reference does); it is also run once with a
   float32 confidence to show that, given the same arithmetic, its tokens equal remask's.

   Random weights give near-uniform predictions; the output head is scaled (``head_scale``) so
   that the logits spread like a trained model's (top-1 probabilities across (0, 1)), which makes
   threshold decoding commit several tokens per step sometimes, as it does on real checkpoints.

``--quick`` uses tiny model shapes, short prompts and tiny logits, float32 on CPU: it checks
the pipeline (and, in CI, that remask's tokens equal both reference loops'), not speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import remask
import remask.kernels as K
from remask.bench.common import Result, environment, time_cpu, time_gpu, write_csv
from remask.bench.reference_loops import fastdllm_dual_cache_generate, llada_generate
from remask.models.cache import CachedDenoiser

__all__ = [
    "E2E_FIELDS",
    "MODELS",
    "TimedDenoiser",
    "build_denoiser",
    "main",
    "run_e2e",
    "run_kernel_tests",
    "run_propose",
]

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]

#: Published shapes (config.json of GSAI-ML/LLaDA-8B-Instruct and Dream-org/Dream-v0-Instruct-7B)
#: and tiny stand-ins of the same families for --quick.
MODELS: dict[str, dict[str, dict]] = {
    "llada-8b": {
        "full": {
            "d_model": 4096,
            "n_heads": 32,
            "n_kv_heads": 32,
            "n_layers": 32,
            "mlp_hidden_size": 12288,
            "vocab_size": 126464,
            "embedding_size": 126464,
            "rope_theta": 500000.0,
            "max_sequence_length": 4096,
            "mask_token_id": 126336,
            "eos_token_id": 126081,
            "pad_token_id": 126081,
        },
        "quick": {
            "d_model": 64,
            "n_heads": 4,
            "n_kv_heads": 4,
            "n_layers": 2,
            "mlp_hidden_size": 128,
            "vocab_size": 512,
            "embedding_size": 512,
            "rope_theta": 500000.0,
            "max_sequence_length": 256,
            "mask_token_id": 500,
            "eos_token_id": 501,
            "pad_token_id": 501,
        },
    },
    "dream-7b": {
        "full": {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-6,
            "mask_token_id": 151666,
            "eos_token_id": 151643,
            "pad_token_id": 151643,
            "bos_token_id": 151643,
        },
        "quick": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 512,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 256,
            "rms_norm_eps": 1e-6,
            "mask_token_id": 500,
            "eos_token_id": 501,
            "pad_token_id": 501,
            "bos_token_id": 501,
        },
    },
}

E2E_FIELDS = (
    "model",
    "loop",
    "impl",
    "batch",
    "prompt_length",
    "gen_length",
    "block_length",
    "setting",
    "dtype",
    "repeats",
    "seconds_median",
    "seconds_min",
    "seconds_max",
    "nfe",
    "ms_per_step",
    "tokens_per_s",
    "forward_ms_per_step",
    "forward_share",
    "outside_over_forward",
    "tokens_equal_other_side",
    "agreement_other_side",
    "device",
    "versions",
    "sha",
    "date",
    "load_1m",
)

KERNEL_TEST_FIELDS = ("test", "outcome", "seconds", "message", "device", "versions", "sha", "date")


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- models
def build_denoiser(
    name: str,
    *,
    quick: bool,
    device: torch.device,
    dtype: torch.dtype,
    head_scale: float = 6.0,
    seed: int = 0,
    shapes: dict | None = None,
):
    """A random-weight LLaDA or Dream denoiser of the published (or tiny) shape.

    The model is initialised directly on ``device`` (an 8B model never passes through host
    memory) with the family's own normal initialisation, then cast to ``dtype``; the output head is then
    multiplied by ``head_scale`` so that the logits are as spread as a trained model's.

    Parameters
    ----------
    name : {"llada-8b", "dream-7b"}
    quick : bool
        The tiny stand-in shape instead of the published one.
    device : torch.device
    dtype : torch.dtype
    head_scale : float
        Factor applied to the output-head weights.
    seed : int
        Weight-initialisation seed.
    shapes : dict, optional
        A table like :data:`MODELS` to read the shape from (default :data:`MODELS`).

    Returns
    -------
    LLaDADenoiser or DreamDenoiser
    """
    table = MODELS if shapes is None else shapes
    if name not in table:
        raise ValueError(f"model must be one of {sorted(table)}, got {name!r}")
    shape = table[name]["quick" if quick else "full"]
    torch.manual_seed(seed)
    with torch.device(device):  # initialised in place on the device, then cast
        if name.startswith("llada"):
            from remask.models.llada import LLaDAConfig, LLaDADenoiser, LLaDAModelLM

            model = LLaDAModelLM(LLaDAConfig(**shape))
            adapter = LLaDADenoiser
        else:
            from remask.models.dream import DreamConfig, DreamDenoiser, DreamModel

            model = DreamModel(DreamConfig(**shape))
            adapter = DreamDenoiser
    model = model.to(device=device, dtype=dtype)
    head = (
        model.model.transformer["ff_out"].weight
        if name.startswith("llada")
        else model.head_weight()
    )
    with torch.no_grad():
        head.mul_(head_scale)
    vocab = shape["vocab_size"]
    return adapter(
        model,
        mask_id=shape["mask_token_id"],
        vocab_size=vocab,
        embedding_rows=shape.get("embedding_size", vocab),
        eos_id=shape["eos_token_id"],
        pad_id=shape["pad_token_id"],
        bos_id=shape.get("bos_token_id"),
    )


class TimedDenoiser:
    """Delegates to a denoiser and times every forward (plain, cached and window passes).

    On CUDA each forward is bracketed by CUDA events (no synchronisation until
    :meth:`forward_ms` is read); on CPU by ``time.perf_counter``. Every other attribute is the
    inner denoiser's, so it can stand wherever the inner one does (also inside
    :class:`~remask.models.cache.CachedDenoiser`).
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self._cuda = inner.device.type == "cuda"
        self._marks: list[tuple] = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def reset(self) -> None:
        self._marks = []

    def _timed(self, fn: Callable, *args):
        if self._cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(*args)
            end.record()
            self._marks.append((start, end))
        else:
            t0 = time.perf_counter()
            out = fn(*args)
            self._marks.append(((time.perf_counter() - t0) * 1e3,))
        return out

    def __call__(self, tokens, attention_mask=None):
        return self._timed(self.inner, tokens, attention_mask)

    def forward_cached(self, tokens, attention_mask=None):
        return self._timed(self.inner.forward_cached, tokens, attention_mask)

    def forward_window(self, tokens, attention_mask, cache, start, stop):
        return self._timed(self.inner.forward_window, tokens, attention_mask, cache, start, stop)

    def forward_ms(self) -> float:
        """Total milliseconds spent in forwards since the last :meth:`reset`."""
        if self._cuda:
            torch.cuda.synchronize()
            return sum(start.elapsed_time(end) for start, end in self._marks)
        return sum(mark[0] for mark in self._marks)


# ---------------------------------------------------------------------------- part 1
def run_kernel_tests(
    env: dict, out: Path, select: str | None = None, log: Callable = print
) -> list[dict]:
    """Run ``tests/kernels`` through pytest and write one CSV row per test.

    Parameters
    ----------
    env : dict
        From :func:`remask.bench.common.environment`.
    out : Path
        CSV path.
    select : str, optional
        A pytest ``-k`` expression (CI uses it to keep the run short).

    Returns
    -------
    list of dict
        The rows written; empty when the test folder is not there (an installed copy of
        remask without its repository).
    """
    folder = REPO / "tests" / "kernels"
    if not folder.is_dir():
        log(f"kernel tests: {folder} not found, skipped")
        return []
    junit = out.with_suffix(".xml")
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(folder),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
    ]
    child_env = dict(os.environ)
    if torch.cuda.is_available():
        # The compiled Triton suite collected here too (one CSV row per case, not one row for
        # test_triton.py's subprocess that runs it). Named as a file next to its folder,
        # pytest would drop it as a duplicate: widen the collected file names instead.
        command += ["-o", "python_files=test_*.py _triton_suite.py"]
        child_env["REMASK_TEST_DEVICE"] = "cuda"
    if select:
        command += ["-k", select]
    log("kernel tests: " + " ".join(command[2:]))
    proc = subprocess.run(
        command, cwd=REPO, env=child_env, capture_output=True, text=True, check=False
    )
    log(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    rows = []
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                child = case.find(tag)
                if child is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (child.get("message") or "")[:300].replace("\n", " ")
                    break
            rows.append(
                {
                    "test": f"{case.get('classname')}::{case.get('name')}",
                    "outcome": outcome,
                    "seconds": round(float(case.get("time") or 0.0), 3),
                    "message": message,
                    **{k: env[k] for k in ("device", "versions", "sha", "date")},
                }
            )
        junit.unlink()
    _write_rows(rows, out, KERNEL_TEST_FIELDS)
    counts = {
        o: sum(r["outcome"] == o for r in rows) for o in ("passed", "failed", "error", "skipped")
    }
    log(f"kernel tests: {counts}")
    return rows


# ---------------------------------------------------------------------------- part 2
def run_propose(
    env: dict,
    device: torch.device,
    shapes: list[tuple[int, int, int]],
    out: Path,
    quick: bool,
    log: Callable = print,
) -> list[Result]:
    """Time ``propose`` (T = 0, T = 1) and a copy of the same logits per shape and dtype."""
    timer = time_gpu if device.type == "cuda" else time_cpu
    backend = K.resolve_backend(device=device)
    results: list[Result] = []
    try:
        _time_propose(env, device, shapes, quick, timer, backend, results, log)
    finally:  # rows measured before a failure are kept
        write_csv(results, out)
    copies = {(r.variant, _shape_key(r)): r.derived for r in results if r.name == "copy"}
    for r in results:
        if r.name.startswith("propose"):
            share = r.derived / copies[(r.variant, _shape_key(r))]
            log(
                f"{r.name} {r.variant} {_shape_key(r)}: {share:.0%} of copy bandwidth (target >= 80%)"
            )
    return results


def _time_propose(
    env: dict,
    device: torch.device,
    shapes: list[tuple[int, int, int]],
    quick: bool,
    timer: Callable,
    backend: str,
    results: list[Result],
    log: Callable,
) -> None:
    for shape in shapes:
        gen = torch.Generator(device=device).manual_seed(0)
        base = torch.randn(shape, generator=gen, device=device) * 3  # (B, L, V) LLaDA-like spread
        for dtype in (torch.bfloat16, torch.float32):
            logits = base.to(dtype)
            target = torch.empty_like(logits)
            nbytes = logits.numel() * logits.element_size()
            key = K.split(0, logits.shape[:-1], device=device)  # one Philox key per row
            cases = [
                (
                    "copy",
                    "torch",
                    lambda target=target, logits=logits: target.copy_(logits),
                    2 * nbytes,
                    None,
                ),
                ("propose_t0", backend, lambda logits=logits: K.propose(logits), nbytes, None),
                (
                    "propose_t1",
                    backend,
                    lambda logits=logits, key=key: K.propose(logits, temperature=1.0, key=key),
                    nbytes,
                    None,
                ),
                (
                    "propose_t1_top_p",
                    backend,
                    lambda logits=logits, key=key: K.propose(
                        logits, temperature=1.0, key=key, top_p=0.95
                    ),
                    nbytes,
                    None,
                ),
            ]
            if backend == "triton":
                cases += _kernel_cases(logits, key, first_shape=shape == shapes[0])
            for name, used, fn, moved, launch in cases:
                stats = (
                    timer(fn)
                    if device.type == "cuda"
                    else timer(fn, warmup=1, repeats=3 if quick else 10)
                )
                variant = str(dtype).replace("torch.", "")
                results.append(
                    Result(
                        name=name,
                        variant=variant,
                        backend=used,
                        config=json.dumps(
                            {
                                "B": shape[0],
                                "L": shape[1],
                                "V": shape[2],
                                "dtype": variant,
                                "bytes_counted": moved,
                                "load_1m": _load(),
                                **({} if launch is None else {"launch": launch}),
                            }
                        ),
                        repeats=int(stats["repeats"]),
                        median=round(stats["median"], 5),
                        p20=round(stats["p20"], 5),
                        p80=round(stats["p80"], 5),
                        unit="ms",
                        derived=round(moved / (stats["median"] * 1e-3) / 1e9, 2),
                        derived_unit="GB/s",
                        device=env["device"],
                        versions=env["versions"],
                        sha=env["sha"],
                        date=env["date"],
                    )
                )
                log(
                    f"{name:17s} {variant:9s} {str(shape):22s} {stats['median']:9.4f} ms "
                    f"{results[-1].derived:9.1f} GB/s {'' if launch is None else launch}"
                )
            del logits, target
        del base


#: Pass-1 launches (block, warps, splits) timed at the first shape besides the default.
SWEEP = (
    (512, 4, 1),
    (1024, 4, 1),
    (2048, 4, 1),
    (1024, 8, 1),
    (2048, 8, 1),
    (512, 2, 1),
    (1024, 4, 2),
    (1024, 4, 4),
)


def _kernel_cases(logits: torch.Tensor, key: torch.Tensor, first_shape: bool) -> list[tuple]:
    """The Triton kernels alone (no validation, no status check: no host sync), T = 0 and 1.

    The default launch at every shape; at the first shape also every launch of :data:`SWEEP`.
    """
    from remask.kernels._triton import propose as TP

    flat = logits.reshape(-1, logits.shape[-1])  # (N, V)
    keys = key.reshape(-1)  # (N,)
    nbytes = flat.numel() * flat.element_size()
    default = TP.launch_config(flat.shape[0], flat.shape[1], flat.device)
    launches = [default] + ([c for c in SWEEP if c != default] if first_shape else [])
    cases = []
    for launch in launches:
        for name, temperature in (("propose_t0_kernel", 0.0), ("propose_t1_kernel", 1.0)):
            cases.append(
                (
                    name,
                    "triton",
                    lambda t=temperature, c=launch: TP.propose_rows(flat, None, t, keys, config=c),
                    nbytes,
                    list(launch) + (["default"] if launch == default else []),
                )
            )
    return cases


def _shape_key(row: Result) -> tuple[int, int, int]:
    config = json.loads(row.config)
    return config["B"], config["L"], config["V"]


# ---------------------------------------------------------------------------- part 3
@dataclass
class _Run:
    tokens: torch.Tensor
    nfe: int
    seconds: float
    forward_ms: float


def _timed(fn: Callable[[], tuple[torch.Tensor, int]], timed: TimedDenoiser) -> _Run:
    device = timed.device
    _sync(device)
    timed.reset()
    start = time.perf_counter()
    tokens, nfe = fn()
    _sync(device)
    seconds = time.perf_counter() - start
    return _Run(tokens=tokens.cpu(), nfe=int(nfe), seconds=seconds, forward_ms=timed.forward_ms())


def _loops(
    timed: TimedDenoiser, prompt: torch.Tensor, gen: int, block: int, threshold: float
) -> dict[tuple[str, str], Callable[[], tuple[torch.Tensor, int]]]:
    """The four decoding loops, each a closure returning (tokens, nfe)."""
    low_conf = remask.samplers.build("low_confidence", steps=gen, block_length=block)
    thresh = remask.samplers.build("threshold", threshold=threshold, block_length=block)

    def remask_lc():
        out = remask.generate(timed, prompt, low_conf, gen_length=gen, seed=0)
        return out.tokens, int(out.nfe.max())

    def remask_dual():
        # A fresh wrapper per run: the cache of one run never serves the next.
        out = remask.generate(
            CachedDenoiser(timed, mode="dual"), prompt, thresh, gen_length=gen, seed=0
        )
        return out.tokens, int(out.nfe.max())

    return {
        ("low_confidence", "remask"): remask_lc,
        ("low_confidence", "reference"): lambda: llada_generate(
            timed, prompt, steps=gen, gen_length=gen, block_length=block
        ),
        ("threshold_dual_cache", "remask"): remask_dual,
        ("threshold_dual_cache", "reference"): lambda: fastdllm_dual_cache_generate(
            timed, prompt, gen_length=gen, block_length=block, threshold=threshold
        ),
    }


def run_e2e(
    env: dict,
    device: torch.device,
    dtype: torch.dtype,
    out: Path,
    *,
    quick: bool,
    models: list[str],
    batch: int = 1,
    prompt_length: int = 128,
    gen_length: int = 256,
    block_length: int = 32,
    threshold: float = 0.9,
    repeats: int = 3,
    keep_going: bool = False,
    log: Callable = print,
) -> list[dict]:
    """Decode with remask's samplers and the reference loops on the same weights; write rows.

    With ``keep_going``, a loop that raises is logged with its traceback and left out (its
    counterpart's ``tokens_equal_other_side`` is then False) instead of ending the run.

    Returns
    -------
    list of dict
        One row per (model, loop, impl), fields :data:`E2E_FIELDS`.
    """
    rows: list[dict] = []
    for name in models:
        log(f"e2e: building {name} ({'tiny' if quick else 'published shape'}, {dtype}) on {device}")
        timed = TimedDenoiser(build_denoiser(name, quick=quick, device=device, dtype=dtype))
        gen = torch.Generator().manual_seed(1)
        prompt = torch.randint(
            0, min(timed.mask_id, timed.eos_id) - 1, (batch, prompt_length), generator=gen
        ).to(device)  # (B, P), no special ids
        loops = _loops(timed, prompt, gen_length, block_length, threshold)
        runs: dict[tuple[str, str], list[_Run]] = {key: [] for key in loops}
        for key, fn in list(loops.items()):  # warm-up (compilation, cuBLAS handles, caches)
            try:
                runs[key].append(_timed(fn, timed))
            except Exception:  # noqa: BLE001 -- keep_going: one broken loop must not end the run
                if not keep_going:
                    raise
                log(f"  {key} FAILED:\n{traceback.format_exc()}")
                del loops[key], runs[key]
                continue
            log(
                f"  warm-up {key[0]:22s} {key[1]:9s} {runs[key][-1].seconds:8.3f} s  NFE {runs[key][-1].nfe}"
            )
        for _ in range(repeats):  # interleaved, so drift hits every loop alike
            for key, fn in loops.items():
                runs[key].append(_timed(fn, timed))
        # The reference LLaDA loop with float32 confidence: same arithmetic as remask's.
        fp32_ref = _timed(
            lambda timed=timed, prompt=prompt: llada_generate(
                timed,
                prompt,
                steps=gen_length,
                gen_length=gen_length,
                block_length=block_length,
                confidence_dtype=torch.float32,
            ),
            timed,
        )
        base = {
            "model": name,
            "batch": batch,
            "prompt_length": prompt_length,
            "gen_length": gen_length,
            "block_length": block_length,
            "dtype": str(dtype).replace("torch.", ""),
            **{k: env[k] for k in ("device", "versions", "sha", "date")},
        }
        for (loop, impl), measured in runs.items():
            counterpart = runs.get((loop, "reference" if impl == "remask" else "remask"))
            mine = measured[0].tokens
            other = counterpart[0].tokens if counterpart else torch.full_like(mine, -1)
            setting = (
                f"steps={gen_length}" if loop == "low_confidence" else f"threshold={threshold}"
            )
            rows.append(
                {
                    **base,
                    "loop": loop,
                    "impl": impl,
                    "setting": setting,
                    **_measured(
                        measured[1:] if repeats else measured, mine, other, batch, gen_length
                    ),
                }
            )
            log(
                f"  {loop:22s} {impl:9s} {rows[-1]['seconds_median']:8.3f} s  NFE {rows[-1]['nfe']:4d}  "
                f"{rows[-1]['ms_per_step']:8.2f} ms/step {rows[-1]['tokens_per_s']:8.1f} tok/s  "
                f"outside/forward {rows[-1]['outside_over_forward']:.1%}"
                f"  tokens equal: {rows[-1]['tokens_equal_other_side']}"
            )
        lc_remask = runs.get(("low_confidence", "remask"), [fp32_ref])[0].tokens
        rows.append(
            {
                **base,
                "loop": "low_confidence",
                "impl": "reference_fp32_confidence",
                "setting": f"steps={gen_length}",
                **_measured([fp32_ref], fp32_ref.tokens, lc_remask, batch, gen_length),
            }
        )
        log(
            f"  low_confidence reference, float32 confidence: tokens equal remask's: "
            f"{rows[-1]['tokens_equal_other_side']} (agreement {rows[-1]['agreement_other_side']:.3f})"
        )
        del timed, loops, runs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    _write_rows(rows, out, E2E_FIELDS)
    return rows


def _measured(
    runs: list[_Run], mine: torch.Tensor, other: torch.Tensor, batch: int, gen_length: int
) -> dict:
    """The timing and agreement fields of :data:`E2E_FIELDS` for one loop's timed runs."""
    seconds = [r.seconds for r in runs]
    med = statistics.median(seconds)
    nfe = runs[0].nfe
    fwd = statistics.median(r.forward_ms for r in runs)  # ms in forwards per run
    return {
        "repeats": len(runs),
        "seconds_median": round(med, 4),
        "seconds_min": round(min(seconds), 4),
        "seconds_max": round(max(seconds), 4),
        "nfe": nfe,
        "ms_per_step": round(med * 1e3 / nfe, 3),
        "tokens_per_s": round(batch * gen_length / med, 2),
        "forward_ms_per_step": round(fwd / nfe, 3),
        "forward_share": round(fwd / (med * 1e3), 4),
        "outside_over_forward": round((med * 1e3 - fwd) / fwd, 4),
        "tokens_equal_other_side": bool(torch.equal(mine, other)),
        "agreement_other_side": round(
            float((mine[:, -gen_length:] == other[:, -gen_length:]).float().mean()), 4
        ),
        "load_1m": _load(),
    }


def _write_rows(rows: list[dict], path: Path, fields: tuple[str, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------- driver
def main(
    quick: bool = False,
    out: str | Path | None = None,
    *,
    parts: tuple[str, ...] = ("tests", "propose", "e2e"),
    models: tuple[str, ...] = tuple(MODELS),
    repeats: int | None = None,
    test_select: str | None = None,
    keep_going: bool = False,
    log: Callable = print,
) -> dict[str, Path]:
    """Run the chosen parts and write their CSVs.

    Parameters
    ----------
    quick : bool
        Tiny shapes (CPU-sized); the files get a ``_quick`` suffix.
    out : path, optional
        Folder for the CSVs (default ``bench/results``).
    parts : tuple of {"tests", "propose", "e2e"}
    models : tuple of str
        Keys of :data:`MODELS` for the end-to-end part.
    repeats : int, optional
        Timed runs per loop after the warm-up (default 3, quick 1).
    test_select : str, optional
        pytest ``-k`` expression for the kernel tests.
    keep_going : bool
        Log a failing part (or decoding loop) with its traceback and go on with the rest: a
        lent GPU's time is short, one error should not cost the other measurements.

    Returns
    -------
    dict of str to Path
        The CSV written per part.
    """
    unknown = set(parts) - {"tests", "propose", "e2e"}
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from tests, propose, e2e")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folder = Path(out) if out is not None else RESULTS
    suffix = f"{device.type}{'_quick' if quick else ''}.csv"
    env = environment(device)
    log(f"device: {env['device']}; load {_load()}; sha {env['sha']}")
    written: dict[str, Path] = {}
    jobs: dict[str, Callable[[Path], object]] = {
        "tests": lambda path: run_kernel_tests(env, path, test_select, log),
        "propose": lambda path: run_propose(
            env,
            device,
            [(1, 64, 1000), (2, 64, 1000)] if quick else [(1, 1024, 126464), (8, 1024, 126464)],
            path,
            quick,
            log,
        ),
        "e2e": lambda path: run_e2e(
            env,
            device,
            torch.bfloat16 if device.type == "cuda" else torch.float32,
            path,
            quick=quick,
            models=list(models),
            repeats=(1 if quick else 3) if repeats is None else repeats,
            keep_going=keep_going,
            log=log,
            **({"prompt_length": 8, "gen_length": 16, "block_length": 4} if quick else {}),
        ),
    }
    names = {"tests": "gpu_kernel_tests", "propose": "gpu_propose", "e2e": "gpu_e2e"}
    for part in ("propose", "e2e", "tests"):  # the measurements first, the long test run last
        if part not in parts:
            continue
        path = folder / f"{names[part]}_{suffix}"
        start = time.perf_counter()
        try:
            jobs[part](path)
            written[part] = path
        except Exception:  # noqa: BLE001 -- see keep_going
            if not keep_going:
                raise
            log(f"part {part} FAILED:\n{traceback.format_exc()}")
        log(f"part {part}: {time.perf_counter() - start:.1f} s")
    return written


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (CPU-sized)")
    parser.add_argument("--out", default=None, help="folder for the CSVs (default bench/results)")
    parser.add_argument("--parts", default="tests,propose,e2e", help="comma-separated subset")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per loop")
    parser.add_argument(
        "-k", dest="test_select", default=None, help="pytest -k for the kernel tests"
    )
    parser.add_argument("--keep-going", action="store_true", help="log a failing part and go on")
    args = parser.parse_args()
    main(
        quick=args.quick,
        out=args.out,
        parts=tuple(p for p in args.parts.split(",") if p),
        models=tuple(m for m in args.models.split(",") if m),
        repeats=args.repeats,
        test_select=args.test_select,
        keep_going=args.keep_going,
    )


if __name__ == "__main__":
    _cli()
