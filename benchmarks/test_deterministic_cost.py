"""What ``deterministic = true`` costs: the default preset's training step (fp32, CPU) with
torch's deterministic algorithms on, against the same step with them off, on the same batches,
interleaved in one run; the result is the median over rounds of the paired time ratio.

The option's other part, a schedule that does not read the clock, costs nothing measurable.
Full size (``GRADBALANCE_BENCH_FULL=1``): the real all-MiniLM-L6-v2 encoder and the preset's
heads and batch sizes on real batches. Default: the tiny random encoder (a CI smoke run; no
ratio bound, timings at that size are dominated by Python overhead).

    GRADBALANCE_BENCH_FULL=1 OMP_NUM_THREADS=1 pytest benchmarks/test_deterministic_cost.py -s
"""

from __future__ import annotations

import statistics

import pytest
import torch

from minbert_tasks.config import load_config
from minbert_tasks.data import default_data_dir
from minbert_tasks.training import Trainer

from timing import FULL, interleaved_samples, paired_ratio

pytestmark = pytest.mark.skipif(
    not (default_data_dir() / "ids-sst-train.csv").is_file(), reason="task data folder not found"
)


def make_trainer(tmp_path, deterministic: bool) -> Trainer:
    overrides = ['amp="off"', 'device="cpu"', f"deterministic={str(deterministic).lower()}"]
    for task in ("sst", "para", "sts"):
        overrides += [f"tasks.{task}.train_limit=512", f"tasks.{task}.dev_limit=8"]
    if not FULL:
        overrides.append('model="tiny-random"')
        overrides += [f"tasks.{task}.batch_size=8" for task in ("sst", "para", "sts")]
    return Trainer(load_config("default", overrides), tmp_path / str(deterministic), progress=False)


def step(trainer: Trainer, batch: dict, rng: dict[int, torch.Tensor]) -> None:
    """One optimizer step with the process-wide switch set as ``Trainer.fit`` sets it, and the
    trainer's own stream of dropout masks (``rng`` holds each trainer's global RNG state)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(trainer.config.deterministic, warn_only=True)
    torch.set_rng_state(rng[id(trainer)])
    try:
        trainer.stepper.micro_step(batch)
        trainer.stepper.optimizer_step()
    finally:
        rng[id(trainer)] = torch.get_rng_state()
        torch.use_deterministic_algorithms(before)


def test_deterministic_step_against_the_default_step(benchmark, tmp_path):
    trainers = {"default": make_trainer(tmp_path, False), "deterministic": make_trainer(tmp_path, True)}
    plan = trainers["default"].schedule.plan(0, 0)
    cursor = {"k": 0}
    rng = {id(t): torch.get_rng_state() for t in trainers.values()}  # the same masks for both

    candidates = {
        name: (lambda t=t: step(t, plan[cursor["k"] % len(plan)], rng)) for name, t in trainers.items()
    }
    candidates["_advance"] = lambda: cursor.update(k=cursor["k"] + 1)  # same batches for both per round
    samples = interleaved_samples(candidates, repeats=9 if FULL else 3, warmup=1)
    ratio = paired_ratio(samples, "deterministic", "default")
    medians = {name: statistics.median(samples[name]) for name in trainers}
    print(
        f"\ntraining step, {'MiniLM' if FULL else 'tiny'} fp32, {torch.get_num_threads()} thread(s): "
        f"default {medians['default'] * 1e3:.0f} ms, deterministic {medians['deterministic'] * 1e3:.0f} ms "
        f"(medians); paired ratio {ratio:.3f}"
    )
    benchmark.extra_info.update(ratio=ratio, **{f"{k}_s": v for k, v in medians.items()})
    # Both ran the same batches with the same dropout masks: the switch changes no CPU arithmetic.
    weights = [dict(t.model.named_parameters()) for t in trainers.values()]
    for name, p in weights[0].items():
        assert torch.equal(p, weights[1][name]), name
    benchmark.pedantic(lambda: step(trainers["deterministic"], plan[0], rng), rounds=1, iterations=1)
