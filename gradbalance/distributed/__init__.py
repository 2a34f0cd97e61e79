"""Multi-task gradient balancing under ``torch.distributed``.

- :class:`ReplicatedTaskGradients`: data parallelism with replicated parameters (DDP): each
  task's row is averaged over the ranks, every rank combines the same rows.
- :func:`sync_combiner_state`: rank 0's combiner state on every rank.

See ``docs/distributed.md`` for the recipes and the traffic each mode costs.
"""

from ._group import sync_combiner_state
from ._replicated import ReplicatedTaskGradients

__all__ = ["ReplicatedTaskGradients", "sync_combiner_state"]
