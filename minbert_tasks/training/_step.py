"""One optimizer step: each task's loss (with its SMART and Bregman terms) backed into its row
of a ``gradbalance.TaskGradients`` buffer, the rows combined by the run's combiner, then
clipping, AdamW, the learning-rate schedule, the Bregman teacher and the weight average."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import attrs
import torch
from torch import Tensor

import gradbalance
from gradbalance.regularizers import BregmanProximalPoint, SmoothnessRegularizer
from minbert_tasks.config import TrainConfig
from minbert_tasks.distributed import World
from minbert_tasks.heads import TaskHead
from minbert_tasks.model import Tokenizer
from minbert_tasks.system import MultiTaskModel, TaskSetup
from minbert_tasks.tasks import inputs_to
from minbert_tasks.training._schedule import layer_lr_scale

__all__ = ["Stepper", "build_optimizer", "combiner_options", "gradient_stats"]


def combiner_options(config: TrainConfig) -> dict[str, Any]:
    """``config.combiner_options``, plus ``seed = config.seed`` for a combiner that takes a seed
    the config leaves unset (PCGrad's and GradVac's visiting orders), so that the run's seed
    fixes everything and a repeated or resumed run draws the same orders."""
    options = dict(config.combiner_options)
    known = config.combiner in gradbalance.available()  # an unknown name fails later, listing them
    if known and "seed" not in options and "seed" in gradbalance.options(config.combiner):
        options["seed"] = config.seed
    return options


def build_optimizer(model: MultiTaskModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with one group per (layer-wise rate, decayed) pair of encoder parameters, biases
    and LayerNorm (dim < 2) without weight decay, and one group for the heads at ``head_lr``."""
    layers = model.encoder.config.num_hidden_layers
    encoder: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    heads = []
    for name, p in model.named_parameters():
        if name.startswith("heads."):
            heads.append(p)
        else:
            scale = layer_lr_scale(name, config.layer_lr_decay, layers)
            encoder.setdefault((scale, p.dim() >= 2), []).append(p)
    groups = [
        {"params": params, "weight_decay": config.weight_decay if decayed else 0.0, "lr": config.lr * scale}
        for (scale, decayed), params in sorted(
            encoder.items(), key=lambda item: (-item[0][0], not item[0][1])
        )
    ]
    groups.append({"params": heads, "weight_decay": config.weight_decay, "lr": config.head_lr or config.lr})
    return torch.optim.AdamW(groups, lr=config.lr)


Tensors = list[Tensor] | tuple[Tensor, ...]


def _warm_ema(decay: float) -> Callable[[Tensors, Tensors, Tensor | int], None]:
    """EMA update for ``AveragedModel`` whose decay warms up as min(decay, (1+n)/(10+n)) after n
    updates. torch's ``get_ema_multi_avg_fn`` applies the full decay from the first step, so at
    0.998 the average still holds ~1/3 of the first (untrained-head) weights after 500 steps."""

    def update(averaged: Tensors, current: Tensors, num_averaged: Tensor | int) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(averaged, current, weight)  # W ← W + w·(θ − W)

    return update


@attrs.frozen
class Regularizers:
    """Each task's SMART smoothness term (Jiang et al. 2019, Eq. 3) and Bregman proximal point
    term (Eq. 4–5); the Bregman terms all read one teacher, a moving average of the weights."""

    smart: dict[str, SmoothnessRegularizer]
    bregman: dict[str, BregmanProximalPoint]
    teacher: BregmanProximalPoint | None

    @classmethod
    def build(
        cls, config: TrainConfig, setups: Mapping[str, TaskSetup], model: MultiTaskModel
    ) -> Regularizers:
        s = config.smart
        smart, bregman = {}, {}
        teacher = None
        for task in config.tasks:
            setup = setups[task.name]
            divergence = setup.spec.divergence_for(setup.head)
            if task.smart_weight > 0:
                smart[task.name] = SmoothnessRegularizer(
                    sigma=s.sigma,
                    epsilon=s.epsilon,
                    step_size=s.step_size,
                    steps=s.steps,
                    weight=task.smart_weight,
                    divergence=divergence,
                )
            if task.bregman_weight > 0:
                if teacher is None:
                    teacher = BregmanProximalPoint.from_module(model, beta=s.bregman_beta)
                # One teacher for the whole model; each task reads it with its own ℓ_s and μ.
                bregman[task.name] = attrs.evolve(teacher, weight=task.bregman_weight, divergence=divergence)
        return cls(smart, bregman, teacher)


def gradient_stats(info: gradbalance.Combination) -> dict[str, Any]:
    """Cosines between the tasks' shared-encoder gradients and their norms, read off the
    combiner's Gramian (no extra pass); ``None`` for combiners that form no Gramian."""
    gramian = info.gramian
    if gramian is None:
        return {"cosines": None, "grad_norms": None}
    whole = gramian.sum(0, keepdim=True)  # segment Gramians add up to the whole one
    cos = gradbalance.Combination(info.direction, whole).cosines()
    assert cos is not None  # a Combination with a Gramian has cosines
    norms = whole[0].diagonal().clamp_min(0).sqrt()
    return {
        "cosines": [[round(float(x), 5) for x in row] for row in cos[0]],
        "grad_norms": [float(f"{float(x):.6g}") for x in norms],
    }


def _buffer(model: MultiTaskModel, num_tasks: int, world: World) -> gradbalance.TaskGradients:
    """The task-row buffer over the encoder; with several ranks one that averages the rows
    and the heads' gradients over the ranks before combining."""
    if world.size == 1:
        return gradbalance.TaskGradients(model.encoder, num_tasks=num_tasks)
    from gradbalance.distributed import ReplicatedTaskGradients

    return ReplicatedTaskGradients(model.encoder, num_tasks, replicated=model)


class Stepper:
    """Trains ``model`` one optimizer step at a time on batches of ``train_data`` (each task's
    examples; a step names example indices), on this rank of ``world``. ``lr_factor`` maps an
    optimizer step to its learning rate's factor."""

    def __init__(
        self,
        config: TrainConfig,
        model: MultiTaskModel,
        setups: Mapping[str, TaskSetup],
        tokenizer: Tokenizer,
        train_data: Mapping[str, Sequence[Any]],
        *,
        world: World,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        lr_factor: Callable[[int], float],
    ) -> None:
        self.config, self.model, self.setups, self.tokenizer = config, model, setups, tokenizer
        self.train_data, self.world, self.device, self.autocast_dtype = (
            train_data,
            world,
            device,
            autocast_dtype,
        )
        self.task_names = [t.name for t in config.tasks]
        self.buffer = _buffer(model, len(self.task_names), world)
        self.segments = None if config.segments == "whole" else self.buffer.segments(config.segments)
        self.combiner = gradbalance.create(config.combiner, **combiner_options(config))
        self.optimizer = build_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.regularizers = Regularizers.build(config, setups, model)
        self.ema = None
        if config.ema_decay is not None:
            self.ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=_warm_ema(config.ema_decay))
        #: SMART's noise; saved with the checkpoint, reseeded per micro-step with several ranks.
        self.smart_generator = torch.Generator().manual_seed(config.seed + 17)

    def task_loss(self, task: str, indices: Any) -> tuple[Tensor, float]:
        """The loss of ``task`` on the examples ``indices`` with its regularizer terms, and the
        plain task loss as a number (what is logged)."""
        setup = self.setups[task]
        examples = [self.train_data[task][int(i)] for i in indices]
        inputs, labels = setup.spec.collate(
            examples, self.tokenizer, setup.max_length, setup.head.pair_encoding
        )
        if labels is None:
            raise ValueError(f"{task}: its training examples have no labels")
        inputs = inputs_to(inputs, self.device)
        labels = labels.to(self.device)
        head = cast(TaskHead, self.model.heads[task])
        smart, bregman = self.regularizers.smart.get(task), self.regularizers.bregman.get(task)
        with torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            if smart is not None:
                forward, embeddings, mask = head.smart_view(self.model.encoder, inputs)
                outputs = forward(embeddings)
            else:
                outputs = self.model(task, inputs)
            loss = setup.spec.loss(outputs, labels, label_smoothing=setup.label_smoothing)
            plain = float(loss.detach())
            if smart is not None:
                loss = loss + smart.loss(forward, embeddings, outputs, mask, generator=self.smart_generator)
            if bregman is not None:
                loss = loss + bregman.loss(outputs, bregman.teacher_outputs(self.model, task, inputs))
        return loss, plain

    def micro_step(self, step: Mapping[str, Any], accumulated: int = 1) -> dict[str, float]:
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
            loss, plain = self.task_loss(task, indices)
            scale = (
                self.config.task(task).loss_weight
                / accumulated
                * self.world.shard_weight(len(indices), len(batch))
            )
            with self.buffer.task(t):
                (loss * scale).backward()
            losses[task] = plain
        return self.world.batch_means(losses, shards, {task: len(batch) for task, batch in step.items()})

    def optimizer_step(self) -> gradbalance.Combination:
        """Combine the rows into ``.grad``, clip, step AdamW and the schedule, then move the
        Bregman teacher and the weight average."""
        info = self.buffer.combine(self.combiner, self.segments)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.regularizers.teacher is not None:
            self.regularizers.teacher.update(self.model)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return info

    def state_dict(self) -> dict[str, Any]:
        """The optimizer, schedule, combiner, teacher and weight-average states."""
        teacher = self.regularizers.teacher
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "combiner": self.combiner.state_dict(),
            "teacher": None if teacher is None else teacher.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (from a checkpoint that may hold more)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.combiner.load_state_dict(state["combiner"])
        if self.regularizers.teacher is not None and state.get("teacher") is not None:
            self.regularizers.teacher.load_state_dict(state["teacher"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
