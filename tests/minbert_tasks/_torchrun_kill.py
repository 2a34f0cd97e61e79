"""``minbert-tasks`` under torchrun with one rank killed: ``_torchrun_kill.py RANK STEP ARGS...``
runs ``minbert_tasks.cli.main(ARGS)`` and SIGKILLs rank RANK after optimizer step STEP."""

import functools
import os
import signal
import sys

from minbert_tasks import training
from minbert_tasks.cli import main

rank, step = int(sys.argv[1]), int(sys.argv[2])


def kill(trainer: training.Trainer) -> None:
    if trainer.world.rank == rank and trainer.position.global_step == step:
        os.kill(os.getpid(), signal.SIGKILL)


training.train = functools.partial(training.train, on_step=kill)  # the CLI imports it when it runs
sys.exit(main(sys.argv[3:]))
