"""Exceptions and warnings raised by gradbalance."""

from __future__ import annotations

__all__ = [
    "GradbalanceError",
    "NonFiniteGradientError",
    "PluginConflictError",
    "PluginLoadWarning",
    "UnknownCombinerError",
]


class GradbalanceError(Exception):
    """Base class of every error gradbalance raises on purpose."""


class NonFiniteGradientError(GradbalanceError, ValueError):
    """A task gradient row holds NaN or Inf.

    ``task`` is the row index (the task index in a ``TaskGradients`` buffer) and ``segment`` the
    segment index where it was found, when segments were given.
    """

    def __init__(self, task: int, segment: int | None = None) -> None:
        where = f"task {task}" if segment is None else f"task {task} (segment {segment})"
        super().__init__(
            f"the gradient of {where} contains NaN or Inf; check that task's loss "
            "(a log of zero, a division by zero, an fp16 overflow without a loss scaler)"
        )
        self.task = task
        self.segment = segment


class UnknownCombinerError(GradbalanceError, KeyError):
    """``create`` was given a name that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class PluginConflictError(GradbalanceError):
    """Two plugins register the same name."""


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; it was skipped and the others still load."""
