"""``minbert-tasks`` under torchrun with one rank failing: ``_torchrun_kill.py HOW RANK STEP ARGS...``
runs ``minbert_tasks.cli.main(ARGS)``; after optimizer step STEP, rank RANK is SIGKILLed
(HOW = kill) or stops answering its peers (HOW = hang)."""

import functools
import os
import signal
import sys
import time

from minbert_tasks import training
from minbert_tasks.cli import main

how, rank, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def fail(trainer: training.Trainer) -> None:
    if trainer.world.rank == rank and trainer.position.global_step == step:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(600)


training.train = functools.partial(training.train, on_step=fail)  # the CLI imports it when it runs
sys.exit(main(sys.argv[4:]))
