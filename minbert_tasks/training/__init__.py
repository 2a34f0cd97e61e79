"""Multi-task training: every step fills one gradient row per task in a zero-copy
``gradbalance.TaskGradients`` buffer and combines the rows with a registry combiner.

One module per concern: the schedule (:class:`Schedule`: phases, sampler plans, the learning
rate, when to stop), the step (:class:`Stepper`: task losses, rows, combiner, optimizer), the
run directory (:class:`RunDirectory`: config, metrics log, checkpoints, resume), and the
:class:`Trainer` that drives them.

Run directory layout::

    RUN/config.json        the full configuration
    RUN/metrics.jsonl      one JSON object per log step ("train") and evaluation ("eval")
    RUN/checkpoint.pt      the latest full state (model, optimizer, schedule, combiner,
                           sampler position, RNG): ``--resume RUN`` continues from it
    RUN/best.pt            the model with the best dev score so far
    RUN/tokenizer/         the vocabulary, so the run directory is self-contained

Under ``torchrun`` the run is data-parallel (:mod:`minbert_tasks.distributed`): each rank trains
on its shard of every batch, rank 0 alone writes the run directory, and the files are the same
whatever the number of ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from minbert_tasks.config import TrainConfig
from minbert_tasks.distributed import DEFAULT_TIMEOUT_S, process_group
from minbert_tasks.system import save_tokenizer
from minbert_tasks.training._run_dir import RunDirectory, RunFinished, finished_reason
from minbert_tasks.training._schedule import Position, Schedule, layer_lr_scale
from minbert_tasks.training._step import Stepper, combiner_options
from minbert_tasks.training._trainer import Interrupted, Trainer, native_bf16

__all__ = [
    "Interrupted",
    "Position",
    "RunDirectory",
    "RunFinished",
    "Schedule",
    "Stepper",
    "Trainer",
    "combiner_options",
    "finished_reason",
    "layer_lr_scale",
    "native_bf16",
    "train",
]


def train(
    config: TrainConfig | None,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[Trainer], None] | None = None,
    dist_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, float]:
    """Train ``config`` into ``run_dir`` (or continue the run there with ``resume=True``).

    Under ``torchrun`` (or inside an initialized default process group) every rank calls this;
    rank 0 reads the checkpoint and writes the run directory, the others get its state."""
    run = RunDirectory(run_dir)
    with process_group(dist_timeout_s) as world:
        if resume:
            state, saved = world.from_main(run.resumable)
            trainer = Trainer(saved, run_dir, progress=progress, world=world)
            trainer.restore(state)
            del state
            p = trainer.position
            if world.is_main:
                print(
                    f"resuming {run.path} at phase {p.phase}, epoch {p.epoch}, step {p.step} "
                    f"(optimizer step {p.global_step})"
                    + (f" on {world.size} ranks" if world.size > 1 else "")
                )
        else:
            if config is None:
                raise ValueError("train() needs a config unless resume=True")
            world.from_main(lambda: run.start(config))
            trainer = Trainer(config, run_dir, progress=progress, world=world)
            if world.is_main:
                save_tokenizer(config, Path(run_dir))
        return trainer.fit(on_step)
