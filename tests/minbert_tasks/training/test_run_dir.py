"""The run directory alone: starting a run, the metrics log, checkpoint files and what a resume
reads back (no model: the checkpoints hold placeholders where tensors would be)."""

import json

import pytest
import torch

from minbert_tasks.checkpointing import MODEL_KEYS, RESUME_KEYS, CheckpointError
from minbert_tasks.config import ConfigError, PhaseConfig, TaskConfig, TrainConfig
from minbert_tasks.training import RunDirectory, RunFinished, finished_reason

CONFIG = TrainConfig(tasks=[TaskConfig(name="sst")], phases=[PhaseConfig(epochs=2)], max_steps=10)


def state(**changes) -> dict:
    """A checkpoint of ``CONFIG`` at phase 0, epoch 1, optimizer step 4."""
    base = {key: None for key in MODEL_KEYS + RESUME_KEYS}
    base.update(
        config=CONFIG.to_json(),
        position={"phase": 0, "epoch": 1, "step": 2, "global_step": 4},
        elapsed_seconds=12.5,
    )
    return {**base, **changes}


def lines(run: RunDirectory) -> list[dict]:
    return [json.loads(line) for line in run.metrics.read_text().splitlines()]


def test_a_run_starts_once_with_its_config(tmp_path):
    run = RunDirectory(tmp_path / "a" / "run")
    run.start(CONFIG)
    assert json.loads((run.path / "config.json").read_text()) == json.loads(CONFIG.to_json())
    run.start(CONFIG)  # no checkpoint yet: starting again is allowed
    run.save_checkpoint(state())
    with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
        run.start(CONFIG)


def test_the_log_appends_one_line_per_record_and_only_the_writer_writes(tmp_path):
    run = RunDirectory(tmp_path)
    run.log({"kind": "train", "step": 1})
    run.log({"kind": "eval", "step": 1, "scores": {"sst": 0.5}})
    assert lines(run) == [{"kind": "train", "step": 1}, {"kind": "eval", "step": 1, "scores": {"sst": 0.5}}]
    reader = RunDirectory(tmp_path / "other", writer=False)
    reader.path.mkdir()
    reader.log({"kind": "train"})
    reader.save_checkpoint(state())
    reader.save_best(state())
    assert list(reader.path.iterdir()) == []


def test_a_checkpoint_records_the_log_size_and_a_resume_cuts_the_log_back_to_it(tmp_path):
    run = RunDirectory(tmp_path)
    run.log({"kind": "train", "step": 1})
    run.save_checkpoint(state())
    size = run.metrics.stat().st_size
    saved = torch.load(run.checkpoint, weights_only=False)
    assert saved["metrics_bytes"] == size and list(saved)[-1] == "metrics_bytes"
    run.log({"kind": "train", "step": 2})
    with open(run.metrics, "a") as handle:
        handle.write('{"kind": "tr')  # a kill mid-line
    run.rewind_metrics(saved["metrics_bytes"])
    assert lines(run) == [{"kind": "train", "step": 1}]
    run.log({"kind": "train", "step": 2})
    with open(run.metrics, "a") as handle:
        handle.write('{"kind": "tr')
    run.rewind_metrics(None)  # a checkpoint without the size: every complete line stays
    assert lines(run) == [{"kind": "train", "step": 1}, {"kind": "train", "step": 2}]
    RunDirectory(tmp_path / "empty").rewind_metrics(10)  # no log yet: nothing to cut
    assert not list(tmp_path.glob(".*.tmp"))


def test_best_and_checkpoint_are_separate_files(tmp_path):
    run = RunDirectory(tmp_path)
    run.save_best({"scores": {"sst": 0.7}})
    run.save_checkpoint(state())
    assert torch.load(tmp_path / "best.pt", weights_only=False) == {"scores": {"sst": 0.7}}
    assert torch.load(run.checkpoint, weights_only=False)["metrics_bytes"] == 0  # no log yet


def test_resume_reads_the_checkpoint_and_its_config(tmp_path):
    run = RunDirectory(tmp_path)
    run.save_checkpoint(state())
    saved, config = run.resumable()
    assert config == CONFIG
    assert saved["position"]["global_step"] == 4


def test_resume_names_what_is_wrong_with_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run directory at"):
        RunDirectory(tmp_path / "missing").resumable()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="takes a run directory, not a file"):
        RunDirectory(tmp_path / "file").resumable()
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    with pytest.raises(
        FileNotFoundError, match="no checkpoint.pt: the run stopped before its first checkpoint"
    ):
        run.resumable()
    run.save_checkpoint({k: v for k, v in state().items() if k != "optimizer"})
    with pytest.raises(CheckpointError, match="no optimizer"):
        run.resumable()
    run.save_checkpoint(state(config=json.dumps({"tasks": [{"name": "sst", "batch_size": 0}]})))
    with pytest.raises(ConfigError, match="its saved config does not load in this version"):
        run.resumable()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"position": {"phase": 0, "epoch": 2, "step": 0, "global_step": 6}}, "every phase is done"),
        ({"position": {"phase": 0, "epoch": 1, "step": 3, "global_step": 10}}, "max_steps=10 reached"),
    ],
)
def test_a_finished_run_is_not_resumed(tmp_path, changes, reason):
    assert finished_reason(CONFIG, state()) is None
    assert finished_reason(CONFIG, state(**changes)) == reason
    run = RunDirectory(tmp_path)
    run.save_checkpoint(state(**changes))
    with pytest.raises(RunFinished, match=f"already finished \\({reason}\\); nothing to resume"):
        run.resumable()


def test_the_time_budget_counts_the_seconds_the_checkpoint_saved():
    budgeted = TrainConfig(
        tasks=[TaskConfig(name="sst")], phases=[PhaseConfig(epochs=2)], time_budget_minutes=0.5
    )
    assert finished_reason(budgeted, state(elapsed_seconds=30.0)) is None
    assert finished_reason(budgeted, state(elapsed_seconds=30.5)) == "its time budget of 0.5 minutes is spent"
    assert finished_reason(budgeted, {k: v for k, v in state().items() if k != "elapsed_seconds"}) is None
