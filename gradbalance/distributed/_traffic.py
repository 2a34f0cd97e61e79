"""Traffic: count what the collectives move, and the per-step formulas of each mode."""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import torch.distributed as dist
import torch.distributed.distributed_c10d as c10d
from torch import Tensor

__all__ = ["CollectiveTraffic", "StepTraffic", "count_collectives", "step_traffic"]


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _list_bytes(ts: list[Tensor]) -> int:
    return sum(_nbytes(t) for t in ts)


#: Collective name -> bytes of the whole vector it operates on, from its arguments: the reduced
#: vector for all-reduce, the input for reduce-scatter, the output for all-gather.
_PAYLOAD: dict[str, Callable[..., int]] = {
    "all_reduce": lambda tensor, *a, **k: _nbytes(tensor),
    "broadcast": lambda tensor, *a, **k: _nbytes(tensor),
    "reduce_scatter_tensor": lambda output, input, *a, **k: _nbytes(input),
    "reduce_scatter_single": lambda output, input, *a, **k: _nbytes(input),
    "reduce_scatter": lambda output, input_list, *a, **k: _list_bytes(input_list),
    "all_gather_into_tensor": lambda output_tensor, *a, **k: _nbytes(output_tensor),
    "all_gather_single": lambda output_tensor, *a, **k: _nbytes(output_tensor),
    "all_gather": lambda tensor_list, *a, **k: _list_bytes(tensor_list),
}

#: Bytes a rank sends per payload byte in a ring algorithm over ``n`` ranks.
_RING = {"all_reduce": lambda n: 2 * (n - 1) / n, "broadcast": lambda n: 1.0}
_GATHER_LIKE = lambda n: (n - 1) / n  # noqa: E731  (reduce-scatter and all-gather)


@attrs.define(eq=False)  # blocks are told apart by identity
class CollectiveTraffic:
    """Calls and payload bytes per collective, counted by :func:`count_collectives`.

    Payload is the size of the whole vector a collective works on (the reduced vector of an
    all-reduce, the input of a reduce-scatter, the output of an all-gather); :meth:`ring_bytes`
    turns it into the bytes each rank sends with ring algorithms.
    """

    calls: dict[str, int] = attrs.field(factory=dict)
    payload: dict[str, int] = attrs.field(factory=dict)

    @property
    def total(self) -> int:
        """Payload bytes of every counted collective."""
        return sum(self.payload.values())

    def ring_bytes(self, world_size: int) -> float:
        """Bytes each rank sends with ring algorithms (all-reduce ``2(n−1)/n``, reduce-scatter
        and all-gather ``(n−1)/n`` of the payload)."""
        return sum(_RING.get(name, _GATHER_LIKE)(world_size) * b for name, b in self.payload.items())

    def add(self, name: str, nbytes: int) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.payload[name] = self.payload.get(name, 0) + nbytes

    def reset(self) -> None:
        self.calls.clear()
        self.payload.clear()


_active: list[CollectiveTraffic] = []


class _Depth(threading.local):
    """A collective implemented by another (reduce_scatter_tensor over reduce_scatter_single in
    recent torch) counts once, as the outermost call: ``depth`` is 1 inside a counted one."""

    depth = 0


_inside = _Depth()


def _counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _active or _inside.depth:
            return original(*args, **kwargs)
        nbytes = _PAYLOAD[name](*args, **kwargs)
        for traffic in _active:
            traffic.add(name, nbytes)
        _inside.depth = 1
        try:
            return original(*args, **kwargs)
        finally:
            _inside.depth = 0

    wrapper.__wrapped_collective__ = original  # type: ignore[attr-defined]
    return wrapper


@contextlib.contextmanager
def count_collectives() -> Iterator[CollectiveTraffic]:
    """Count the collectives issued through ``torch.distributed``'s Python functions in this
    process while the block runs: this module's, FSDP2's (all-gather, reduce-scatter) and
    DDP's when it runs a Python communication hook (register
    ``torch.distributed.algorithms.ddp_comm_hooks.default_hooks.allreduce_hook`` to count plain
    DDP; its built-in C++ all-reduce is invisible here). Blocks may nest.
    """
    traffic = CollectiveTraffic()
    installed = not _active and _install()
    _active.append(traffic)
    try:
        yield traffic
    finally:
        _active.remove(traffic)
        if installed:
            _uninstall()


def _install() -> bool:
    for name in _PAYLOAD:
        original = getattr(c10d, name)
        wrapper = _counting(name, original)
        setattr(c10d, name, wrapper)  # calls inside torch (all_gather_object -> all_gather)
        setattr(dist, name, wrapper)  # calls through torch.distributed.<name>
    return True


def _uninstall() -> None:
    for name in _PAYLOAD:
        original = getattr(c10d, name).__wrapped_collective__
        setattr(c10d, name, original)
        setattr(dist, name, original)


@attrs.frozen
class StepTraffic:
    """Payload bytes per optimizer step of one mode, split by collective kind."""

    all_reduce: float = 0.0
    all_gather: float = 0.0
    reduce_scatter: float = 0.0
    small_all_reduce: float = 0.0
    """The Gramian all-reduce of the sharded mode: latency-bound, a few kilobytes."""

    @property
    def total(self) -> float:
        return self.all_reduce + self.all_gather + self.reduce_scatter + self.small_all_reduce

    def sent(self, world_size: int) -> float:
        """Bytes each rank sends with ring algorithms: ``2(n−1)/n`` of an all-reduce's payload,
        ``(n−1)/n`` of an all-gather's or reduce-scatter's."""
        n = world_size
        return (
            (2 * (self.all_reduce + self.small_all_reduce) + self.all_gather + self.reduce_scatter)
            * (n - 1)
            / n
        )

    def seconds(self, world_size: int, bandwidth: float, latency: float) -> float:
        """Communication time: :meth:`sent` at ``bandwidth`` bytes/s per rank, plus a tree
        latency ``2·⌈log2 n⌉·latency`` for the small all-reduce."""
        small = 2 * math.ceil(math.log2(world_size)) * latency if self.small_all_reduce else 0.0
        return self.sent(world_size) / bandwidth + small


def step_traffic(
    mode: str, *, shared: int, heads: int, tasks: int, segments: int = 1, itemsize: int = 4
) -> StepTraffic:
    """Bytes each optimizer step moves in ``mode``, for ``shared`` shared and ``heads`` head
    parameters, ``tasks`` tasks and ``segments`` Gramian segments.

    - ``"ddp"``: plain DDP on one summed loss, an all-reduce of every gradient (``P`` floats).
    - ``"replicated"``: :class:`ReplicatedTaskGradients`, one all-reduce of
      ``T·P_shared + P_heads`` floats (plus one flag per head, ignored here).
    - ``"scatter"``: :class:`ReplicatedTaskGradients` with ``scatter=True``: the rows
      reduce-scattered, the heads all-reduced, the Gramians all-reduced, the combined vector
      all-gathered.
    - ``"fsdp"``: FSDP2 on one summed loss: parameters all-gathered for the forward and again
      for the backward (``reshard_after_forward=True``), gradients reduce-scattered.
    - ``"sharded"``: :class:`ShardedTaskGradients`, FSDP2's traffic once per task (a forward
      and a backward each) plus the ``S·T·T`` float64 Gramian all-reduce.
    """
    P = shared + heads
    if mode == "ddp":
        return StepTraffic(all_reduce=P * itemsize)
    if mode == "replicated":
        return StepTraffic(all_reduce=(tasks * shared + heads) * itemsize)
    if mode == "scatter":
        return StepTraffic(
            all_reduce=heads * itemsize,
            reduce_scatter=tasks * shared * itemsize,
            all_gather=shared * itemsize,
            small_all_reduce=segments * tasks * tasks * 8,
        )
    if mode == "fsdp":
        return StepTraffic(all_gather=2 * P * itemsize, reduce_scatter=P * itemsize)
    if mode == "sharded":
        return StepTraffic(
            all_gather=2 * tasks * P * itemsize,
            reduce_scatter=tasks * P * itemsize,
            small_all_reduce=segments * tasks * tasks * 8,
        )
    raise ValueError(f"mode must be 'ddp', 'replicated', 'scatter', 'fsdp' or 'sharded', got {mode!r}")
