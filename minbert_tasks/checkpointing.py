"""Atomic checkpoint files: written beside the target and renamed, so a crash never leaves half
a checkpoint where a good one was."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write_text", "atomic_save", "load", "resolve_checkpoint"]


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    _atomic(Path(path), lambda handle: handle.write(text.encode()))


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint on the CPU; a missing file is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def resolve_checkpoint(run_or_file: str | os.PathLike[str], name: str = "best.pt") -> Path:
    """A checkpoint file: the path itself, or ``name`` inside a run directory."""
    path = Path(run_or_file)
    if path.is_dir():
        candidate = path / name
        if not candidate.is_file():
            raise FileNotFoundError(f"run directory {path} has no {name} (has training finished an evaluation?)")
        return candidate
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or run directory at {path}")
    return path
