"""Multi-task gradient balancing under ``torch.distributed``.

- :class:`ReplicatedTaskGradients`: data parallelism with replicated parameters (DDP): each
  task's row is averaged over the ranks, every rank combines the same rows (or, with
  ``scatter=True``, its column slice of them, and the result is all-gathered).
- :class:`ShardedTaskGradients` (FSDP2's ``fully_shard``) and :func:`sharded_combine` (any
  column-sharded ``[T, P_local]`` matrix): one all-reduce of the float64 ``[S, T, T]`` partial
  Gramians, identical weights on every rank, each applied to its own columns.
- :func:`sync_combiner_state`: rank 0's combiner state on every rank.
- :func:`count_collectives` (bytes the collectives move, measured) and :func:`step_traffic`
  (the per-step formulas of each mode).

See ``docs/distributed.md`` for the recipes and the traffic each mode costs.
"""

from ._group import sync_combiner_state
from ._replicated import ReplicatedTaskGradients
from ._sharded import ShardedTaskGradients, all_reduce_gramians, sharded_combine
from ._traffic import CollectiveTraffic, StepTraffic, count_collectives, step_traffic

__all__ = [
    "CollectiveTraffic",
    "ReplicatedTaskGradients",
    "ShardedTaskGradients",
    "StepTraffic",
    "all_reduce_gramians",
    "count_collectives",
    "sharded_combine",
    "step_traffic",
    "sync_combiner_state",
]
