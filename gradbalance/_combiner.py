"""The combiner contract: per-task gradients ``G[T, P]`` in, one update direction ``[P]`` out."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import attrs
import torch
from torch import Tensor

from ._checks import all_finite, check_out, check_segments, check_task_matrix, first_nonfinite_row
from ._gramian import apply_weights, dot_gramians, dot_rows, numpy_apply, segment_gramians
from ._properties import Property
from .errors import NonFiniteGradientError

__all__ = ["Combination", "GradientCombiner", "GramianCombiner", "GramianCombinerWithReduction"]


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

    Subclasses set the class attribute ``name`` (the registry key) and implement one of:

    - :meth:`combine` ``(G, segments=None, *, out=None) -> Tensor[P]``, the documented contract;
      :meth:`combine_with_info` (what :class:`TaskGradients` calls) is then derived from it;
    - :meth:`combine_with_info` ``(...) -> Combination``, to also report a Gramian or weights;
      :meth:`combine` then returns its ``direction``.

    A class that implements neither fails at its definition with a ``TypeError`` naming the
    method to write, unless it is an abstract base: it declares an ``abc.abstractmethod`` of its
    own (as :class:`GramianCombiner` declares ``weights``) or says so with
    ``class MyBase(GradientCombiner, abstract=True)``. Combiners whose result is a weighted sum of
    the task rows should subclass :class:`GramianCombiner` and only write the weighting.

    ``combine(G, segments=None, out=None)``:

    - ``G``: ``[T, P]`` floating tensor, one row per task (fp16/bf16/fp32/fp64, any device).
    - ``segments``: optional sizes summing to ``P``; each segment is solved as an independent
      problem (per-layer or per-tensor granularity). ``None`` is the whole vector.
    - ``out``: optional preallocated ``[P]`` result (same dtype and device as ``G``). A
      ``combine`` without an ``out`` parameter also works; its result is copied into ``out``.

    Stateful combiners (EMA targets, RNG streams) return their state from :meth:`state_dict` so
    that a resumed run continues exactly.

    A combiner whose result at a column depends only on that column of ``G`` (sum, mean) sets
    ``columnwise = True``: it then runs unchanged on column shards of ``G`` (sharded
    distributed training, :mod:`gradbalance.distributed`) with no communication.
    """

    name: ClassVar[str]
    columnwise: ClassVar[bool] = False
    _combine_takes_out: ClassVar[bool] = True

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "combine" in cls.__dict__:
            cls._combine_takes_out = _accepts_out(cls.__dict__["combine"])
            if "combine_with_info" not in cls.__dict__:
                # The class's own combine is what it means: derive combine_with_info from it,
                # also over a parent's combine_with_info (which its combine may call via super()).
                cls.combine_with_info = _combination_from_combine  # type: ignore[method-assign]
        if abstract or any(getattr(v, "__isabstractmethod__", False) for v in cls.__dict__.values()):
            return  # an abstract base: concrete subclasses are checked when they are defined
        missing = _unimplemented(cls)
        if "combine_with_info" in missing:
            raise TypeError(
                f"{cls.__qualname__} must implement combine(self, G, segments=None, *, out=None) "
                "returning the [P] update direction (or combine_with_info returning a "
                "gradbalance.Combination), or subclass gradbalance.GramianCombiner and implement "
                "weights(self, gramian); for an abstract base class write "
                f"class {cls.__name__}(..., abstract=True)"
            )
        if missing:
            raise TypeError(
                f"{cls.__qualname__} must implement "
                f"{', '.join(_signature(cls, n) for n in missing)} (abstract in "
                f"{_declared_by(cls, missing[0])}); for an abstract base class write "
                f"class {cls.__name__}(..., abstract=True)"
            )

    #: The mathematical properties (:class:`Property`) the class guarantees for every choice of
    #: its options; :mod:`gradbalance.testing` checks each one and ``docs/properties.md`` lists them.
    properties: ClassVar[frozenset[Property]] = frozenset()

    def combine(
        self, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
    ) -> Tensor:
        """The combined update direction ``[P]``."""
        combine_with_info = type(self).combine_with_info
        if combine_with_info is _combination_from_combine:
            # A subclass's combine called this one through super(): use the nearest
            # combine_with_info written by hand, if a parent has one.
            combine_with_info = _written_combine_with_info(type(self))
        return combine_with_info(self, G, segments, out=out).direction

    def __call__(
        self, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
    ) -> Tensor:
        """Same as :meth:`combine`."""
        return self.combine(G, segments) if out is None else self.combine(G, segments, out=out)

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
    def _prepare(G: Tensor, segments: Sequence[int] | None, out: Tensor | None) -> list[int]:
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
        rows = dot_rows(G)
        if rows is not None:  # a small CPU G: both passes on one numpy view, no dispatch between
            K = dot_gramians(G, rows, sizes)
            W = self.checked_weights(K)
            return Combination(numpy_apply(rows, W, sizes, out), K, W)
        K = segment_gramians(G, sizes)
        W = self.checked_weights(K)
        return Combination(apply_weights(G, W, sizes, out), K, W)

    def checked_weights(self, gramian: Tensor) -> Tensor:
        """:meth:`weights` of ``[S, T, T]`` Gramians, checked to be a finite ``[S, T]`` tensor.

        The step between the two passes, for callers that form the Gramian themselves (the
        sharded path all-reduces partial Gramians before it).
        """
        W = self.weights(gramian)
        if isinstance(W, Tensor) and W.shape == gramian.shape[:2] and all_finite(W):
            return W
        raise self._weights_error(W, tuple(gramian.shape[:2]))

    def _weights_error(self, W: object, expected: tuple[int, ...]) -> Exception:
        """The error for weights :meth:`checked_weights` rejects (checked in one test first: the
        passing case is on every step's path)."""
        owner = type(self).__name__
        if not isinstance(W, Tensor):
            return TypeError(
                f"{owner}.weights must return a torch.Tensor of shape "
                f"{expected} (segments, tasks), like the float64 CPU Gramian "
                f"it is given; got a {_type_name(W)}"
                " (build it with torch functions, or wrap it in torch.as_tensor)"
            )
        if W.shape != expected:
            return RuntimeError(
                f"{owner}.weights returned shape {tuple(W.shape)}, expected {expected} (segments, tasks)"
            )
        return RuntimeError(f"{owner}.weights returned non-finite weights: {W}")


class GramianCombinerWithReduction(GramianCombiner):
    """A :class:`GramianCombiner` with the option ``reduction="sum"|"mean"``: weights on the scale
    of the sum of the ``T`` task gradients, or of their mean (``1/T`` of that).

    A subclass declares the field with its own default, validated (the paper's scale or the
    common code's: ``reduction: Literal["sum", "mean"] = reduction_field("mean")``), sets
    :attr:`unreduced` to the scale its :meth:`unreduced_weights` come in, and writes only those;
    :meth:`weights` applies the reduction, ``w * T`` from the mean's scale to the sum's and
    ``w / T`` the other way, and divides by :meth:`divisor`. Every built-in with a
    ``reduction`` option is one; the sharded path reaches the reduction through
    :meth:`GramianCombiner.checked_weights` like any other weighting.
    """

    reduction: Literal["sum", "mean"]
    #: The reduction whose scale :meth:`unreduced_weights` returns its weights in.
    unreduced: ClassVar[Literal["sum", "mean"]]

    @abc.abstractmethod
    def unreduced_weights(self, gramian: Tensor) -> Tensor:
        """Task weights ``[S, T]`` for Gramians ``[S, T, T]``, on :attr:`unreduced`'s scale."""

    def divisor(self) -> float:
        """A constant the method divides its update by (1: none), applied with the reduction in
        one rounding, as CAGrad's ``rescale`` is."""
        return 1.0

    def weights(self, gramian: Tensor) -> Tensor:
        """:meth:`unreduced_weights` on the scale ``reduction`` names, divided by :meth:`divisor`."""
        T = gramian.shape[1]
        weights = self.unreduced_weights(gramian)
        if self.unreduced == "sum" and self.reduction == "mean":
            return _scaled(weights, T * self.divisor(), divide=True)
        scale = (float(T) if self.reduction != self.unreduced else 1.0) / self.divisor()
        return weights if scale == 1.0 else _scaled(weights, scale, divide=False)


def _scaled(weights: Tensor, factor: float, divide: bool) -> Tensor:
    """``weights / factor`` or ``weights * factor``; on a plain float64 CPU tensor (what the
    built-ins return) through its numpy view, the same rounding without a torch dispatch (~10
    µs right after a numpy-heavy step, whose caches it finds cold)."""
    if weights.dtype == torch.float64 and weights.is_cpu and not weights.requires_grad:
        array = weights.numpy()
        return torch.from_numpy(array / factor if divide else array * factor)
    return weights / factor if divide else weights * factor


def _type_name(value: object) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _accepts_out(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the documented one
        return True
    return any(p.name == "out" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _unimplemented(cls: type) -> list[str]:
    """Abstract methods ``cls`` leaves unimplemented (ABCMeta only records them after
    ``__init_subclass__`` has run, so they are looked up here)."""
    names = {n for base in cls.__mro__[1:] for n in getattr(base, "__abstractmethods__", ())}
    return sorted(n for n in names if getattr(getattr(cls, n, None), "__isabstractmethod__", False))


def _signature(cls: type, method: str) -> str:
    try:
        names = list(inspect.signature(getattr(cls, method)).parameters)
    except (TypeError, ValueError):
        names = ["..."]
    return f"{method}({', '.join(names)})"


def _declared_by(cls: type, method: str) -> str:
    owner = next(k for k in cls.__mro__[1:] if method in k.__dict__)
    return f"{owner.__module__.split('.')[0]}.{owner.__qualname__}"


def _written_combine_with_info(cls: type) -> Callable[..., Combination]:
    for klass in cls.__mro__:
        function = klass.__dict__.get("combine_with_info")
        if function is None or function is _combination_from_combine:
            continue
        if getattr(function, "__isabstractmethod__", False):
            break
        return function
    raise TypeError(
        f"{cls.__qualname__}.combine called GradientCombiner.combine through super(), which "
        "has nothing to delegate to: compute the direction in combine itself"
    )


def _combination_from_combine(
    self: GradientCombiner, G: Tensor, segments: Sequence[int] | None = None, *, out: Tensor | None = None
) -> Combination:
    """The :class:`Combination` of a combiner that implements only ``combine`` (no Gramian or
    weights): ``G`` is validated first, the direction is checked for shape, copied into ``out``
    when ``combine`` did not write there, and a NaN/Inf in it is traced to the task row."""
    self._prepare(G, segments, out)
    owner = type(self).__qualname__
    if type(self)._combine_takes_out:
        direction = self.combine(G, segments, out=out)
    else:
        direction = self.combine(G, segments)
    if not isinstance(direction, Tensor):
        raise TypeError(
            f"{owner}.combine must return a torch.Tensor of shape ({G.shape[1]},), "
            f"got a {_type_name(direction)}"
        )
    if direction.shape != (G.shape[1],):
        raise ValueError(
            f"{owner}.combine returned shape {tuple(direction.shape)}; expected ({G.shape[1]},), "
            "one entry per column of G"
        )
    if out is not None and direction.data_ptr() != out.data_ptr():
        direction = out.copy_(direction)
    if not bool(torch.isfinite(direction.sum(dtype=torch.float64))):
        task = first_nonfinite_row(G)
        if task is not None:
            raise NonFiniteGradientError(task)
        if not bool(torch.isfinite(direction).all()):
            raise RuntimeError(f"{owner}.combine returned NaN or Inf for finite task gradients")
    return Combination(direction)
