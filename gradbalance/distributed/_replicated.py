"""Replicated parameters (DDP-style): average each task's row over the ranks, then combine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .._buffer import ParamsLike, TaskGradients, _named
from .._checks import check_segments
from .._combiner import Combination, GradientCombiner, GramianCombiner
from ._group import (
    all_gather,
    check_same_across_ranks,
    reduce_scatter,
    require_initialized,
    sync_combiner_state,
)
from ._sharded import sharded_combine

__all__ = ["ReplicatedTaskGradients"]


class ReplicatedTaskGradients(TaskGradients):
    """A :class:`~gradbalance.TaskGradients` buffer for data-parallel training with replicated
    parameters: ``combine`` first averages every task's row over the process group, then
    every rank combines the same averaged rows, so the update is the one a single process
    computes on the global batch and the parameters stay bitwise identical across ranks.

    One ``all_reduce`` per step carries the ``[T, P]`` rows, the gradients of the other
    parameters of ``replicated`` (task heads, averaged as DDP would) and one used-flag per head:
    a head whose ``.grad`` is ``None`` on some ranks contributes zeros, a head whose ``.grad`` is
    ``None`` on every rank keeps ``None`` (an optimizer skips it, as in one process).

    With ``DistributedDataParallel``, run the task forwards and backwards inside
    ``model.no_sync()`` so DDP's reducer stays out; this buffer does the one collective::

        model = DDP(model)
        buffer = ReplicatedTaskGradients(model.module.encoder, 3, replicated=model.module)
        with model.no_sync():
            for t, loss in enumerate(task_losses(model, batches)):
                with buffer.task(t):
                    loss.backward()
        buffer.combine(combiner)
        optimizer.step()

    A plain (unwrapped) model works the same when its weights start identical on every rank.
    Every rank must build the buffer at the same point (the constructor checks that the ranks'
    layouts agree, one tiny collective); the first ``combine`` with a combiner checks the
    segments and broadcasts the rank 0 combiner state (:func:`sync_combiner_state`).

    Args:
        params: the shared parameters whose per-task rows are kept (as for ``TaskGradients``).
        num_tasks: ``T``.
        replicated: the whole replicated model (or its parameters); the parameters that are not
            in ``params`` (heads) get their ``.grad`` averaged over the ranks.
        group: the process group (default: the world).
        dtype: dtype of the rows (default: the parameters').
        overlap: start row ``t``'s collective asynchronously as soon as ``task(t)`` exits, so
            it overlaps the next task's backward (``T + 1`` collectives instead of one; each
            task then gets one ``task()`` block per step).
        scatter: ZeRO-style combine: reduce-scatter the rows (rank ``r`` gets the average of a
            ``1/n`` column slice), combine that slice with :func:`sharded_combine` (one
            all-reduce of the float64 Gramians) and all-gather the combined vector. Each rank
            sends ``(n−1)/n·(T+1)·P`` floats instead of ``2(n−1)/n·T·P`` and does ``1/n`` of
            the combine's work; Gramian and ``columnwise`` combiners only.
    """

    def __init__(
        self,
        params: ParamsLike,
        num_tasks: int,
        *,
        replicated: ParamsLike = (),
        group: dist.ProcessGroup | None = None,
        dtype: torch.dtype | None = None,
        overlap: bool = False,
        scatter: bool = False,
    ) -> None:
        require_initialized("ReplicatedTaskGradients")
        self.group, self.overlap, self.scatter = group, overlap, scatter
        self._world, self._rank = dist.get_world_size(group), dist.get_rank(group)
        shared = {id(p) for _, p in _named(params)}
        others = [(n, p) for n, p in _named(replicated, allow_empty=True) if id(p) not in shared]
        self._heads = [p for _, p in others]
        self._head_sizes = [p.numel() for p in self._heads]
        super().__init__(params, num_tasks, dtype=dtype)
        for name, p in others:
            if p.device != self.rows.device or not p.is_floating_point():
                raise ValueError(
                    f"replicated parameter {name!r} is {p.dtype} on {p.device}; heads must be floating "
                    f"point on the rows' device ({self.rows.device})"
                )
        if scatter:
            chunk = self._padded // self._world
            self._local_rows = self.rows.new_zeros(num_tasks, chunk)
            self._local_result = self.rows.new_zeros(chunk)
            gathered = self.rows.new_zeros(self._padded)
            self.result = gathered[: self.rows.shape[1]]
            self._result_views = self._views(self.result)
            self._gathered = gathered
        # Every rank builds the buffer at the same point: check the layouts before any big
        # collective could pair mismatched tensors.
        check_same_across_ranks(
            [*self.rows.shape, len(self._heads), sum(self._head_sizes), int(scatter)],
            ["tasks", "shared size", "heads", "head size", "scatter"],
            "ReplicatedTaskGradients",
            group=group,
            device=self.rows.device,
        )
        self._synced: list[GradientCombiner] = []
        self._pending: list[dist.Work] = []  # overlap: rows whose collective is in flight

    def _allocate_rows(self, num_tasks: int, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        # One flat communication buffer: [T rows | head grads | one used-flag per head], each
        # row padded to a multiple of the world size when it is reduce-scattered.
        self._padded = -(-size // self._world) * self._world if self.scatter else size
        self._rows_end = num_tasks * self._padded
        extra = sum(self._head_sizes) + len(self._heads)
        self._flat = torch.zeros(self._rows_end + extra, dtype=dtype, device=device)
        return self._flat[: self._rows_end].view(num_tasks, self._padded)[:, :size]

    @property
    def heads(self) -> list[Tensor]:
        """The replicated parameters outside the buffer whose grads ``combine`` averages."""
        return list(self._heads)

    def bytes_per_step(self) -> int:
        """Payload bytes of ``combine``'s collectives on the rows, heads and flags (without
        the scatter mode's small Gramian all-reduce)."""
        rows_and_heads = self._flat.numel() * self._flat.element_size()
        return rows_and_heads + (
            self._gathered.numel() * self._gathered.element_size() if self.scatter else 0
        )

    @contextlib.contextmanager
    def task(self, t: int) -> Iterator[None]:
        if t < len(self._pending):
            raise RuntimeError(
                f"task({t}) entered again after its row's collective started (overlap=True sends "
                "row t when task(t) exits, in task order); finish each task's backwards in one "
                "task() block per step, or use overlap=False"
            )
        with super().task(t):
            yield
        if self.overlap and t == len(self._pending):
            # Rows go out in task order on every rank, so the collectives pair up even when
            # ranks run different subsets of tasks (the rest go out in combine).
            self._pending.append(self._send_row(t))

    def _send_row(self, t: int) -> dist.Work:
        row = self._flat[t * self._padded : (t + 1) * self._padded]
        if self.scatter:
            return reduce_scatter(self._local_rows[t], row, group=self.group, async_op=True)
        return dist.all_reduce(row, group=self.group, async_op=True)

    def _combine_rows(self, combiner: GradientCombiner, segments: Sequence[int] | None) -> Combination:
        if self.scatter and not (combiner.columnwise or isinstance(combiner, GramianCombiner)):
            self._pending = []  # every rank refuses the same combiner before any collective
            raise TypeError(
                f"combiner {getattr(combiner, 'name', type(combiner).__name__)!r} needs whole task "
                "rows (it is neither a GramianCombiner nor columnwise), but scatter=True gives each "
                "rank a column slice; build the buffer with scatter=False for it"
            )
        try:
            self._average()
        finally:
            self._pending = []
        if not any(c is combiner for c in self._synced):
            sizes = [sum(self._sizes)] if segments is None else [int(s) for s in segments]
            check_same_across_ranks(
                [len(sizes), sum((k + 1) * s for k, s in enumerate(sizes))],
                ["segments", "segment checksum"],
                "ReplicatedTaskGradients.combine",
                group=self.group,
                device=self.rows.device,
            )
            sync_combiner_state(combiner, self.group)
            self._synced.append(combiner)
        if self.scatter:
            return self._combine_scattered(combiner, segments)
        return super()._combine_rows(combiner, segments)

    def _combine_scattered(self, combiner: GradientCombiner, segments: Sequence[int] | None) -> Combination:
        chunk = self._local_rows.shape[1]
        local = _column_slice_segments(
            check_segments(segments, self.rows.shape[1]), self._rank * chunk, chunk
        )
        info = sharded_combine(combiner, self._local_rows, local, group=self.group, out=self._local_result)
        if info.direction.data_ptr() != self._local_result.data_ptr():
            self._local_result.copy_(info.direction)
        all_gather(self._gathered, self._local_result, group=self.group)
        return Combination(self.result, info.gramian, info.weights)

    def _average(self) -> None:
        """Average the rows (or this rank's column slice of them), and the heads' grads with
        their used-flags, over the group."""
        end = self._rows_end + sum(self._head_sizes)
        grads, flags = self._flat[self._rows_end : end], self._flat[end:]
        _pack_heads(self._heads, grads, flags)
        if self.overlap or self.scatter:
            works = self._pending + [self._send_row(t) for t in range(len(self._pending), self.num_tasks)]
            dist.all_reduce(self._flat[self._rows_end :], group=self.group)
            for work in works:
                work.wait()
        else:
            dist.all_reduce(self._flat, group=self.group)
        if self.scatter:
            self._local_rows.div_(self._world)
            grads.div_(self._world)
        else:
            self._flat[:end].div_(self._world)
        _unpack_heads(self._heads, grads, flags)


def _pack_heads(heads: list[Tensor], grads: Tensor, flags: Tensor) -> None:
    """Copy the heads' grads into ``grads`` (zeros for ``None``) and set their used-flags."""
    start = 0
    for k, p in enumerate(heads):
        n = p.numel()
        if p.grad is None:
            grads[start : start + n].zero_()
        else:
            grads[start : start + n].copy_(p.grad.flatten())
        flags[k] = p.grad is not None
        start += n


def _unpack_heads(heads: list[Tensor], grads: Tensor, flags: Tensor) -> None:
    """Give every head used on some rank its averaged grad; unused everywhere stays ``None``."""
    start = 0
    for p, used in zip(heads, (flags > 0).tolist()):
        n = p.numel()
        mean = grads[start : start + n].view_as(p)
        if used:
            if p.grad is None:
                p.grad = mean.to(p.dtype, copy=True)
            else:
                p.grad.copy_(mean)
        start += n


def _column_slice_segments(sizes: list[int], lo: int, width: int) -> list[int]:
    """The parts of consecutive segments of ``sizes`` inside columns ``[lo, lo + width)``; the
    zero padding columns past the last segment join it (zeros change no Gramian)."""
    local, start = [], 0
    for size in sizes:
        local.append(max(0, min(lo + width, start + size) - max(lo, start)))
        start += size
    local[-1] += width - sum(local)
    return local
