"""Data-parallel training under ``torchrun``: the process group, each rank's shard of a batch, a
clock every rank agrees on, rank-0 IO, sharded evaluation and a check that the replicas agree.

Every rank holds the whole model. Each step's batch of each task is split across the ``W`` ranks
by stride (rank ``r`` takes examples ``r, r+W, r+2W, ...`` of the batch, so length-grouped
batches give every rank similar lengths). A batch of ``N`` examples need not divide by ``W``:
rank ``r``'s loss (regularisers included, all batch means) is weighted by ``n_r·W/N``, so the
average over ranks of the task's gradient rows is the gradient of the whole batch's mean loss.
:class:`gradbalance.distributed.ReplicatedTaskGradients` averages the rows and the heads'
gradients over the group, and every rank combines the same rows into the same update.

A :class:`World` of size 1 (no ``torchrun``, or ``--nproc-per-node 1``) does nothing: every
method returns its input, and training runs exactly as in one process.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import attrs
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from minbert_tasks.evaluation import Example, evaluate, predict_outputs
from minbert_tasks.model import Tokenizer
from minbert_tasks.system import MultiTaskModel, TaskSetup

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SharedClock",
    "World",
    "end_worker",
    "evaluate_sharded",
    "launched_rank",
    "process_group",
]

T = TypeVar("T")

#: Seconds a collective waits for a missing peer before the job fails (``--dist-timeout``).
DEFAULT_TIMEOUT_S = 600.0


def end_worker(code: int) -> NoReturn:
    """End this torchrun worker with ``code`` once its output is flushed, skipping the
    interpreter's teardown: with torch 2.13 and gloo, a worker that had destroyed its process
    group still aborted there now and then (``terminate called without an active exception``,
    SIGABRT, after every file was written), which torchrun reports as a failed job."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def launched_rank() -> int:
    """This process's rank as ``torchrun`` set it (``RANK``), 0 outside ``torchrun``."""
    return int(os.environ.get("RANK", "0"))


@attrs.frozen
class World:
    """This process's place among the ranks of a data-parallel run (size 1: one process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    # -- sharding ----------------------------------------------------------------------------

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This rank's examples of ``batch`` (example indices): every ``size``-th from ``rank``."""
        return batch if self.size == 1 else batch[self.rank :: self.size]

    def shard_weight(self, shard: int, batch: int) -> float:
        """``n_r·W/N``: the factor that makes the mean over ranks of shard-mean losses the mean
        over the batch of ``N`` examples, whatever ``N mod W``."""
        return 1.0 if self.size == 1 else shard * self.size / batch

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: ``cuda:LOCAL_RANK`` for a CUDA run of several ranks."""
        if self.size == 1 or device.type != "cuda":
            return device
        if device.index is not None and device.index != self.local_rank:
            raise ValueError(
                f'device {device} under torchrun: each rank uses cuda:LOCAL_RANK; set device="cuda" or "auto"'
            )
        device = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(device)
        return device

    def reseed(self, seed: int, position: Sequence[int], generator: torch.Generator) -> None:
        """Restart torch's global RNG (dropout) and ``generator`` (SMART's noise) from
        ``(seed, position, rank)`` when there are several ranks, so each rank draws its own
        stream and a resumed run, on any number of ranks, draws the same ones again."""
        if self.size == 1:
            return
        words = np.random.SeedSequence([seed, *position, self.rank]).generate_state(2, np.uint64)
        torch.manual_seed(int(words[0]) >> 1)
        generator.manual_seed(int(words[1]) >> 1)

    # -- collectives (no-ops for one process) --------------------------------------------------

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` run on rank 0 alone and its result, or its exception, on every rank (one
        checkpoint read, the same state and the same error everywhere)."""
        if self.size == 1:
            return make()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = (True, make())
            except Exception as exc:  # re-raised on every rank below
                box[0] = (False, exc)
        dist.broadcast_object_list(box, src=0)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if self.size == 1:
            return
        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def batch_means(
        self, means: Mapping[str, float], shards: Mapping[str, int], batches: Mapping[str, int]
    ) -> dict[str, float]:
        """Each task's mean over its whole batch from each rank's mean over its shard."""
        if self.size == 1:
            return dict(means)
        names = list(means)
        sums = torch.tensor([means[n] * shards[n] for n in names], dtype=torch.float64)
        dist.all_reduce(sums)
        return {n: float(sums[k]) / batches[n] for k, n in enumerate(names)}

    def sum_int(self, value: int) -> int:
        if self.size == 1:
            return value
        total = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(total)
        return int(total)

    def gather_rows(self, local: Tensor, total: int) -> Tensor:
        """The ``total`` rows the ranks computed for their strided slices (rank ``r``: rows
        ``r, r+W, ...``), in their original order, on every rank."""
        if self.size == 1:
            return local
        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, local.detach().cpu())
        filled = [p for p in parts if len(p)]
        out = torch.empty((total, *filled[0].shape[1:]), dtype=filled[0].dtype)
        for r, part in enumerate(parts):
            if len(part):
                out[r :: self.size] = part
        return out.to(local.device)

    def check_replicas(self, module: nn.Module) -> None:
        """Raise if any rank's weights differ by a bit from rank 0's (a hash per rank)."""
        if self.size == 1:
            return
        digest = hashlib.blake2b(digest_size=16)
        for tensor in module.state_dict().values():
            digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes())
        digests: list[Any] = [None] * self.size
        dist.all_gather_object(digests, digest.hexdigest())
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise RuntimeError(
                f"the model on rank(s) {differ} differs from rank 0's: the ranks stopped "
                "training the same model (a rank-dependent step?)"
            )


class SharedClock:
    """Rank 0's ``time.monotonic()`` as of the last :meth:`sync` (which every rank calls at the
    same point), so the time budget, the time-fitted schedule and the decision to stop are the
    same on every rank; one process reads the live clock."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._now = 0.0  # read only after a sync

    def sync(self) -> None:
        if self.world.size > 1:
            now = torch.tensor([time.monotonic()], dtype=torch.float64)
            dist.broadcast(now, src=0)
            self._now = float(now)

    def __call__(self) -> float:
        return time.monotonic() if self.world.size == 1 else self._now


def evaluate_sharded(
    world: World,
    model: MultiTaskModel,
    setups: Mapping[str, TaskSetup],
    dev: Mapping[str, Sequence[Example]],
    tokenizer: Tokenizer,
    **kwargs: Any,
) -> dict[str, float]:
    """Each task's dev metric, every rank scoring a strided slice of the dev set and the outputs
    gathered so that every rank computes the metric of the whole set (as one process would);
    ``kwargs`` as for :func:`~minbert_tasks.evaluation.predict_outputs`."""
    if world.size == 1:
        return evaluate(model, setups, dev, tokenizer, **kwargs)[0]
    scores = {}
    for task, examples in dev.items():
        spec = setups[task].spec
        mine = list(examples[world.rank :: world.size])
        local = (
            predict_outputs(model, task, setups[task], mine, tokenizer, **kwargs) if mine else torch.empty(0)
        )
        outputs = world.gather_rows(local, len(examples))
        golds: list[Any] = [e.label for e in examples]
        scores[task] = float(spec.metric(spec.predict(outputs), golds))
    return scores


@contextlib.contextmanager
def process_group(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[World]:
    """The :class:`World` of this process: the default process group if one is already set up
    (left as it is), else one built from ``torchrun``'s environment (``gloo`` for CPU tensors,
    plus ``nccl`` for CUDA tensors where CUDA is available; a collective waiting longer than
    ``timeout_s`` for a peer fails the job) and torn down on exit; size 1 without ``torchrun``."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        yield World(dist.get_rank(), dist.get_world_size(), local_rank)
        return
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield World()
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield World(dist.get_rank(), dist.get_world_size(), local_rank)
        dist.barrier()  # no rank tears the group down while a peer still talks to it
    finally:
        dist.destroy_process_group()
