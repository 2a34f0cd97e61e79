"""Run a function on N gloo ranks in spawned processes, with timeouts so a broken collective
fails the test instead of hanging it."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

#: Per-collective timeout inside the ranks, and the wall-clock limit of a whole spawned job.
COLLECTIVE_TIMEOUT_S = 30
JOB_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable[..., None], world: int, port: int, args: tuple) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    )
    try:
        fn(rank, world, *args)
        dist.barrier()  # no rank tears the group down while a peer still talks to it
    finally:
        dist.destroy_process_group()
    # Skip the interpreter's teardown once the work and its files are done: with torch 2.13 and
    # gloo a rank now and then aborts there ("terminate called without an active exception",
    # SIGABRT), which spawn reports as a failed job (minbert_tasks.distributed.end_worker, the
    # same for torchrun workers). A rank that raised still goes through spawn's error report.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(fn: Callable[..., None], world: int, *args: object, timeout: float = JOB_TIMEOUT_S) -> None:
    """Run ``fn(rank, world, *args)`` on ``world`` gloo ranks; re-raise the first rank's error;
    kill the ranks and raise :class:`TimeoutError` after ``timeout`` seconds."""
    context = mp.start_processes(
        _entry, args=(fn, world, free_port(), args), nprocs=world, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            raise TimeoutError(f"{getattr(fn, '__name__', fn)} on {world} ranks ran past {timeout} s")


#: Jobs registered by the test modules at import; one spawned 2-rank run executes them all
#: (process start-up, ~10 s on a loaded 2-core machine, dominates each job's own work).
JOBS: list[Callable[[int, int, str], None]] = []


def rank_job(fn: Callable[[int, int, str], None]) -> Callable[[int, int, str], None]:
    """Register ``fn(rank, world, out_dir)`` to run on 2 ranks with the other jobs."""
    JOBS.append(fn)
    return fn


def _run_jobs(rank: int, world: int, jobs: list[tuple[Callable[[int, int, str], None], str]]) -> None:
    for fn, out in jobs:
        try:
            fn(rank, world, out)
        except Exception:  # recorded for the job's tests; the other jobs still run
            with open(f"{out}/rank{rank}.error", "w") as f:
                f.write(traceback.format_exc())


def run_jobs(root: Path) -> dict[str, Path]:
    """Run every registered job on 2 ranks, each in its own folder under ``root``."""
    folders = {}
    for fn in JOBS:
        folders[fn.__name__] = root / fn.__name__
        folders[fn.__name__].mkdir()
    run_ranks(_run_jobs, 2, [(fn, str(folders[fn.__name__])) for fn in JOBS])
    return folders


def job_results(folder: Path, world: int = 2) -> list:
    """Each rank's saved results of one job, or the rank's traceback as a test failure."""
    for rank in range(world):
        error = folder / f"rank{rank}.error"
        if error.exists():
            raise AssertionError(f"rank {rank} of {folder.name} failed:\n{error.read_text()}")
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(world)]


def digest(tensors: Iterable[torch.Tensor]) -> str:
    """A hash of the exact bits of some tensors."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def assert_identical_across_ranks(tensors: Iterable[torch.Tensor], what: str) -> None:
    """All-gather a hash of the tensors' bits and fail unless every rank holds the same."""
    mine = digest(tensors)
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    assert len(set(everyone)) == 1, f"{what}: ranks differ bitwise ({everyone})"
