"""The run directory: its config, metrics log and checkpoints, written atomically, and what a
resume reads back from it.

Its layout is in the :mod:`minbert_tasks.training` docstring.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from minbert_tasks.checkpointing import MODEL_KEYS, RESUME_KEYS, atomic_save, atomic_write_text, load
from minbert_tasks.config import ConfigError, TrainConfig, config_from_json
from minbert_tasks.training._schedule import Position, stop_reason

__all__ = ["RunDirectory", "RunFinished", "finished_reason"]


class RunFinished(RuntimeError):
    """``train(resume=True)`` on a run with nothing left to train."""


def finished_reason(config: TrainConfig, state: dict[str, Any]) -> str | None:
    """Why the run ``state`` (a ``checkpoint.pt``) belongs to has nothing left to train, or
    ``None``: every phase done, ``max_steps`` reached, or the time budget spent."""
    return stop_reason(config, Position(**state["position"]), float(state.get("elapsed_seconds", 0.0)))


class RunDirectory:
    """The files of one run in ``path``. Only a ``writer`` writes (rank 0 of a data-parallel
    run); the other ranks' writes are no-ops, so every rank may call every method."""

    def __init__(self, path: str | os.PathLike[str], *, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    def start(self, config: TrainConfig) -> None:
        """Create the directory with its ``config.json``; one that holds a run is refused."""
        if self.checkpoint.exists():
            raise FileExistsError(
                f"{self.path} already holds a run; pass --resume to continue it or pick another --run-dir"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config.to_json(), self.path / "config.json")

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line of ``metrics.jsonl``."""
        if self.writer:
            with open(self.metrics, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def save_best(self, state: dict[str, Any]) -> None:
        """Write ``best.pt`` (atomically, like every checkpoint)."""
        if self.writer:
            atomic_save(state, self.path / "best.pt")

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``checkpoint.pt`` with the size ``metrics.jsonl`` has now, so that a resume
        cuts the log back to it (:meth:`rewind_metrics`)."""
        if self.writer:
            size = self.metrics.stat().st_size if self.metrics.is_file() else 0
            atomic_save({**state, "metrics_bytes": size}, self.checkpoint)

    def rewind_metrics(self, size: int | None) -> None:
        """Cut ``metrics.jsonl`` back to what it held at the checkpoint: the steps after it are
        trained (and logged) again, and a line a kill left half-written must not stay in the
        middle of the file. Checkpoints without the size keep every complete line."""
        if not self.writer or not self.metrics.is_file():
            return
        text = self.metrics.read_bytes()
        keep = text[:size] if size is not None else text[: text.rfind(b"\n") + 1]
        if keep != text:
            atomic_write_text(keep.decode(), self.metrics)

    def resumable(self) -> tuple[dict[str, Any], TrainConfig]:
        """The ``checkpoint.pt`` of the run and its config. A path that is no run directory, a
        run without a checkpoint or one this version cannot read is a one-line error, a run
        with nothing left to train :class:`RunFinished`."""
        if self.path.is_file():
            raise ValueError(f"--resume takes a run directory, not a file: {self.path}")
        if not self.path.is_dir():
            raise FileNotFoundError(f"no run directory at {self.path}")
        if not self.checkpoint.is_file():
            raise FileNotFoundError(
                f"{self.path} has no checkpoint.pt: the run stopped before its first "
                f"checkpoint; start it again with --run-dir {self.path}"
            )
        state = load(self.checkpoint, MODEL_KEYS + RESUME_KEYS)
        try:
            config = config_from_json(state["config"])
        except ConfigError as exc:
            raise ConfigError(
                f"{self.checkpoint}: its saved config does not load in this version: {exc}"
            ) from None
        reason = finished_reason(config, state)
        if reason is not None:
            raise RunFinished(f"run {self.path} has already finished ({reason}); nothing to resume")
        return state, config
