"""The trainer: builds a run's model, data, schedule and step, and trains them through its
phases, evaluating and checkpointing into the run directory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import attrs
import torch

import gradbalance
from minbert_tasks.config import TrainConfig
from minbert_tasks.distributed import World, evaluate_sharded
from minbert_tasks.evaluation import summary_score
from minbert_tasks.system import MultiTaskModel, build_model
from minbert_tasks.training._clock import TrainingClock
from minbert_tasks.training._data import read_splits, sampler_tasks
from minbert_tasks.training._progress import Progress
from minbert_tasks.training._run_dir import RunDirectory
from minbert_tasks.training._schedule import Position, Schedule, budget_reason
from minbert_tasks.training._step import Stepper, gradient_stats

__all__ = ["Interrupted", "Trainer", "native_bf16"]


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device``: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX through oneDNN (elsewhere CPU bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without the oneDNN query
            return False
    return False


class Interrupted(Exception):
    """Raised by a step callback to stop training (used by tests to simulate a crash)."""


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """torch's deterministic algorithms (warn-only) on for the block where ``enabled``, the
    process-wide switch restored after it."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _device(name: str, world: World) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return world.device(torch.device(name))


def _model_state(
    config: TrainConfig, model: MultiTaskModel, position: Position, scores: dict[str, float] | None = None
) -> dict[str, Any]:
    """What every checkpoint holds: the config, the encoder's shape, ``model``'s weights, the
    dev ``scores`` they reached (``best.pt``) and where training stood."""
    return {
        "config": config.to_json(),
        "encoder_config": model.encoder.config.to_dict(),
        "model": model.state_dict(),
        "scores": scores,
        "position": attrs.asdict(position),
    }


class Trainer:
    """Trains one run (on one rank of ``world``: every rank builds one, rank 0 writes the files):
    :attr:`schedule` says which batches come when, :attr:`stepper` takes each optimizer step,
    :attr:`run` holds the files."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | os.PathLike[str],
        *,
        progress: bool = True,
        world: World | None = None,
    ) -> None:
        self.config = config
        self.world = World() if world is None else world
        self.run = RunDirectory(run_dir, writer=self.world.is_main)
        self.progress = Progress(progress and self.world.is_main)
        self.device = _device(config.device, self.world)
        use_bf16 = config.amp == "bf16" or (config.amp == "auto" and native_bf16(self.device))
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None

        self.model, self.tokenizer, self.setups = build_model(config)
        self.model.to(self.device)
        self.world.broadcast_module(self.model)
        self.task_names = [t.name for t in config.tasks]
        self.train_data, self.dev_data = read_splits(config, self.setups, report=self.world.is_main)
        self.schedule = Schedule(config, sampler_tasks(config, self.setups, self.train_data, self.tokenizer))
        self.total_steps = self.schedule.total_steps
        self.clock = TrainingClock(self.world)
        self.stepper = Stepper(
            config,
            self.model,
            self.setups,
            self.tokenizer,
            self.train_data,
            world=self.world,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            lr_factor=self._lr_factor,
        )
        self.position = Position()
        self.best_score: float | None = None

    @property
    def run_dir(self) -> Path:
        """The run directory's path."""
        return self.run.path

    def elapsed_seconds(self) -> float:
        """Training wall time so far, over this and earlier (resumed) sessions of the run (with
        several ranks, rank 0's as of the last clock sync)."""
        return self.clock.seconds()

    def _lr_factor(self, step: int) -> float:
        return self.schedule.lr_factor(step, self.elapsed_seconds)

    @property
    def eval_model(self) -> MultiTaskModel:
        """The weights that are scored, kept as ``best.pt`` and predicted with: the moving
        average when ``ema_decay`` is set, else the trained weights themselves."""
        return self.model if self.stepper.ema is None else cast(MultiTaskModel, self.stepper.ema.module)

    def evaluate(self) -> dict[str, float]:
        """Score the dev sets, log the scores and keep ``best.pt`` when the summary improves."""
        scores = evaluate_sharded(
            self.world,
            self.eval_model,
            self.setups,
            self.dev_data,
            self.tokenizer,
            batch_size=self.config.eval_batch_size,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
        )
        score = summary_score(scores)
        self.clock.sync()
        truncated = self.world.sum_int(self.tokenizer.truncated_total)
        self._log("eval", scores=scores, overall=score, truncated_inputs=truncated)
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_score = score
            if self.world.is_main:
                self.run.save_best(_model_state(self.config, self.eval_model, self.position, scores))
        return scores

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` (rank 0; every rank calls it and checks first that the ranks'
        weights are bitwise identical)."""
        self.world.check_replicas(self.model)
        self.clock.sync()
        if not self.world.is_main:
            return
        self.run.save_checkpoint(
            {
                **_model_state(self.config, self.model, self.position),
                **self.stepper.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "smart_rng": self.stepper.smart_generator.get_state(),
                "best_score": self.best_score,
                "loss_avg": self.progress.loss_avg,
                "elapsed_seconds": self.elapsed_seconds(),
            }
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from the ``checkpoint.pt`` state ``state``: weights, optimizer, schedule,
        combiner, RNGs and position; the metrics log is cut back to the checkpoint."""
        self.model.load_state_dict(state["model"])
        self.stepper.load_state_dict(state)
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.stepper.smart_generator.set_state(state["smart_rng"])
        self.best_score = state["best_score"]
        self.progress.loss_avg = dict(state.get("loss_avg") or {})
        self.clock.before = float(state.get("elapsed_seconds", 0.0))
        self.position = Position(**state["position"])
        self.run.rewind_metrics(state.get("metrics_bytes"))

    def _log(self, kind: str, **fields: Any) -> None:
        """One line of ``metrics.jsonl``: what, where in the run, ``fields``, and when."""
        p = self.position
        where = {"kind": kind, "step": p.global_step, "phase": p.phase, "epoch": p.epoch}
        self.run.log({**where, **fields, "elapsed_s": round(self.elapsed_seconds(), 1)})

    def fit(self, on_step: Callable[[Trainer], None] | None = None) -> dict[str, float]:
        """Train to the end of the last phase (or ``max_steps`` / the time budget); returns the
        last dev scores. ``on_step`` runs after every optimizer step and checkpoint.
        ``deterministic`` turns torch's deterministic algorithms on for the call (a
        process-wide switch, restored on return; warn-only: an op without a deterministic
        kernel warns once instead of stopping a run)."""
        with _deterministic(self.config.deterministic):
            return self._fit(on_step)

    def _fit(self, on_step: Callable[[Trainer], None] | None) -> dict[str, float]:
        phases = self.config.phases
        self.clock.start()
        scores: dict[str, float] = {}
        self.progress.open(self.total_steps, self.position.global_step)
        stop = False
        while self.position.phase < len(phases) and not stop:
            while self.position.epoch < phases[self.position.phase].epochs and not stop:
                stop = self._train_epoch(on_step)
                if not stop:
                    self.position.epoch += 1
                    self.position.step = 0
                    scores = self.evaluate()
                    self.save_checkpoint()
                    self.progress.scores(scores)
            if not stop:
                self.position.phase += 1
                self.position.epoch = 0
        self.progress.close()
        if stop or not scores:
            scores = self.evaluate()
            self.save_checkpoint()
        self.clock.stop()
        truncated = self.world.sum_int(self.tokenizer.truncated_total)
        if truncated and self.world.is_main:
            print(
                f"{truncated} inputs were truncated to their task's max_length "
                "(raise tasks.<name>.max_length to keep more tokens)"
            )
        return scores

    def _train_epoch(self, on_step: Callable[[Trainer], None] | None) -> bool:
        """Train the rest of the current epoch from the current position; whether the run must
        stop (``max_steps`` reached or the time budget spent) before the epoch's end."""
        config, p = self.config, self.position
        plan = self.schedule.plan(p.phase, p.epoch)
        pending = 0
        for index in range(p.step, len(plan)):
            # Optimizer steps start at multiples of grad_accumulation (resumes too); the last
            # one of an epoch may gather fewer micro-steps.
            group = min(config.grad_accumulation, len(plan) - (index - pending))
            self.world.reseed(config.seed, (p.phase, p.epoch, index), self.stepper.smart_generator)
            losses = self.stepper.micro_step(plan[index], group)
            pending += 1
            if pending < group:
                continue
            pending = 0
            info = self.stepper.optimizer_step()
            p.step = index + 1
            p.global_step += 1
            self._after_step(losses, info)
            if on_step is not None:
                on_step(self)
            self.clock.sync()  # every rank then reads rank 0's clock: they stop together
            if budget_reason(config, p.global_step, self.elapsed_seconds()) is not None:
                return True
        return False

    def _after_step(self, losses: dict[str, float], info: gradbalance.Combination) -> None:
        config = self.config
        self.progress.step(losses)
        step = self.position.global_step
        if step % config.log_every == 0 or step == 1:
            lr = self.stepper.scheduler.get_last_lr()[0]
            self._log("train", tasks=self.task_names, losses=losses, lr=lr, **gradient_stats(info))
        if config.eval_every is not None and step % config.eval_every == 0:
            self.evaluate()
        if config.checkpoint_every is not None and step % config.checkpoint_every == 0:
            self.save_checkpoint()
