"""``minbert-tasks train`` data-parallel under torchrun (gloo, 2 processes of 1 thread): the same
checkpoint as one process on the same global batch, rank-0 files, a killed rank that stops the
job, and resumes across world sizes. The :class:`World` helpers are unit-tested in-process."""

import copy
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minbert_tasks import distributed
from minbert_tasks.cli import main
from minbert_tasks.config import load_config
from minbert_tasks.data import default_data_dir
from minbert_tasks.distributed import World
from minbert_tasks.training import Interrupted, train

from _task_files import write_task_files

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- World, in-process


@given(st.integers(1, 40), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_shards_partition_the_batch_and_their_weighted_means_average_to_its_mean(n, size, seed):
    batch = np.random.default_rng(seed).permutation(100)[:n]
    values = np.random.default_rng(seed + 1).normal(size=100)
    shards = [World(rank, size).shard(batch) for rank in range(size)]
    assert sorted(np.concatenate(shards).tolist()) == sorted(batch.tolist())
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # The gradient rows are averaged over ranks: (1/W)·Σ_r w_r·mean_r must be the batch mean.
    averaged = sum(
        World(r, size).shard_weight(len(s), n) * values[s].mean() for r, s in enumerate(shards) if len(s)
    )
    assert averaged / size == pytest.approx(values[batch].mean(), rel=1e-12, abs=1e-12)


def test_one_process_is_a_world_that_changes_nothing():
    world, batch = World(), np.arange(7)
    assert world.shard(batch) is batch and world.shard_weight(7, 7) == 1.0
    assert world.batch_means({"sst": 0.5}, {"sst": 7}, {"sst": 7}) == {"sst": 0.5}
    rows = torch.randn(3, 2)
    assert world.gather_rows(rows, 3) is rows
    state = torch.get_rng_state()
    world.reseed(0, (0, 0, 0), torch.Generator())
    assert torch.equal(torch.get_rng_state(), state)


def test_ranks_draw_their_own_streams_that_depend_only_on_the_position():
    def draws(rank: int, position: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator()
        World(rank, 2).reseed(3, position, generator)
        return torch.rand(4), torch.rand(4, generator=generator)

    a, b = draws(0, (0, 1, 5)), draws(0, (0, 1, 5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for other in (draws(1, (0, 1, 5)), draws(0, (0, 1, 6))):
        assert not any(torch.equal(x, y) for x, y in zip(a, other))
    assert not torch.equal(a[0], a[1])  # dropout and SMART draw different streams


def _fake_all_gather(monkeypatch, parts: list) -> None:
    def all_gather_object(out: list, _mine: object) -> None:
        out[:] = parts

    monkeypatch.setattr(distributed.dist, "all_gather_object", all_gather_object)


@pytest.mark.parametrize("total", [7, 1])
def test_gathered_eval_rows_come_back_in_the_dev_sets_order(monkeypatch, total):
    outputs = torch.randn(total, 3)  # one process's outputs for the whole dev set
    _fake_all_gather(monkeypatch, [outputs[0::2], outputs[1::2]])  # rank 1's slice may be empty
    assert torch.equal(World(1, 2).gather_rows(outputs[1::2], total), outputs)


def test_ranks_whose_weights_differ_by_one_bit_fail_the_check(monkeypatch):
    model = torch.nn.Linear(3, 2)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.bias.view(torch.int32)[0] ^= 1  # one bit of one weight
    digests: list = []
    monkeypatch.setattr(distributed.dist, "all_gather_object", lambda out, mine: digests.append(mine))
    World(0, 2).check_replicas(model)
    World(1, 2).check_replicas(other)
    _fake_all_gather(monkeypatch, [digests[0], digests[0]])
    World(0, 2).check_replicas(model)
    _fake_all_gather(monkeypatch, digests)
    with pytest.raises(RuntimeError, match=r"rank\(s\) \[1\] differs from rank 0's"):
        World(0, 2).check_replicas(model)


# --------------------------------------------------------------------------- torchrun runs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_task_files(tmp_path_factory.mktemp("data"), 1, {"train": 24, "dev": 13})


def overrides(data_dir: Path, *, noisy: bool = False) -> list[str]:
    """A tiny run whose batches do not divide by 2 (5 = 3 + 2, and SST's last batch of 1 leaves
    rank 1 nothing), with gradient accumulation, a stateful combiner, EMA and the Bregman term.
    Dropout and SMART are off, so that one process and two draw the same losses, unless
    ``noisy`` (then each rank draws its own streams)."""
    values = [
        f'data_dir="{data_dir}"',
        'model="tiny-random"',
        'amp="off"',
        "time_budget_minutes=5",
        "fit_schedule_to_budget=false",
        "log_every=1",
        "checkpoint_every=1",
        "phases.0.epochs=2",
        'combiner="gradvac"',
        'segments="module"',
        "grad_accumulation=2",
        "ema_decay=0.9",
        "tasks.para.bregman_weight=1.0",
        "tasks.sst.train_limit=21",
    ]
    values += ["tasks.sst.smart_weight=1.0"] if noisy else ["dropout=0.0", "tasks.sst.smart_weight=0.0"]
    for task in ("sst", "para", "sts"):
        values += [f"tasks.{task}.batch_size=5", f"tasks.{task}.max_length=24"]
        values += [] if noisy else [f"tasks.{task}.head.dropout=0.0"]
    return values


def cli_args(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)] + ["--no-progress", "--dist-timeout", "60"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node 2 ARGS`` on a free port, 1 thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    env.pop("WORLD_SIZE", None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        *args,
    ]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # torchrun runs each worker in a session of its own: SIGTERM asks it to stop them.
            process.terminate()
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return torchrun("-m", "minbert_tasks", *args, timeout=timeout)


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=False)


_SKIP = {"torch_rng", "cuda_rng", "smart_rng", "elapsed_seconds", "metrics_bytes"}


def assert_same_state(a: dict, b: dict, *, exact: bool) -> None:
    """Two checkpoints hold the same training state: bitwise, or to float32 rounding."""

    def check(x, y, where: str) -> None:
        if isinstance(x, torch.Tensor):
            if exact or not x.is_floating_point():
                assert torch.equal(x, y), where
            else:
                torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6, msg=where)
        elif isinstance(x, dict):
            assert set(x) == set(y), where
            for key in x:
                check(x[key], y[key], f"{where}.{key}")
        elif isinstance(x, (list, tuple)):
            assert len(x) == len(y), where
            for k, (u, v) in enumerate(zip(x, y)):
                check(u, v, f"{where}[{k}]")
        elif isinstance(x, float) and not exact:
            assert x == pytest.approx(y, rel=1e-4, abs=1e-6), where
        else:
            assert x == y, where

    assert set(a) == set(b)
    for key in sorted(set(a) - _SKIP):
        check(a[key], b[key], key)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("one") / "run"
    assert main(["train", *cli_args(overrides(data_dir)), "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def two_processes(data_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("two") / "run"
    done = run_cli("train", *cli_args(overrides(data_dir)), "--run-dir", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("overall") == 1, done.stdout  # rank 0 alone reports
    return run


def test_two_ranks_train_the_checkpoint_one_process_trains(one_process, two_processes):
    # Every checkpoint (checkpoint_every=1) first checked that both ranks' weights were bitwise
    # identical; the run finished, so they were.
    one, two = checkpoint(one_process), checkpoint(two_processes)
    assert one["position"]["global_step"] == 6
    assert_same_state(one, two, exact=False)
    a, b = records(one_process), records(two_processes)
    assert [(r["kind"], r["step"]) for r in a] == [(r["kind"], r["step"]) for r in b]  # written once
    for x, y in zip(a, b):
        for key in ("losses", "scores") if x["kind"] == "train" else ("scores",):
            values = x.get(key) or {}
            assert values == pytest.approx(y.get(key) or {}, rel=1e-4, abs=1e-6), (x, y)
        if x["kind"] == "eval":  # the sharded, gathered evaluation scores the whole dev set
            assert x["truncated_inputs"] == y["truncated_inputs"]
    assert_same_state(
        torch.load(one_process / "best.pt", weights_only=False),
        torch.load(two_processes / "best.pt", weights_only=False),
        exact=False,
    )
    assert not list(two_processes.glob(".*.tmp"))


def test_a_killed_rank_stops_the_job_and_resume_ends_as_if_never_killed(data_dir, tmp_path):
    values = cli_args(overrides(data_dir, noisy=True))  # dropout and SMART noise: RNG state matters
    whole = run_cli("train", *values, "--run-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = tmp_path / "killed"
    started = time.monotonic()
    done = torchrun(
        str(HERE / "_torchrun_kill.py"), "kill", "1", "4", "train", *values, "--run-dir", str(killed)
    )
    assert done.returncode != 0
    assert time.monotonic() - started < 60
    assert "Signal 9 (SIGKILL)" in done.stderr and "rank      : 1" in done.stderr, done.stderr[-3000:]
    assert 3 <= checkpoint(killed)["position"]["global_step"] <= 4  # the last complete checkpoint

    resumed = run_cli("train", "--resume", str(killed), "--no-progress", "--dist-timeout", "60")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resuming") == 1 and "on 2 ranks" in resumed.stdout
    assert_same_state(checkpoint(tmp_path / "whole"), checkpoint(killed), exact=True)
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records(killed)]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records(tmp_path / "whole")]


def test_a_rank_that_stops_answering_fails_the_job_after_the_timeout(data_dir, tmp_path):
    values = [*cli_args(overrides(data_dir))[:-1], "5"]  # --dist-timeout 5
    started = time.monotonic()
    done = torchrun(
        str(HERE / "_torchrun_kill.py"),
        "hang",
        "1",
        "2",
        "train",
        *values,
        "--run-dir",
        str(tmp_path / "run"),
        timeout=60,
    )
    assert done.returncode != 0
    assert time.monotonic() - started < 60  # rank 1 sleeps 600 s: the timeout ended the job
    assert "Timed out waiting 5000ms" in done.stderr, done.stderr[-3000:]
    assert checkpoint(tmp_path / "run")["position"]["global_step"] == 2


def test_a_run_moves_from_one_process_to_two_and_back_and_ends_where_it_would_have(
    data_dir, two_processes, tmp_path
):
    def crash(trainer):
        if trainer.position.global_step == 2:
            raise Interrupted

    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(load_config("default", overrides(data_dir)), run, progress=False, on_step=crash)
    on_two = torchrun(
        str(HERE / "_torchrun_kill.py"),
        "kill",
        "1",
        "4",
        "train",
        "--resume",
        str(run),
        "--no-progress",
        "--dist-timeout",
        "60",
    )
    assert on_two.returncode != 0 and "resuming" in on_two.stdout, on_two.stderr[-3000:]
    assert checkpoint(run)["position"]["global_step"] >= 3  # trained on two ranks after the resume
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert_same_state(checkpoint(two_processes), checkpoint(run), exact=False)


REAL = default_data_dir()


@pytest.mark.skipif(not (REAL / "ids-sst-train.csv").is_file(), reason=f"no task data at {REAL}")
def test_two_ranks_on_a_slice_of_the_real_data_match_one_process(tmp_path):
    values = [v for v in overrides(REAL) if not v.startswith(("tasks.sst.train_limit", "phases.0.epochs"))]
    values += ["max_steps=3", "checkpoint_every=3"]
    for task in ("sst", "para", "sts"):
        values += [f"tasks.{task}.train_limit=31", f"tasks.{task}.dev_limit=19"]
    assert main(["train", *cli_args(values), "--run-dir", str(tmp_path / "one")]) == 0
    done = run_cli("train", *cli_args(values), "--run-dir", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_state(checkpoint(tmp_path / "one"), checkpoint(tmp_path / "two"), exact=False)
