"""Exceptions and warnings raised by gradbalance."""

from __future__ import annotations

__all__ = [
    "FusedKernelError",
    "GradbalanceError",
    "NonFiniteGradientError",
    "PluginConflictError",
    "PluginLoadWarning",
    "UnknownCombinerError",
    "UnknownPluginError",
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


class FusedKernelError(GradbalanceError, RuntimeError):
    """A fused CPU kernel (``torch.compile``) failed to build or run for this input; the message
    carries torch's error and how to use the library kernels instead (``GRADBALANCE_COMPILE=0``)."""


class UnknownPluginError(GradbalanceError, KeyError):
    """A registry was asked for a name that no installed plugin provides (a combiner or
    regularizer, a minbert_tasks task, sampler or head preset); the message lists the available
    names and suggests a close match."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


#: The name a training loop catches around :func:`gradbalance.create`: the same class as
#: :class:`UnknownPluginError`, so ``except UnknownCombinerError`` catches every unknown name.
UnknownCombinerError = UnknownPluginError


class PluginConflictError(GradbalanceError):
    """Two plugins register the same name; raised when that name is asked for."""


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; it was skipped and the others still load."""
