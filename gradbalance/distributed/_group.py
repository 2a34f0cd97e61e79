"""Process-group helpers shared by the replicated and sharded modes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import torch
import torch.distributed as dist

from .._combiner import GradientCombiner

__all__ = ["check_same_across_ranks", "require_initialized", "sync_combiner_state"]


def require_initialized(what: str) -> None:
    """Raise a clear error when ``torch.distributed`` has no default process group."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{what} needs torch.distributed: call torch.distributed.init_process_group(...) first "
            "(torchrun sets the environment it reads); in one process use gradbalance.TaskGradients"
        )


def group_src(group: dist.ProcessGroup | None) -> int:
    """Global rank of the group's rank 0 (the source of broadcasts)."""
    return 0 if group is None else dist.get_global_rank(group, 0)


def check_same_across_ranks(
    values: Sequence[int],
    labels: Sequence[str],
    where: str,
    *,
    group: dist.ProcessGroup | None = None,
    device: torch.device | str = "cpu",
) -> None:
    """All-gather a few integers and raise the same ``ValueError`` on every rank when any rank
    disagrees with rank 0 (one tiny collective; call it once, before the big ones)."""
    mine = torch.tensor(list(values), dtype=torch.int64, device=device)
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, mine, group=group)
    table = torch.stack(gathered).cpu()
    differs = (table != table[0]).any(0)
    if bool(differs.any()):
        rows = ", ".join(f"{label}: {table[:, k].tolist()}" for k, label in enumerate(labels) if differs[k])
        raise ValueError(
            f"{where}: the ranks disagree ({rows}, listed by rank); every rank must build it over "
            "the same model with the same number of tasks and segments"
        )


def sync_combiner_state(combiner: GradientCombiner, group: dist.ProcessGroup | None = None) -> None:
    """Give every rank the group rank 0's combiner state (one broadcast of its ``state_dict``).

    Stateful combiners (PCGrad's generator, GradVac's EMA targets) then evolve identically on
    every rank, because every rank feeds them identical Gramians. This also repairs a combiner
    built with ``seed=None`` (fresh entropy, different on each rank) or a checkpoint loaded on
    rank 0 only.
    """
    # Other ranks' entries are placeholders that the broadcast replaces.
    payload = [combiner.state_dict() if dist.get_rank(group) == 0 else {}]
    dist.broadcast_object_list(payload, src=group_src(group), group=group)
    if dist.get_rank(group) != 0:
        combiner.load_state_dict(payload[0])


@overload
def reduce_scatter(
    output: torch.Tensor, input: torch.Tensor, *, group: dist.ProcessGroup | None, async_op: Literal[True]
) -> dist.Work: ...


@overload
def reduce_scatter(
    output: torch.Tensor,
    input: torch.Tensor,
    *,
    group: dist.ProcessGroup | None,
    async_op: Literal[False] = False,
) -> None: ...


def reduce_scatter(
    output: torch.Tensor, input: torch.Tensor, *, group: dist.ProcessGroup | None, async_op: bool = False
) -> dist.Work | None:
    """Sum ``input`` over the group; this rank gets its contiguous ``1/n`` piece in ``output``
    (``reduce_scatter_single`` where torch has it, ``reduce_scatter_tensor`` before)."""
    single = getattr(dist, "reduce_scatter_single", None)
    if single is not None:
        return single(output, input, group=group, async_op=async_op)
    return dist.reduce_scatter_tensor(output, input, group=group, async_op=async_op)


def all_gather(output: torch.Tensor, input: torch.Tensor, *, group: dist.ProcessGroup | None) -> None:
    """Concatenate every rank's ``input`` into ``output`` (``all_gather_single`` where torch
    has it, ``all_gather_into_tensor`` before)."""
    single = getattr(dist, "all_gather_single", None)
    if single is not None:
        single(output, input, group=group)
    else:
        dist.all_gather_into_tensor(output, input, group=group)
