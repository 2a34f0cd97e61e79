import shutil

import torch

from minbert_tasks.config import TaskConfig, TrainConfig
from minbert_tasks.model import BertConfig, MinBert, Tokenizer, default_model_path
from minbert_tasks.model.checkpoint import save_pretrained
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


def test_a_fresh_model_from_pretrained_weights_is_in_train_mode(tmp_path):
    source = default_model_path()
    for name in ("vocab.txt", "tokenizer_config.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp_path / name)
    vocab_size = Tokenizer.from_folder(tmp_path).vocab_size
    save_pretrained(MinBert(BertConfig.tiny(vocab_size=vocab_size)), tmp_path)
    model = build_model(TrainConfig(tasks=[TaskConfig(name="sst")], model=str(tmp_path)))[0]
    # load_pretrained hands back an eval-mode encoder; training must still see dropout from step 1
    assert all(module.training for module in model.modules())
