"""Tests for minbert_tasks.analysis on a small synthetic run directory."""

from __future__ import annotations

import doctest
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import minbert_tasks.analysis as analysis_module
from minbert_tasks.analysis import (
    FILE_NAMES,
    AnalysisSkipped,
    MetricsFormatError,
    analyze_run,
    confusion_annotations,
    confusion_title,
    cosine_series,
    gradient_norm_series,
    moving_average,
    plot_confusion,
    plot_dev_scores,
    plot_gradient_cosines,
    plot_losses,
    plot_sts_errors,
    read_metrics,
)
from minbert_tasks.metrics import confusion_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = ["sst", "para", "sts"]


def _records(n_steps: int = 60, cosines: bool = True, norms: bool = False) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    recs: list[dict[str, Any]] = []
    for step in range(n_steps):
        rec: dict[str, Any] = {
            "kind": "train",
            "step": step,
            "epoch": step // 20,
            "tasks": TASKS,
            "losses": {t: float(1.5 * math.exp(-step / 30) + 0.1 * rng.random()) for t in TASKS},
            "lr": 1e-5,
        }
        if cosines:
            c = np.clip(rng.normal(0.1, 0.3, size=(3, 3)), -1, 1)
            c = (c + c.T) / 2
            np.fill_diagonal(c, 1.0)
            rec["cosines"] = c.tolist()
            if norms:
                rec["grad_norms"] = rng.uniform(0.1, 10.0, size=3).tolist()
        elif step % 2:
            rec["cosines"] = None  # null and absent both mean "no cosines"
        recs.append(rec)
        if step % 20 == 19:
            recs.append(
                {
                    "kind": "eval",
                    "step": step,
                    "epoch": step // 20,
                    "scores": {"sst": 0.3 + step / 200, "para": 0.7, "sts": 0.5 + step / 300},
                    "overall": 0.6 + step / 400,
                }
            )
    return recs


def _write_run(run: Path, recs: list[dict[str, Any]]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    with (run / "metrics.jsonl").open("w", encoding="utf-8") as fh:
        for rec in recs:
            fh.write(json.dumps(rec) + "\n")
    return run


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"


def _assert_no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def _predictions() -> dict[str, tuple[list[float], list[float]]]:
    rng = np.random.default_rng(1)
    sst_gold = rng.integers(0, 5, 200)
    sst_pred = np.where(rng.random(200) < 0.5, sst_gold, rng.integers(0, 5, 200))
    para_gold = rng.integers(0, 2, 300)
    para_pred = np.where(rng.random(300) < 0.8, para_gold, 1 - para_gold)
    sts_gold = rng.uniform(0, 5, 150)
    sts_pred = np.clip(sts_gold + rng.normal(0, 0.8, 150), 0, 5)
    return {
        "sst": (sst_pred.tolist(), sst_gold.tolist()),
        "para": (para_pred.tolist(), para_gold.tolist()),
        "sts": (sts_pred.tolist(), sts_gold.tolist()),
    }


def test_doctests() -> None:
    result = doctest.testmod(analysis_module)
    assert result.attempted >= 1 and result.failed == 0


# --------------------------------------------------------------------------- reading


def test_read_metrics_splits_kinds(tmp_path: Path) -> None:
    recs = _records(40)
    run = _write_run(tmp_path / "run", recs + [{"kind": "note", "text": "ignored"}])
    (run / "metrics.jsonl").open("a").write("\n   \n")  # blank lines are fine
    train, evals = read_metrics(run / "metrics.jsonl")
    assert len(train) == 40 and len(evals) == 2
    assert train[3]["losses"] == recs[3]["losses"]
    assert [e["step"] for e in evals] == [19, 39]


def test_read_metrics_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "metrics.jsonl"
    with pytest.raises(FileNotFoundError, match="nope"):
        read_metrics(missing)
    with pytest.raises(FileNotFoundError, match="nope"):
        analyze_run(tmp_path / "nope")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        analyze_run(tmp_path / "empty_run")


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"kind": "train", "step": 3,', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"step": 3}', "no 'kind'"),
        ('{"kind": "train", "step": "3", "losses": {}}', "'step'"),
        ('{"kind": "eval", "step": 3, "scores": {"sst": "high"}}', "'scores'"),
        ('{"kind": "train", "step": 3, "tasks": ["a", "b"], "losses": {}, "cosines": [[1]]}', "2×2"),
        (
            '{"kind": "train", "step": 3, "tasks": ["a", "b"], "losses": {}, "grad_norms": [1]}',
            "list of 2 numbers",
        ),
        ('{"kind": "train", "step": 3, "losses": {}, "grad_norms": [1, 2]}', "'tasks'"),
    ],
)
def test_malformed_line_error_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps(r) for r in _records(4)]
    path.write_text("\n".join(good[:2] + [bad_line] + good[2:]) + "\n", encoding="utf-8")
    with pytest.raises(MetricsFormatError, match=message) as info:
        read_metrics(path)
    assert f"{path}:3:" in str(info.value)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- helpers


def test_moving_average_is_trailing_and_skips_nan() -> None:
    np.testing.assert_allclose(moving_average([1, 2, 3, 4, 5], 3), [1, 1.5, 2, 3, 4])
    out = moving_average([1.0, math.nan, 3.0, math.nan], 2)
    np.testing.assert_allclose(out, [1.0, 1.0, 3.0, 3.0])
    assert math.isnan(moving_average([math.nan, 1.0], 1)[0])
    with pytest.raises(ValueError):
        moving_average([1.0], 0)


def test_cosine_series_uses_task_order() -> None:
    rec = {
        "kind": "train",
        "step": 5,
        "tasks": ["para", "sst"],
        "losses": {},
        "cosines": [[1.0, -0.4], [-0.4, 1.0]],
    }
    assert cosine_series([rec, {**rec, "step": 6, "cosines": None}]) == {"para–sst": ([5], [-0.4])}


def test_gradient_norm_series_follows_the_task_names() -> None:
    rec = {"kind": "train", "step": 5, "tasks": ["para", "sst"], "losses": {}, "grad_norms": [0.5, 2.0]}
    later = {**rec, "step": 7, "grad_norms": [0.25, None]}
    series = gradient_norm_series([later, rec, {**rec, "step": 6, "grad_norms": None}])
    assert series["para"] == ([5, 7], [0.5, 0.25])
    assert series["sst"][0] == [5, 7] and series["sst"][1][0] == 2.0 and math.isnan(series["sst"][1][1])


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]  # PNG signature, IHDR length and type, then width, height
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_cosine_picture_gains_a_norm_panel_when_norms_are_logged(tmp_path: Path) -> None:
    plain = [r for r in _records(30) if r["kind"] == "train"]
    with_norms = [r for r in _records(30, norms=True) if r["kind"] == "train"]
    short = _png_size(plot_gradient_cosines(plain, tmp_path / "a.png"))
    tall = _png_size(plot_gradient_cosines(with_norms, tmp_path / "b.png"))
    assert tall[0] == short[0] and tall[1] > 1.5 * short[1]


def test_confusion_annotations_match_metrics() -> None:
    pred, gold = _predictions()["sst"]
    counts, pct, texts = confusion_annotations(pred, gold, 5)
    expected = confusion_matrix(pred, gold, 5)
    np.testing.assert_array_equal(counts, expected)
    rows = expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pct, 100 * expected / rows)
    np.testing.assert_allclose(pct.sum(axis=1), 100.0)
    for i in range(5):
        for j in range(5):
            count, percent = texts[i][j].split("\n")
            assert int(count) == expected[i, j]
            assert float(percent.rstrip("%")) == pytest.approx(100 * expected[i, j] / rows[i, 0], abs=0.05)


def test_confusion_annotations_hand_values_and_empty_row() -> None:
    # gold rows, predicted columns: gold 0 -> pred 1 twice, gold 1 -> pred 1 once; no gold 2.
    counts, pct, texts = confusion_annotations([1, 1, 1, 0], [0, 0, 1, 0], 3)
    assert counts.tolist() == [[1, 2, 0], [0, 1, 0], [0, 0, 0]]
    assert texts[0][1] == "2\n66.7%" and texts[1][1] == "1\n100.0%" and texts[2][2] == "0\n0.0%"
    assert pct[2].tolist() == [0.0, 0.0, 0.0]


def test_confusion_title_states_false_positives_and_negatives() -> None:
    # gold 0 predicted 1 (FP) three times, gold 1 predicted 0 (FN) once.
    pred = [1, 1, 1, 0, 1, 0]
    gold = [0, 0, 0, 1, 1, 0]
    title = confusion_title(confusion_matrix(pred, gold, 2), "Para")
    assert "false positives 3" in title and "false negatives 1" in title
    assert "n = 6" in title and "accuracy 0.333" in title
    assert "false" not in confusion_title(confusion_matrix([0, 1, 2], [0, 1, 2], 3), "SST")


# --------------------------------------------------------------------------- pictures


def test_individual_plots_write_pngs(tmp_path: Path) -> None:
    recs = _records(30)
    train = [r for r in recs if r["kind"] == "train"]
    evals = [r for r in recs if r["kind"] == "eval"]
    preds = _predictions()
    out = tmp_path / "pics" / "nested"  # parents are created
    paths = [
        plot_gradient_cosines(train, out / "cos.png", window=5),
        plot_losses(train, out / "loss.png"),
        plot_dev_scores(evals, out / "dev.png"),
        plot_confusion(*preds["sst"], analysis_module.SST_LABELS, out / "sst.png", "SST"),
        plot_confusion(*preds["para"], analysis_module.PARA_LABELS, out / "para.png", "Para"),
        plot_sts_errors(*preds["sts"], out / "sts.png"),
    ]
    for p in paths:
        _assert_png(p)
    _assert_no_temp_files(out)


def test_cosine_plot_without_cosines_raises(tmp_path: Path) -> None:
    train = [r for r in _records(10, cosines=False) if r["kind"] == "train"]
    with pytest.raises(ValueError, match="cosines"):
        plot_gradient_cosines(train, tmp_path / "c.png")
    with pytest.raises(ValueError, match="train records"):
        plot_losses([], tmp_path / "l.png")
    with pytest.raises(ValueError, match="eval records"):
        plot_dev_scores([], tmp_path / "d.png")
    assert list(tmp_path.iterdir()) == []


def test_sts_plot_perfect_predictions(tmp_path: Path) -> None:
    gold = np.linspace(0, 5, 50)
    path = plot_sts_errors(gold, gold.copy(), tmp_path / "sts.png")
    _assert_png(path)
    # constant predictions: Pearson is undefined, the plot is still drawn
    _assert_png(plot_sts_errors(np.full(50, 2.5), gold, tmp_path / "const.png"))
    with pytest.raises(ValueError, match="length"):
        plot_sts_errors([1.0, 2.0], [1.0], tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["const.png", "sts.png"]


def test_failed_save_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def boom(self: Figure, *args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    train = [r for r in _records(5) if r["kind"] == "train"]
    with pytest.raises(RuntimeError, match="disk full"):
        plot_losses(train, tmp_path / "loss.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- whole run


def test_analyze_run_writes_every_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _write_run(tmp_path / "run", _records(60))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is skipped
        paths = analyze_run(run, _predictions())
    out = run / "analysis"
    assert sorted(paths) == sorted(out / name for name in FILE_NAMES.values())
    for p in paths:
        _assert_png(p)
    _assert_no_temp_files(out)
    assert capsys.readouterr().out == ""


def test_analyze_run_missing_cosines_skips_only_that(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", _records(40, cosines=False))
    with pytest.warns(AnalysisSkipped, match="gradient cosines"):
        paths = analyze_run(run, out_dir=tmp_path / "elsewhere")
    assert sorted(p.name for p in paths) == sorted([FILE_NAMES["losses"], FILE_NAMES["dev"]])
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == sorted(
        [FILE_NAMES["losses"], FILE_NAMES["dev"]]
    )
    assert not (run / "analysis").exists()


def test_analyze_run_no_eval_and_unknown_task(tmp_path: Path) -> None:
    recs = [r for r in _records(20) if r["kind"] == "train"]
    run = _write_run(tmp_path / "run", recs)
    with pytest.warns(AnalysisSkipped) as record:
        paths = analyze_run(run, {"qnli": ([0.0], [1.0])})
    messages = " | ".join(str(w.message) for w in record)
    assert "dev scores" in messages and "'qnli'" in messages
    assert sorted(p.name for p in paths) == sorted([FILE_NAMES["cosines"], FILE_NAMES["losses"]])


def test_an_unterminated_last_line_is_a_record_being_written(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    good = "".join(json.dumps(r) + "\n" for r in _records(4))
    path.write_text(good + '{"kind": "train", "st', encoding="utf-8")
    assert read_metrics(path) == read_metrics(_write_run(tmp_path / "run", _records(4)) / "metrics.jsonl")
    path.write_text(good + '{"kind": "train", "st\n', encoding="utf-8")  # a finished line: corrupt
    with pytest.raises(MetricsFormatError, match=":5: invalid JSON"):
        read_metrics(path)
