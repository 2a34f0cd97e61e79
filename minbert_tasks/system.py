"""The multi-task model: one shared minBERT encoder and one head per task, built from a
:class:`~minbert_tasks.config.TrainConfig` or restored from a run's checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from minbert_tasks import plugins
from minbert_tasks.config import TrainConfig, config_from_json
from minbert_tasks.heads import HeadConfig, TaskHead
from minbert_tasks.model import BertConfig, MinBert, Tokenizer, default_model_path, load_pretrained
from minbert_tasks.model.bert import BertSelfAttention
from minbert_tasks.tasks import TaskSpec

__all__ = ["MultiTaskModel", "TaskSetup", "build_model", "load_run_model", "tokenizer_folder"]

#: ``model = "tiny-random"``: a 2-layer, 32-wide random encoder over the default vocabulary, for
#: tests and smoke runs that must not depend on pretrained weights.
TINY_RANDOM = "tiny-random"


@attrs.frozen
class TaskSetup:
    """What the trainer needs per task: the spec, the head options, the run's task options."""

    spec: TaskSpec
    head: HeadConfig
    max_length: int
    batch_size: int
    label_smoothing: float = 0.0


class MultiTaskModel(nn.Module):
    """A shared encoder with a head per task: ``model(task, inputs) -> outputs``."""

    def __init__(self, encoder: MinBert, heads: dict[str, TaskHead]) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    def forward(self, task: str, inputs: dict[str, Any]) -> Tensor:
        return self.heads[task](self.encoder, inputs)


def tokenizer_folder(model: str | None) -> Path:
    """Folder holding ``vocab.txt`` for ``model`` (the default weights for ``tiny-random``)."""
    if model is None or model == TINY_RANDOM:
        return default_model_path()
    return Path(model)


def task_setups(config: TrainConfig) -> dict[str, TaskSetup]:
    setups = {}
    for task in config.tasks:
        spec = plugins.get_task(task.name)
        head = task.head if task.head is not None else spec.head
        spec.check_head(head)
        spec.check_label_smoothing(task.label_smoothing, head)
        setups[task.name] = TaskSetup(spec, head, task.max_length, task.batch_size, task.label_smoothing)
    return setups


def _encoder(config: TrainConfig, vocab_size: int) -> MinBert:
    if config.model == TINY_RANDOM:
        encoder = MinBert(BertConfig.tiny(vocab_size=vocab_size, max_position_embeddings=512))
    else:
        encoder = load_pretrained(config.model if config.model is not None else default_model_path())
    if config.freeze_word_embeddings:
        # Half of MiniLM's parameters; frozen, they cost no gradient rows, combine or Adam work.
        encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    if config.dropout is not None:  # hidden and attention-probability dropout alike
        for module in encoder.modules():
            if isinstance(module, nn.Dropout):
                module.p = config.dropout
            elif isinstance(module, BertSelfAttention):
                module.dropout_p = config.dropout
    return encoder


def build_model(config: TrainConfig) -> tuple[MultiTaskModel, Tokenizer, dict[str, TaskSetup]]:
    """A fresh model (pretrained encoder, new heads) in train mode, its tokenizer and the task
    setups."""
    tokenizer = Tokenizer.from_folder(tokenizer_folder(config.model))
    setups = task_setups(config)
    torch.manual_seed(config.seed)
    encoder = _encoder(config, tokenizer.vocab_size)
    hidden = encoder.config.hidden_size
    heads = {name: s.spec.build_head(hidden, s.head) for name, s in setups.items()}
    # load_pretrained returns the encoder in eval mode: without this, a pretrained encoder would
    # train without dropout until the first evaluation switched the whole model to train mode.
    return MultiTaskModel(encoder, heads).train(), tokenizer, setups


def save_tokenizer(config: TrainConfig, run_dir: Path) -> None:
    """Copy the vocabulary into the run so predictions need only the run directory."""
    target = run_dir / "tokenizer"
    target.mkdir(parents=True, exist_ok=True)
    source = tokenizer_folder(config.model)
    for name in ("vocab.txt", "tokenizer_config.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def load_run_model(
    checkpoint: dict[str, Any], run_dir: Path
) -> tuple[MultiTaskModel, Tokenizer, dict[str, TaskSetup], TrainConfig]:
    """Rebuild the model saved in ``checkpoint`` (``best.pt`` or ``checkpoint.pt``) of ``run_dir``."""
    config = config_from_json(checkpoint["config"])
    tokenizer = Tokenizer.from_folder(run_dir / "tokenizer")
    setups = task_setups(config)
    encoder = MinBert(BertConfig.from_dict(checkpoint["encoder_config"], source="checkpoint"))
    hidden = encoder.config.hidden_size
    heads = {name: s.spec.build_head(hidden, s.head) for name, s in setups.items()}
    model = MultiTaskModel(encoder, heads)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), tokenizer, setups, config
