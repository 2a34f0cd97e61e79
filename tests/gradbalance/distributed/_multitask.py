"""A small multi-task model and its training loop, run either in one process on the global
batch or on several ranks, each on its slice of every task's batch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

import gradbalance
from gradbalance import TaskGradients

TASKS = 3
GLOBAL_BATCH = 8
STEPS = 3
LR = 0.05


class Net(nn.Module):
    """A shared trunk, one head per task and one head no task uses (its grad stays ``None``)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 10), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(10, 2) for _ in range(TASKS + 1))

    def forward(self, t: int, x: torch.Tensor) -> torch.Tensor:
        return self.heads[t](self.trunk(x))


def make_model() -> Net:
    torch.manual_seed(0)
    return Net()


def batches(step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every task's global batch at ``step`` (targets pull the tasks apart, so they conflict)."""
    g = torch.Generator().manual_seed(1000 + step)
    out = []
    for t in range(TASKS):
        x = torch.randn(GLOBAL_BATCH, 6, generator=g)
        y = torch.randn(GLOBAL_BATCH, 2, generator=g) + 3 * (t - 1)
        out.append((x, y))
    return out


def shard(batch: tuple[torch.Tensor, torch.Tensor], rank: int, world: int) -> tuple[torch.Tensor, ...]:
    size = GLOBAL_BATCH // world
    return tuple(a[rank * size : (rank + 1) * size] for a in batch)


def combiners(seed: int = 0) -> dict[str, gradbalance.GradientCombiner]:
    return {
        "sum": gradbalance.create("sum"),
        "pcgrad": gradbalance.create("pcgrad", seed=seed),
        "gradvac": gradbalance.create("gradvac", seed=seed, beta=0.5),
        "upgrad": gradbalance.create("upgrad"),
    }


#: Per-module segments for GradVac (one EMA target matrix per layer), the whole vector otherwise.
SEGMENTS = {"gradvac": "module"}


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)


def train(
    model: nn.Module,
    forward: Callable,
    buffer: TaskGradients,
    combiner,
    name: str,
    steps: range,
    optimizer: torch.optim.Optimizer,
    rank: int = 0,
    world: int = 1,
    after_step: Callable[[], None] | None = None,
    no_sync: Callable = contextlib.nullcontext,
) -> list[gradbalance.Combination]:
    """SGD ``steps``; each rank trains on its slice of every task's global batch. Returns what
    every combine returned."""
    segments = buffer.segments(SEGMENTS[name]) if name in SEGMENTS else None
    infos = []
    for step in steps:
        optimizer.zero_grad()
        with no_sync():
            for t, batch in enumerate(batches(step)):
                x, y = shard(batch, rank, world)
                with buffer.task(t):
                    nn.functional.mse_loss(forward(t, x), y).backward()
        infos.append(buffer.combine(combiner, segments))
        optimizer.step()
        if after_step is not None:
            after_step()
    return infos


def reference(name: str, steps: int = STEPS) -> tuple[Net, list[gradbalance.Combination]]:
    """The same steps in one process on the whole batch."""
    model = make_model()
    buffer = TaskGradients(model.trunk, TASKS)
    infos = train(model, model, buffer, combiners()[name], name, range(steps), sgd(model))
    return model, infos
