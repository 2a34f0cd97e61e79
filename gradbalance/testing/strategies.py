"""Hypothesis strategies for task-gradient matrices ``G[T, P]`` and sequences of steps.

Rows are drawn by kind, mixed within one matrix:

- ``normal``: independent Gaussian rows;
- ``zero``: a task that sat out the step;
- ``parallel`` / ``antiparallel``: an earlier row times ``±c`` (singular: the rows span less);
- ``nearly-parallel``: ``±c`` times an earlier row plus a perturbation of relative size
  ``δ ∈ [1e-7, 1e-2]`` (ill-conditioned but not singular: the Gramian's and the cosine
  matrix's condition numbers grow like ``1/δ²``, up to ~1e14, still above float64 rounding);
- ``tiny`` / ``huge``: a Gaussian row far below / above unit scale, per dtype (float32's huge rows
  overflow a float32 Gramian, float16's stay representable; float32's tiny and huge rows stay
  within 1e31 of each other, so that weights mapping one onto the other fit in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch
from hypothesis import strategies as st
from torch import Tensor

__all__ = [
    "ROW_KINDS",
    "Steps",
    "nonconflicting_matrices",
    "segmentations",
    "step_sequences",
    "task_matrices",
]

ROW_KINDS = ("normal", "zero", "parallel", "antiparallel", "nearly-parallel", "tiny", "huge")

#: Row scales of the ``tiny`` and ``huge`` kinds per dtype.
ROW_SCALES = {
    torch.float64: (1e-10, 1e15),
    torch.float32: (1e-12, 1e19),
    torch.bfloat16: (1e-12, 1e19),
    torch.float16: (1e-3, 1e2),
}

DtypeArg = torch.dtype | Sequence[torch.dtype]


def _dtypes(dtype: DtypeArg) -> list[torch.dtype]:
    return [dtype] if isinstance(dtype, torch.dtype) else list(dtype)


def draw_rows(draw: st.DrawFn, T: int, P: int, kinds: Sequence[str], dtype: torch.dtype) -> Tensor:
    """One ``[T, P]`` matrix of the given kinds, built in float64 and then cast to ``dtype``."""
    unknown = set(kinds) - set(ROW_KINDS)
    if unknown:
        raise ValueError(f"unknown row kinds {sorted(unknown)}; choose from {ROW_KINDS}")
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(T, P, generator=gen, dtype=torch.float64)
    tiny, huge = ROW_SCALES.get(dtype, ROW_SCALES[torch.float64])
    rows: list[Tensor] = []
    for t in range(T):
        kind = draw(st.sampled_from(list(kinds)))
        row = base[t]
        if kind == "zero":
            row = torch.zeros(P, dtype=torch.float64)
        elif kind in ("parallel", "antiparallel", "nearly-parallel") and rows:
            source = rows[draw(st.integers(0, len(rows) - 1))]
            scale = draw(st.floats(0.1, 10.0))
            sign = -1.0 if kind == "antiparallel" else 1.0
            if kind == "nearly-parallel":
                sign = draw(st.sampled_from([1.0, -1.0]))
            row = source * (sign * scale)
            if kind == "nearly-parallel":
                delta = 10.0 ** draw(st.floats(-7.0, -2.0))
                noise = base[t] / base[t].norm().clamp_min(1e-300)
                row = row + delta * float(row.norm()) * noise
        elif kind == "tiny":
            row = row * tiny
        elif kind == "huge":
            row = row * huge
        rows.append(row)
    return torch.stack(rows).to(dtype)


@st.composite
def task_matrices(
    draw: st.DrawFn,
    max_tasks: int = 8,
    max_columns: int = 2000,
    kinds: Sequence[str] = ROW_KINDS,
    dtype: DtypeArg = torch.float64,
    *,
    min_tasks: int = 1,
    min_columns: int = 1,
    device: str | torch.device = "cpu",
) -> Tensor:
    """A ``[T, P]`` matrix whose rows mix the ``kinds`` (see the module docstring)."""
    T = draw(st.integers(min_tasks, max_tasks))
    P = draw(st.integers(min_columns, max_columns))
    chosen = draw(st.sampled_from(_dtypes(dtype)))
    return draw_rows(draw, T, P, kinds, chosen).to(device)


@st.composite
def nonconflicting_matrices(
    draw: st.DrawFn, max_tasks: int = 8, max_columns: int = 300, **kwargs: Any
) -> Tensor:
    """Task matrices with no conflicting pair (``g_i · g_j ≥ 0``): non-negative rows, mixed kinds."""
    return draw(task_matrices(max_tasks, max_columns, **kwargs)).abs()


@st.composite
def segmentations(draw: st.DrawFn, columns: int, max_segments: int = 4) -> list[int] | None:
    """``None`` (the whole vector) or positive segment sizes summing to ``columns``."""
    if columns < 2 or draw(st.booleans()):
        return None
    cuts = draw(st.lists(st.integers(1, columns - 1), max_size=max_segments - 1, unique=True))
    bounds = [0, *sorted(cuts), columns]
    return [b - a for a, b in zip(bounds, bounds[1:])]


@attrs.frozen
class Steps:
    """A sequence of steps of one training run: same ``T``, ``P`` and segments every step."""

    matrices: list[Tensor]
    segments: list[int] | None

    @property
    def shape(self) -> tuple[int, int]:
        T, P = self.matrices[0].shape
        return T, P


@st.composite
def step_sequences(
    draw: st.DrawFn,
    min_steps: int = 1,
    max_steps: int = 4,
    max_tasks: int = 6,
    max_columns: int = 300,
    kinds: Sequence[str] = ROW_KINDS,
    dtype: DtypeArg = torch.float64,
    *,
    min_tasks: int = 1,
    segments: bool = True,
    device: str | torch.device = "cpu",
) -> Steps:
    """:class:`Steps`: ``min_steps..max_steps`` matrices of one shape, dtype and segmentation."""
    T = draw(st.integers(min_tasks, max_tasks))
    P = draw(st.integers(1, max_columns))
    chosen = draw(st.sampled_from(_dtypes(dtype)))
    sizes = draw(segmentations(P)) if segments else None
    n = draw(st.integers(min_steps, max_steps))
    return Steps([draw_rows(draw, T, P, kinds, chosen).to(device) for _ in range(n)], sizes)
