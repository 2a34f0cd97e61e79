"""Batched inference and dev-set scoring."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from minbert_tasks import plugins
from minbert_tasks.data import PairExample, SentenceExample
from minbert_tasks.model import Tokenizer
from minbert_tasks.system import MultiTaskModel, TaskSetup
from minbert_tasks.tasks import inputs_to

__all__ = ["evaluate", "predict_examples", "predict_outputs", "summary_score"]

Example = SentenceExample | PairExample


def _length(example: Example) -> int:
    if isinstance(example, SentenceExample):
        return len(example.text)
    return len(example.text_a) + len(example.text_b)


@torch.no_grad()
def predict_outputs(
    model: MultiTaskModel,
    task: str,
    setup: TaskSetup,
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The head's raw float outputs for ``examples``, in input order.

    Batches are formed from length-sorted examples so padding stays small; the rows are put
    back in the original order.
    """
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: _length(examples[i]))
    chunks = []
    device_type = torch.device(device).type
    try:
        for start in range(0, len(order), batch_size):
            inputs, _ = setup.spec.collate(
                [examples[i] for i in order[start : start + batch_size]],
                tokenizer,
                setup.max_length,
                setup.head.pair_encoding,
            )
            inputs = inputs_to(inputs, device)
            with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                chunks.append(model(task, inputs).float())
    finally:
        # A failed batch (out of memory, a bad row) must not leave a training model in eval mode.
        model.train(was_training)
    outputs = torch.cat(chunks)
    restored = torch.empty_like(outputs)
    restored[torch.tensor(order, device=outputs.device)] = outputs
    return restored


def predict_examples(
    model: MultiTaskModel,
    task: str,
    setup: TaskSetup,
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    **kwargs: Any,
) -> tuple[list[Any], list[Any]]:
    """Predictions (output-file format) and gold labels, in input order; ``kwargs`` as for
    :func:`predict_outputs`."""
    if not examples:  # e.g. a prediction input file with no readable rows
        return [], []
    outputs = predict_outputs(model, task, setup, examples, tokenizer, **kwargs)
    return setup.spec.predict(outputs), [e.label for e in examples]


def evaluate(
    model: MultiTaskModel,
    setups: Mapping[str, TaskSetup],
    dev: Mapping[str, Sequence[Example]],
    tokenizer: Tokenizer,
    **kwargs: Any,
) -> tuple[dict[str, float], dict[str, tuple[list[Any], list[Any]]]]:
    """Per-task dev metric and the predictions behind it."""
    scores, predictions = {}, {}
    for task, examples in dev.items():
        preds, golds = predict_examples(model, task, setups[task], examples, tokenizer, **kwargs)
        scores[task] = float(setups[task].spec.metric(preds, golds))
        predictions[task] = (preds, golds)
    return scores, predictions


def summary_score(scores: Mapping[str, float]) -> float | None:
    """The mean over tasks of each metric on a 0–1 scale (:meth:`~minbert_tasks.tasks.TaskSpec.unit_score` of the
    task registered under that name): for sst, para and sts exactly the CS224N overall score.
    ``None`` if it is not finite."""
    if not scores:
        return None
    value = sum(plugins.get_task(task).unit_score(v) for task, v in scores.items()) / len(scores)
    return float(value) if math.isfinite(value) else None
