"""Pictures of a training run: gradient conflicts, losses, dev scores and prediction errors.

A run directory holds ``metrics.jsonl`` (one JSON object per line) written by the trainer:

* ``{"kind": "train", "step", "epoch", "tasks", "losses": {task: float}, "lr",
  "cosines": T×T | null, "grad_norms": T | null}`` — ``cosines[i][j]`` is the cosine between
  the shared-encoder gradients of ``tasks[i]`` and ``tasks[j]`` at that step, ``grad_norms[i]``
  the norm of ``tasks[i]``'s (both optional).
* ``{"kind": "eval", "step", "epoch", "scores": {task: float}, "overall": float | null}``.

:func:`analyze_run` draws every picture it has data for into ``run_dir/analysis/``. A picture
whose data is absent is skipped with an :class:`AnalysisSkipped` warning (and nothing is
printed); all other problems raise. Matplotlib is imported lazily and only through its Agg
canvas (no pyplot, no global backend switch), and every PNG is written atomically: rendered to
a temporary file in the destination folder, then moved into place with :func:`os.replace`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from minbert_tasks import metrics
from minbert_tasks.model.checkpoint import new_file_mode

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FILE_NAMES",
    "PARA_LABELS",
    "SST_LABELS",
    "AnalysisSkipped",
    "MetricsFormatError",
    "analyze_run",
    "confusion_annotations",
    "confusion_title",
    "cosine_series",
    "gradient_norm_series",
    "moving_average",
    "plot_confusion",
    "plot_dev_scores",
    "plot_gradient_cosines",
    "plot_losses",
    "plot_sts_errors",
    "read_metrics",
]

SST_LABELS = ["0 very neg", "1 neg", "2 neutral", "3 pos", "4 very pos"]
PARA_LABELS = ["not dup", "dup"]

#: File names :func:`analyze_run` writes inside the analysis folder.
FILE_NAMES = {
    "cosines": "gradient_cosines.png",
    "losses": "train_losses.png",
    "dev": "dev_scores.png",
    "sst": "confusion_sst.png",
    "para": "confusion_para.png",
    "sts": "sts_errors.png",
}

Record = dict[str, Any]


class MetricsFormatError(ValueError):
    """``metrics.jsonl`` is malformed; the message names the file and line."""


class AnalysisSkipped(UserWarning):
    """A picture was skipped by :func:`analyze_run` because its data is absent."""


# --------------------------------------------------------------------------- reading


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_record(rec: Record) -> str | None:
    """Return what is wrong with one record, or ``None``."""
    kind = rec.get("kind")
    if kind not in ("train", "eval"):
        return None  # unknown kinds are ignored by read_metrics
    step = rec.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return f"'step' must be an integer, got {step!r}"
    field = "losses" if kind == "train" else "scores"
    values = rec.get(field)
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and (v is None or _is_number(v)) for k, v in values.items()
    ):
        return f"{field!r} must be an object of task -> number"
    if kind == "eval":
        overall = rec.get("overall")
        if overall is not None and not _is_number(overall):
            return f"'overall' must be a number or null, got {overall!r}"
        return None
    cos, norms = rec.get("cosines"), rec.get("grad_norms")
    if cos is None and norms is None:
        return None
    tasks = rec.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        return "'tasks' must be a list of task names when 'cosines' or 'grad_norms' is given"
    t = len(tasks)
    if cos is not None and not (
        isinstance(cos, list)
        and len(cos) == t
        and all(isinstance(row, list) and len(row) == t for row in cos)
        and all(v is None or _is_number(v) for row in cos for v in row)
    ):
        return f"'cosines' must be a {t}×{t} list of lists of numbers (one row per task)"
    if norms is not None and not (
        isinstance(norms, list) and len(norms) == t and all(v is None or _is_number(v) for v in norms)
    ):
        return f"'grad_norms' must be a list of {t} numbers (one per task)"
    return None


def read_metrics(path: str | os.PathLike[str]) -> tuple[list[Record], list[Record]]:
    """Read ``metrics.jsonl``: ``(train_records, eval_records)``, each in file order.

    Blank lines and records of other kinds are ignored, and so is an unterminated last line
    that is not JSON (a record still being written by a running trainer, or cut off by a kill).
    Raises ``FileNotFoundError`` naming the path, and :class:`MetricsFormatError` (a
    ``ValueError``) naming ``path:line`` for a line that is not JSON, not an object, has no
    ``kind`` or has malformed fields.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"metrics file not found: {p}")
    train: list[Record] = []
    evals: list[Record] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n") and not fh.read(1):
                    break  # the last line, still being (or never fully) written
                raise MetricsFormatError(f"{p}:{lineno}: invalid JSON: {exc.msg}") from None
            if not isinstance(rec, dict):
                raise MetricsFormatError(f"{p}:{lineno}: expected a JSON object")
            if "kind" not in rec:
                raise MetricsFormatError(f"{p}:{lineno}: record has no 'kind'")
            problem = _check_record(rec)
            if problem is not None:
                raise MetricsFormatError(f"{p}:{lineno}: {rec['kind']} record: {problem}")
            if rec["kind"] == "train":
                train.append(rec)
            elif rec["kind"] == "eval":
                evals.append(rec)
    return train, evals


# --------------------------------------------------------------------------- helpers


def moving_average(values: ArrayLike, window: int) -> NDArray[np.float64]:
    """Trailing mean over the last ``window`` values (fewer at the start), ignoring NaNs.

    The output has the input's length; a position whose window holds only NaNs is NaN.

    >>> moving_average([1, 2, 3, 4], 2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = np.isfinite(x)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, x.size + 1)
    lo = np.maximum(hi - window, 0)
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[hi] - csum[lo]) / count
    out[count == 0] = np.nan
    return out


def _auto_window(n: int) -> int:
    return max(1, min(200, round(n / 20)))


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG to ``out_path`` atomically (temp file in the same folder)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.chmod(tmp, new_file_mode())
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out


def _sorted(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r["step"])


def _mark_epochs(ax: Axes, records: Sequence[Record]) -> None:
    """Faint vertical lines at the first step of each new epoch."""
    prev = None
    for rec in records:
        epoch = rec.get("epoch")
        if prev is not None and epoch is not None and epoch != prev:
            ax.axvline(rec["step"], color="0.85", linewidth=0.8, zorder=0)
        if epoch is not None:
            prev = epoch


def _tasks_in_order(records: Sequence[Record], field: str) -> list[str]:
    seen: dict[str, None] = {}
    for rec in records:
        for t in rec.get("tasks") or []:
            seen.setdefault(t, None)
        for t in rec[field]:
            seen.setdefault(t, None)
    return [t for t in seen if any(t in rec[field] for rec in records)]


def _as_float(v: object) -> float:
    return math.nan if v is None else float(v)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- run curves


Series = dict[str, tuple[list[int], list[float]]]


def _step_series(
    train_records: Sequence[Record],
    field: str,
    entries: Callable[[list[str], Any], Iterable[tuple[str, object]]],
) -> Series:
    """Steps and values per key, from the records carrying ``field`` (``entries`` turns the
    record's task names and ``field`` value into ``(key, value)`` pairs)."""
    series: Series = {}
    for rec in _sorted(train_records):
        data = rec.get(field)
        if data is None:
            continue
        for key, value in entries(rec["tasks"], data):
            steps, vals = series.setdefault(key, ([], []))
            steps.append(int(rec["step"]))
            vals.append(_as_float(value))
    return series


def cosine_series(train_records: Sequence[Record]) -> Series:
    """Per task pair ``"a–b"`` (in ``tasks`` order, ``a`` before ``b``): steps and cosines."""
    return _step_series(
        train_records,
        "cosines",
        lambda tasks, cos: (
            (f"{tasks[i]}–{tasks[j]}", cos[i][j]) for i in range(len(tasks)) for j in range(i + 1, len(tasks))
        ),
    )


def gradient_norm_series(train_records: Sequence[Record]) -> Series:
    """Per task: steps and the norm of its shared-encoder gradient (records with ``grad_norms``)."""
    return _step_series(train_records, "grad_norms", zip)


def _plot_smoothed(
    ax: Axes, series: Series, window: int | None, *, raw_alpha: float = 0.25, raw_width: float = 0.8
) -> None:
    """Each series as a faint per-step line plus its labelled moving average, colours C0, C1, …"""
    for k, (label, (steps, vals)) in enumerate(series.items()):
        w = window or _auto_window(len(vals))
        ax.plot(steps, vals, color=f"C{k % 10}", alpha=raw_alpha, linewidth=raw_width)
        ax.plot(steps, moving_average(vals, w), color=f"C{k % 10}", linewidth=1.8, label=f"{label} (avg {w})")


def plot_gradient_cosines(
    train_records: Sequence[Record],
    out_path: str | os.PathLike[str],
    *,
    window: int | None = None,
) -> Path:
    """Per-step gradient cosine of every task pair: raw (light) plus a moving average; below it,
    each task's gradient norm (log scale) when the records carry ``grad_norms``.

    Raises ``ValueError`` when no record carries cosines (or there is only one task).
    """
    series = cosine_series(train_records)
    if not series:
        raise ValueError("no train record has gradient cosines (a 'cosines' matrix over two or more tasks)")
    norms = gradient_norm_series(train_records)
    fig = _new_figure(9, 7.5 if norms else 4.5)
    ax, norm_ax = fig.subplots(2, 1, sharex=True) if norms else (fig.add_subplot(), None)
    _plot_smoothed(ax, series, window)
    ax.axhline(0.0, color="black", linewidth=1.0, linestyle="--")
    _mark_epochs(ax, _sorted(train_records))
    ax.set_ylim(-1.05, 1.05)
    if norm_ax is None:  # else the shared axis is labelled under the norm panel
        ax.set_xlabel("training step")
    ax.set_ylabel("cosine(g_a, g_b)")
    ax.set_title("Cosine between task gradients on the shared encoder (negative = conflicting)")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    if norm_ax is not None:
        _plot_smoothed(norm_ax, norms, window)
        _mark_epochs(norm_ax, _sorted(train_records))
        norm_ax.set_yscale("log")
        norm_ax.set_xlabel("training step")
        norm_ax.set_ylabel("‖g_task‖")
        norm_ax.set_title("Gradient norm of each task on the shared encoder (before combining)")
        norm_ax.legend(loc="best", fontsize="small")
        norm_ax.grid(alpha=0.3, which="both")
    return _save(fig, out_path)


def plot_losses(
    train_records: Sequence[Record],
    out_path: str | os.PathLike[str],
    *,
    window: int | None = None,
) -> Path:
    """Per-task training loss over steps (moving average over the raw per-step losses)."""
    recs = _sorted(train_records)
    if not recs:
        raise ValueError("no train records to plot losses from")
    fig = _new_figure(9, 4.5)
    ax = fig.add_subplot()
    losses: Series = {}
    for task in _tasks_in_order(recs, "losses"):
        pts = [(r["step"], _as_float(r["losses"][task])) for r in recs if task in r["losses"]]
        losses[task] = ([s for s, _ in pts], [v for _, v in pts])
    _plot_smoothed(ax, losses, window, raw_alpha=0.2, raw_width=0.7)
    _mark_epochs(ax, recs)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title("Training loss per task (moving average; faint lines = per step)")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, out_path)


def plot_dev_scores(eval_records: Sequence[Record], out_path: str | os.PathLike[str]) -> Path:
    """Dev metric per task and the overall score over training steps."""
    recs = _sorted(eval_records)
    if not recs:
        raise ValueError("no eval records to plot dev scores from")
    fig = _new_figure(9, 4.5)
    ax = fig.add_subplot()
    for k, task in enumerate(_tasks_in_order(recs, "scores")):
        pts = [(r["step"], _as_float(r["scores"][task])) for r in recs if task in r["scores"]]
        ax.plot(
            [s for s, _ in pts], [v for _, v in pts], marker="o", markersize=3, color=f"C{k % 10}", label=task
        )
    overall = [(r["step"], float(r["overall"])) for r in recs if r.get("overall") is not None]
    if overall:
        ax.plot(
            [s for s, _ in overall],
            [v for _, v in overall],
            marker="s",
            markersize=4,
            color="black",
            linewidth=2.2,
            label="overall",
        )
        best_step, best = max(overall, key=lambda sv: sv[1] if math.isfinite(sv[1]) else -1e300)
        ax.annotate(
            f"best {best:.3f}",
            (best_step, best),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize="small",
        )
    _mark_epochs(ax, recs)
    ax.set_xlabel("training step")
    ax.set_ylabel("dev score (accuracy / Pearson r)")
    ax.set_title("Dev scores per task and overall")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, out_path)


# --------------------------------------------------------------------------- predictions


def confusion_annotations(
    pred: ArrayLike, gold: ArrayLike, num_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], list[list[str]]]:
    """Counts (gold rows × predicted columns), row-normalised percentages and cell texts.

    A cell's text is ``"count\\npct%"``; a gold class with no examples has 0 % everywhere.
    """
    counts = metrics.confusion_matrix(pred, gold, num_classes)
    totals = counts.sum(axis=1, keepdims=True)
    pct = np.where(totals > 0, 100.0 * counts / np.maximum(totals, 1), 0.0)
    texts = [[f"{counts[i, j]}\n{pct[i, j]:.1f}%" for j in range(num_classes)] for i in range(num_classes)]
    return counts, pct, texts


def confusion_title(counts: NDArray[np.int64], title: str) -> str:
    """``title`` plus accuracy and n; for two classes also the false positives (gold 0,
    predicted 1) and false negatives (gold 1, predicted 0)."""
    total = int(counts.sum())
    text = f"{title}\naccuracy {counts.trace() / total:.3f} (n = {total})"
    if counts.shape == (2, 2):
        text += f"; false positives {int(counts[0, 1])}, false negatives {int(counts[1, 0])}"
    return text


def plot_confusion(
    pred: ArrayLike,
    gold: ArrayLike,
    labels: Sequence[str],
    out_path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Confusion-matrix heatmap (rows gold, columns predicted), annotated with counts and
    row-normalised percentages; colour = row percentage. With two classes the caption gives
    the false-positive and false-negative counts."""
    n = len(labels)
    counts, pct, texts = confusion_annotations(pred, gold, n)
    size = 2.2 + 1.1 * n
    fig = _new_figure(size + 1.2, size)
    ax = fig.add_subplot()
    im = ax.imshow(pct, cmap="Blues", vmin=0.0, vmax=100.0)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                texts[i][j],
                ha="center",
                va="center",
                fontsize="small",
                color="white" if pct[i, j] > 55 else "black",
            )
    ax.set_xticks(range(n), list(labels), rotation=30, ha="right")
    ax.set_yticks(range(n), list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(confusion_title(counts, title), fontsize="medium")
    fig.colorbar(im, ax=ax, label="% of gold row")
    return _save(fig, out_path)


def plot_sts_errors(pred: ArrayLike, gold: ArrayLike, out_path: str | os.PathLike[str]) -> Path:
    """Two panels: histogram of ``pred − gold`` and a pred-vs-gold scatter with the diagonal.

    The title gives Pearson r (``nan`` when the predictions or gold scores are constant).
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    g = np.asarray(gold, dtype=np.float64).reshape(-1)
    r = metrics.pearson(p, g)  # validates lengths, emptiness and finiteness
    err = p - g
    fig = _new_figure(11, 4.5)
    ax_hist, ax_sc = fig.subplots(1, 2)
    ax_hist.hist(err, bins=min(40, max(5, err.size // 10)), color="C0", edgecolor="white")
    ax_hist.axvline(0.0, color="black", linewidth=1.0, linestyle="--")
    ax_hist.set_xlabel("prediction − gold")
    ax_hist.set_ylabel("pairs")
    ax_hist.set_title(f"error: mean {err.mean():+.3f}, MAE {np.abs(err).mean():.3f}", fontsize="medium")
    lo = float(min(p.min(), g.min(), 0.0))
    hi = float(max(p.max(), g.max(), 5.0))
    ax_sc.scatter(g, p, s=8, alpha=0.4, color="C1", edgecolors="none")
    ax_sc.plot([lo, hi], [lo, hi], color="black", linewidth=1.0, linestyle="--", label="pred = gold")
    ax_sc.set_xlim(lo - 0.1, hi + 0.1)
    ax_sc.set_ylim(lo - 0.1, hi + 0.1)
    ax_sc.set_aspect("equal")
    ax_sc.set_xlabel("gold similarity")
    ax_sc.set_ylabel("predicted similarity")
    ax_sc.legend(loc="upper left", fontsize="small")
    ax_sc.grid(alpha=0.3)
    r_text = "nan (constant input)" if math.isnan(r) else f"{r:.3f}"
    fig.suptitle(f"STS-B dev predictions: Pearson r = {r_text} (n = {p.size})")
    return _save(fig, out_path)


# --------------------------------------------------------------------------- whole run


def _skip(what: str, why: str) -> None:
    warnings.warn(f"analysis: skipped {what}: {why}", AnalysisSkipped, stacklevel=3)


def analyze_run(
    run_dir: str | os.PathLike[str],
    predictions: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Draw every picture the run has data for; return the paths written (prints nothing).

    Reads ``run_dir/metrics.jsonl`` and writes into ``out_dir`` (default
    ``run_dir/analysis/``) the files named in :data:`FILE_NAMES`: gradient cosines, training
    losses, dev scores, and for each of ``"sst"``, ``"para"``, ``"sts"`` in ``predictions``
    (task -> ``(preds, golds)``) its confusion matrix or error plot. Each picture whose data
    is absent (no cosines, no train or eval records, an unknown task name) is skipped with an
    :class:`AnalysisSkipped` warning. A missing or malformed metrics file raises.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    out = Path(out_dir) if out_dir is not None else run / "analysis"
    train, evals = read_metrics(run / "metrics.jsonl")
    written: list[Path] = []

    if cosine_series(train):
        written.append(plot_gradient_cosines(train, out / FILE_NAMES["cosines"]))
    else:
        _skip("gradient cosines", "no train record has a 'cosines' matrix")
    if train:
        written.append(plot_losses(train, out / FILE_NAMES["losses"]))
    else:
        _skip("training losses", "no train records")
    if evals:
        written.append(plot_dev_scores(evals, out / FILE_NAMES["dev"]))
    else:
        _skip("dev scores", "no eval records")

    for task, (preds, golds) in (predictions or {}).items():
        if task == "sst":
            written.append(
                plot_confusion(
                    preds, golds, SST_LABELS, out / FILE_NAMES["sst"], "SST-5 dev confusion matrix"
                )
            )
        elif task == "para":
            written.append(
                plot_confusion(
                    preds,
                    golds,
                    PARA_LABELS,
                    out / FILE_NAMES["para"],
                    "Quora paraphrase dev confusion matrix",
                )
            )
        elif task == "sts":
            written.append(plot_sts_errors(preds, golds, out / FILE_NAMES["sts"]))
        else:
            _skip(f"predictions of {task!r}", "no picture for this task (sst, para, sts only)")
    return written
