"""A training process that kills itself with SIGKILL at a chosen point (the SIGKILL resume tests).

    python _killable_train.py RUN_DIR (CONFIG_JSON_FILE | --resume) [KILL]

KILL is one of
    step:K      right after optimizer step K (and that step's checkpoint, if it has one);
    save:K:F    in the first checkpoint file (checkpoint.pt or best.pt) written at or after
                optimizer step K, once a fraction F of its bytes is on disk;
    rename:K    that file written in full, before it is renamed over the old one.
Without KILL the run trains to its end. Each checkpoint file that is complete and in place is
appended to RUN_DIR/../saves.jsonl as ``[file name, position]``, so the test knows which one
was the last complete checkpoint when the kill came.
"""

import io
import json
import os
import signal
import sys
from pathlib import Path

import torch

import minbert_tasks.training as training
from minbert_tasks.config import config_from_json
from minbert_tasks.training import _run_dir  # writes the run's checkpoint files

torch.set_num_threads(1)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(kill: list[str], log: Path) -> None:
    """Wrap this process's checkpoint writes with the kill point and the log of finished ones."""
    real_save, real_replace, real_atomic_save = torch.save, os.replace, _run_dir.atomic_save
    armed = [False]  # the file being written is the one to kill in

    def save(obj, handle, *args, **kwargs):  # torch.save inside checkpointing's atomic writer
        step = obj["position"]["global_step"] if isinstance(obj, dict) and "position" in obj else -1
        armed[0] = kill[0] in ("save", "rename") and step >= int(kill[1])
        if armed[0] and kill[0] == "save":
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            handle.write(data[: int(len(data) * float(kill[2]))])
            handle.flush()
            os.fsync(handle.fileno())
            die()
        real_save(obj, handle, *args, **kwargs)

    def replace(source, target):
        if armed[0] and kill[0] == "rename" and str(target).endswith(".pt"):
            die()
        real_replace(source, target)

    def atomic_save(obj, path):
        real_atomic_save(obj, path)
        with open(log, "a") as handle:
            handle.write(json.dumps([Path(path).name, obj["position"]]) + "\n")

    torch.save, os.replace, _run_dir.atomic_save = save, replace, atomic_save


def main(argv: list[str]) -> None:
    run, source = Path(argv[0]), argv[1]
    kill = argv[2].split(":") if len(argv) > 2 else [""]
    install(kill, run.parent / "saves.jsonl")

    def on_step(trainer: training.Trainer) -> None:
        if kill[0] == "step" and trainer.position.global_step == int(kill[1]):
            die()

    if source == "--resume":
        try:
            training.train(None, run, resume=True, progress=False, on_step=on_step)
        except training.RunFinished as exc:  # killed after its last checkpoint: as the CLI does
            print(exc)
    else:
        training.train(config_from_json(Path(source).read_text()), run, progress=False, on_step=on_step)


if __name__ == "__main__":
    main(sys.argv[1:])
