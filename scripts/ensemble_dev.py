"""Dev scores of every ensemble of trained runs' best checkpoints (a measurement, not a feature).

    .venv/bin/python scripts/ensemble_dev.py runs/P3 runs/P5 runs/P6

Each member's dev outputs are averaged in probability space (class softmax, binary sigmoid,
regressed score) and scored like a single model; every subset of the runs is printed, members
alone first.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from minbert_tasks.checkpointing import load, resolve_checkpoint
from minbert_tasks.evaluation import predict_outputs, summary_score
from minbert_tasks.system import TaskSetup, load_run_model
from minbert_tasks.training import native_bf16


def to_probabilities(setup: TaskSetup, outputs: torch.Tensor) -> torch.Tensor:
    """Outputs in a space where averaging members is meaningful."""
    if outputs.dim() == 2 and outputs.shape[1] > 1:  # classes, or STS bins
        return outputs.softmax(-1)
    return outputs.reshape(-1).sigmoid() if setup.spec.output == "binary" else outputs.reshape(-1)


def to_outputs(setup: TaskSetup, mean: torch.Tensor) -> torch.Tensor:
    """Back to head outputs that ``TaskSpec.predict`` reads (log-probabilities, logits)."""
    if mean.dim() == 2:
        return mean.log()
    return mean.logit() if setup.spec.output == "binary" else mean


def dev_outputs(run: str) -> tuple[dict[str, TaskSetup], dict[str, torch.Tensor], dict[str, list]]:
    """The run's task setups, its best checkpoint's dev probabilities, and the dev golds."""
    file = resolve_checkpoint(run)
    model, tokenizer, setups, config = load_run_model(load(file), file.parent)
    autocast = torch.bfloat16 if native_bf16(torch.device("cpu")) else None
    outputs, golds = {}, {}
    for task, setup in setups.items():
        examples = list(setup.spec.read("dev", data_dir=config.data_dir).examples)
        raw = predict_outputs(model, task, setup, examples, tokenizer, autocast_dtype=autocast)
        outputs[task] = to_probabilities(setup, raw)
        golds[task] = [e.label for e in examples]
    return setups, outputs, golds


def score(setups: dict[str, TaskSetup], members: list[dict[str, torch.Tensor]], golds: dict[str, list]) -> dict[str, float]:
    scores = {}
    for task, setup in setups.items():
        mean = sum(m[task] for m in members) / len(members)
        scores[task] = float(setup.spec.metric(setup.spec.predict(to_outputs(setup, mean)), golds[task]))
    scores["overall"] = summary_score(scores)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories trained on the same tasks")
    runs = parser.parse_args().runs
    results = {run: dev_outputs(run) for run in runs}
    setups, _, golds = results[runs[0]]
    for size in range(1, len(runs) + 1):
        for subset in itertools.combinations(runs, size):
            scores = score(setups, [results[r][1] for r in subset], golds)
            print(" + ".join(subset), " ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
