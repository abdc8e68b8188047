"""A real-model study: the analysis run end to end, with the CLI, on AntiBERTy.

AntiBERTy (Ruffolo, Gray, Gray; arXiv 2112.07782) is a 26M-parameter BERT masked language model
of antibody sequences (25 tokens: 5 specials and the 20 amino acids). Its ``0.1.3`` source
distribution on PyPI ships the trained weights (``pytorch_model.bin``) and the vocabulary, so
the study needs no network access beyond the package registry, and nothing here downloads at
test time. Two steps:

``python -m remask.bench.antiberty convert SDIST OUT``
    Reads ``antiberty-0.1.3.tar.gz`` (get it with
    ``pip download --no-deps --no-binary :all: antiberty==0.1.3``) without extracting it,
    loads the weights with ``torch.load(weights_only=True)`` (tensors only; no pickled code
    runs), keeps the BERT trunk and the masked-LM head (the species/chain/graft heads and the
    pooler are dropped) and writes a plain ``BertForMaskedLM`` directory (config.json,
    model.safetensors, the tokenizer) that ``remask`` loads like any masked LM.

``python -m remask.bench.antiberty study MODEL_DIR [--out DIR] [--quick]``
    Runs ``remask analyze homogenization | cmi`` on the heavy-chain variable domains in
    :data:`SEQUENCES` (masked reproducibly: a random 12-residue span, and random 15% masking),
    then, with the Python API on the same span-masked canvases, the martingale test
    (:func:`remask.analysis.marginal_consistency`) and the decode order of ``low_confidence``
    and ``entropy_bound`` infilling the span, and
    writes every output under ``--out`` (default ``bench/results/antiberty``) with a
    ``study.json`` that records the commands, versions, git sha and machine load.

The sequences are the heavy-chain variable domains of eight therapeutic antibodies, typed from
their published INN sequences; a transcription slip would change a residue, not the kind of
sequence the model sees, which is all this study needs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

__all__ = ["SEQUENCES", "convert", "main", "study"]

RESULTS = Path(__file__).resolve().parent / "results" / "antiberty"
_MEMBER = "antiberty/trained_models/AntiBERTy_md_smooth/"
_VOCAB = "antiberty/trained_models/vocab.txt"

#: Heavy-chain variable domains (VH) of eight therapeutic antibodies.
SEQUENCES = {
    "trastuzumab": "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
    "adalimumab": "EVQLVESGGGLVQPGRSLRLSCAASGFTFDDYAMHWVRQAPGKGLEWVSAITWNSGHIDYADSVEGRFTISRDNAKNSLYLQMNSLRAEDTAVYYCAKVSYLSTASSLDYWGQGTLVTVSS",
    "pembrolizumab": "QVQLVQSGVEVKKPGASVKVSCKASGYTFTNYYMYWVRQAPGQGLEWMGGINPSNGGTNFNEKFKNRVTLTTDSSTTTAYMELKSLQFDDTAVYYCARRDYRFDMGFDYWGQGTTVTVSS",
    "nivolumab": "QVQLVESGGGVVQPGRSLRLDCKASGITFSNSGMHWVRQAPGKGLEWVAVIWYDGSKRYYADSVKGRFTISRDNSKNTLFLQMNSLRAEDTAVYYCATNDDYWGQGTLVTVSS",
    "rituximab": "QVQLQQPGAELVKPGASVKMSCKASGYTFTSYNMHWVKQTPGRGLEWIGAIYPGNGDTSYNQKFKGKATLTADKSSSTAYMQLSSLTSEDSAVYYCARSTYYGGDWYFNVWGAGTTVTVSA",
    "cetuximab": "QVQLKQSGPGLVQPSQSLSITCTVSGFSLTNYGVHWVRQSPGKGLEWLGVIWSGGNTDYNTPFTSRLSINKDNSKSQVFFKMNSLQSNDTAIYYCARALTYYDYEFAYWGQGTLVTVSA",
    "bevacizumab": "EVQLVESGGGLVQPGGSLRLSCAASGYTFTNYGMNWVRQAPGKGLEWVGWINTYTGEPTYAADFKRRFTFSLDTSKSTAYLQMNSLRAEDTAVYYCAKYPHYYGSSHWYFDVWGQGTLVTVSS",
    "omalizumab": "EVQLVESGGGLVQPGGSLRLSCAVSGYSITSGYSWNWIRQAPGKGLEWVASITYDGSTNYNPSVKGRITISRDDSKNTFYLQMNSLRAEDTAVYYCARGSHYFGHWHFAVWGQGTLVTVSS",
}


def _read_member(archive: tarfile.TarFile, suffix: str) -> bytes:
    """The bytes of the one archive member whose name ends with ``suffix`` (never extracted)."""
    hits = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(suffix)]
    if len(hits) != 1:
        raise ValueError(
            f"expected one member ending in {suffix!r} in the AntiBERTy sdist, found {len(hits)}; "
            "use antiberty==0.1.3 (later releases do not ship the weights)"
        )
    handle = archive.extractfile(hits[0])
    assert handle is not None  # isfile() above
    return handle.read()


def convert(sdist: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a ``BertForMaskedLM`` directory from the AntiBERTy 0.1.3 sdist; returns ``out``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    sdist, out = Path(sdist), Path(out)
    if not sdist.is_file():
        raise ValueError(f"{sdist} is not a file; pass antiberty-0.1.3.tar.gz")
    with tarfile.open(sdist, "r:gz") as archive:
        config = json.loads(_read_member(archive, _MEMBER + "config.json"))
        weights = _read_member(archive, _MEMBER + "pytorch_model.bin")
        vocab = _read_member(archive, _VOCAB)
    # Tensors only: weights_only refuses any pickled object that is not a tensor container.
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    # The trunk and the masked-LM head; not the pooler, the three sequence-level heads, or the
    # position-id buffer that old transformers versions saved with the weights.
    keep = {
        k: v
        for k, v in state.items()
        if k.startswith("cls.predictions.")
        or (
            k.startswith("bert.")
            and not k.startswith("bert.pooler.")
            and k != "bert.embeddings.position_ids"
        )
    }
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    config["architectures"] = ["BertForMaskedLM"]
    model = BertForMaskedLM(BertConfig(**config))
    missing, unexpected = model.load_state_dict(keep, strict=False)
    # The decoder weight is tied to the word embeddings; position ids are a buffer.
    missing = [
        k
        for k in missing
        if k not in ("cls.predictions.decoder.weight", "bert.embeddings.position_ids")
    ]
    if missing or unexpected:
        raise ValueError(
            f"AntiBERTy weights do not fit BertForMaskedLM: missing {missing}, unexpected {unexpected}"
        )
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    (out / "vocab.txt").write_bytes(vocab)
    # Residues are upper-case letters: lower-casing would map every one to [UNK].
    BertTokenizer.from_pretrained(out, do_lower_case=False).save_pretrained(out)
    return out


def _canvases(path: Path) -> Path:
    """One VH per line, residues space-separated (AntiBERTy's tokenization), with CLS/SEP."""
    path.write_text("".join(" ".join(seq) + "\n" for seq in SEQUENCES.values()))
    return path


def _run(cmd: list[str], log: list[dict]) -> None:
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    log.append(
        {
            "command": " ".join(cmd[2:]) if cmd[1] == "-m" else " ".join(cmd),
            "seconds": round(time.perf_counter() - start, 1),
        }
    )


def study(
    model_dir: str | os.PathLike,
    out: str | os.PathLike = RESULTS,
    *,
    quick: bool = False,
    threads: int = 2,
) -> Path:
    """Run the analysis on AntiBERTy with the CLI; returns the output directory."""
    import torch

    from remask.bench.common import environment

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    canvases = _canvases(out / "vh.txt")
    remask = [sys.executable, "-m", "remask.cli"]
    common = ["--model", str(model_dir), "--canvases", str(canvases), "--no-progress"]
    log: list[dict] = []
    load_before = os.getloadavg()[0]
    span = 6 if quick else 12
    _run(
        remask
        + [
            "analyze",
            "homogenization",
            *common,
            "--mask-span",
            str(span),
            "--seed",
            "0",
            "--out",
            str(out / "homogenization_span"),
        ],
        log,
    )
    _run(
        remask
        + [
            "analyze",
            "homogenization",
            *common,
            "--mask-rate",
            "0.15",
            "--seed",
            "0",
            "--out",
            str(out / "homogenization_rate"),
        ],
        log,
    )
    _run(
        remask
        + [
            "analyze",
            "cmi",
            *common,
            "--mask-span",
            str(span),
            "--seed",
            "0",
            "--out",
            str(out / "cmi_span"),
        ],
        log,
    )
    martingale = _martingale(model_dir, quick=quick, threads=threads)
    (out / "martingale.json").write_text(json.dumps(martingale, indent=2) + "\n")
    order = _order(model_dir, quick=quick, threads=threads)
    (out / "order.json").write_text(json.dumps(order, indent=2) + "\n")
    env = environment()
    summary = {
        "model": str(model_dir),
        "sequences": list(SEQUENCES),
        "runs": log,
        "martingale": martingale,
        "order": order,
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
        "torch": torch.__version__,
        **env,
    }
    (out / "study.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return out


def _masked_vh(model, quick: bool):
    """The VH canvases with the span that the CLI runs mask (same seed, same rule)."""
    from remask.analysis.canvases import read_canvases

    path = RESULTS.parent / ".vh_tmp.txt"
    _canvases(path)
    try:
        return read_canvases(path, model, mask_span=6 if quick else 12, seed=0)
    finally:
        path.unlink(missing_ok=True)


def _order(model_dir, *, quick: bool, threads: int) -> dict:
    """Decode order of two samplers infilling the masked span of each VH (greedy, one token per
    step): how left-to-right the model's own confidence makes them
    (:func:`remask.analysis.trace.decode_order_metrics`)."""
    import numpy as np
    import torch

    from remask.analysis.trace import TraceRecorder, decode_order_metrics
    from remask.models import load_model
    from remask.samplers import build, infill

    torch.set_num_threads(threads)
    model = load_model(str(model_dir))
    canvases = _masked_vh(model, quick)
    result = {}
    for name in ("low_confidence", "entropy_bound"):
        per_row = []
        for row in canvases.rows:  # rows differ in length: one canvas per call
            rec = TraceRecorder()
            out = infill(model, row.unsqueeze(0), build(name), seed=0, callbacks=[rec])
            per_row.append(decode_order_metrics(rec.trace(out)).summary())
        keys = per_row[0]
        # Kendall's tau is undefined (NaN) for a row decoded in one step: averaged over the rest.
        result[name] = {k: float(np.nanmean([r[k] for r in per_row])) for k in keys}
    return result


def _martingale(model_dir, *, quick: bool, threads: int) -> dict:
    """The martingale test on the masked VH canvases: at every other masked position j, the
    model's one-shot marginal against the mixture of its conditionals after revealing the
    middle masked position i, enumerated exactly over the 25-token vocabulary (a coherent joint
    gives KL 0; :func:`remask.analysis.marginal_consistency`)."""
    import numpy as np
    import torch

    from remask.analysis import marginal_consistency
    from remask.models import load_model

    torch.set_num_threads(threads)
    model = load_model(str(model_dir))
    canvases = _masked_vh(model, quick)
    rows = []
    for name, row in zip(SEQUENCES, canvases.rows):
        masked = (row == model.mask_id).nonzero().flatten().tolist()
        i = masked[len(masked) // 2]
        result = marginal_consistency(model, row, i)
        kl = result.kl[np.isfinite(result.kl)]
        rows.append(
            {
                "antibody": name,
                "i": i,
                "masked": masked,
                "kl_mean_nats": float(kl.mean()),
                "kl_max_nats": float(kl.max()),
                "tv_mean": float(np.nanmean(result.tv)),
            }
        )
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m remask.bench.antiberty", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="AntiBERTy 0.1.3 sdist -> BertForMaskedLM directory")
    c.add_argument("sdist")
    c.add_argument("out")
    s = sub.add_parser("study", help="run the analysis CLI on the converted model")
    s.add_argument("model_dir")
    s.add_argument("--out", default=str(RESULTS))
    s.add_argument("--quick", action="store_true")
    s.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            print(convert(args.sdist, args.out))
        else:
            print(study(args.model_dir, args.out, quick=args.quick, threads=args.threads))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
