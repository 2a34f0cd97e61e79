import torch

from minbert_tasks.config import TaskConfig, TrainConfig
from minbert_tasks.system import build_model


def _train_mode_outputs_agree(dropout: float | None) -> bool:
    config = TrainConfig(tasks=[TaskConfig(name="sst")], model="tiny-random", dropout=dropout)
    encoder = build_model(config)[0].encoder.train()
    ids = torch.randint(5, 100, (2, 12))
    mask = torch.ones_like(ids, dtype=torch.bool)
    return torch.equal(encoder(ids, mask), encoder(ids, mask))


def test_the_dropout_option_reaches_hidden_and_attention_dropout():
    assert not _train_mode_outputs_agree(None)  # the checkpoint's own dropout
    assert _train_mode_outputs_agree(0.0)  # with attention dropout left at 0.1 they would differ
