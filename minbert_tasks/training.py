"""Multi-task training: every step fills one gradient row per task in a zero-copy
``gradbalance.TaskGradients`` buffer and combines the rows with a registry combiner.

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

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor

import gradbalance
from gradbalance.regularizers import BregmanProximalPoint, SmoothnessRegularizer
from minbert_tasks import plugins
from minbert_tasks.checkpointing import MODEL_KEYS, RESUME_KEYS, atomic_save, atomic_write_text, load
from minbert_tasks.config import ConfigError, TrainConfig, config_from_json
from minbert_tasks.distributed import DEFAULT_TIMEOUT_S, SharedClock, World, evaluate_sharded, process_group
from minbert_tasks.evaluation import summary_score
from minbert_tasks.samplers import TaskData
from minbert_tasks.system import TaskSetup, build_model, save_tokenizer
from minbert_tasks.tasks import inputs_to

__all__ = ["Position", "RunFinished", "Trainer", "finished_reason", "train"]


@attrs.define
class Position:
    """Where training stands: phase, epoch within it, sampler steps consumed in that epoch,
    and optimizer steps overall. A plan is a pure function of (seed, epoch), so this is all a
    resumed run needs to continue the data stream exactly."""

    phase: int = 0
    epoch: int = 0
    step: int = 0
    global_step: int = 0


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


def _warm_ema(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor | int], None]:
    """EMA update for ``AveragedModel`` whose decay warms up as min(decay, (1+n)/(10+n)) after n
    updates. torch's ``get_ema_multi_avg_fn`` applies the full decay from the first step, so at
    0.998 the average still holds ~1/3 of the first (untrained-head) weights after 500 steps."""

    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor | int) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(averaged, current, weight)  # W ← W + w·(θ − W)

    return update


class Interrupted(Exception):
    """Raised by a step callback to stop training (used by tests to simulate a crash)."""


def combiner_options(config: TrainConfig) -> dict[str, Any]:
    """``config.combiner_options``, plus ``seed = config.seed`` for a combiner that takes a seed
    the config leaves unset (PCGrad's and GradVac's visiting orders), so that the run's seed
    fixes everything and a repeated or resumed run draws the same orders."""
    options = dict(config.combiner_options)
    known = config.combiner in gradbalance.available()  # an unknown name fails later, listing them
    if known and "seed" not in options and "seed" in gradbalance.options(config.combiner):
        options["seed"] = config.seed
    return options


def _device(name: str, world: World) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return world.device(torch.device(name))


class Trainer:
    """Owns the model, data, optimizer and combiner of one run directory (on one rank of
    ``world``: every rank builds one, rank 0 writes the files)."""

    def __init__(self, config: TrainConfig, run_dir: str | os.PathLike[str], *, progress: bool = True,
                 world: World | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.world = World() if world is None else world
        self.progress = progress and self.world.is_main
        self.device = _device(config.device, self.world)
        use_bf16 = config.amp == "bf16" or (config.amp == "auto" and native_bf16(self.device))
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None

        self.model, self.tokenizer, self.setups = build_model(config)
        self.model.to(self.device)
        self.world.broadcast_module(self.model)
        self.task_names = [t.name for t in config.tasks]
        self.train_data, self.dev_data = self._read_data()
        self.lengths = self._train_lengths()

        self.buffer = self._buffer()
        self.segments = None if config.segments == "whole" else self.buffer.segments(config.segments)
        self.combiner = gradbalance.create(config.combiner, **combiner_options(config))
        self.optimizer = self._optimizer()
        self.total_steps = sum(self._steps_in_phase(k) * p.epochs for k, p in enumerate(config.phases))
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self._elapsed_before = 0.0  # training seconds of earlier fit() calls (restored on resume)
        self._clock = SharedClock(self.world)
        self._clock_start: float | None = None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.smart, self.bregman, self.teacher = self._regularizers()
        self.ema = None
        if config.ema_decay is not None:
            self.ema = torch.optim.swa_utils.AveragedModel(
                self.model, multi_avg_fn=_warm_ema(config.ema_decay)
            )
        self.smart_generator = torch.Generator().manual_seed(config.seed + 17)
        self.position = Position()
        self.best_score: float | None = None
        self._loss_avg: dict[str, float] = {}

    # -- setup ---------------------------------------------------------------------------------

    def _read_data(self) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        train, dev = {}, {}
        for task in self.config.tasks:
            spec = self.setups[task.name].spec
            for split, store, limit in (("train", train, task.train_limit), ("dev", dev, task.dev_limit)):
                result = spec.read(split, data_dir=self.config.data_dir, strict=self.config.strict_data)
                if result.skipped and self.world.is_main:
                    print(result.report())
                store[task.name] = list(result.examples)[:limit]
                if not store[task.name]:
                    raise ValueError(f"{task.name} {split}: no examples read from {result.path}")
        return train, dev

    def _train_lengths(self) -> dict[str, Any]:
        """Token counts of the training examples of tasks that group batches by length."""
        lengths = {}
        for task in self.config.tasks:
            if task.group_by_length:
                setup = self.setups[task.name]
                counts = setup.spec.lengths(
                    self.train_data[task.name], self.tokenizer, setup.max_length, setup.head.pair_encoding
                )
                lengths[task.name] = np.asarray(counts, dtype=np.int64)
        return lengths

    def _buffer(self) -> gradbalance.TaskGradients:
        """The task-row buffer over the encoder; with several ranks one that averages the rows
        and the heads' gradients over the ranks before combining."""
        if self.world.size == 1:
            return gradbalance.TaskGradients(self.model.encoder, num_tasks=len(self.task_names))
        from gradbalance.distributed import ReplicatedTaskGradients

        return ReplicatedTaskGradients(self.model.encoder, len(self.task_names),
                                       replicated=self.model)

    def elapsed_seconds(self) -> float:
        """Training wall time so far, over this and earlier (resumed) sessions of the run (with
        several ranks, rank 0's as of the last clock sync)."""
        running = 0.0 if self._clock_start is None else self._clock() - self._clock_start
        return self._elapsed_before + running

    def _optimizer(self) -> torch.optim.Optimizer:
        config = self.config
        encoder: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        heads = []
        for name, p in self.model.named_parameters():
            if name.startswith("heads."):
                heads.append(p)
            else:  # biases and LayerNorm (dim < 2) take no weight decay
                encoder.setdefault((self._layer_lr_scale(name), p.dim() >= 2), []).append(p)
        groups = [
            {"params": params, "weight_decay": config.weight_decay if decayed else 0.0, "lr": config.lr * scale}
            for (scale, decayed), params in sorted(encoder.items(), key=lambda item: (-item[0][0], not item[0][1]))
        ]
        groups.append({"params": heads, "weight_decay": config.weight_decay, "lr": config.head_lr or config.lr})
        return torch.optim.AdamW(groups, lr=self.config.lr)

    def _layer_lr_scale(self, name: str) -> float:
        """ξ^depth for an encoder parameter (layer-wise learning-rate decay, Howard & Ruder 2018;
        Sun et al. 2019): the top layer and the pooler 1, each layer below one more factor of ξ,
        the embeddings ξ^num_layers."""
        xi = self.config.layer_lr_decay
        layers = self.model.encoder.config.num_hidden_layers
        if name.startswith("encoder.embeddings."):
            return xi**layers
        match = re.match(r"encoder\.encoder\.layer\.(\d+)\.", name)
        return xi ** (layers - 1 - int(match[1])) if match else 1.0

    def _lr_factor(self, step: int) -> float:
        warmup = int(self.config.warmup * self.total_steps)
        if step < warmup:
            return (step + 1) / warmup
        if self.config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        fitted = self.config.fit_schedule_to_budget and not self.config.deterministic  # no clock then
        if fitted and self.config.time_budget_minutes is not None:
            spent = self.elapsed_seconds() / (60 * self.config.time_budget_minutes)
            progress = max(progress, min(1.0, spent))
        if self.config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    def _regularizers(self) -> tuple[dict[str, SmoothnessRegularizer], dict[str, BregmanProximalPoint], BregmanProximalPoint | None]:
        s = self.config.smart
        smart, bregman = {}, {}
        teacher = None
        for task in self.config.tasks:
            setup = self.setups[task.name]
            divergence = setup.spec.divergence_for(setup.head)
            if task.smart_weight > 0:
                smart[task.name] = SmoothnessRegularizer(
                    sigma=s.sigma, epsilon=s.epsilon, step_size=s.step_size, steps=s.steps,
                    weight=task.smart_weight, divergence=divergence,
                )
            if task.bregman_weight > 0:
                if teacher is None:
                    teacher = BregmanProximalPoint.from_module(self.model, beta=s.bregman_beta)
                # One teacher for the whole model; each task reads it with its own ℓ_s and μ.
                bregman[task.name] = attrs.evolve(teacher, weight=task.bregman_weight, divergence=divergence)
        return smart, bregman, teacher

    def _phase_tasks(self, phase_index: int) -> list[str]:
        phase = self.config.phases[phase_index]
        return list(phase.tasks) if phase.tasks else list(self.task_names)

    def _task_data(self, phase_index: int) -> list[TaskData]:
        return [
            TaskData(name, len(self.train_data[name]), self.setups[name].batch_size, self.lengths.get(name))
            for name in self._phase_tasks(phase_index)
        ]

    def _sampler(self, phase_index: int) -> Any:
        phase = self.config.phases[phase_index]
        return plugins.get_sampler(phase.sampler)(**phase.sampler_options)

    def _plan(self, phase_index: int, epoch: int) -> list[dict[str, Any]]:
        return self._sampler(phase_index).plan(self._task_data(phase_index), epoch, self.config.seed + 1000 * phase_index)

    def _steps_in_phase(self, phase_index: int) -> int:
        plan_length = len(self._plan(phase_index, 0))
        return math.ceil(plan_length / self.config.grad_accumulation)

    # -- one optimizer step ----------------------------------------------------------------------

    def _task_loss(self, task: str, indices: Any) -> tuple[Tensor, float]:
        setup: TaskSetup = self.setups[task]
        examples = [self.train_data[task][int(i)] for i in indices]
        inputs, labels = setup.spec.collate(examples, self.tokenizer, setup.max_length, setup.head.pair_encoding)
        inputs = inputs_to(inputs, self.device)
        labels = labels.to(self.device)
        head = self.model.heads[task]
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if task in self.smart:
                forward, embeddings, mask = head.smart_view(self.model.encoder, inputs)
                outputs = forward(embeddings)
            else:
                outputs = self.model(task, inputs)
            loss = setup.spec.loss(outputs, labels, label_smoothing=setup.label_smoothing)
            plain = float(loss.detach())
            if task in self.smart:
                loss = loss + self.smart[task].loss(forward, embeddings, outputs, mask, generator=self.smart_generator)
            if task in self.bregman:
                teacher_outputs = self.bregman[task].teacher_outputs(self.model, task, inputs)
                loss = loss + self.bregman[task].loss(outputs, teacher_outputs)
        return loss, plain

    def _micro_step(self, step: dict[str, Any], accumulated: int = 1) -> dict[str, float]:
        """Backward each task's loss of ``step`` into its row, weighted and divided by
        ``accumulated``, the micro-steps of this optimizer step (fewer than
        ``grad_accumulation`` at an epoch's end), so a step's gradient is their mean. With
        several ranks each takes its shard of every batch, its loss weighted by
        :meth:`World.shard_weight`; the losses returned are the whole batches' means."""
        losses, shards = {}, {}
        for task, batch in step.items():
            t = self.task_names.index(task)
            indices = self.world.shard(batch)
            shards[task] = len(indices)
            if not len(indices):  # a batch smaller than the world: this rank's row stays zero
                with self.buffer.task(t):
                    losses[task] = 0.0
                continue
            loss, plain = self._task_loss(task, indices)
            scale = self.config.task(task).loss_weight / accumulated * self.world.shard_weight(len(indices), len(batch))
            with self.buffer.task(t):
                (loss * scale).backward()
            losses[task] = plain
        return self.world.batch_means(losses, shards, {task: len(batch) for task, batch in step.items()})

    def _optimizer_step(self) -> gradbalance.Combination:
        info = self.buffer.combine(self.combiner, self.segments)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.teacher is not None:
            self.teacher.update(self.model)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return info

    # -- logging, evaluation, checkpoints ---------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if not self.world.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _gradient_stats(self, info: gradbalance.Combination) -> dict[str, Any]:
        """Cosines between the tasks' shared-encoder gradients and their norms, read off the
        combiner's Gramian (no extra pass); ``None`` for combiners that form no Gramian."""
        gramian = info.gramian
        if gramian is None:
            return {"cosines": None, "grad_norms": None}
        whole = gramian.sum(0, keepdim=True)  # segment Gramians add up to the whole one
        cos = gradbalance.Combination(info.direction, whole).cosines()
        norms = whole[0].diagonal().clamp_min(0).sqrt()
        return {"cosines": [[round(float(x), 5) for x in row] for row in cos[0]],
                "grad_norms": [float(f"{float(x):.6g}") for x in norms]}

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are scored, kept as ``best.pt`` and predicted with: the moving
        average when ``ema_decay`` is set, else the trained weights themselves."""
        return self.model if self.ema is None else self.ema.module

    def evaluate(self) -> dict[str, float]:
        scores = evaluate_sharded(
            self.world, self.eval_model, self.setups, self.dev_data, self.tokenizer,
            batch_size=self.config.eval_batch_size, device=self.device, autocast_dtype=self.autocast_dtype,
        )
        score = summary_score(scores)
        p = self.position
        self._clock.sync()
        truncated = self.world.sum_int(self.tokenizer.truncated_total)
        self._log({"kind": "eval", "step": p.global_step, "phase": p.phase, "epoch": p.epoch,
                   "scores": scores, "overall": score, "truncated_inputs": truncated,
                   "elapsed_s": round(self.elapsed_seconds(), 1)})
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_score = score
            if self.world.is_main:
                atomic_save(self._model_state(scores, self.eval_model), self.run_dir / "best.pt")
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
        state = self._model_state()
        state.update(
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            combiner=self.combiner.state_dict(),
            teacher=None if self.teacher is None else self.teacher.state_dict(),
            ema=None if self.ema is None else self.ema.state_dict(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            smart_rng=self.smart_generator.get_state(),
            best_score=self.best_score,
            loss_avg=self._loss_avg,
            elapsed_seconds=self.elapsed_seconds(),
            metrics_bytes=_size(self.run_dir / "metrics.jsonl"),
        )
        atomic_save(state, self.run_dir / "checkpoint.pt")

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.combiner.load_state_dict(state["combiner"])
        if self.teacher is not None and state.get("teacher") is not None:
            self.teacher.load_state_dict(state["teacher"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.smart_generator.set_state(state["smart_rng"])
        self.best_score = state["best_score"]
        self._loss_avg = dict(state.get("loss_avg") or {})
        self._elapsed_before = float(state.get("elapsed_seconds", 0.0))
        self.position = Position(**state["position"])
        if self.world.is_main:
            self._rewind_metrics(state.get("metrics_bytes"))

    def _rewind_metrics(self, size: int | None) -> None:
        """Cut ``metrics.jsonl`` back to what it held at the checkpoint: the steps after it are
        trained (and logged) again, and a line a kill left half-written must not stay in the
        middle of the file. Checkpoints without the size keep every complete line."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        text = path.read_bytes()
        keep = text[:size] if size is not None else text[: text.rfind(b"\n") + 1]
        if keep != text:
            atomic_write_text(keep.decode(), path)

    # -- the loop ---------------------------------------------------------------------------------

    def fit(self, on_step: Callable[[Trainer], None] | None = None) -> dict[str, float]:
        """Train to the end of the last phase (or ``max_steps`` / the time budget); returns the
        last dev scores. ``on_step`` runs after every optimizer step and checkpoint.
        ``deterministic`` turns torch's deterministic algorithms on for the call (a
        process-wide switch, restored on return; warn-only: an op without a deterministic
        kernel warns once instead of stopping a run)."""
        before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        if self.config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit(on_step)
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])

    def _fit(self, on_step: Callable[[Trainer], None] | None) -> dict[str, float]:
        from tqdm.auto import tqdm

        config = self.config
        self._clock.sync()
        self._clock_start = self._clock()
        budget = None if config.time_budget_minutes is None else config.time_budget_minutes * 60
        scores: dict[str, float] = {}
        bar = tqdm(total=self.total_steps, initial=self.position.global_step, disable=not self.progress,
                   desc="train", dynamic_ncols=True)
        stop = False
        while self.position.phase < len(config.phases) and not stop:
            phase = config.phases[self.position.phase]
            while self.position.epoch < phase.epochs and not stop:
                plan = self._plan(self.position.phase, self.position.epoch)
                pending = 0
                for index in range(self.position.step, len(plan)):
                    # Optimizer steps start at multiples of grad_accumulation (resumes too); the
                    # last one of an epoch may gather fewer micro-steps.
                    group = min(config.grad_accumulation, len(plan) - (index - pending))
                    self.world.reseed(config.seed, (self.position.phase, self.position.epoch, index),
                                      self.smart_generator)
                    losses = self._micro_step(plan[index], group)
                    pending += 1
                    if pending < group:
                        continue
                    pending = 0
                    info = self._optimizer_step()
                    self.position.step = index + 1
                    self.position.global_step += 1
                    self._after_step(losses, info, bar)
                    if on_step is not None:
                        on_step(self)
                    out_of_steps = config.max_steps is not None and self.position.global_step >= config.max_steps
                    self._clock.sync()  # every rank then reads rank 0's clock: they stop together
                    out_of_time = budget is not None and self.elapsed_seconds() > budget
                    if out_of_steps or out_of_time:
                        stop = True
                        break
                if not stop:
                    self.position.epoch += 1
                    self.position.step = 0
                    scores = self.evaluate()
                    self.save_checkpoint()
                    bar.set_description(f"train (dev {self._score_text(scores)})")
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

    def _after_step(self, losses: dict[str, float], info: gradbalance.Combination, bar: Any) -> None:
        config = self.config
        for task, value in losses.items():
            previous = self._loss_avg.get(task)
            self._loss_avg[task] = value if previous is None else 0.95 * previous + 0.05 * value
        bar.update(1)
        bar.set_postfix({t: f"{v:.3f}" for t, v in self._loss_avg.items()}, refresh=False)
        step = self.position.global_step
        if step % config.log_every == 0 or step == 1:
            self._log({"kind": "train", "step": step, "phase": self.position.phase, "epoch": self.position.epoch,
                       "tasks": self.task_names, "losses": losses, "lr": self.scheduler.get_last_lr()[0],
                       **self._gradient_stats(info), "elapsed_s": round(self.elapsed_seconds(), 1)})
        if config.eval_every is not None and step % config.eval_every == 0:
            self.evaluate()
        if config.checkpoint_every is not None and step % config.checkpoint_every == 0:
            self.save_checkpoint()

    @staticmethod
    def _score_text(scores: dict[str, float]) -> str:
        return " ".join(f"{k} {v:.3f}" for k, v in scores.items())


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


class RunFinished(RuntimeError):
    """``train(resume=True)`` on a run with nothing left to train."""


def finished_reason(config: TrainConfig, state: dict[str, Any]) -> str | None:
    """Why the run ``state`` (a ``checkpoint.pt``) belongs to has nothing left to train, or
    ``None``: every phase done, ``max_steps`` reached, or the time budget spent."""
    position = state["position"]
    last = len(config.phases) - 1  # its last epoch's checkpoint is saved before the phase advances
    if position["phase"] > last or (position["phase"] == last and position["epoch"] >= config.phases[last].epochs):
        return "every phase is done"
    if config.max_steps is not None and position["global_step"] >= config.max_steps:
        return f"max_steps={config.max_steps} reached"
    budget = config.time_budget_minutes
    if budget is not None and float(state.get("elapsed_seconds", 0.0)) > budget * 60:
        return f"its time budget of {budget:g} minutes is spent"
    return None


def _load_resumable(run_dir: Path) -> tuple[dict[str, Any], TrainConfig]:
    """The ``checkpoint.pt`` of the run in ``run_dir`` and its config; a path that is no run
    directory, a run without a checkpoint or one this version cannot read is a one-line error."""
    if run_dir.is_file():
        raise ValueError(f"--resume takes a run directory, not a file: {run_dir}")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    file = run_dir / "checkpoint.pt"
    if not file.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint.pt: the run stopped before its first checkpoint; "
                                f"start it again with --run-dir {run_dir}")
    state = load(file, MODEL_KEYS + RESUME_KEYS)
    try:
        return state, config_from_json(state["config"])
    except ConfigError as exc:
        raise ConfigError(f"{file}: its saved config does not load in this version: {exc}") from None


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
    run_dir = Path(run_dir)
    with process_group(dist_timeout_s) as world:
        if resume:
            state, saved = world.from_main(lambda: _resumable_state(run_dir))
            trainer = Trainer(saved, run_dir, progress=progress, world=world)
            trainer.restore(state)
            del state
            if world.is_main:
                print(f"resuming {run_dir} at phase {trainer.position.phase}, epoch {trainer.position.epoch}, "
                      f"step {trainer.position.step} (optimizer step {trainer.position.global_step})"
                      + (f" on {world.size} ranks" if world.size > 1 else ""))
        else:
            if config is None:
                raise ValueError("train() needs a config unless resume=True")
            world.from_main(lambda: _start_run(config, run_dir))
            trainer = Trainer(config, run_dir, progress=progress, world=world)
            if world.is_main:
                save_tokenizer(config, run_dir)
        return trainer.fit(on_step)


def _resumable_state(run_dir: Path) -> tuple[dict[str, Any], TrainConfig]:
    state, saved = _load_resumable(run_dir)
    reason = finished_reason(saved, state)
    if reason is not None:
        raise RunFinished(f"run {run_dir} has already finished ({reason}); nothing to resume")
    return state, saved


def _start_run(config: TrainConfig, run_dir: Path) -> None:
    if (run_dir / "checkpoint.pt").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or pick another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config.to_json(), run_dir / "config.json")
