"""Sharded parameters (FSDP2 / ZeRO-style): rank r holds the columns ``G[:, shard_r]``; one
all-reduce of the float64 partial Gramians gives every rank the same task weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Shard

from .._buffer import ParamsLike, TaskGradients
from .._checks import check_out, check_segments, check_task_matrix
from .._combiner import Combination, GradientCombiner, GramianCombiner
from .._gramian import apply_weights, segment_gramians
from ..errors import NonFiniteGradientError
from ._group import check_same_across_ranks, require_initialized, sync_combiner_state

__all__ = ["ShardedTaskGradients", "sharded_combine"]


def sharded_combine(
    combiner: GradientCombiner,
    G_local: Tensor,
    local_segments: Sequence[int] | None = None,
    *,
    group: dist.ProcessGroup | None = None,
    out: Tensor | None = None,
) -> Combination:
    """Combine a column-sharded task matrix: this rank holds ``G[:, shard]`` and gets the
    combined update's same columns.

    For a :class:`~gradbalance.GramianCombiner` the Gramian of a segment is the sum of its
    shards' Gramians: each rank forms its float64 partial ``[S, T, T]`` Gramians, one
    ``all_reduce(SUM)`` (``S·T·T`` float64) gives every rank the full ones, every rank computes
    the same weights from them and applies them to its own columns. A ``columnwise`` combiner
    (sum, mean) runs on the local columns with no communication. Any other combiner needs whole
    rows and is refused (gather ``G`` and call its ``combine`` instead).

    Args:
        combiner: the combiner (its state must be the same on every rank, see
            :func:`sync_combiner_state`).
        G_local: ``[T, P_local]``, this rank's columns.
        local_segments: this rank's part of every segment (same count on every rank; sizes may
            be 0 where a segment has no column here); ``None`` is one segment.
        group: the process group sharing the columns (default: the world).
        out: optional preallocated ``[P_local]`` result.

    Returns:
        The local columns of the direction, with the full (all-reduced) Gramians and the weights.
    """
    require_initialized("sharded_combine")
    check_task_matrix(G_local)
    check_out(out, G_local)
    sizes = check_segments(local_segments, G_local.shape[1], name="local_segments", allow_empty=True)
    if combiner.columnwise:
        return combiner.combine_with_info(G_local, None, out=out)
    if not isinstance(combiner, GramianCombiner):
        raise TypeError(
            f"combiner {getattr(combiner, 'name', type(combiner).__name__)!r} "
            f"({type(combiner).__qualname__}) is neither a GramianCombiner nor columnwise, so it "
            "cannot combine sharded columns; write it as a GramianCombiner (weights from the "
            "Gramian), set columnwise = True if its result at a column depends on that column "
            "only, or all-gather G and call its combine on the whole rows"
        )
    K = all_reduce_gramians(G_local, sizes, group=group)
    W = combiner.checked_weights(K)
    return Combination(apply_weights(G_local, W, sizes, out), K, W)


def all_reduce_gramians(
    G_local: Tensor, sizes: Sequence[int], *, group: dist.ProcessGroup | None = None
) -> Tensor:
    """The full ``[S, T, T]`` float64 CPU Gramians of column-sharded segments: local partial
    Gramians, summed over ``group`` in float64 (one all-reduce).

    A NaN/Inf row on any rank raises :class:`NonFiniteGradientError` on every rank (the rank
    that found it marks the Gramian instead of raising before the collective).
    """
    T = G_local.shape[0]
    if G_local.shape[1] == 0:
        K = torch.zeros(len(sizes), T, T, dtype=torch.float64)
    else:
        try:
            K = segment_gramians(G_local, sizes)
        except NonFiniteGradientError as error:
            K = torch.zeros(len(sizes), T, T, dtype=torch.float64)
            K[error.segment or 0, error.task, error.task] = float("nan")
    reduced = K.to(G_local.device)
    dist.all_reduce(reduced, group=group)
    K = reduced.cpu()
    diagonal = K.diagonal(dim1=-2, dim2=-1)
    if not bool(torch.isfinite(diagonal).all()):
        segment, task = (~torch.isfinite(diagonal)).nonzero()[0].tolist()
        raise NonFiniteGradientError(task, segment if len(sizes) > 1 else None)
    return K


class ShardedTaskGradients(TaskGradients):
    """A :class:`~gradbalance.TaskGradients` buffer over parameters sharded by
    ``torch.distributed.fsdp.fully_shard`` (FSDP2): row ``t`` holds this rank's shard of task
    ``t``'s gradient, which FSDP2's reduce-scatter accumulates straight into it (zero-copy, as
    in one process), and ``combine`` runs :func:`sharded_combine`::

        for layer in model.encoder.layers:
            fully_shard(layer)
        fully_shard(model)
        buffer = ShardedTaskGradients(model.encoder, num_tasks=3)
        for t, loss in enumerate(task_losses(model, batches)):
            with buffer.task(t):
                loss.backward()            # FSDP2 reduce-scatters into row t
        buffer.combine(combiner, buffer.segments("module"))
        optimizer.step()                   # heads: FSDP2's own sharded grads, as usual

    ``segments`` gives this rank's part of each segment (0 where a segment has no element
    here). The first ``combine`` with a combiner checks that the ranks agree on the number
    of tasks and segments and broadcasts rank 0's combiner state.

    Args:
        params: the shared parameters, DTensors sharded on one mesh dimension (``Shard``).
        num_tasks: ``T``.
        group: the group over which the parameters are sharded (default: the mesh's group for
            a 1-D mesh; pass the shard dimension's group for a 2-D mesh).
        dtype: dtype of the rows (default: the parameters').
    """

    def __init__(
        self,
        params: ParamsLike,
        num_tasks: int,
        *,
        group: dist.ProcessGroup | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        require_initialized("ShardedTaskGradients")
        super().__init__(params, num_tasks, dtype=dtype)
        # Every parameter is a DTensor (_local_shape checked); equal meshes count once.
        meshes = list(dict.fromkeys(p.device_mesh for p in self._params if isinstance(p, DTensor)))
        if group is None:
            mesh = meshes[0]
            if len(meshes) > 1 or mesh.ndim != 1:
                raise ValueError(
                    "the shared parameters are sharded over a multi-dimensional mesh or several "
                    "meshes; pass group= (the process group the shards are spread over)"
                )
            group = mesh.get_group()
        self.group = group
        self._synced: list[GradientCombiner] = []

    def _local_shape(self, p: Tensor) -> torch.Size:
        if not isinstance(p, DTensor) or not any(isinstance(pl, Shard) for pl in p.placements):
            raise TypeError(
                f"ShardedTaskGradients needs parameters sharded by fully_shard (DTensors with a "
                f"Shard placement), got a {type(p).__name__} of shape {tuple(p.shape)}; call "
                "fully_shard on the model first, or use ReplicatedTaskGradients for replicated ones"
            )
        return p.to_local().shape

    def _as_grad(self, p: Tensor, view: Tensor) -> Tensor:
        assert isinstance(p, DTensor)
        return DTensor.from_local(
            view, p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride()
        )

    def _local(self, grad: Tensor) -> Tensor:
        return grad.to_local() if isinstance(grad, DTensor) else grad

    def _combine_rows(self, combiner: GradientCombiner, segments: Sequence[int] | None) -> Combination:
        if not any(c is combiner for c in self._synced):
            count = 1 if segments is None else len(segments)
            check_same_across_ranks(
                [self.num_tasks, count],
                ["tasks", "segments"],
                "ShardedTaskGradients.combine",
                group=self.group,
                device=self.rows.device,
            )
            sync_combiner_state(combiner, self.group)
            self._synced.append(combiner)
        return sharded_combine(combiner, self.rows, segments, group=self.group, out=self.result)
