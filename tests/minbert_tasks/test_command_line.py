"""The ``minbert-tasks`` commands on user mistakes: every one is a single ``error:`` line naming
what was wrong, exit code 2, no traceback and nothing half-written."""

import json
import random
from pathlib import Path

import pytest
import torch

from minbert_tasks.checkpointing import CheckpointError, load
from minbert_tasks.cli import main
from minbert_tasks.config import ConfigError, load_config

from _task_files import WORDS, write


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    rng = random.Random(0)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6)))

    for split, n in (("train", 8), ("dev", 6)):
        write(
            folder / f"ids-sst-{split}.csv",
            ["id", "sentence", "sentiment"],
            [[f"s{split}{k}", sentence(), str(k % 5)] for k in range(n)],
        )
        write(
            folder / f"quora-{split}.csv",
            ["id", "sentence1", "sentence2", "is_duplicate"],
            [[f"q{split}{k}", sentence(), sentence(), str(k % 2)] for k in range(n)],
        )
        write(
            folder / f"sts-{split}.csv",
            ["id", "sentence1", "sentence2", "similarity"],
            [[f"t{split}{k}", sentence(), sentence(), f"{k % 5}.5"] for k in range(n)],
        )
    return folder


def tiny_args(data_dir: Path) -> list[str]:
    args = [
        "--set",
        'model="tiny-random"',
        "--set",
        'amp="off"',
        "--set",
        "time_budget_minutes=5",
        "--data-dir",
        str(data_dir),
        "--no-progress",
    ]
    for task in ("sst", "para", "sts"):
        args += ["--set", f"tasks.{task}.batch_size=4", "--set", f"tasks.{task}.max_length=16"]
    return args


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory) -> Path:
    """A finished two-step run."""
    folder = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", *tiny_args(data_dir), "--set", "max_steps=2", "--run-dir", str(folder)]) == 0
    return folder


def one_error(capsys, *needles: str) -> str:
    """The single stderr line of a failed command, checked to contain ``needles``."""
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert captured.err.startswith("minbert-tasks "), captured.err
    for needle in needles:
        assert needle in captured.err, (needle, captured.err)
    return captured.err


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("max_steps=2.5", "max_steps must be an integer, got 2.5"),
        ("freeze_word_embeddings=3", "freeze_word_embeddings must be true or false"),
        ('seed="x"', "seed must be an integer"),
        ("tasks.sst.batch_size=2.5", "tasks.sst.batch_size must be an integer"),
        ('tasks.sts.head.dropout="x"', "tasks.sts.head.dropout must be a number"),
        ("device=3", "device must be a string"),
        ("phases.0.tasks=3", "phases.0.tasks must be a list"),
        ("combiner_options=3", "combiner_options must be a table"),
    ],
)
def test_values_of_the_wrong_type_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", [override])


def test_an_integral_float_is_an_int_and_numbers_stay_numbers():
    config = load_config("default", ["max_steps=3.0", "time_budget_minutes=5", "lr=1"])
    assert config.max_steps == 3 and isinstance(config.max_steps, int)
    assert config.time_budget_minutes == 5 and config.lr == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("phases.5.epochs=3", r"'5' is not an index of a list of 1"),
        ("phases.x.epochs=3", r"'x' is not an index"),
        ("lr.x=1", r"lr is 4e-05, not a table"),
        ("tasks.sst.name.x=1", r"tasks.sst.name is 'sst', not a table"),
    ],
)
def test_an_override_into_a_missing_item_or_a_value_names_the_override(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", [override])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("phases.0.sampler_options.bogus=1", "phases.0.sampler_options"),
        ("combiner_options.bogus=1", "combiner_options"),
        ('device="nope"', "not a torch device"),
    ],
)
def test_bad_runtime_options_fail_before_the_run_directory_is_made(
    data_dir, tmp_path, capsys, override, needle
):
    assert main(["train", *tiny_args(data_dir), "--set", override, "--run-dir", str(tmp_path / "r")]) == 2
    one_error(capsys, needle, "bogus" if "bogus" in override else "nope")
    assert not (tmp_path / "r").exists()


def test_a_missing_data_folder_says_how_to_point_at_one(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--set",
                'model="tiny-random"',
                "--data-dir",
                str(tmp_path / "nowhere"),
                "--run-dir",
                str(tmp_path / "r"),
                "--no-progress",
            ]
        )
        == 2
    )
    one_error(capsys, f"data folder {tmp_path / 'nowhere'} does not exist", "--data-dir")


# --------------------------------------------------------------------------- resume


def test_resume_refuses_flags_it_would_ignore(run, capsys):
    assert main(["train", "--resume", str(run), "--set", "lr=1"]) == 2
    one_error(capsys, "--resume", "drop --set")


def test_resume_of_a_missing_dir_a_file_or_a_run_without_a_checkpoint(run, tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    one_error(capsys, "no run directory at")
    assert main(["train", "--resume", str(run / "best.pt")]) == 2
    one_error(capsys, "takes a run directory, not a file")
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "config.json").write_text("{}")
    assert main(["train", "--resume", str(tmp_path / "early")]) == 2
    one_error(capsys, "has no checkpoint.pt", "--run-dir")


def test_resume_of_a_half_written_or_foreign_checkpoint(run, tmp_path, capsys):
    half = tmp_path / "half"
    half.mkdir()
    (half / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
    assert main(["train", "--resume", str(half)]) == 2
    one_error(capsys, "cannot read checkpoint", "checkpoint.pt")
    old = tmp_path / "old"
    old.mkdir()
    state = load(run / "checkpoint.pt")
    del state["optimizer"]
    torch.save(state, old / "checkpoint.pt")
    assert main(["train", "--resume", str(old)]) == 2
    one_error(capsys, "not a minbert-tasks checkpoint", "optimizer")


def test_resuming_a_finished_run_trains_nothing(run, capsys):
    before = load(run / "checkpoint.pt")["position"]
    mtime = (run / "checkpoint.pt").stat().st_mtime_ns
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "already finished (max_steps=2 reached)" in capsys.readouterr().out
    assert load(run / "checkpoint.pt")["position"] == before == {**before, "global_step": 2}
    assert (run / "checkpoint.pt").stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------- evaluate / predict


@pytest.mark.parametrize("content", [b"", b"garbage", b"\tid\tsentence\n"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load(bad)
    assert main(["evaluate", "--checkpoint", str(bad)]) == 2
    one_error(capsys, str(bad))


def test_evaluate_out_is_checked_first_and_written_whole(run, data_dir, tmp_path, capsys):
    assert (
        main(["evaluate", "--checkpoint", str(run), "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 2
    )
    one_error(capsys, "is a directory")
    out = tmp_path / "new" / "scores.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert '"overall"' in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["scores.json"]
    plain = tmp_path / "plain"
    plain.touch()
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # as open() makes it, not 0o600


def test_evaluate_on_a_split_with_no_rows_names_the_file(run, data_dir, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    for f in data_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "sts-dev.csv").write_text("\tid\tsentence1\tsentence2\tsimilarity\n")
    assert main(["evaluate", "--checkpoint", str(run), "--data-dir", str(folder)]) == 2
    one_error(capsys, "sts dev: no examples read from", "sts-dev.csv")


def test_evaluate_batch_size_must_be_positive(run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(run), "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(("task", "source"), [("para", "ids-sst-dev.csv"), ("sst", "quora-dev.csv")])
def test_predict_on_another_tasks_file_is_refused(run, data_dir, tmp_path, capsys, task, source):
    out = tmp_path / "p.csv"
    args = [
        "predict",
        "--checkpoint",
        str(run),
        "--task",
        task,
        "--input",
        str(data_dir / source),
        "--out",
        str(out),
    ]
    assert main(args) == 2
    one_error(capsys, source, "wrong --task")
    assert not out.exists()


def test_predict_out_that_is_a_directory(run, data_dir, tmp_path, capsys):
    args = [
        "predict",
        "--checkpoint",
        str(run),
        "--task",
        "sst",
        "--input",
        str(data_dir / "ids-sst-dev.csv"),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    one_error(capsys, "is a directory")


def test_predict_keeps_every_readable_row_in_order_with_its_id(run, tmp_path, capsys):
    source = tmp_path / "sst-test.csv"
    source.write_text(
        "\tid\tsentence\n0\ta1\tgood film\n1\ta2\n2\t\tno id\n3\ta4\tdull plot\n4\ta5\tsad story\n"
    )
    out = tmp_path / "deep" / "sst.csv"
    assert (
        main(
            ["predict", "--checkpoint", str(run), "--task", "sst", "--input", str(source), "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "skipped 2 malformed rows (line 3: missing columns" in printed and "line 4: empty id" in printed
    lines = out.read_text().splitlines()
    assert lines[0] == "id,prediction" and [line.split(",")[0] for line in lines[1:]] == ["a1", "a4", "a5"]


# --------------------------------------------------------------------------- analyze


def test_analyze_a_file_is_refused(run, capsys):
    assert main(["analyze", str(run / "best.pt")]) == 2
    one_error(capsys, "not a file")


def test_analyze_a_run_in_progress_draws_its_curves(run, tmp_path, capsys):
    live = tmp_path / "live"
    live.mkdir()
    # no best.pt yet, and the trainer is half-way through writing a record
    (live / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + '{"kind": "train", "st')
    assert main(["analyze", str(live), "--out-dir", str(tmp_path / "pics")]) == 0
    out = capsys.readouterr().out
    assert "no best.pt yet" in out
    assert {p.name for p in (tmp_path / "pics").iterdir()} == {
        "gradient_cosines.png",
        "train_losses.png",
        "dev_scores.png",
    }


def test_presets_are_listed_with_what_each_reproduces(capsys):
    from minbert_tasks.config import preset_names

    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == preset_names()
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines), lines  # every preset says what it is


def test_train_help_documents_the_short_run_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for key in ("max_steps", "train_limit", "dev_limit", "time_budget_minutes"):
        assert key in text


def test_evaluate_says_what_it_scored_and_records_it(run, data_dir, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--checkpoint", str(run), "--data-dir", str(data_dir), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["split"] == "dev" and Path(record["checkpoint"]).name == "best.pt"
    expected = {
        name: len(list((data_dir / file).open())) - 1
        for name, file in (("sst", "ids-sst-dev.csv"), ("para", "quora-dev.csv"), ("sts", "sts-dev.csv"))
    }
    assert record["rows"] == {k: v for k, v in expected.items() if k in record["rows"]}
    assert record["rows"] and set(record["rows"]) == set(record["scores"])
    printed = capsys.readouterr().out
    assert "dev split" in printed and all(f"{name} {n} rows" in printed for name, n in record["rows"].items())
