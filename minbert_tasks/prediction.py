"""``minbert-tasks predict``: a trained run's predictions for one task's file, as
``id,prediction`` CSV (SST: class 0–4; Para: 0/1; STS: a float in [0, 5]), one row per readable
input row, in input order."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch

from minbert_tasks import data
from minbert_tasks.checkpointing import atomic_write_text, check_out_path, load, resolve_checkpoint
from minbert_tasks.evaluation import Example, predict_examples
from minbert_tasks.system import load_run_model

__all__ = ["predict_file"]


def _read_inputs(task: str, kind: str, path: Path, strict: bool) -> data.ReadResult:
    if kind == "single":
        return data.read_sentences(path, labeled=False, strict=strict)
    return data.read_pairs(path, labeled=False, strict=strict)


def predict_file(
    checkpoint: str | os.PathLike[str],
    task: str,
    input_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    batch_size: int = 128,
    device: str = "cpu",
    strict: bool = False,
) -> int:
    """Write predictions for ``input_path``; returns the number of rows written. The file
    appears whole or not at all (written beside ``out_path`` and renamed); its folder is made."""
    check_out_path(out_path, f"{task}.csv")
    file = resolve_checkpoint(checkpoint)
    model, tokenizer, setups, _ = load_run_model(load(file), file.parent)
    if task not in setups:
        raise ValueError(f"the run at {file} was not trained on {task!r}; its tasks: {', '.join(setups)}")
    setup = setups[task]
    result = _read_inputs(task, setup.spec.kind, Path(input_path), strict)
    if result.skipped:
        print(result.report())
    model.to(device)
    examples: list[Example] = list(result.examples)
    preds, _ = predict_examples(
        model, task, setup, examples, tokenizer, batch_size=batch_size, device=torch.device(device)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "prediction"])
    for example, pred in zip(examples, preds):
        writer.writerow([example.id, f"{pred:.4f}" if isinstance(pred, float) else pred])
    atomic_write_text(buffer.getvalue(), out_path)
    return len(examples)
