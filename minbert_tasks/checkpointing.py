"""Atomic checkpoint files: written beside the target and renamed, so a crash never leaves half
a checkpoint where a good one was."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from minbert_tasks.model.checkpoint import CheckpointError, new_file_mode

__all__ = [
    "CheckpointError",
    "atomic_write_text",
    "check_out_path",
    "atomic_save",
    "load",
    "resolve_checkpoint",
]


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, new_file_mode())
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename."""
    _atomic(Path(path), lambda handle: torch.save(obj, handle))


def check_out_path(path: str | os.PathLike[str], example: str) -> None:
    """Refuse an output path that is a directory before any work is done (``example``: a file
    name to suggest inside it)."""
    if Path(path).is_dir():
        raise ValueError(f"--out {path} is a directory; give a file path (e.g. {Path(path) / example})")


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    _atomic(Path(path), lambda handle: handle.write(text.encode()))


#: What every checkpoint holds (``best.pt`` and ``checkpoint.pt``); ``checkpoint.pt`` adds
#: :data:`RESUME_KEYS`.
MODEL_KEYS = ("config", "encoder_config", "model")
RESUME_KEYS = ("position", "optimizer", "scheduler", "combiner", "torch_rng", "smart_rng", "best_score")


def load(path: str | os.PathLike[str], required: tuple[str, ...] = MODEL_KEYS) -> dict[str, Any]:
    """Load a checkpoint on the CPU. A missing, truncated or foreign file, or one without the
    ``required`` entries, is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... on bad files
        reason = str(exc).split("\n")[0].split(". ")[0] or type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated, corrupt or not a torch checkpoint ({reason})"
        ) from None
    missing = [key for key in required if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not a minbert-tasks checkpoint of this version (no {', '.join(missing)})"
        )
    return state


def resolve_checkpoint(run_or_file: str | os.PathLike[str], name: str = "best.pt") -> Path:
    """A checkpoint file: the path itself, or ``name`` inside a run directory."""
    path = Path(run_or_file)
    if path.is_dir():
        candidate = path / name
        if not candidate.is_file():
            raise FileNotFoundError(
                f"run directory {path} has no {name} (has training finished an evaluation?)"
            )
        return candidate
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or run directory at {path}")
    return path
