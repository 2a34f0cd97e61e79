"""Tokenizer on a small hand-written vocabulary: pairs, padding, truncation counting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from minbert_tasks.model import Batch, Tokenizer

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "dog",
    "ran",
    "##s",
    "a",
    ".",
]
ID = {tok: i for i, tok in enumerate(VOCAB)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return tmp_path


@pytest.fixture
def tok(folder: Path) -> Tokenizer:
    return Tokenizer.from_folder(folder)


def test_single_sentences_padded_to_longest(tok: Tokenizer) -> None:
    batch = tok.encode(["The cat sat.", "dog"], max_length=32)
    assert isinstance(batch, Batch) and len(batch) == 2
    assert batch.input_ids.tolist() == [
        [ID["[CLS]"], ID["the"], ID["cat"], ID["sat"], ID["."], ID["[SEP]"]],
        [ID["[CLS]"], ID["dog"], ID["[SEP]"], 0, 0, 0],
    ]
    assert batch.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert batch.token_type_ids.tolist() == [[0] * 6, [0] * 6]
    assert all(t.dtype == torch.long for t in (batch.input_ids, batch.attention_mask, batch.token_type_ids))
    assert batch.num_truncated == 0 and tok.truncated_total == 0


def test_pairs_get_separators_and_segment_ids(tok: Tokenizer) -> None:
    batch = tok.encode(["the cat", "dog"], ["a mat", "cats ran"], max_length=32)
    cls, sep = ID["[CLS]"], ID["[SEP]"]
    assert batch.input_ids[0].tolist() == [cls, ID["the"], ID["cat"], sep, ID["a"], ID["mat"], sep]
    assert batch.token_type_ids[0].tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert batch.input_ids[1].tolist() == [cls, ID["dog"], sep, ID["cat"], ID["##s"], ID["ran"], sep]
    assert batch.token_type_ids[1].tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_unknown_words_map_to_unk(tok: Tokenizer) -> None:
    assert tok.encode(["zebra"], max_length=8).input_ids[0, 1].item() == ID["[UNK]"]


def test_truncation_is_longest_first_and_counted(tok: Tokenizer) -> None:
    long = "the cat sat on the mat the dog ran"
    batch = tok.encode([long, "the cat", long], ["dog", "mat", long], max_length=8)
    assert batch.input_ids.shape == (3, 8)
    assert batch.num_truncated == 2
    assert tok.truncated_total == 2
    # longest_first trims the long segment and keeps the one-word pair intact
    assert batch.input_ids[0].tolist()[-3:] == [ID["[SEP]"], ID["dog"], ID["[SEP]"]]
    # both long segments are trimmed evenly
    assert batch.token_type_ids[2].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    tok.encode([long], max_length=4)
    assert tok.truncated_total == 3
    tok.encode([long], max_length=64)
    assert tok.truncated_total == 3


def test_do_lower_case_false_is_honoured(folder: Path) -> None:
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = Tokenizer.from_folder(folder)
    assert cased.encode(["The cat"], max_length=8).input_ids[0, 1].item() == ID["[UNK]"]


def test_batch_to_device(tok: Tokenizer) -> None:
    batch = tok.encode(["the cat"], max_length=8).to("cpu")
    assert batch.input_ids.device.type == "cpu" and batch.num_truncated == 0


@pytest.mark.parametrize(
    ("texts", "pairs", "max_length", "exc", "match"),
    [
        ("the cat", None, 8, TypeError, "must be a list of strings"),
        ([], None, 8, ValueError, "texts is empty"),
        (["a", 3], None, 8, TypeError, r"texts\[1\] is int"),
        (["a", "b"], ["c"], 8, ValueError, "2 texts but 1 pairs"),
        (["a"], ["b"], 3, ValueError, "max_length must be an integer > 3"),
        (["a"], None, 10_000, ValueError, "exceeds the model's limit of 512"),
    ],
)
def test_bad_arguments(tok: Tokenizer, texts, pairs, max_length, exc, match) -> None:
    with pytest.raises(exc, match=match):
        tok.encode(texts, pairs, max_length=max_length)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Tokenizer folder not found"):
        Tokenizer.from_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"vocabulary not found: .*vocab\.txt"):
        Tokenizer.from_folder(tmp_path)
