"""Dev scores of every ensemble of trained runs' best checkpoints (a measurement, not a feature).

    .venv/bin/python scripts/ensemble_dev.py runs/P3 runs/P5 runs/P6

Each member's dev outputs are averaged in probability space (SST softmax, Quora sigmoid, STS
score) and scored like a single model; every subset of the runs is printed, members alone first.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from minbert_tasks import metrics
from minbert_tasks.checkpointing import load, resolve_checkpoint
from minbert_tasks.system import load_run_model
from minbert_tasks.tasks import inputs_to
from minbert_tasks.training import native_bf16


@torch.no_grad()
def dev_outputs(run: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per task: the run's best checkpoint's dev outputs (probabilities or scores) and golds."""
    file = resolve_checkpoint(run)
    model, tokenizer, setups, config = load_run_model(load(file), file.parent)
    outputs, golds = {}, {}
    bf16 = native_bf16(torch.device("cpu"))
    for task, setup in setups.items():
        examples = list(setup.spec.read("dev", data_dir=config.data_dir).examples)
        chunks = []
        for start in range(0, len(examples), 128):
            inputs, _ = setup.spec.collate(
                examples[start : start + 128], tokenizer, setup.max_length, setup.head.pair_encoding
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                chunks.append(model(task, inputs_to(inputs, "cpu")).float())
        out = torch.cat(chunks)
        outputs[task] = out.softmax(-1) if task == "sst" else out.reshape(-1).sigmoid() if task == "para" else out.reshape(-1)
        golds[task] = torch.tensor([float(e.label) for e in examples])
    return outputs, golds


def score(members: list[dict[str, torch.Tensor]], golds: dict[str, torch.Tensor]) -> dict[str, float]:
    scores = {}
    for task, gold in golds.items():
        mean = sum(m[task] for m in members) / len(members)
        if task == "sst":
            scores[task] = float((mean.argmax(-1).float() == gold).float().mean())
        elif task == "para":
            scores[task] = float(((mean > 0.5).float() == gold).float().mean())
        else:
            scores[task] = float(metrics.pearson(mean.clamp(0, 5).numpy(), gold.numpy()))
    scores["overall"] = metrics.overall_score(scores["sst"], scores["para"], scores["sts"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories trained on sst, para and sts")
    runs = parser.parse_args().runs
    results = {run: dev_outputs(run) for run in runs}
    golds = results[runs[0]][1]
    for size in range(1, len(runs) + 1):
        for subset in itertools.combinations(runs, size):
            scores = score([results[r][0] for r in subset], golds)
            print(" + ".join(subset), " ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
