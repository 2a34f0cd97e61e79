"""Is a training run a pure function of its seed? Train the same config twice, each in its own
process (so Python's string hashing, the clock and memory layout differ as between two real
runs), then compare every tensor of the two final checkpoints.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/reproducibility.py RUNS_DIR [KEY=VALUE ...]

Prints how many checkpoint tensors differ and by how much, and each run's median step time.
The overrides apply on top of the default preset, fp32 (``amp="off"``), CPU, 24 steps.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

BASE = [
    'amp="off"',
    'device="cpu"',
    "max_steps=24",
    "checkpoint_every=1000",
    "log_every=1",
    *(f"tasks.{t}.dev_limit=64" for t in ("sst", "para", "sts")),
]  # a short final evaluation


def tensors(state: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nested checkpoint, with its path."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from tensors(value, f"{prefix}/{key}")
    elif isinstance(state, (list, tuple)):
        for k, value in enumerate(state):
            yield from tensors(value, f"{prefix}/{k}")


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Tensors of checkpoint ``a`` that differ from ``b``'s, and the largest difference."""
    first = dict(tensors(torch.load(a, weights_only=False)))
    second = dict(tensors(torch.load(b, weights_only=False)))
    assert first.keys() == second.keys()
    differ = [k for k, v in first.items() if not torch.equal(v, second[k])]
    largest = max(
        (
            float((first[k].double() - second[k].double()).abs().max())
            for k in differ
            if first[k].is_floating_point()
        ),
        default=0.0,
    )
    return {"tensors": len(first), "differ": len(differ), "max_abs": largest, "first": differ[:5]}


def train_one(run: Path, overrides: list[str]) -> None:
    """Train in this process (the child side)."""
    from minbert_tasks.config import load_config
    from minbert_tasks.training import train

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    steps: list[float] = []
    last = [time.perf_counter()]

    def clock(_trainer: Any) -> None:
        now = time.perf_counter()
        steps.append(now - last[0])
        last[0] = now

    train(load_config("default", [*BASE, *overrides]), run, progress=False, on_step=clock)
    (run / "steps.json").write_text(json.dumps(steps))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        train_one(Path(argv[1]), argv[2:])
        return
    out, overrides = Path(argv[0]), argv[1:]
    runs = [out / "a", out / "b"]
    for run in runs:
        subprocess.run([sys.executable, __file__, "--child", str(run), *overrides], check=True)
    medians = [statistics.median(json.loads((r / "steps.json").read_text())[1:]) for r in runs]
    result = compare(runs[0] / "checkpoint.pt", runs[1] / "checkpoint.pt")
    result["median_step_s"] = medians
    print(json.dumps({"overrides": overrides, **result}))


if __name__ == "__main__":
    main(sys.argv[1:])
