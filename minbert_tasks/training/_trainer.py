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
from minbert_tasks.distributed import SharedClock, World, evaluate_sharded
from minbert_tasks.evaluation import summary_score
from minbert_tasks.system import MultiTaskModel, build_model
from minbert_tasks.training._data import read_splits, sampler_tasks
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
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
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


class Trainer:
    """Trains one run (on one rank of ``world``: every rank builds one, rank 0 writes the files):
    :attr:`schedule` says which batches come when, :attr:`stepper` takes each optimizer step,
    :attr:`run` holds the files."""

    def __init__(self, config: TrainConfig, run_dir: str | os.PathLike[str], *, progress: bool = True,
                 world: World | None = None) -> None:
        self.config = config
        self.world = World() if world is None else world
        self.run = RunDirectory(run_dir, writer=self.world.is_main)
        self.progress = progress and self.world.is_main
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
        self._elapsed_before = 0.0  # training seconds of earlier fit() calls (restored on resume)
        self._clock = SharedClock(self.world)
        self._clock_start: float | None = None
        self.stepper = Stepper(config, self.model, self.setups, self.tokenizer, self.train_data, world=self.world,
                               device=self.device, autocast_dtype=self.autocast_dtype, lr_factor=self._lr_factor)
        self.position = Position()
        self.best_score: float | None = None
        self._loss_avg: dict[str, float] = {}

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def elapsed_seconds(self) -> float:
        """Training wall time so far, over this and earlier (resumed) sessions of the run (with
        several ranks, rank 0's as of the last clock sync)."""
        running = 0.0 if self._clock_start is None else self._clock() - self._clock_start
        return self._elapsed_before + running

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
            self.world, self.eval_model, self.setups, self.dev_data, self.tokenizer,
            batch_size=self.config.eval_batch_size, device=self.device, autocast_dtype=self.autocast_dtype,
        )
        score = summary_score(scores)
        p = self.position
        self._clock.sync()
        truncated = self.world.sum_int(self.tokenizer.truncated_total)
        self.run.log({"kind": "eval", "step": p.global_step, "phase": p.phase, "epoch": p.epoch,
                      "scores": scores, "overall": score, "truncated_inputs": truncated,
                      "elapsed_s": round(self.elapsed_seconds(), 1)})
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_score = score
            if self.world.is_main:
                self.run.save_best(self._model_state(scores, self.eval_model))
        return scores

    def _model_state(self, scores: dict[str, float] | None = None, model: torch.nn.Module | None = None) -> dict[str, Any]:
        return {
            "config": self.config.to_json(),
            "encoder_config": self.model.encoder.config.to_dict(),
            "model": (self.model if model is None else model).state_dict(),
            "scores": scores,
            "position": attrs.asdict(self.position),
        }

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` (rank 0; every rank calls it and checks first that the ranks'
        weights are bitwise identical)."""
        self.world.check_replicas(self.model)
        self._clock.sync()
        if not self.world.is_main:
            return
        self.run.save_checkpoint({
            **self._model_state(),
            **self.stepper.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "smart_rng": self.stepper.smart_generator.get_state(),
            "best_score": self.best_score,
            "loss_avg": self._loss_avg,
            "elapsed_seconds": self.elapsed_seconds(),
        })

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
        self._loss_avg = dict(state.get("loss_avg") or {})
        self._elapsed_before = float(state.get("elapsed_seconds", 0.0))
        self.position = Position(**state["position"])
        self.run.rewind_metrics(state.get("metrics_bytes"))

    def fit(self, on_step: Callable[[Trainer], None] | None = None) -> dict[str, float]:
        """Train to the end of the last phase (or ``max_steps`` / the time budget); returns the
        last dev scores. ``on_step`` runs after every optimizer step and checkpoint.
        ``deterministic`` turns torch's deterministic algorithms on for the call (a
        process-wide switch, restored on return; warn-only: an op without a deterministic
        kernel warns once instead of stopping a run)."""
        with _deterministic(self.config.deterministic):
            return self._fit(on_step)

    def _fit(self, on_step: Callable[[Trainer], None] | None) -> dict[str, float]:
        from tqdm.auto import tqdm

        phases = self.config.phases
        self._clock.sync()
        self._clock_start = self._clock()
        scores: dict[str, float] = {}
        bar = tqdm(total=self.total_steps, initial=self.position.global_step, disable=not self.progress,
                   desc="train", dynamic_ncols=True)
        stop = False
        while self.position.phase < len(phases) and not stop:
            while self.position.epoch < phases[self.position.phase].epochs and not stop:
                stop = self._train_epoch(bar, on_step)
                if not stop:
                    self.position.epoch += 1
                    self.position.step = 0
                    scores = self.evaluate()
                    self.save_checkpoint()
                    bar.set_description(f"train (dev {' '.join(f'{k} {v:.3f}' for k, v in scores.items())})")
            if not stop:
                self.position.phase += 1
                self.position.epoch = 0
        bar.close()
        if stop or not scores:
            scores = self.evaluate()
            self.save_checkpoint()
        self._elapsed_before, self._clock_start = self.elapsed_seconds(), None
        truncated = self.world.sum_int(self.tokenizer.truncated_total)
        if truncated and self.world.is_main:
            print(f"{truncated} inputs were truncated to their task's max_length "
                  "(raise tasks.<name>.max_length to keep more tokens)")
        return scores

    def _train_epoch(self, bar: Any, on_step: Callable[[Trainer], None] | None) -> bool:
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
            self._after_step(losses, info, bar)
            if on_step is not None:
                on_step(self)
            self._clock.sync()  # every rank then reads rank 0's clock: they stop together
            if budget_reason(config, p.global_step, self.elapsed_seconds()) is not None:
                return True
        return False

    def _after_step(self, losses: dict[str, float], info: gradbalance.Combination, bar: Any) -> None:
        config = self.config
        for task, value in losses.items():
            previous = self._loss_avg.get(task)
            self._loss_avg[task] = value if previous is None else 0.95 * previous + 0.05 * value
        bar.update(1)
        bar.set_postfix({t: f"{v:.3f}" for t, v in self._loss_avg.items()}, refresh=False)
        step = self.position.global_step
        if step % config.log_every == 0 or step == 1:
            self.run.log({"kind": "train", "step": step, "phase": self.position.phase, "epoch": self.position.epoch,
                          "tasks": self.task_names, "losses": losses, "lr": self.stepper.scheduler.get_last_lr()[0],
                          **gradient_stats(info), "elapsed_s": round(self.elapsed_seconds(), 1)})
        if config.eval_every is not None and step % config.eval_every == 0:
            self.evaluate()
        if config.checkpoint_every is not None and step % config.checkpoint_every == 0:
            self.save_checkpoint()
