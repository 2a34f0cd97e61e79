"""Zero-copy per-task gradients: autograd accumulates each task's gradient straight into one row
of a preallocated ``[T, P]`` buffer."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from . import _step_guard
from ._combiner import Combination, GradientCombiner

__all__ = ["TaskGradients"]

ParamsLike = nn.Module | Iterable[Tensor] | Iterable[tuple[str, Tensor]]


def _named(params: ParamsLike, allow_empty: bool = False) -> list[tuple[str, Tensor]]:
    if isinstance(params, nn.Module):
        items: list = list(params.named_parameters())
    else:
        items = list(params)
    named: list[tuple[str, Tensor]] = []
    seen: set[int] = set()
    for k, item in enumerate(items):
        name, p = item if isinstance(item, tuple) else (f"param{k}", item)
        if not isinstance(p, Tensor):
            raise TypeError(f"shared parameter {name!r} is a {type(p).__name__}, not a tensor")
        if not p.requires_grad:
            continue  # frozen: never receives a gradient
        if id(p) in seen:
            continue  # tied weights appear once
        seen.add(id(p))
        named.append((name, p))
    if not named and not allow_empty:
        raise ValueError("TaskGradients needs at least one shared parameter with requires_grad")
    return named


def _check_no_outside_gradient(
    names: list[str], grads: list[Tensor | None], mine: list[Tensor], where: str
) -> None:
    """Raise if a shared ``.grad`` (its local values, ``grads``) holds a non-zero gradient the
    buffer did not put there (it is ``None`` between tasks and a view of the combined result,
    ``mine``, after combine)."""
    for name, g, view in zip(names, grads, mine):
        if g is None or g.data_ptr() == view.data_ptr() or not bool(g.any()):
            continue
        raise RuntimeError(
            f"shared parameter {name!r} already holds a gradient at {where}: a backward() "
            "ran outside every `with buffer.task(t):` block, and the task rows would drop "
            "it. Backpropagate that loss inside a task's block (it joins that task's row), "
            "give it a task of its own, or backpropagate it after buffer.combine() (it adds "
            "to the combined gradient, unbalanced); call optimizer.zero_grad() before the "
            "step's first task()"
        )


class TaskGradients:
    """A ``[T, P]`` buffer holding one gradient row per task over a set of shared parameters.

    Inside ``with buffer.task(t):`` every shared parameter's ``.grad`` is a view of row ``t``, so
    ``loss_t.backward()`` accumulates there directly — no clone per task per parameter, and
    micro-batch accumulation (several backwards under the same task) just works. After
    :meth:`combine`, ``.grad`` is a view of the combined ``[P]`` result, so any ``torch.optim``
    optimizer steps on it. Task-specific parameters (heads) are not in the buffer; their grads
    accumulate as usual.

    Rows are zeroed at the first ``task()`` of each step (after construction, after
    :meth:`combine`, even one that raised, or after :meth:`zero_`), so a parameter that task
    ``t`` never reaches reads 0 in row ``t``, and a task that sat out the step has an all-zero
    row (every built-in treats a zero row as absent).

    Mistakes that would otherwise pass in silence raise ``RuntimeError``:

    - ``optimizer.step()`` (any ``torch.optim`` optimizer holding a shared parameter) while task
      gradients wait to be combined: the shared parameters would not move. Call
      :meth:`combine` first, or :meth:`zero_` to drop the step's task gradients.
    - A non-zero gradient in a shared ``.grad`` when a ``task()`` starts or at :meth:`combine`:
      a ``backward()`` outside every task block (an extra loss), which the rows would drop.
      Put that loss inside a task's block (it joins that task's row), give it a task of its
      own, or backpropagate it after :meth:`combine` (it then adds to the combined gradient,
      unbalanced, as heads' gradients do).

    Example::

        buffer = TaskGradients(model.encoder, num_tasks=3)
        combiner = gradbalance.create("pcgrad", seed=0)
        for batches in loader:
            optimizer.zero_grad()
            for t, batch in enumerate(batches):
                with buffer.task(t):
                    loss_fn[t](model, batch).backward()
            buffer.combine(combiner)
            optimizer.step()

    Args:
        params: the shared parameters — a module, tensors, or ``(name, tensor)`` pairs.
            Frozen parameters are left out; tied parameters appear once.
        num_tasks: ``T``.
        dtype: dtype of the rows (default: the parameters' dtype, which must then agree).
    """

    def __init__(self, params: ParamsLike, num_tasks: int, *, dtype: torch.dtype | None = None):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        named = _named(params)
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        devices = {p.device for p in self._params}
        if len(devices) > 1:
            raise ValueError(f"shared parameters live on several devices: {sorted(map(str, devices))}")
        if dtype is None:
            dtypes = {p.dtype for p in self._params}
            if len(dtypes) > 1:
                raise ValueError(f"shared parameters have several dtypes {dtypes}; pass dtype=")
            dtype = dtypes.pop()
        if any(p.dtype != dtype for p in self._params):
            raise ValueError(
                f"the buffer dtype {dtype} must match the parameters' dtype "
                "(autograd only accumulates into a .grad of the parameter's dtype)"
            )
        self._shapes = [self._local_shape(p) for p in self._params]
        self._sizes = [math.prod(shape) for shape in self._shapes]
        device = devices.pop()
        total = sum(self._sizes)
        self.rows = self._allocate_rows(num_tasks, total, dtype, device)
        """The ``[T, P]`` task-gradient matrix (row ``t`` holds task ``t``'s gradient)."""
        self.result = torch.zeros(total, dtype=dtype, device=device)
        """The ``[P]`` combined gradient that the parameters' ``.grad`` point at after combine."""
        self._row_views = [self._views(self.rows[t]) for t in range(num_tasks)]
        self._result_views = self._views(self.result)
        self._stale = False  # rows hold the previous step's gradients
        self._active: int | None = None

    def _views(self, flat: Tensor) -> list[Tensor]:
        views, start = [], 0
        for shape, n in zip(self._shapes, self._sizes):
            views.append(flat[start : start + n].view(shape))
            start += n
        return views

    # Hooks for subclasses whose parameters are not plain local tensors (sharded DTensors) or
    # whose rows live inside a larger communication buffer.

    def _allocate_rows(self, num_tasks: int, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The zeroed ``[T, P]`` row matrix."""
        return torch.zeros(num_tasks, size, dtype=dtype, device=device)

    def _local_shape(self, p: Tensor) -> torch.Size:
        """Shape of the part of ``p`` whose gradient this process stores."""
        return p.shape

    def _as_grad(self, p: Tensor, view: Tensor) -> Tensor:
        """What to assign to ``p.grad`` so that autograd accumulates into ``view``."""
        return view

    def _local(self, grad: Tensor) -> Tensor:
        """The locally stored values of a ``.grad`` (inverse of :meth:`_as_grad`)."""
        return grad

    def _local_grads(self) -> list[Tensor | None]:
        return [None if p.grad is None else self._local(p.grad) for p in self._params]

    @property
    def num_tasks(self) -> int:
        return self.rows.shape[0]

    @property
    def names(self) -> list[str]:
        """Names of the shared parameters, in buffer order."""
        return list(self._names)

    @property
    def parameters(self) -> list[Tensor]:
        return list(self._params)

    def segments(self, by: str | Callable[[str], str] = "tensor") -> list[int]:
        """Segment sizes for per-group combiners (GradVac granularity).

        Args:
            by: ``"tensor"`` (one segment per parameter tensor), ``"module"`` (parameters whose
                names share everything before the last dot), ``"whole"`` (one segment), or a
                function from parameter name to group key. Consecutive parameters with the same
                key form one segment.
        """
        if by == "whole":
            return [sum(self._sizes)]
        if by == "tensor":
            return list(self._sizes)
        if by == "module":
            key: Callable[[str], str] = lambda name: name.rpartition(".")[0]
        elif callable(by):
            key = by
        else:
            raise ValueError(
                f"segments(by=...) must be 'tensor', 'module', 'whole' or a function, got {by!r}"
            )
        sizes: list[int] = []
        last: object = object()
        for name, n in zip(self._names, self._sizes):
            k = key(name)
            if sizes and k == last:
                sizes[-1] += n
            else:
                sizes.append(n)
            last = k
        return sizes

    def zero_(self) -> None:
        """Zero every row now (dropping task gradients not yet combined)."""
        self.rows.zero_()
        self._stale = False
        _step_guard.release(self)

    @contextlib.contextmanager
    def task(self, t: int) -> Iterator[None]:
        """Route shared-parameter gradients of the enclosed backward passes into row ``t``."""
        if not 0 <= t < self.num_tasks:
            raise IndexError(f"task index {t} out of range for {self.num_tasks} tasks")
        if self._active is not None:
            raise RuntimeError(f"task({t}) entered inside task({self._active}); tasks do not nest")
        _check_no_outside_gradient(self._names, self._local_grads(), self._result_views, f"task({t})")
        if self._stale:
            self.zero_()
        views = self._row_views[t]
        for p, v in zip(self._params, views):
            p.grad = self._as_grad(p, v)
        self._active = t
        try:
            yield
        finally:
            self._active = None
            self._collect(t, views)
            _step_guard.hold(self, self._params)

    def _collect(self, t: int, views: list[Tensor]) -> None:
        for name, p, v in zip(self._names, self._params, views):
            g = p.grad
            if g is None:
                raise RuntimeError(
                    f"the gradient of shared parameter {name!r} was cleared inside task({t}) "
                    "(zero_grad(set_to_none=True)?); call optimizer.zero_grad() before the tasks"
                )
            local = self._local(g)
            if local.data_ptr() != v.data_ptr():
                # Autograd replaced .grad instead of accumulating in place (create_graph=True,
                # or someone assigned it): keep the values, in the row.
                v.copy_(local)
            p.grad = None

    def combine(self, combiner: GradientCombiner, segments: Sequence[int] | None = None) -> Combination:
        """Combine the rows into :attr:`result` and point every shared ``.grad`` at it.

        The next ``task()`` starts a new step (zero rows) even if the combiner raised, so a step
        rejected for a NaN/Inf gradient can be skipped; the rows stay readable until then. A
        gradient from outside the tasks raises before anything changes.
        """
        _check_no_outside_gradient(self._names, self._local_grads(), self._result_views, "combine()")
        self._stale = True
        _step_guard.release(self)
        info = self._combine_rows(combiner, segments)
        if info.direction.data_ptr() != self.result.data_ptr():
            self.result.copy_(info.direction)  # a plugin that ignored out=
        for p, v in zip(self._params, self._result_views):
            p.grad = self._as_grad(p, v)
        return info

    def _combine_rows(self, combiner: GradientCombiner, segments: Sequence[int] | None) -> Combination:
        """Combine :attr:`rows` (into :attr:`result` where the combiner honours ``out=``)."""
        return combiner.combine_with_info(self.rows, segments, out=self.result)

    def __repr__(self) -> str:
        T, P = self.rows.shape
        return (
            f"{type(self).__name__}(num_tasks={T}, params={len(self._params)}, size={P}, "
            f"dtype={self.rows.dtype}, device={self.rows.device})"
        )
