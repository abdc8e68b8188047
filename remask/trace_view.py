"""Seeing the decode: record what a sampler does step by step and draw it.

:class:`DecodeTracer` is a ``generate``/``infill`` callback (it wraps
:class:`remask.analysis.trace.TraceRecorder` and also keeps each row's NFE after every step).
:func:`trace_grid` turns a recorded :class:`~remask.analysis.trace.Trace` into a (step,
position) grid of states; :func:`render_text` prints it one line per step (ANSI colours
optional) and :func:`render_png` draws it with matplotlib: a position x step map of what
happened (masked, committed at this step, known, remasked) and the score of every commit;
:func:`render_html` writes one self-contained page to step through the canvas (a slider and
the arrow keys; tokens as text when a tokenizer is given).

>>> import remask
>>> from remask.models import load_model
>>> from remask.trace_view import DecodeTracer, render_text
>>> model = load_model("oracle:markov?vocab=4&length=8&seed=0")
>>> tracer = DecodeTracer()
>>> out = remask.generate(model, [[0, 1]], remask.samplers.build("low_confidence", steps=3),
...                       gen_length=6, seed=0, callbacks=[tracer])
>>> print(render_text(tracer.trace(out), mask_id=model.mask_id, color=False))  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "FIXED",
    "MASKED",
    "COMMITTED",
    "KNOWN",
    "REMASKED",
    "DecodeTracer",
    "trace_grid",
    "trace_data",
    "render_text",
    "render_png",
    "render_html",
    "write_trace",
]

# Cell states of trace_grid, one per (step, position).
FIXED = 0  # not editable: prompt, infill context or padding
MASKED = 1  # still the mask after the step
COMMITTED = 2  # written by this step (a commit, or an edit of a committed token)
KNOWN = 3  # decoded at an earlier step and unchanged
REMASKED = 4  # decoded before this step, the mask again after it (ReMDM, WINO, Gibbs)

_TEXT = {FIXED: " ", MASKED: "·", COMMITTED: "█", KNOWN: "▒", REMASKED: "x"}
_NAMES = {
    FIXED: "fixed",
    MASKED: "masked",
    COMMITTED: "committed now",
    KNOWN: "known",
    REMASKED: "remasked",
}


class DecodeTracer:
    """A callback recording committed positions, proposals, scores, canvases and NFE per step.

    Pass it in ``callbacks=[tracer]``; after the run, :meth:`trace` returns the
    :class:`~remask.analysis.trace.Trace` (its ``extra["nfe"]`` is (T, B) int64: each row's
    cumulative NFE after every step). Everything is copied to the CPU, so a long run on a
    large canvas costs T x B x L x (8 + 8 + 4 + 1) bytes of host memory.
    """

    def __init__(self):
        from remask.analysis.trace import TraceRecorder

        self._recorder = TraceRecorder(("committed", "score", "proposal"), tokens=True)
        self._nfe: list[torch.Tensor] = []

    def __call__(self, state, info) -> None:
        self._recorder(state, info)
        self._nfe.append(state.canvas.nfe.detach().cpu().clone())

    def trace(self, output=None):
        """The recorded :class:`~remask.analysis.trace.Trace` (``output``: the run's result)."""
        trace = self._recorder.trace(output)
        trace.extra["nfe"] = torch.stack(self._nfe)  # (T, B)
        return trace


def trace_grid(trace, *, mask_id: int, row: int = 0) -> dict[str, np.ndarray]:
    """The decode of one row as (T, L) arrays.

    Parameters
    ----------
    trace : remask.analysis.trace.Trace
        Recorded with canvases (``tokens``), as :class:`DecodeTracer` does.
    mask_id : int
    row : int
        Which batch row.

    Returns
    -------
    dict
        ``state`` (T, L) int8 — one of FIXED, MASKED, COMMITTED, KNOWN, REMASKED after each
        step; ``score`` (T, L) float32 — the score of the proposal written at that step, NaN
        elsewhere; ``tokens`` (T, L) int64 — the canvas after each step; ``committed``
        (T,) int64 — positions written per step; ``remasked`` (T,) int64; ``nfe`` (T,) int64
        or None — the row's NFE after each step.
    """
    if trace.tokens is None:
        raise ValueError(
            "the trace has no canvases: record it with DecodeTracer() or TraceRecorder(tokens=True)"
        )
    B = trace.editable.shape[0]
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < B:
        raise ValueError(f"row={row!r} is outside the batch of {B} rows")
    T = trace.steps
    editable = trace.editable[row]  # (L,)
    after = trace.tokens[:, row]  # (T, L)
    before = torch.cat([trace.canvas_before(0, mask_id)[row][None], after[:-1]])  # (T, L)
    masked_after = after == mask_id  # (T, L)
    masked_before = before == mask_id  # (T, L)
    written = trace.committed[:, row] & ~masked_after  # (T, L)
    remasked = editable & ~masked_before & masked_after  # (T, L)
    state = torch.full((T, editable.shape[0]), KNOWN, dtype=torch.int8)
    state[masked_after & editable] = MASKED
    state[written & editable] = COMMITTED
    state[remasked] = REMASKED
    state[:, ~editable] = FIXED
    score = torch.full(state.shape, float("nan"), dtype=torch.float32)
    if trace.score is not None:
        score = torch.where(written & editable, trace.score[:, row].float(), score)
    nfe = trace.extra.get("nfe")
    return {
        "state": state.numpy(),
        "score": score.numpy(),
        "tokens": after.numpy(),
        "committed": (written & editable).sum(-1).numpy(),
        "remasked": remasked.sum(-1).numpy(),
        "nfe": None if nfe is None else nfe[:, row].numpy(),
    }


def _fold(state: np.ndarray, width: int) -> np.ndarray:
    """Fold (T, L) states to (T, <= width) columns; a column shows its most telling state."""
    T, L = state.shape
    if L <= width:
        return state
    per = math.ceil(L / width)
    padded = np.full((T, per * math.ceil(L / per)), FIXED, dtype=state.dtype)
    padded[:, :L] = state
    groups = padded.reshape(T, -1, per)
    rank = np.array([0, 1, 3, 2, 4])  # FIXED < MASKED < KNOWN < COMMITTED < REMASKED
    order = np.argsort(rank)
    return order[rank[groups].max(-1)].astype(state.dtype)


def render_text(trace, *, mask_id: int, row: int = 0, width: int = 100, color: bool = True) -> str:
    """One line per step: the canvas as characters, commits and NFE.

    ``█`` committed at this step (coloured by score when ``color``: green >= 0.9, yellow
    >= 0.5, red below), ``▒`` known, ``·`` masked, ``x`` remasked, blank not editable. A
    canvas wider than ``width`` is folded: each character stands for several positions and
    shows the most telling state among them (remasked, then committed, known, masked).
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 8:
        raise ValueError(f"width must be an int >= 8, got {width!r}")
    grid = trace_grid(trace, mask_id=mask_id, row=row)
    state, score = grid["state"], grid["score"]
    L = state.shape[1]
    folded = _fold(state, width)
    per = math.ceil(L / folded.shape[1])
    lines = [
        f"row {row}: {L} positions, {state.shape[0]} steps"
        + (f" (one character = {per} positions)" if per > 1 else "")
        + f"; {_TEXT[COMMITTED]} committed now, {_TEXT[KNOWN]} known, {_TEXT[MASKED]} masked, "
        f"{_TEXT[REMASKED]} remasked"
    ]
    for t in range(state.shape[0]):
        chars = []
        for j, s in enumerate(folded[t]):
            char = _TEXT[int(s)]
            if color and s == COMMITTED:
                block = score[t, j * per : (j + 1) * per]
                best = np.nanmax(block) if np.isfinite(block).any() else float("nan")
                code = "32" if best >= 0.9 else "33" if best >= 0.5 else "31"
                char = f"\x1b[{code}m{char}\x1b[0m"
            elif color and s == REMASKED:
                char = f"\x1b[35m{char}\x1b[0m"
            chars.append(char)
        nfe = "" if grid["nfe"] is None else f" nfe={int(grid['nfe'][t])}"
        extra = f" -{int(grid['remasked'][t])}" if grid["remasked"][t] else ""
        lines.append(f"{t + 1:>4} |{''.join(chars)}| +{int(grid['committed'][t])}{extra}{nfe}")
    return "\n".join(lines)


def render_png(trace, path, *, mask_id: int, row: int = 0, title: str | None = None) -> None:
    """Draw one row's decode to a PNG: states (position x step) and the score of each commit.

    Needs matplotlib (``pip install "remask[plot]"``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    grid = trace_grid(trace, mask_id=mask_id, row=row)
    state, score = grid["state"], grid["score"]
    T, L = state.shape
    colours = ["#ffffff", "#d9d9d9", "#1f77b4", "#9ecae1", "#d62728"]  # by state code
    fig_width = min(16.0, 4.0 + L / 16)
    fig_height = min(12.0, 2.5 + T / 6)
    fig, axes = plt.subplots(1, 2, figsize=(2 * fig_width / 1.6, fig_height), squeeze=False)
    ax_state, ax_score = axes[0]
    extent = (-0.5, L - 0.5, T + 0.5, 0.5)  # step 1 at the top
    ax_state.imshow(
        state,
        cmap=ListedColormap(colours),
        norm=BoundaryNorm(np.arange(-0.5, 5.5), 5),
        aspect="auto",
        interpolation="nearest",
        extent=extent,
    )
    ax_state.set_title("what each step did")
    ax_state.legend(
        handles=[
            Patch(color=colours[k], label=_NAMES[k]) for k in (MASKED, COMMITTED, KNOWN, REMASKED)
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=4,
        fontsize=7,
        frameon=False,
    )
    image = ax_score.imshow(
        np.ma.masked_invalid(score),
        cmap="viridis",
        vmin=0.0,
        vmax=max(1.0, float(np.nanmax(score))) if np.isfinite(score).any() else 1.0,
        aspect="auto",
        interpolation="nearest",
        extent=extent,
    )
    ax_score.set_facecolor("#f2f2f2")
    ax_score.set_title("score of each commit")
    fig.colorbar(image, ax=ax_score, fraction=0.04)
    for ax in (ax_state, ax_score):
        ax.set_xlabel("position")
        ax.set_ylabel("step")
    nfe = "" if grid["nfe"] is None else f", NFE {int(grid['nfe'][-1])}"
    fig.suptitle(title or f"decode of row {row}: {T} steps{nfe}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trace_data(
    trace, *, mask_id: int, row: int = 0, tokenizer=None, title: str | None = None
) -> dict:
    """The JSON document :func:`render_html` embeds: one row's decode, step by step.

    Returns
    -------
    dict
        ``title``; ``length`` L; ``editable`` (L,) 0/1; ``labels``: token id (as a string) ->
        text for every id on the canvas (the tokenizer's token, else the id); ``steps``: one
        dict per step with ``state`` (a string of L digits, the codes of :func:`trace_grid`),
        ``tokens`` (L ids after the step), ``scores`` ({position: score} of the step's
        commits), ``committed``, ``remasked`` and ``nfe`` (or None).
    """
    grid = trace_grid(trace, mask_id=mask_id, row=row)
    state, score, tokens = grid["state"], grid["score"], grid["tokens"]
    ids = sorted({int(i) for i in np.unique(tokens)} | {int(mask_id)})
    if tokenizer is not None and hasattr(tokenizer, "convert_ids_to_tokens"):
        vocab = getattr(tokenizer, "__len__", lambda: 0)()
        known = [i for i in ids if 0 <= i < vocab] if vocab else ids
        text = dict(zip(known, tokenizer.convert_ids_to_tokens(known)))
        labels = {str(i): str(text.get(i, i)) for i in ids}
    else:
        labels = {str(i): str(i) for i in ids}
    labels[str(int(mask_id))] = "·"
    steps = []
    for t in range(state.shape[0]):
        written = np.flatnonzero(np.isfinite(score[t]))
        steps.append(
            {
                "state": "".join(str(int(c)) for c in state[t]),
                "tokens": [int(i) for i in tokens[t]],
                "scores": {str(int(i)): round(float(score[t, i]), 4) for i in written},
                "committed": int(grid["committed"][t]),
                "remasked": int(grid["remasked"][t]),
                "nfe": None if grid["nfe"] is None else int(grid["nfe"][t]),
            }
        )
    return {
        "title": title or f"decode of row {row}",
        "length": int(state.shape[1]),
        "editable": [int(e) for e in trace.editable[row]],
        "labels": labels,
        "steps": steps,
    }


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;color:#222}
#bar{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ddd}
#step{width:60%}
#canvas{display:flex;flex-wrap:wrap;gap:2px;margin-top:.6em;font-family:ui-monospace,monospace;font-size:12px}
.c{padding:1px 3px;border-radius:3px;min-width:.8em;text-align:center;white-space:pre}
.s0{color:#888}.s1{background:#eee;color:#999}.s2{background:#1f77b4;color:#fff;font-weight:bold}
.s3{background:#cfe3f3}.s4{background:#d62728;color:#fff}
.key span{margin-right:1em}
</style></head><body>
<h3 id="title"></h3>
<div id="bar"><button id="prev">&larr;</button>
<input type="range" id="step" min="1" value="1"> <button id="next">&rarr;</button>
<b id="where"></b> <span id="info"></span>
<div class="key"><span class="c s2">committed now</span><span class="c s3">known</span>
<span class="c s1">masked</span><span class="c s4">remasked</span><span class="c s0">fixed</span>
&nbsp; keys: &larr; &rarr; Home End; hover a cell for its position, id and score</div></div>
<div id="canvas"></div>
<script id="trace-data" type="application/json">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById("trace-data").textContent);
const slider = document.getElementById("step"), canvas = document.getElementById("canvas");
document.getElementById("title").textContent = D.title;
slider.max = D.steps.length;
const cells = [];
for (let i = 0; i < D.length; i++) {
  const c = document.createElement("span"); c.className = "c"; canvas.appendChild(c); cells.push(c);
}
function show(t) {
  t = Math.max(1, Math.min(D.steps.length, t)); slider.value = t;
  const s = D.steps[t - 1];
  for (let i = 0; i < D.length; i++) {
    const code = s.state[i], id = s.tokens[i], c = cells[i];
    c.className = "c s" + code;
    c.textContent = D.labels[id] !== undefined ? D.labels[id] : String(id);
    const score = s.scores[i];
    c.title = "position " + i + ", id " + id + (score !== undefined ? ", score " + score : "");
  }
  document.getElementById("where").textContent = "step " + t + " / " + D.steps.length;
  document.getElementById("info").textContent = "  +" + s.committed + " committed" +
    (s.remasked ? ", " + s.remasked + " remasked" : "") + (s.nfe !== null ? ", NFE " + s.nfe : "");
}
slider.addEventListener("input", () => show(+slider.value));
document.getElementById("prev").onclick = () => show(+slider.value - 1);
document.getElementById("next").onclick = () => show(+slider.value + 1);
document.addEventListener("keydown", e => {
  const t = +slider.value;
  if (e.key === "ArrowLeft") show(t - 1); else if (e.key === "ArrowRight") show(t + 1);
  else if (e.key === "Home") show(1); else if (e.key === "End") show(D.steps.length);
});
show(1);
</script></body></html>
"""


def render_html(
    trace, path, *, mask_id: int, row: int = 0, tokenizer=None, title: str | None = None
) -> None:
    """Write one self-contained HTML page (no network, no external files) to step through a
    row's decode: the canvas after each step with every cell coloured by its state (committed
    now, known, masked, remasked, fixed) and labelled with its token, the score of each commit
    and the step's NFE on hover and in the header; a slider, buttons and the arrow/Home/End keys
    move between steps. Cells wrap, so 1,024-token canvases stay readable."""
    import html
    import json

    data = trace_data(trace, mask_id=mask_id, row=row, tokenizer=tokenizer, title=title)
    # "</" cannot end the script element early once escaped; JSON stays valid.
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    page = _HTML.replace("__TITLE__", html.escape(data["title"])).replace("__DATA__", payload)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)


def write_trace(
    trace,
    target: str,
    *,
    mask_id: int,
    title: str | None = None,
    color: bool | None = None,
    stream=None,
    tokenizer=None,
) -> None:
    """``target`` "-": print every row as text to ``stream`` (default stdout); a ``.html`` path: a
    self-contained page per row (:func:`render_html`); else a PNG per row. With several rows the
    row number goes before the extension (``out.0.png``, ``out.1.png``, ...)."""
    import sys

    B = trace.editable.shape[0]
    if target == "-":
        stream = sys.stdout if stream is None else stream
        use_color = stream.isatty() if color is None else color
        for b in range(B):
            print(render_text(trace, mask_id=mask_id, row=b, color=use_color), file=stream)
        return
    stem, dot, ext = target.rpartition(".")
    for b in range(B):
        path = target if B == 1 else (f"{stem}.{b}.{ext}" if dot else f"{target}.{b}")
        label = title if B == 1 or title is None else f"{title} (row {b})"
        if target.lower().endswith(".html"):
            render_html(trace, path, mask_id=mask_id, row=b, tokenizer=tokenizer, title=label)
        else:
            render_png(trace, path, mask_id=mask_id, row=b, title=label)
