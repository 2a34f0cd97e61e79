"""The examples a run trains and evaluates on, and the training sets as its samplers see them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from minbert_tasks.config import TrainConfig
from minbert_tasks.model import Tokenizer
from minbert_tasks.samplers import TaskData
from minbert_tasks.system import TaskSetup

__all__ = ["read_splits", "sampler_tasks"]


def read_splits(
    config: TrainConfig, setups: Mapping[str, TaskSetup], *, report: bool = True
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Each task's training and dev examples, cut to its ``train_limit`` / ``dev_limit``;
    ``report`` prints what a reader skipped. A split with no examples is an error."""
    train: dict[str, list[Any]] = {}
    dev: dict[str, list[Any]] = {}
    for task in config.tasks:
        spec = setups[task.name].spec
        for split, store, limit in (("train", train, task.train_limit), ("dev", dev, task.dev_limit)):
            result = spec.read(split, data_dir=config.data_dir, strict=config.strict_data)
            if result.skipped and report:
                print(result.report())
            store[task.name] = list(result.examples)[:limit]
            if not store[task.name]:
                raise ValueError(f"{task.name} {split}: no examples read from {result.path}")
    return train, dev


def sampler_tasks(
    config: TrainConfig, setups: Mapping[str, TaskSetup], train: Mapping[str, list[Any]], tokenizer: Tokenizer
) -> dict[str, TaskData]:
    """Each task's training set as a sampler sees it: its size and batch size, and the token
    counts of its examples for a task that groups batches by length."""
    tasks = {}
    for task in config.tasks:
        setup = setups[task.name]
        lengths = None
        if task.group_by_length:
            counts = setup.spec.lengths(
                train[task.name], tokenizer, setup.max_length, setup.head.pair_encoding
            )
            lengths = np.asarray(counts, dtype=np.int64)
        tasks[task.name] = TaskData(task.name, len(train[task.name]), setup.batch_size, lengths)
    return tasks
