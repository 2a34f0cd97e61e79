"""One multi-task training step on a MiniLM-size encoder, timed in several layouts; run by
``benchmarks/test_distributed_step.py`` under ``torchrun --nproc-per-node 2``.

Layouts, interleaved round by round in the same two processes (a rank that sits a layout out
waits in a barrier, which sleeps in a socket read):

- ``1 proc x 2 threads``: rank 0 alone, 2 torch threads, the whole global batch, TaskGradients.
- ``ddp summed loss``: 2 ranks x 1 thread, DistributedDataParallel on the summed task losses
  (the floor: P floats all-reduced, no per-task rows).
- ``replicated``: 2 x 1, ReplicatedTaskGradients (one all-reduce of T·P + heads).
- ``replicated overlap``: the same with each row's all-reduce started as its task ends.
- ``replicated scatter``: rows reduce-scattered, each rank combines a column slice, all-gather.
- ``sharded fsdp2``: 2 x 1, fully_shard per encoder layer and root, ShardedTaskGradients.

Writes a JSON file of per-step seconds (each round's median), combine seconds and payload bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

import gradbalance
from gradbalance.distributed import ReplicatedTaskGradients, ShardedTaskGradients, count_collectives
from minbert_tasks.distributed import end_worker
from minbert_tasks.model import BertConfig, MinBert

TASKS = 3
#: all-MiniLM-L6-v2's shape (22.7M parameters); the smoke size is a 2-layer, 32-wide encoder.
MINILM = BertConfig(
    vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
)
TINY = BertConfig(
    vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
)


class MultiTask(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = MinBert(config)
        self.heads = nn.ModuleList(nn.Linear(config.hidden_size, 2) for _ in range(TASKS))

    def forward(self, t: int, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.heads[t](self.encoder.pool(self.encoder(ids, mask)))


class Summed(nn.Module):
    """The summed task losses in one forward (what plain DDP trains)."""

    def __init__(self, model: MultiTask) -> None:
        super().__init__()
        self.model = model

    def forward(self, data: list) -> torch.Tensor:
        return sum(task_loss(self.model, t, batch) for t, batch in enumerate(data))


def task_loss(forward, t: int, batch: tuple) -> torch.Tensor:
    ids, mask, y = batch
    return nn.functional.mse_loss(forward(t, ids, mask), y)


def global_batches(config: BertConfig, batch: int, length: int, step: int) -> list[tuple]:
    g = torch.Generator().manual_seed(step)
    out = []
    for _ in range(TASKS):
        ids = torch.randint(1, config.vocab_size, (batch, length), generator=g)
        out.append((ids, torch.ones(batch, length, dtype=torch.long), torch.randn(batch, 2, generator=g)))
    return out


def local(batches: list[tuple], rank: int, world: int) -> list[tuple]:
    size = batches[0][0].shape[0] // world
    return [tuple(a[rank * size : (rank + 1) * size] for a in b) for b in batches]


class Layout:
    """A model, its optimizer and one training step in one layout."""

    def __init__(self, name: str, config: BertConfig, rank: int, world: int) -> None:
        self.name, self.rank, self.world = name, rank, world
        self.model = MultiTask(config)
        self.combiner = gradbalance.create("pcgrad", seed=0)
        self.forward = self.model
        self.no_sync = contextlib.nullcontext
        if name == "1 proc x 2 threads":
            self.buffer = gradbalance.TaskGradients(self.model.encoder, TASKS)
        elif name == "ddp summed loss":
            self.ddp = DistributedDataParallel(Summed(self.model))
            self.ddp.register_comm_hook(None, allreduce_hook)  # Python hook: counted
        elif name.startswith("replicated"):
            self.buffer = ReplicatedTaskGradients(
                self.model.encoder,
                TASKS,
                replicated=self.model,
                overlap=name.endswith("overlap"),
                scatter=name.endswith("scatter"),
            )
        else:
            for layer in self.model.encoder.encoder.layer:
                fully_shard(layer)
            fully_shard(self.model)
            self.buffer = ShardedTaskGradients(self.model.encoder, TASKS)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4)
        self.combine_seconds = 0.0

    def step(self, batches: list[tuple]) -> None:
        self.optimizer.zero_grad()
        if self.name == "ddp summed loss":
            self.ddp(local(batches, self.rank, self.world)).backward()
        else:
            data = batches if self.world == 1 else local(batches, self.rank, self.world)
            for t, batch in enumerate(data):
                with self.buffer.task(t):
                    task_loss(self.forward, t, batch).backward()
            start = time.perf_counter()
            self.buffer.combine(self.combiner)
            self.combine_seconds = time.perf_counter() - start
        self.optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo", timeout=timedelta(seconds=900))
    rank, world = dist.get_rank(), dist.get_world_size()
    config, batch, length = (MINILM, 16, 64) if args.full else (TINY, 4, 16)
    names = [
        "1 proc x 2 threads",
        "ddp summed loss",
        "replicated",
        "replicated overlap",
        "replicated scatter",
        "sharded fsdp2",
    ]
    layouts = {name: Layout(name, config, rank, 1 if name.startswith("1 proc") else world) for name in names}
    steps: dict[str, list[float]] = {n: [] for n in names}
    combines: dict[str, list[float]] = {n: [] for n in names}
    payload: dict[str, float] = {}
    sent: dict[str, float] = {}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, layout in layouts.items():
            alone = name.startswith("1 proc")
            torch.set_num_threads(2 if alone else 1)
            dist.barrier()
            if alone and rank != 0:
                continue
            times, combine = [], []
            with count_collectives() as traffic:
                for k in range(args.steps):
                    batches = global_batches(config, batch, length, round_ * args.steps + k)
                    start = time.perf_counter()
                    layout.step(batches)
                    times.append(time.perf_counter() - start)
                    combine.append(layout.combine_seconds)
            if round_:
                steps[name].append(statistics.median(times))
                combines[name].append(statistics.median(combine))
                payload[name] = traffic.total / args.steps
                sent[name] = traffic.ring_bytes(world) / args.steps
    torch.set_num_threads(1)
    dist.barrier()
    if rank == 0:
        params = sum(p.numel() for p in layouts["replicated"].model.encoder.parameters())
        with open(args.out, "w") as f:
            json.dump(
                {
                    "steps": steps,
                    "combine": combines,
                    "payload": payload,
                    "sent": sent,
                    "world": world,
                    "shared params": params,
                    "hidden": config.hidden_size,
                    "config": str(config),
                },
                f,
                indent=1,
            )
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
    end_worker(0)  # skips the teardown where a gloo worker now and then aborts after its work
