"""Replicated parameters (DDP-style): average each task's row over the ranks, then combine."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .._buffer import ParamsLike, TaskGradients, _named
from .._combiner import Combination, GradientCombiner
from ._group import check_same_across_ranks, require_initialized, sync_combiner_state

__all__ = ["ReplicatedTaskGradients"]


class ReplicatedTaskGradients(TaskGradients):
    """A :class:`~gradbalance.TaskGradients` buffer for data-parallel training with replicated
    parameters: :meth:`combine` first averages every task's row over the process group, then
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
    The first :meth:`combine` with a combiner checks that every rank has the same layout and
    broadcasts the rank 0 combiner state (:func:`sync_combiner_state`).

    Args:
        params: the shared parameters whose per-task rows are kept (as for ``TaskGradients``).
        num_tasks: ``T``.
        replicated: the whole replicated model (or its parameters); the parameters that are not
            in ``params`` (heads) get their ``.grad`` averaged over the ranks.
        group: the process group (default: the world).
        dtype: dtype of the rows (default: the parameters').
    """

    def __init__(
        self,
        params: ParamsLike,
        num_tasks: int,
        *,
        replicated: ParamsLike = (),
        group: dist.ProcessGroup | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        require_initialized("ReplicatedTaskGradients")
        self.group = group
        shared = {id(p) for _, p in _named(params)}
        others = _named(replicated, allow_empty=True)
        self._head_names = [n for n, p in others if id(p) not in shared]
        self._heads = [p for n, p in others if id(p) not in shared]
        self._head_sizes = [p.numel() for p in self._heads]
        super().__init__(params, num_tasks, dtype=dtype)
        for name, p in zip(self._head_names, self._heads):
            if p.device != self.rows.device or not p.is_floating_point():
                raise ValueError(
                    f"replicated parameter {name!r} is {p.dtype} on {p.device}; heads must be floating "
                    f"point on the rows' device ({self.rows.device})"
                )
        self._synced: list[GradientCombiner] = []

    def _allocate_rows(self, num_tasks: int, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        # One flat communication buffer: [T·P rows | head grads | one used-flag per head].
        extra = sum(self._head_sizes) + len(self._heads)
        self._flat = torch.zeros(num_tasks * size + extra, dtype=dtype, device=device)
        return self._flat[: num_tasks * size].view(num_tasks, size)

    @property
    def heads(self) -> list[Tensor]:
        """The replicated parameters outside the buffer whose grads :meth:`combine` averages."""
        return list(self._heads)

    def bytes_per_step(self) -> int:
        """Bytes :meth:`combine` all-reduces each step: ``(T·P_shared + P_heads + heads)·itemsize``."""
        return self._flat.numel() * self._flat.element_size()

    def _combine_rows(self, combiner: GradientCombiner, segments: Sequence[int] | None) -> Combination:
        if not any(c is combiner for c in self._synced):
            self._first_combine(combiner, segments)
        self.all_reduce_()
        return super()._combine_rows(combiner, segments)

    def _first_combine(self, combiner: GradientCombiner, segments: Sequence[int] | None) -> None:
        sizes = [sum(self._sizes)] if segments is None else [int(s) for s in segments]
        layout = [*self.rows.shape, len(self._heads), sum(self._head_sizes), len(sizes),
                  sum((k + 1) * s for k, s in enumerate(sizes))]
        labels = ["tasks", "shared size", "heads", "head size", "segments", "segment checksum"]
        check_same_across_ranks(layout, labels, "ReplicatedTaskGradients.combine",
                                group=self.group, device=self.rows.device)
        sync_combiner_state(combiner, self.group)
        self._synced.append(combiner)

    def all_reduce_(self) -> None:
        """Average the rows and the heads' grads over the group now, in place (``combine`` does
        this; call it directly only to read averaged rows without combining)."""
        T, P = self.rows.shape
        offset = T * P
        grads = self._flat[offset : offset + sum(self._head_sizes)]
        flags = self._flat[offset + sum(self._head_sizes) :]
        start = 0
        for k, (p, n) in enumerate(zip(self._heads, self._head_sizes)):
            if p.grad is None:
                grads[start : start + n].zero_()
                flags[k] = 0
            else:
                grads[start : start + n].copy_(p.grad.flatten())
                flags[k] = 1
            start += n
        dist.all_reduce(self._flat, group=self.group)
        self._flat[: offset + sum(self._head_sizes)].div_(dist.get_world_size(self.group))
        used = (flags > 0).tolist()
        start = 0
        for p, n, u in zip(self._heads, self._head_sizes, used):
            mean = grads[start : start + n].view_as(p)
            if u and p.grad is None:
                p.grad = mean.to(p.dtype, copy=True)
            elif u:
                p.grad.copy_(mean)
            start += n

