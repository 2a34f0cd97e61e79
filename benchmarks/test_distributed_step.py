"""Distributed multi-task steps: 1 process x 2 threads against 2 processes x 1 thread on the same
global batch (MiniLM-size encoder at full size), bytes moved per step, and the combine's share
of the step in sharded (FSDP2) mode. The layouts run interleaved, round by round, inside one
``torchrun --nproc-per-node 2`` job (``benchmarks/distributed_step.py``).

    GRADBALANCE_BENCH_FULL=1 .venv/bin/python -m pytest benchmarks/test_distributed_step.py -s

Default: a tiny encoder, one round (a CI smoke run; no timing is asserted anywhere, only the
counted bytes, which do not depend on the machine).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import gradbalance.distributed as gd

from timing import FULL

ROOT = Path(__file__).resolve().parents[1]
BASE = "1 proc x 2 threads"
TASKS, HEAD_SIZE = 3, 2


def run_layouts(out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(ROOT / "benchmarks" / "distributed_step.py"),
        "--out",
        str(out),
    ]
    command += ["--full", "--rounds", "3", "--steps", "3"] if FULL else ["--rounds", "1", "--steps", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run(command, env=env, cwd=ROOT, check=True, timeout=1800 if FULL else 300)
    return json.loads(out.read_text())


def test_distributed_layouts(benchmark, tmp_path):
    result = benchmark.pedantic(lambda: run_layouts(tmp_path / "layouts.json"), rounds=1, iterations=1)
    steps, combine, payload = result["steps"], result["combine"], result["payload"]
    print(
        f"\ndistributed step (bytes per step: payload, and sent per rank by ring algorithms), shared encoder of {result['shared params']:,} parameters, T = {TASKS} "
        f"(medians of {len(steps[BASE])} rounds; ratios paired within a round)"
    )
    print(
        f"  {'layout':<22} {'step s':>8} {'vs ' + BASE:>24} {'combine share':>14} {'payload MB':>11} "
        f"{'sent MB':>8}"
    )
    for name, times in steps.items():
        ratio = statistics.median(t / b for t, b in zip(times, steps[BASE]))
        share = statistics.median(c / t for c, t in zip(combine[name], times))
        print(
            f"  {name:<22} {statistics.median(times):8.3f} {ratio:23.2f}x {share:13.1%} "
            f"{payload[name] / 1e6:11.2f} {result['sent'][name] / 1e6:8.2f}"
        )
        benchmark.extra_info[f"{name}: step vs {BASE}"] = ratio
        benchmark.extra_info[f"{name}: combine share"] = share
        benchmark.extra_info[f"{name}: payload bytes per step"] = payload[name]
        benchmark.extra_info[f"{name}: bytes sent per rank per step"] = result["sent"][name]
    # Counted bytes against the formulas (machine-independent, so asserted at every size).
    shared = result["shared params"]
    hidden = result["hidden"]
    heads = TASKS * (hidden + 1) * HEAD_SIZE
    assert payload["ddp summed loss"] == gd.step_traffic("ddp", shared=shared, heads=heads, tasks=TASKS).total
    flags = 2 * TASKS  # one used-flag per head parameter (weight, bias)
    replicated = gd.step_traffic("replicated", shared=shared, heads=heads, tasks=TASKS).total
    assert payload["replicated"] == payload["replicated overlap"] == replicated + 4 * flags
