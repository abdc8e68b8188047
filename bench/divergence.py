"""Where do remask's ``low_confidence`` and LLaDA's reference loop first decide differently?

Run ``python -m remask.bench.divergence [--layers 2 32]``. On an LLaDA-8B-shaped random model
(:func:`remask.bench.gpu.build_denoiser`, bf16 on a GPU; the tiny stand-in in float32 on a
CPU, where ``--layers`` is ignored) remask decodes greedily one token per step; each step is
then replayed on remask's canvas of that step with the reference's own arithmetic (argmax of
the logits, float32 softmax confidence, the most confident masked position of the block). The
first step at which the two commit different positions or tokens is printed with the four
highest confidences of both computations — telling a near-tie in the confidences (rounding)
from different logits (the forward differed) from a selection bug (same confidences, other
choice). Used on an H200 to find that remask's all-True attention mask sent SDPA down another
kernel than the reference's unmasked call (``bench/results/gpu_logs/``).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import remask
import remask.kernels as K
from remask.bench import gpu

__all__ = ["first_divergence", "main"]


def first_divergence(
    model, prompt: torch.Tensor, *, gen_length: int, block_length: int
) -> dict | None:
    """Replay remask's greedy one-token-per-step decoding against the reference's choices.

    Parameters
    ----------
    model : Denoiser
    prompt : (1, P) int64
    gen_length, block_length : int

    Returns
    -------
    dict or None
        None when every step agrees; else ``step``, remask's and the reference's position and
        token, and the top-4 (confidence, position) pairs of the reference's float32 softmax
        and of ``remask.kernels.propose``.
    """
    sampler = remask.samplers.build("low_confidence", steps=gen_length, block_length=block_length)
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(state, info):
        steps.append((state.canvas.tokens.clone(), info.committed.clone()))

    remask.generate(model, prompt, sampler, gen_length=gen_length, seed=0, callbacks=[record])
    start = prompt.shape[1]
    before = torch.cat(
        [prompt, torch.full((1, gen_length), model.mask_id, device=prompt.device)], 1
    )
    for step, (after, committed) in enumerate(steps):
        lo = start + (step // block_length) * block_length  # one token per step: block = step // W
        logits = model(before)  # (1, L, V), no attention mask, as the reference calls it
        x0 = logits.argmax(-1)  # (1, L)
        confidence = torch.gather(F.softmax(logits.float(), -1), -1, x0.unsqueeze(-1)).squeeze(-1)
        prob = K.propose(logits).prob.float()  # (1, L)
        eligible = torch.zeros_like(before[0], dtype=torch.bool)
        eligible[lo : lo + block_length] = True
        eligible &= before[0] == model.mask_id
        ref_conf = torch.where(eligible, confidence[0], -1.0)
        remask_conf = torch.where(eligible, prob[0], -1.0)
        j_ref = int(ref_conf.argmax())
        j_remask = int(committed[0].nonzero()[0, 0])
        if j_ref != j_remask or int(after[0, j_remask]) != int(x0[0, j_ref]):
            top_ref, top_remask = torch.topk(ref_conf, 4), torch.topk(remask_conf, 4)
            return {
                "step": step,
                "remask": (j_remask, int(after[0, j_remask])),
                "reference": (j_ref, int(x0[0, j_ref])),
                "reference_top4": list(zip(top_ref.values.tolist(), top_ref.indices.tolist())),
                "propose_top4": list(zip(top_remask.values.tolist(), top_remask.indices.tolist())),
                "argmax_differs": int(((x0[0] != K.propose(logits).tokens[0]) & eligible).sum()),
            }
        before = after
    return None


def main(layers: tuple[int, ...] = (2, 32), gen_length: int | None = None) -> list[dict | None]:
    """Run :func:`first_divergence` on LLaDA-8B-shaped models with ``layers`` layers each."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = device.type != "cuda"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    found = []
    for n_layers in layers if not quick else (0,):
        start = time.perf_counter()
        shapes = {"llada-8b": dict(gpu.MODELS["llada-8b"])}
        if not quick:
            shapes["llada-8b"]["full"] = {**shapes["llada-8b"]["full"], "n_layers": n_layers}
        model = gpu.build_denoiser(
            "llada-8b", quick=quick, device=device, dtype=dtype, shapes=shapes
        )
        gen = gen_length or (16 if quick else 256)
        prompt_length, block = (8, 4) if quick else (128, 32)
        prompt = torch.randint(
            0,
            min(model.mask_id, model.eos_id) - 1,
            (1, prompt_length),
            generator=torch.Generator().manual_seed(1),
        ).to(device)
        result = first_divergence(model, prompt, gen_length=gen, block_length=block)
        label = "tiny" if quick else f"layers={n_layers}"
        print(
            f"{label}: {time.perf_counter() - start:.1f} s; "
            + ("no divergence" if result is None else str(result)),
            flush=True,
        )
        found.append(result)
        del model
    return found


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 32])
    args = parser.parse_args()
    main(tuple(args.layers))


if __name__ == "__main__":
    _cli()
