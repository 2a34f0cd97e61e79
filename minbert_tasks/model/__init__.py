"""minBERT: a minimal BERT encoder with Hugging Face compatible weights and tokenizer."""

from minbert_tasks.model.bert import MinBert
from minbert_tasks.model.checkpoint import (
    CheckpointError,
    load_pretrained,
    load_state_dict_file,
    load_state_into,
    save_pretrained,
)
from minbert_tasks.model.config import BertConfig
from minbert_tasks.model.tokenizer import Batch, Tokenizer
from minbert_tasks.model.weights import WEIGHTS_ENV_VAR, WeightsNotFoundError, default_model_path

__all__ = [
    "WEIGHTS_ENV_VAR",
    "Batch",
    "BertConfig",
    "CheckpointError",
    "MinBert",
    "Tokenizer",
    "WeightsNotFoundError",
    "default_model_path",
    "load_pretrained",
    "load_state_dict_file",
    "load_state_into",
    "save_pretrained",
]
