"""Architecture hyper-parameters of a BERT encoder (:class:`BertConfig`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

__all__ = ["SUPPORTED_ACTIVATIONS", "BertConfig"]

#: Values of ``hidden_act`` that :class:`~minbert_tasks.model.MinBert` implements.
SUPPORTED_ACTIVATIONS: frozenset[str] = frozenset({"gelu"})


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"BertConfig.{attribute.name} must be a positive integer, got {value!r}.")


def _probability(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"BertConfig.{attribute.name} must be a probability in [0, 1), got {value!r}.")


def _activation(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in SUPPORTED_ACTIVATIONS:
        raise ValueError(
            f"BertConfig.hidden_act={value!r} is not supported; "
            f"MinBert implements only {sorted(SUPPORTED_ACTIVATIONS)} (exact erf GELU)."
        )


def _eps(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"BertConfig.layer_norm_eps must be a positive float, got {value!r}.")


@attrs.frozen(kw_only=True)
class BertConfig:
    """Hyper-parameters of a BERT encoder, named as in Hugging Face ``config.json``.

    Defaults are those of ``bert-base-uncased``.
    """

    vocab_size: int = attrs.field(default=30522, validator=_positive)
    hidden_size: int = attrs.field(default=768, validator=_positive)
    num_hidden_layers: int = attrs.field(default=12, validator=_positive)
    num_attention_heads: int = attrs.field(default=12, validator=_positive)
    intermediate_size: int = attrs.field(default=3072, validator=_positive)
    hidden_act: str = attrs.field(default="gelu", validator=_activation)
    hidden_dropout_prob: float = attrs.field(default=0.1, validator=_probability)
    attention_probs_dropout_prob: float = attrs.field(default=0.1, validator=_probability)
    max_position_embeddings: int = attrs.field(default=512, validator=_positive)
    type_vocab_size: int = attrs.field(default=2, validator=_positive)
    layer_norm_eps: float = attrs.field(default=1e-12, validator=_eps)
    pad_token_id: int = attrs.field(default=0)

    def __attrs_post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads}); pick a head count "
                "that divides the hidden size."
            )
        if (
            isinstance(self.pad_token_id, bool)
            or not isinstance(self.pad_token_id, int)
            or not 0 <= self.pad_token_id < self.vocab_size
        ):
            raise ValueError(
                f"BertConfig.pad_token_id must be an integer in [0, vocab_size={self.vocab_size}), "
                f"got {self.pad_token_id!r}."
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head (``hidden_size // num_attention_heads``)."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def tiny(cls, **overrides: Any) -> BertConfig:
        """A very small configuration for unit tests (vocab 100, hidden 32, 2 layers, 4 heads)."""
        values: dict[str, Any] = {
            "vocab_size": 100,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config dict") -> BertConfig:
        """Build a config from a Hugging Face style mapping, ignoring unknown keys.

        Raises:
            ValueError: if the mapping describes an architecture MinBert cannot run
                (e.g. relative position embeddings) or a value is invalid.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}.")
        position_type = data.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"{source}: position_embedding_type={position_type!r} is not supported; "
                "MinBert implements only absolute position embeddings."
            )
        names = {a.name for a in attrs.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        if known.get("pad_token_id", 0) is None:
            known["pad_token_id"] = 0
        try:
            return cls(**known)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> BertConfig:
        """Read a standard Hugging Face ``config.json``; unknown keys are ignored.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is not valid JSON or holds invalid values.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"BERT config file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc}).") from exc
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """A Hugging Face compatible ``config.json`` mapping (loadable by ``transformers``)."""
        data: dict[str, Any] = {"architectures": ["BertModel"], "model_type": "bert"}
        data.update(attrs.asdict(self))
        data["position_embedding_type"] = "absolute"
        return data
