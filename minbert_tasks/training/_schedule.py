"""The schedule of a run: its phases, each epoch's sampler plan, the steps they make, the
learning-rate factor (warmup, decay, layer-wise scale) and when to stop."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from minbert_tasks import plugins
from minbert_tasks.config import TrainConfig
from minbert_tasks.samplers import Plan, TaskData

__all__ = ["Position", "Schedule", "budget_reason", "layer_lr_scale", "stop_reason"]


@attrs.define
class Position:
    """Where training stands: phase, epoch within it, sampler steps consumed in that epoch,
    and optimizer steps overall. A plan is a pure function of (seed, epoch), so this is all a
    resumed run needs to continue the data stream exactly."""

    phase: int = 0
    epoch: int = 0
    step: int = 0
    global_step: int = 0


def layer_lr_scale(name: str, decay: float, num_layers: int) -> float:
    """ξ^depth for the encoder parameter ``name`` (layer-wise learning-rate decay, Howard &
    Ruder 2018; Sun et al. 2019): the top layer and the pooler 1, each layer below one more
    factor of ξ = ``decay``, the embeddings ξ^num_layers."""
    if name.startswith("encoder.embeddings."):
        return decay**num_layers
    match = re.match(r"encoder\.encoder\.layer\.(\d+)\.", name)
    return decay ** (num_layers - 1 - int(match[1])) if match else 1.0


def stop_reason(config: TrainConfig, position: Position, elapsed_seconds: float) -> str | None:
    """Why a run at ``position`` after ``elapsed_seconds`` of training has nothing left to
    train, or ``None``: every phase done (the last epoch's checkpoint is saved before the phase
    index advances), or :func:`budget_reason`."""
    phases = config.phases
    last = len(phases) - 1
    if position.phase > last or (position.phase == last and position.epoch >= phases[last].epochs):
        return "every phase is done"
    return budget_reason(config, position.global_step, elapsed_seconds)


def budget_reason(config: TrainConfig, global_step: int, elapsed_seconds: float) -> str | None:
    """Why a run at optimizer step ``global_step`` after ``elapsed_seconds`` of training must
    stop before its phases end, or ``None``: ``max_steps`` reached or the time budget spent."""
    if config.max_steps is not None and global_step >= config.max_steps:
        return f"max_steps={config.max_steps} reached"
    budget = config.time_budget_minutes
    if budget is not None and elapsed_seconds > budget * 60:
        return f"its time budget of {budget:g} minutes is spent"
    return None


class Schedule:
    """The phases of ``config`` over the training sets ``tasks`` (every task of the run, as the
    sampler sees it): which plan each epoch follows and how many optimizer steps that makes."""

    def __init__(self, config: TrainConfig, tasks: Mapping[str, TaskData]) -> None:
        missing = [t.name for t in config.tasks if t.name not in tasks]
        if missing:
            raise ValueError(f"no training data for task(s) {', '.join(missing)}")
        self.config = config
        self.tasks = dict(tasks)
        total = sum(self.steps_in_phase(k) * p.epochs for k, p in enumerate(config.phases))
        #: Optimizer steps of the whole run (``max_steps`` caps it).
        self.total_steps = total if config.max_steps is None else min(total, config.max_steps)

    def phase_tasks(self, phase: int) -> list[str]:
        """The tasks trained in ``phase``: its own list, else every task of the run."""
        tasks = self.config.phases[phase].tasks
        return list(tasks) if tasks else [t.name for t in self.config.tasks]

    def sampler(self, phase: int) -> Any:
        """A fresh sampler of ``phase`` (a registry plugin built with its options)."""
        config = self.config.phases[phase]
        return plugins.get_sampler(config.sampler)(**config.sampler_options)

    def plan(self, phase: int, epoch: int) -> Plan:
        """The micro-steps of ``epoch`` of ``phase``: a pure function of the run's seed, the
        phase and the epoch."""
        tasks = [self.tasks[name] for name in self.phase_tasks(phase)]
        return self.sampler(phase).plan(tasks, epoch, self.config.seed + 1000 * phase)

    def steps_in_phase(self, phase: int) -> int:
        """Optimizer steps per epoch of ``phase``: its micro-steps in groups of
        ``grad_accumulation`` (the last group of an epoch may be short)."""
        return math.ceil(len(self.plan(phase, 0)) / self.config.grad_accumulation)

    def lr_factor(self, step: int, elapsed_seconds: Callable[[], float]) -> float:
        """The learning rate's factor at optimizer step ``step``: linear warmup over the first
        ``warmup`` fraction of the steps, then linear or cosine decay to 0 (or constant). With
        ``fit_schedule_to_budget`` (and not ``deterministic``) the decay follows
        max(step progress, time progress); ``elapsed_seconds`` is read only then."""
        config = self.config
        warmup = int(config.warmup * self.total_steps)
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        fitted = config.fit_schedule_to_budget and not config.deterministic  # no clock then
        if fitted and config.time_budget_minutes is not None:
            spent = elapsed_seconds() / (60 * config.time_budget_minutes)
            progress = max(progress, min(1.0, spent))
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)
