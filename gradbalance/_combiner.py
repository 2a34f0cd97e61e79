"""The combiner contract: per-task gradients ``G[T, P]`` in, one update direction ``[P]`` out."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor

from ._checks import check_out, check_segments, check_task_matrix, first_nonfinite_row
from ._gramian import apply_weights, segment_gramians
from .errors import NonFiniteGradientError

__all__ = ["Combination", "GradientCombiner", "GramianCombiner"]


@attrs.frozen
class Combination:
    """What one ``combine`` call produced.

    Attributes:
        direction: the combined update ``[P]``, in G's dtype and on G's device.
        gramian: ``[S, T, T]`` float64 CPU Gramians of the segments (``None`` for combiners that
            never form one, such as ``sum``). Task-gradient cosines come from it for free.
        weights: ``[S, T]`` float64 weights with ``direction_s = weights_s @ G_s`` (``None``
            when the combiner does not work through weights).
    """

    direction: Tensor
    gramian: Tensor | None = None
    weights: Tensor | None = None

    def cosines(self) -> Tensor | None:
        """Pairwise cosines ``[S, T, T]`` between the original task gradients (0 for zero rows)."""
        if self.gramian is None:
            return None
        norms = self.gramian.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
        denom = norms.unsqueeze(-1) * norms.unsqueeze(-2)
        return torch.where(denom > 0, self.gramian / denom.clamp_min(1e-300), 0.0).clamp(-1, 1)


class GradientCombiner(abc.ABC):
    """Turns per-task gradients into one update direction.

    Subclasses set the class attribute ``name`` (the registry key) and implement
    :meth:`combine_with_info`. Combiners whose result is a weighted sum of the task rows should
    subclass :class:`GramianCombiner` instead and only write the weighting.

    ``combine(G, segments=None, out=None)``:

    - ``G``: ``[T, P]`` floating tensor, one row per task (fp16/bf16/fp32/fp64, any device).
    - ``segments``: optional sizes summing to ``P``; each segment is solved as an independent
      problem (per-layer or per-tensor granularity). ``None`` is the whole vector.
    - ``out``: optional preallocated ``[P]`` result (same dtype and device as ``G``).

    Stateful combiners (EMA targets, RNG streams) return their state from :meth:`state_dict` so
    that a resumed run continues exactly.

    A combiner whose result at a column depends only on that column of ``G`` (sum, mean) sets
    ``columnwise = True``: it then runs unchanged on column shards of ``G`` (sharded
    distributed training, :mod:`gradbalance.distributed`) with no communication.
    """

    name: ClassVar[str]
    columnwise: ClassVar[bool] = False

    def combine(
        self, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
    ) -> Tensor:
        """The combined update direction ``[P]``."""
        return self.combine_with_info(G, segments, out=out).direction

    __call__ = combine

    @abc.abstractmethod
    def combine_with_info(
        self, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
    ) -> Combination:
        """Like :meth:`combine`, also returning the Gramian and weights when there are any."""

    def state_dict(self) -> dict[str, Any]:
        """State needed to resume exactly; ``{}`` for stateless combiners."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(
                f"{type(self).__name__} is stateless but was given state with keys {sorted(state)}"
            )

    @staticmethod
    def _prepare(
        G: Tensor, segments: Sequence[int] | None, out: Tensor | None
    ) -> list[int]:
        check_task_matrix(G)
        check_out(out, G)
        return check_segments(segments, G.shape[1])


class GramianCombiner(GradientCombiner):
    """A combiner that is a function of the task Gramian: ``d_s = weights(K)_s @ G_s``.

    Write only :meth:`weights`; this class makes the two memory passes (blockwise Gramian with
    float64 accumulation, then one weighted sum) and checks for NaN/Inf rows. Any method that
    only adds multiples of the original task gradients (PCGrad, GradVac, MGDA, ...) fits.

    Example — a plugin that weights tasks by inverse gradient norm::

        class InverseNorm(GramianCombiner):
            name = "inverse-norm"

            def weights(self, gramian):
                norms = gramian.diagonal(dim1=-2, dim2=-1).sqrt()
                return torch.where(norms > 0, 1 / norms, 0.0)
    """

    @abc.abstractmethod
    def weights(self, gramian: Tensor) -> Tensor:
        """Map Gramians ``[S, T, T]`` (float64, CPU) to task weights ``[S, T]``."""

    def combine_with_info(
        self, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
    ) -> Combination:
        sizes = self._prepare(G, segments, out)
        if G.shape[1] == 0:
            empty = out if out is not None else G.new_empty(0)
            return Combination(empty, torch.zeros(0, G.shape[0], G.shape[0], dtype=torch.float64))
        K = segment_gramians(G, sizes)
        W = self.checked_weights(K)
        return Combination(apply_weights(G, W, sizes, out), K, W)

    def checked_weights(self, gramian: Tensor) -> Tensor:
        """:meth:`weights` of ``[S, T, T]`` Gramians, checked to be finite and ``[S, T]``.

        The step between the two passes, for callers that form the Gramian themselves (the
        sharded path all-reduces partial Gramians before it).
        """
        W = self.weights(gramian)
        expected = tuple(gramian.shape[:2])
        if W.shape != expected:
            raise RuntimeError(
                f"{type(self).__name__}.weights returned shape {tuple(W.shape)}, "
                f"expected {expected} (segments, tasks)"
            )
        if not bool(torch.isfinite(W).all()):
            raise RuntimeError(f"{type(self).__name__}.weights returned non-finite weights: {W}")
        return W


def _check_sum_finite(G: Tensor, direction: Tensor) -> None:
    # NaN/Inf survive a sum, so one scalar reduction over the result (a quarter of the work of
    # scanning G at T=3) tells whether any row needs a closer look.
    if not bool(torch.isfinite(direction.sum(dtype=torch.float32))):
        task = first_nonfinite_row(G)
        if task is not None:
            raise NonFiniteGradientError(task)
