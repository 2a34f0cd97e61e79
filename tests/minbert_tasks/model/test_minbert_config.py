"""BertConfig: validation, tiny(), JSON round trip."""

from __future__ import annotations

import json

import attrs
import pytest

from minbert_tasks.model import BertConfig


def test_tiny_is_small_and_consistent() -> None:
    cfg = BertConfig.tiny()
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (100, 32, 2, 4)  # fmt: skip
    assert cfg.head_dim == 8
    assert BertConfig.tiny(num_hidden_layers=1).num_hidden_layers == 1


def test_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        BertConfig.tiny().hidden_size = 64  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"hidden_size": 30}, "divisible by num_attention_heads"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
        ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob must be a probability"),
        ({"hidden_act": "relu"}, "hidden_act='relu' is not supported"),
        ({"pad_token_id": 100}, "pad_token_id must be an integer in"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps must be a positive"),
    ],
)
def test_invalid_values_are_rejected_with_field_name(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BertConfig.tiny(**overrides)


def test_from_json_ignores_unknown_keys_and_round_trips(tmp_path) -> None:
    cfg = BertConfig.tiny(hidden_dropout_prob=0.2)
    data = cfg.to_dict() | {"architectures": ["BertModel"], "initializer_range": 0.02, "use_cache": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    assert BertConfig.from_json(path) == cfg


def test_from_json_errors_name_the_file(tmp_path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        BertConfig.from_json(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        BertConfig.from_json(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hidden_size": 10, "num_attention_heads": 3}))
    with pytest.raises(ValueError, match=r"wrong.json: .*divisible"):
        BertConfig.from_json(wrong)


def test_relative_position_embeddings_rejected() -> None:
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        BertConfig.from_dict({"position_embedding_type": "relative_key"})
