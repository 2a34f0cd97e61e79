"""The trainer end to end on tiny files and a tiny random encoder (no pretrained weights)."""

import json
import time
import types
from pathlib import Path

import pytest
import torch

from minbert_tasks.cli import main
from minbert_tasks.config import ConfigError, TaskConfig, TrainConfig, load_config, preset_names
from minbert_tasks.training import Interrupted, RunFinished, Trainer, combiner_options, train

from _task_files import write, write_task_files


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_task_files(tmp_path_factory.mktemp("data"), 0, {"train": 24, "dev": 12}, malformed_para=True)


def tiny(data_dir: Path, source="default", *overrides: str):
    base = [
        f'data_dir="{data_dir}"',
        'model="tiny-random"',
        "log_every=1",
        "checkpoint_every=1",
        "time_budget_minutes=5",
        'amp="off"',
    ]  # fp32: several tests compare exact values
    for task in ("sst", "para", "sts"):
        base += [f"tasks.{task}.batch_size=4", f"tasks.{task}.max_length=24"]
    return load_config(source, [*base, *overrides])


def test_a_run_writes_config_metrics_checkpoints_and_tokenizer(data_dir, tmp_path, capsys):
    scores = train(tiny(data_dir, "default", "phases.0.epochs=2"), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert set(scores) == {"sst", "para", "sts"}
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "tokenizer"} <= {
        p.name for p in run.iterdir()
    }
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert len([r for r in records if r["kind"] == "eval"]) == 2  # one per epoch
    assert train_records[0]["tasks"] == ["sst", "para", "sts"]
    cos = torch.tensor(train_records[0]["cosines"])  # from PCGrad's own Gramian
    assert cos.shape == (3, 3) and torch.allclose(cos.diagonal(), torch.ones(3), atol=1e-4)
    assert "line 14: empty label" in capsys.readouterr().out  # the malformed row is reported
    assert not list(run.glob(".*.tmp"))
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny(data_dir), run, progress=False)


@pytest.mark.parametrize("combiner", ["gradvac", "pcgrad"])
def test_a_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(data_dir, tmp_path, combiner):
    # The default groups batches by length; its time-fitted schedule is turned off, since a
    # schedule that reads the clock cannot be bit-identical across an interruption.
    overrides = [
        f'combiner="{combiner}"',
        "phases.0.epochs=2",
        'segments="tensor"',
        "tasks.sst.smart_weight=1.0",
        "tasks.para.bregman_weight=1.0",
        "fit_schedule_to_budget=false",
        "ema_decay=0.9",
    ]
    whole = train(tiny(data_dir, "default", *overrides), tmp_path / "whole", progress=False)

    def crash(trainer):
        if trainer.position.global_step == 4:  # mid-epoch, after that step's checkpoint
            raise Interrupted

    with pytest.raises(Interrupted):
        train(tiny(data_dir, "default", *overrides), tmp_path / "killed", progress=False, on_step=crash)
    spent = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["elapsed_seconds"]
    resumed = train(None, tmp_path / "killed", resume=True, progress=False)
    assert resumed == whole
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["ema"].items():
        assert torch.equal(value, b["ema"][key]), key
    assert a["position"] == b["position"]
    assert b["elapsed_seconds"] > spent > 0  # the time budget counts the whole run, resumes too


def _records(run: Path) -> list[dict]:
    """The metrics of a run without their wall-clock fields."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def test_a_resumed_run_logs_each_step_once_even_after_a_kill_mid_line(data_dir, tmp_path):
    overrides = ["phases.0.epochs=2", "checkpoint_every=3", "fit_schedule_to_budget=false"]
    train(tiny(data_dir, "default", *overrides), tmp_path / "whole", progress=False)

    def crash(trainer):
        if trainer.position.global_step == 5:  # steps 4 and 5 are logged after step 3's checkpoint
            raise Interrupted

    killed = tmp_path / "killed"
    with pytest.raises(Interrupted):
        train(tiny(data_dir, "default", *overrides), killed, progress=False, on_step=crash)
    with open(killed / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "train", "st')  # the kill came in the middle of a write
    train(None, killed, resume=True, progress=False)
    assert _records(killed) == _records(tmp_path / "whole")

    # A checkpoint from before the byte count was saved keeps every complete line.
    state = torch.load(killed / "checkpoint.pt", weights_only=False)
    trainer = Trainer(tiny(data_dir, "default", *overrides), killed, progress=False)
    with open(killed / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "tr')
    trainer.restore({k: v for k, v in state.items() if k != "metrics_bytes"})
    assert _records(killed) == _records(tmp_path / "whole")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [(["max_steps=2"], "max_steps=2 reached"), (["phases.0.epochs=1"], "every phase is done")],
)
def test_resuming_a_finished_run_trains_nothing(data_dir, tmp_path, overrides, reason):
    train(tiny(data_dir, "default", *overrides), tmp_path, progress=False)
    before = (tmp_path / "metrics.jsonl").read_text(), (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(RunFinished, match=reason):
        train(None, tmp_path, resume=True, progress=False)
    assert ((tmp_path / "metrics.jsonl").read_text(), (tmp_path / "checkpoint.pt").read_bytes()) == before


def test_seeded_combiners_take_the_runs_seed_unless_given_one(data_dir):
    assert combiner_options(tiny(data_dir, "default", 'combiner="pcgrad"', "seed=7")) == {"seed": 7}
    given = tiny(data_dir, "default", 'combiner="gradvac"', "seed=7", "combiner_options.seed=3")
    assert combiner_options(given)["seed"] == 3
    assert combiner_options(tiny(data_dir, "default", 'combiner="imtl-g"', "seed=7")) == {}


def test_a_schedule_fitted_to_the_budget_decays_with_time(data_dir, tmp_path):
    fitted = Trainer(
        tiny(data_dir, "default", "warmup=0.0", "fit_schedule_to_budget=true"), tmp_path, progress=False
    )
    steps = Trainer(
        tiny(data_dir, "default", "warmup=0.0", "fit_schedule_to_budget=false"), tmp_path, progress=False
    )
    assert fitted.total_steps == steps.total_steps > 4
    half = fitted.total_steps // 2
    for trainer in (fitted, steps):
        assert trainer._lr_factor(half) == pytest.approx(1 - half / trainer.total_steps)
        trainer.clock.before = 0.75 * 5 * 60  # three quarters of the 5-minute budget spent
    assert fitted._lr_factor(0) == pytest.approx(0.25, abs=1e-3)  # time is further along
    assert fitted._lr_factor(fitted.total_steps - 1) < 0.25  # steps are further along
    assert steps._lr_factor(0) == 1.0
    fitted.clock.before = 6 * 60
    assert fitted._lr_factor(0) == 0.0
    with pytest.raises(ConfigError, match="needs time_budget_minutes"):
        TrainConfig(tasks=[TaskConfig(name="sst")], fit_schedule_to_budget=True)


def test_a_deterministic_run_is_the_same_whatever_the_clock_says(data_dir, tmp_path, monkeypatch):
    import minbert_tasks.distributed as distributed  # the trainer's clock reads time.monotonic there

    def run(name: str, deterministic: bool, late: bool) -> dict:
        """Six steps of the default preset (its schedule fits itself to the 5-minute budget);
        ``late``: from the start of training on, the clock reads 90% of the budget spent."""
        calls = []

        def monotonic() -> float:
            calls.append(None)
            return time.monotonic() + (0.9 * 5 * 60 if late and len(calls) > 1 else 0.0)

        monkeypatch.setattr(distributed, "time", types.SimpleNamespace(monotonic=monotonic))
        switched, rates = [], []

        def follow(trainer: Trainer) -> None:
            switched.append(torch.are_deterministic_algorithms_enabled())
            rates.append(trainer.stepper.scheduler.get_last_lr())

        config = tiny(
            data_dir, "default", "max_steps=6", "warmup=0.0", f"deterministic={str(deterministic).lower()}"
        )
        train(config, tmp_path / name, progress=False, on_step=follow)
        monkeypatch.undo()
        assert switched == [deterministic] * 6
        return {"rates": rates, **torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)}

    assert not torch.are_deterministic_algorithms_enabled()
    early, late = run("early", True, late=False), run("late", True, late=True)
    assert not torch.are_deterministic_algorithms_enabled()  # switched back after the run
    assert early["rates"] == late["rates"]
    for key, value in early["model"].items():
        assert torch.equal(value, late["model"][key]), key
    # Without the option the fitted schedule reads the clock, and the runs part.
    early, late = run("early-clock", False, late=False), run("late-clock", False, late=True)
    assert early["rates"] != late["rates"]
    assert any(not torch.equal(value, late["model"][key]) for key, value in early["model"].items())


def test_logged_gradient_norms_are_those_of_the_task_rows(data_dir, tmp_path):
    trainer = Trainer(tiny(data_dir, "default", "max_steps=1"), tmp_path, progress=False)
    trainer.fit()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["kind"] == "train" and record["step"] == 1
    # The rows still hold step 1's gradients: they are zeroed when the next step starts.
    expected = trainer.stepper.buffer.rows.double().norm(dim=1)
    assert expected.min() > 0
    torch.testing.assert_close(
        torch.tensor(record["grad_norms"], dtype=torch.float64), expected, rtol=1e-4, atol=1e-6
    )


def test_ema_weights_follow_the_formula_and_are_what_is_scored_and_kept(data_dir, tmp_path):
    decay = 0.3  # the warm-up's (1+n)/(10+n) passes it at the fourth update
    trainer = Trainer(
        tiny(data_dir, "default", f"ema_decay={decay}", "max_steps=4"), tmp_path, progress=False
    )
    expected: dict[str, torch.Tensor] = {}

    updates = []

    def follow(t: Trainer) -> None:  # W_1 = θ_1, then W ← d·W + (1−d)·θ, d = min(decay, (1+n)/(10+n))
        d = min(decay, (1 + len(updates)) / (10 + len(updates)))
        updates.append(d)
        for name, p in t.model.named_parameters():
            theta = p.detach().clone()
            expected[name] = theta if name not in expected else d * expected[name] + (1 - d) * theta

    trainer.fit(on_step=follow)
    assert updates[1:] == pytest.approx([2 / 11, 3 / 12, 0.3])  # warm-up, then the configured decay
    averaged = dict(trainer.stepper.ema.module.named_parameters())
    assert set(averaged) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.equal(averaged[n], p) for n, p in trainer.model.named_parameters())
    best = torch.load(tmp_path / "best.pt", weights_only=False)["model"]  # the averaged weights
    for name, value in trainer.stepper.ema.module.state_dict().items():
        assert torch.equal(best[name], value), name
    with pytest.raises(ConfigError, match=r"ema_decay must be in \(0, 1\)"):
        TrainConfig(tasks=[TaskConfig(name="sst")], ema_decay=1.0)


def test_layer_wise_lr_decay_gives_each_encoder_layer_its_rate(data_dir, tmp_path):
    trainer = Trainer(
        tiny(data_dir, "default", "layer_lr_decay=0.5", "lr=1e-3", "head_lr=2e-3", "warmup=0.0"),
        tmp_path,
        progress=False,
    )
    rate = {id(p): group["lr"] for group in trainer.stepper.optimizer.param_groups for p in group["params"]}
    decay = {
        id(p): group["weight_decay"]
        for group in trainer.stepper.optimizer.param_groups
        for p in group["params"]
    }
    expected = {
        "encoder.embeddings.": 0.25e-3,
        "encoder.encoder.layer.0.": 0.5e-3,  # 2 layers
        "encoder.encoder.layer.1.": 1e-3,
        "encoder.pooler.": 1e-3,
        "heads.": 2e-3,
    }
    named = list(trainer.model.named_parameters())
    assert len(rate) == len(named)
    for name, p in named:
        prefix = next(k for k in expected if name.startswith(k))
        assert rate[id(p)] == pytest.approx(expected[prefix]), name
        assert decay[id(p)] == (0.0 if p.dim() < 2 and prefix != "heads." else trainer.config.weight_decay), (
            name
        )
    with pytest.raises(ConfigError, match=r"layer_lr_decay must be in \(0, 1\]"):
        TrainConfig(tasks=[TaskConfig(name="sst")], layer_lr_decay=0.0)


def test_amp_auto_picks_bf16_where_it_is_native_and_a_bf16_run_trains(data_dir, tmp_path, monkeypatch):
    import minbert_tasks.training as training
    from minbert_tasks.training import _trainer  # where the trainer looks the check up

    for native, dtype in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(_trainer, "native_bf16", lambda device, native=native: native)
        trainer = Trainer(tiny(data_dir, "default", 'amp="auto"'), tmp_path / "auto", progress=False)
        assert trainer.autocast_dtype == dtype
    assert isinstance(training.native_bf16(torch.device("cpu")), bool)
    bf16 = Trainer(
        tiny(
            data_dir,
            "default",
            'amp="bf16"',
            "max_steps=12",
            "warmup=0.0",
            "lr=1e-3",
            "head_lr=1e-3",
            "tasks.sts.loss_weight=0.1",
            "fit_schedule_to_budget=false",
        ),
        tmp_path / "bf16",
        progress=False,
    )
    assert bf16.autocast_dtype == torch.bfloat16
    assert_it_learns(bf16)
    weights = torch.load(tmp_path / "bf16" / "best.pt", weights_only=False)["model"]
    assert all(t.dtype == torch.float32 for t in weights.values())  # autocast keeps fp32 master weights


def test_a_task_loss_weight_scales_exactly_that_tasks_gradient_row(data_dir, tmp_path):
    rows = []
    for weight in (1.0, 2.5):
        trainer = Trainer(
            tiny(data_dir, "default", f"tasks.sst.loss_weight={weight}"), tmp_path, progress=False
        )
        torch.manual_seed(1)  # the same dropout masks in both runs
        losses = trainer.stepper.micro_step(trainer.schedule.plan(0, 0)[0])
        assert set(losses) == {"sst", "para", "sts"}
        rows.append(trainer.stepper.buffer.rows.clone())
    sst = trainer.task_names.index("sst")
    torch.testing.assert_close(rows[1][sst], 2.5 * rows[0][sst])
    others = [t for t in range(3) if t != sst]
    torch.testing.assert_close(rows[1][others], rows[0][others])
    assert rows[0][sst].abs().sum() > 0
    with pytest.raises(ConfigError, match="loss_weight"):
        tiny(data_dir, "default", "tasks.sst.loss_weight=0")


def test_accumulated_micro_steps_average_and_an_epochs_partial_group_is_stepped_at_full_scale(
    data_dir, tmp_path
):
    # SST in batches of 8 gives 3 micro-steps per epoch: one step of 2, then a step of just 1.
    config = tiny(
        data_dir,
        "default",
        "grad_accumulation=2",
        "tasks.sst.batch_size=8",
        "tasks.sst.loss_weight=3",
        "phases.0.epochs=1",
        "fit_schedule_to_budget=false",
    )
    trainer = Trainer(config, tmp_path, progress=False)
    assert len(trainer.schedule.plan(0, 0)) == 3 and trainer.total_steps == 2
    scales: dict[str, list[float]] = {}
    task_loss = trainer.stepper.task_loss

    def spy(task, indices):  # the gradient reaching a task's loss is the scale it is backed with
        loss, plain = task_loss(task, indices)
        loss.register_hook(lambda grad: scales.setdefault(task, []).append(float(grad)))
        return loss, plain

    trainer.stepper.task_loss = spy
    steps = []
    trainer.fit(on_step=lambda t: steps.append(t.position.step))
    assert steps == [2, 3]
    assert scales["sst"] == pytest.approx([1.5, 1.5, 3.0])
    assert scales["para"] == scales["sts"] == pytest.approx([0.5, 0.5, 1.0])


def test_label_smoothing_reaches_the_loss_and_bad_values_are_refused(data_dir, tmp_path):
    losses = {}
    for epsilon in (0.0, 0.2):
        overrides = [f"tasks.sst.label_smoothing={epsilon}", f"tasks.para.label_smoothing={epsilon}"]
        trainer = Trainer(tiny(data_dir, "default", *overrides), tmp_path / str(epsilon), progress=False)
        torch.manual_seed(1)  # the same dropout masks in both runs
        losses[epsilon] = trainer.stepper.micro_step(trainer.schedule.plan(0, 0)[0])
    assert losses[0.2]["sst"] != pytest.approx(losses[0.0]["sst"], abs=1e-6)
    assert losses[0.2]["para"] != pytest.approx(losses[0.0]["para"], abs=1e-6)
    assert losses[0.2]["sts"] == pytest.approx(losses[0.0]["sts"], abs=1e-6)  # not smoothed
    for bad in ("1.0", "-0.1", '"a"'):
        with pytest.raises(ConfigError, match=r"label_smoothing must be (in \[0, 1\)|a number)"):
            tiny(data_dir, "default", f"tasks.sst.label_smoothing={bad}")
    with pytest.raises(ValueError, match="sts: label_smoothing=0.1 needs class outputs"):
        Trainer(tiny(data_dir, "default", "tasks.sts.label_smoothing=0.1"), tmp_path / "sts", progress=False)


def test_frozen_word_embeddings_stay_put_while_the_rest_trains(data_dir, tmp_path):
    trainer = Trainer(
        tiny(data_dir, "default", "freeze_word_embeddings=true", "max_steps=2", "warmup=0.0"),
        tmp_path,
        progress=False,
    )
    encoder = trainer.model.encoder
    words = encoder.embeddings.word_embeddings.weight
    before = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    trainer.fit()
    assert torch.equal(words, before["embeddings.word_embeddings.weight"])
    assert words.grad is None
    still = {name for name, p in encoder.named_parameters() if torch.equal(p, before[name])}
    # Everything else trained (the pooler aside: mean-pooling heads never read it).
    assert {name for name in still if not name.startswith("pooler.")} == {"embeddings.word_embeddings.weight"}
    # The task-gradient buffer holds no rows for the frozen matrix.
    assert "embeddings.word_embeddings.weight" not in trainer.stepper.buffer.names
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    assert (
        trainer.stepper.buffer.rows.shape[1]
        == trainable
        == sum(t.numel() for t in before.values()) - words.numel()
    )


@torch.no_grad()
def batch_losses(trainer: Trainer, steps: list[dict]) -> dict[str, float]:
    """Each task's loss summed over its batches in ``steps``, without dropout."""
    trainer.model.eval()
    losses: dict[str, float] = {}
    for step in steps:
        for task, indices in step.items():
            setup = trainer.setups[task]
            examples = [trainer.train_data[task][int(i)] for i in indices]
            inputs, labels = setup.spec.collate(
                examples, trainer.tokenizer, setup.max_length, setup.head.pair_encoding
            )
            outputs = trainer.model(task, inputs).float()
            loss = float(setup.spec.loss(outputs, labels, label_smoothing=setup.label_smoothing))
            losses[task] = losses.get(task, 0.0) + loss
    trainer.model.train()
    return losses


def assert_it_learns(trainer: Trainer) -> None:
    """Train ``trainer`` to its end. Every task must be trained, and its loss on the batches of
    each optimizer step, measured just before and just after that step, must fall summed over
    the run (measured step by step, so that a task a later phase makes the model forget still
    counts as learned); every head parameter and every encoder parameter a task reads must move."""
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    change: dict[str, float] = {}
    batches: list[dict] = []
    micro_step, optimizer_step = trainer.stepper.micro_step, trainer.stepper.optimizer_step

    def record(step, accumulated=1):
        batches.append(step)
        return micro_step(step, accumulated)

    def measured():
        first = batch_losses(trainer, batches)
        info = optimizer_step()
        for task, value in batch_losses(trainer, batches).items():
            change[task] = change.get(task, 0.0) + value - first[task]
        batches.clear()
        return info

    trainer.stepper.micro_step, trainer.stepper.optimizer_step = record, measured
    trainer.fit()
    assert set(change) == set(trainer.task_names)
    assert all(value < 0 for value in change.values()), change
    fixed = {name for name, p in trainer.model.named_parameters() if torch.equal(p, before[name])}
    # The pooler is read only by pooler heads; frozen word embeddings are meant to stay put.
    frozen = {"encoder.embeddings.word_embeddings.weight"} if trainer.config.freeze_word_embeddings else set()
    assert {name for name in fixed if not name.startswith("encoder.pooler.")} == frozen


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_trains_every_task_down(data_dir, tmp_path, preset):
    extra = ["phases.0.sampler_options.subset_size=8"] if preset.startswith("rss") else []
    # 24 steps cover every task under every preset's first phase(s) (sequential: 18 per epoch).
    # The tiny random encoder needs a larger rate than a preset's to show progress that soon, and
    # STS's MSE on a 0-5 scale, 10x the others' gradients, drowns them under sum or PCGrad
    # (measured: Quora's loss fell in only 5 of 18 rr-pcgrad steps, and rose summed over them);
    # weighted 0.1, every task's loss falls in most steps under every preset.
    config = tiny(
        data_dir,
        preset,
        "max_steps=24",
        "warmup=0.0",
        "lr=1e-3",
        "head_lr=1e-3",
        "tasks.sts.loss_weight=0.1",
        "fit_schedule_to_budget=false",
        *extra,
    )
    assert_it_learns(Trainer(config, tmp_path / preset, progress=False))


def test_predict_writes_one_row_per_input_row_in_order(data_dir, tmp_path):
    run = tmp_path / "run"
    train(tiny(data_dir, "default", "max_steps=1"), run, progress=False)
    unlabeled = tmp_path / "sts-test.csv"
    rows = [[f"id{k}", f"a man plays {k}", f"a woman sings {k}"] for k in range(7)]
    write(unlabeled, ["id", "sentence1", "sentence2"], rows)
    for task, source in (
        ("sts", unlabeled),
        ("sst", data_dir / "ids-sst-dev.csv"),
        ("para", data_dir / "quora-dev.csv"),
    ):
        out = tmp_path / f"{task}.csv"
        assert (
            main(
                [
                    "predict",
                    "--checkpoint",
                    str(run),
                    "--task",
                    task,
                    "--input",
                    str(source),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        lines = out.read_text().splitlines()
        assert lines[0] == "id,prediction"
        ids = [line.split(",")[0] for line in lines[1:]]
        values = [line.split(",")[1] for line in lines[1:]]
        if task == "sts":
            assert ids == [r[0] for r in rows]
            assert all(0.0 <= float(v) <= 5.0 for v in values)
        elif task == "sst":
            assert len(ids) == 12 and set(values) <= {"0", "1", "2", "3", "4"}
        else:
            # prediction ignores labels, so the row with an empty label is predicted too
            assert len(ids) == 13 and set(values) <= {"0", "1"}


def test_cli_errors_are_one_line_and_name_the_problem(data_dir, tmp_path, capsys):
    assert main(["train", "--config", "nope", "--run-dir", str(tmp_path / "r")]) == 2
    assert "no preset of that name" in capsys.readouterr().err
    # a missing data folder: test_command_line.test_a_missing_data_folder_says_how_to_point_at_one
    assert (
        main(
            ["predict", "--checkpoint", str(tmp_path / "none"), "--task", "sst", "--input", "x", "--out", "y"]
        )
        == 2
    )
    assert "no checkpoint or run directory" in capsys.readouterr().err


def test_analyze_draws_the_pictures_of_a_run(data_dir, tmp_path):
    run = tmp_path / "run"
    train(tiny(data_dir, "default", "max_steps=3"), run, progress=False)
    assert main(["analyze", str(run)]) == 0
    names = {p.name for p in (run / "analysis").glob("*.png")}
    assert len(names) >= 5, names  # cosines, losses, dev scores, SST and Para confusion, STS errors
    assert all((run / "analysis" / n).read_bytes()[:4] == b"\x89PNG" for n in names)
