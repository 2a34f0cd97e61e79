"""Replicated parameters (DDP-style): average each task's row over the ranks, then combine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

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
    Every rank must build the buffer at the same point (the constructor checks that the ranks'
    layouts agree, one tiny collective); the first :meth:`combine` with a combiner checks the
    segments and broadcasts the rank 0 combiner state (:func:`sync_combiner_state`).

    Args:
        params: the shared parameters whose per-task rows are kept (as for ``TaskGradients``).
        num_tasks: ``T``.
        replicated: the whole replicated model (or its parameters); the parameters that are not
            in ``params`` (heads) get their ``.grad`` averaged over the ranks.
        group: the process group (default: the world).
        dtype: dtype of the rows (default: the parameters').
        overlap: all-reduce row ``t`` asynchronously as soon as ``task(t)`` exits, so it
            overlaps the next task's backward (``T + 1`` collectives instead of one; each task
            then gets one ``task()`` block per step).
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
    ) -> None:
        require_initialized("ReplicatedTaskGradients")
        self.group = group
        self.overlap = overlap
        shared = {id(p) for _, p in _named(params)}
        others = [(n, p) for n, p in _named(replicated, allow_empty=True) if id(p) not in shared]
        self._head_names = [n for n, _ in others]
        self._heads = [p for _, p in others]
        self._head_sizes = [p.numel() for p in self._heads]
        super().__init__(params, num_tasks, dtype=dtype)
        for name, p in others:
            if p.device != self.rows.device or not p.is_floating_point():
                raise ValueError(
                    f"replicated parameter {name!r} is {p.dtype} on {p.device}; heads must be floating "
                    f"point on the rows' device ({self.rows.device})"
                )
        # Every rank builds the buffer at the same point: check the layouts before any big
        # collective could pair mismatched tensors.
        check_same_across_ranks(
            [*self.rows.shape, len(self._heads), sum(self._head_sizes)],
            ["tasks", "shared size", "heads", "head size"],
            "ReplicatedTaskGradients", group=group, device=self.rows.device,
        )
        self._synced: list[GradientCombiner] = []
        self._pending: list[dist.Work] = []  # overlap: rows whose all-reduce is in flight

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

    @contextlib.contextmanager
    def task(self, t: int) -> Iterator[None]:
        if t < len(self._pending):
            raise RuntimeError(
                f"task({t}) entered again after its row's all-reduce started (overlap=True launches "
                "row t when task(t) exits, in task order); finish each task's backwards in one "
                "task() block per step, or use overlap=False"
            )
        with super().task(t):
            yield
        if self.overlap and t == len(self._pending):
            # Rows go out in task order on every rank, so the collectives pair up even when
            # ranks run different subsets of tasks (the rest go out in combine).
            self._pending.append(dist.all_reduce(self.rows[t], group=self.group, async_op=True))

    def _combine_rows(self, combiner: GradientCombiner, segments: Sequence[int] | None) -> Combination:
        try:
            self._average()
        finally:
            self._pending = []
        if not any(c is combiner for c in self._synced):
            sizes = [sum(self._sizes)] if segments is None else [int(s) for s in segments]
            check_same_across_ranks([len(sizes), sum((k + 1) * s for k, s in enumerate(sizes))],
                                    ["segments", "segment checksum"], "ReplicatedTaskGradients.combine",
                                    group=self.group, device=self.rows.device)
            sync_combiner_state(combiner, self.group)
            self._synced.append(combiner)
        return super()._combine_rows(combiner, segments)

    def _average(self) -> None:
        """Average the rows, and the heads' grads with their used-flags, over the group."""
        T, P = self.rows.shape
        grads = self._flat[T * P : T * P + sum(self._head_sizes)]
        flags = self._flat[T * P + sum(self._head_sizes) :]
        start = 0
        for k, (p, n) in enumerate(zip(self._heads, self._head_sizes)):
            if p.grad is None:
                grads[start : start + n].zero_()
                flags[k] = 0
            else:
                grads[start : start + n].copy_(p.grad.flatten())
                flags[k] = 1
            start += n
        if self.overlap:
            works = self._pending + [dist.all_reduce(self.rows[t], group=self.group, async_op=True)
                                     for t in range(len(self._pending), T)]
            dist.all_reduce(self._flat[T * P :], group=self.group)
            for work in works:
                work.wait()
        else:
            dist.all_reduce(self._flat, group=self.group)
        self._flat[: T * P + sum(self._head_sizes)].div_(dist.get_world_size(self.group))
        start = 0
        for p, n, used in zip(self._heads, self._head_sizes, (flags > 0).tolist()):
            mean = grads[start : start + n].view_as(p)
            if used and p.grad is None:
                p.grad = mean.to(p.dtype, copy=True)
            elif used:
                p.grad.copy_(mean)
            start += n
