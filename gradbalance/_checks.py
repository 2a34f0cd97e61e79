"""Input validation shared by the combiners and the task-gradient buffer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import numpy as np
import torch
from torch import Tensor


def check_task_matrix(G: Tensor) -> None:
    """Raise a clear error unless ``G`` is a floating ``[T, P]`` matrix with ``T >= 1``."""
    if not isinstance(G, Tensor):
        raise TypeError(f"G must be a torch.Tensor of shape [T, P], got {type(G).__name__}")
    if G.dim() != 2:
        raise ValueError(
            f"G must have shape [T, P] (one row per task), got shape {tuple(G.shape)}; "
            "stack per-task gradients with torch.stack([g.flatten() for g in grads])"
        )
    if G.shape[0] < 1:
        raise ValueError("G must have at least one task row, got T = 0")
    if not G.is_floating_point():
        raise TypeError(f"G must be a floating-point tensor, got dtype {G.dtype}")


def check_segments(
    segments: Sequence[int] | None, num_columns: int, *, name: str = "segments", allow_empty: bool = False
) -> list[int]:
    """Return ``segments`` as a list of positive ints summing to ``num_columns`` (``>= 0`` with
    ``allow_empty``: a column shard may hold none of a segment).

    ``None`` means one segment covering everything. ``name`` is the argument named in errors.
    """
    if segments is None:
        return [num_columns]
    sizes = [int(s) for s in segments]
    if not sizes:
        raise ValueError(f"{name} must not be empty; pass None for a single segment")
    bad = [(k, s) for k, s in enumerate(sizes) if s < 0 or (s == 0 and not allow_empty)]
    if bad:
        k, s = bad[0]
        least = "non-negative" if allow_empty else "positive"
        raise ValueError(f"{name}: sizes must be {least}, segment {k} has size {s}")
    if sum(sizes) != num_columns:
        raise ValueError(
            f"{name} must sum to the number of columns ({num_columns}), "
            f"but {len(sizes)} segments sum to {sum(sizes)}"
        )
    return sizes


def check_out(out: Tensor | None, G: Tensor) -> None:
    """Raise unless ``out`` can receive the combined ``[P]`` vector of ``G`` in place."""
    if out is None:
        return
    P = G.shape[1]
    if out.shape != (P,):
        raise ValueError(f"out must have shape ({P},) to match G, got {tuple(out.shape)}")
    if out.dtype != G.dtype or out.device != G.device:
        raise ValueError(
            f"out must match G's dtype and device ({G.dtype} on {G.device}), got {out.dtype} on {out.device}"
        )
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")


def all_finite(t: Tensor) -> bool:
    """Whether every entry of ``t`` is finite; numpy's test for small CPU float64 arrays such as
    weights and Gramians (torch's reduction costs 5-20 µs there, numpy's 1-2 µs)."""
    if t.dtype == torch.float64 and t.is_cpu and t.numel() <= 4096:
        array = (t.detach() if t.requires_grad else t).numpy()
        if t.numel() <= 16:  # a few segments' weights: Python floats beat a numpy reduction
            return all(map(math.isfinite, array.ravel().tolist()))
        return bool(np.isfinite(array).all())
    return bool(torch.isfinite(t).all())


def first_nonfinite_row(G: Tensor) -> int | None:
    """Index of the first row of ``G`` holding NaN or Inf, or ``None``. One pass over ``G``."""
    bad = (~torch.isfinite(G)).any(dim=1).nonzero()
    return int(bad[0, 0]) if bad.numel() else None


def reduction_field(default: Literal["sum", "mean"]) -> Any:
    """An attrs field for a combiner's ``reduction``, validated to ``"sum"`` or ``"mean"``."""
    return attrs.field(default=default, validator=_check_reduction)


def _check_reduction(instance: object, _attribute: attrs.Attribute, value: str) -> None:
    if value not in ("sum", "mean"):
        raise ValueError(f"{type(instance).__name__} reduction must be 'sum' or 'mean', got {value!r}")
