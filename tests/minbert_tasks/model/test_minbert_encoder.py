"""MinBert on a tiny random config: shapes, embed/encode split, padding invariance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minbert_tasks.model import BertConfig, MinBert

CFG = BertConfig.tiny()


@pytest.fixture(scope="module")
def model() -> MinBert:
    torch.manual_seed(0)
    return MinBert(CFG).eval()


def _batch(b: int = 3, length: int = 7, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, CFG.vocab_size, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 4:] = 0
    ids[mask == 0] = CFG.pad_token_id
    types = torch.zeros_like(ids)
    types[:, 3:] = 1
    return ids, mask, types


def test_shapes(model: MinBert) -> None:
    ids, mask, types = _batch()
    hidden = model(ids, mask, types)
    assert hidden.shape == (3, 7, CFG.hidden_size)
    assert model.embed(ids).shape == (3, 7, CFG.hidden_size)
    pooled = model.pool(hidden)
    assert pooled.shape == (3, CFG.hidden_size)
    assert pooled.abs().max() <= 1.0
    assert torch.isfinite(hidden).all()


def test_param_names_follow_hf_bert(model: MinBert) -> None:
    names = set(model.state_dict())
    for name in (
        "embeddings.word_embeddings.weight",
        "embeddings.LayerNorm.bias",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.1.attention.output.LayerNorm.weight",
        "encoder.layer.1.intermediate.dense.weight",
        "encoder.layer.1.output.dense.bias",
        "pooler.dense.weight",
    ):
        assert name in names
    assert model.config is CFG


def test_forward_equals_encode_of_embed(model: MinBert) -> None:
    ids, mask, types = _batch()
    torch.testing.assert_close(model(ids, mask, types), model.encode(model.embed(ids, types), mask))
    # token_type_ids=None means all zeros
    torch.testing.assert_close(model(ids, mask), model(ids, mask, torch.zeros_like(ids)))


def test_encode_continues_from_perturbed_embeddings_with_gradient(model: MinBert) -> None:
    ids, mask, types = _batch()
    emb = model.embed(ids, types).detach()
    delta = torch.zeros_like(emb, requires_grad=True)
    out = model.encode(emb + delta, mask)
    out.sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0


def test_token_types_change_output(model: MinBert) -> None:
    ids, mask, types = _batch()
    assert not torch.allclose(model(ids, mask, types), model(ids, mask))


def test_padding_positions_are_ignored(model: MinBert) -> None:
    ids, mask, _ = _batch()
    changed = ids.clone()
    changed[1, 4:] = 5  # different ids at masked positions must not matter
    out_a, out_b = model(ids, mask), model(changed, mask)
    torch.testing.assert_close(out_a[1, :4], out_b[1, :4])


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 10), min_size=1, max_size=4),
    extra=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_appending_padding_does_not_change_real_positions(lengths: list[int], extra: int, seed: int) -> None:
    torch.manual_seed(0)
    model = MinBert(CFG).eval()
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), CFG.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, CFG.vocab_size, (n,), generator=g)
        mask[row, :n] = 1
    padded_ids = torch.cat([ids, torch.full((len(lengths), extra), CFG.pad_token_id)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(len(lengths), extra, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short = model(ids, mask)
        long = model(padded_ids, padded_mask)
    real = mask.bool()
    torch.testing.assert_close(long[:, :width][real], short[real], atol=1e-5, rtol=1e-5)


def test_each_sequence_of_a_padded_batch_encodes_as_it_does_alone(model: MinBert) -> None:
    g = torch.Generator().manual_seed(3)
    lengths = [7, 2, 5, 1]
    ids = torch.full((len(lengths), max(lengths)), CFG.pad_token_id)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, CFG.vocab_size, (n,), generator=g)
        mask[row, :n] = 1
        types[row, n // 2 : n] = 1  # a pair's second segment
    with torch.no_grad():
        batch = model(ids, mask, types)
        for row, n in enumerate(lengths):
            alone = model(ids[row : row + 1, :n], mask[row : row + 1, :n], types[row : row + 1, :n])
            torch.testing.assert_close(batch[row, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_fully_padded_row_stays_finite(model: MinBert) -> None:
    ids, mask, _ = _batch()
    mask[2] = 0
    assert torch.isfinite(model(ids, mask)).all()


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = MinBert(BertConfig.tiny(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3))
    ids, mask, _ = _batch()
    model.eval()
    torch.testing.assert_close(model(ids, mask), model(ids, mask))
    model.train()
    assert not torch.allclose(model(ids, mask), model(ids, mask))


def test_input_errors_are_clear(model: MinBert) -> None:
    ids, mask, types = _batch()
    with pytest.raises(ValueError, match=r"input_ids must have shape \[batch, length\]"):
        model(ids[0], mask[0])
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=64"):
        long = torch.ones(1, 65, dtype=torch.long)
        model(long, long)
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(ids, mask[:, :3])
    with pytest.raises(ValueError, match="token_type_ids shape"):
        model(ids, mask, types[:, :3])
    with pytest.raises(TypeError, match="integer tensor"):
        model(ids.float(), mask)


def test_runs_under_bf16_autocast_and_in_bf16(model: MinBert) -> None:
    ids, mask, types = _batch()
    ref = model(ids, mask, types)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = model(ids, mask, types)
    assert torch.isfinite(amp).all()
    torch.testing.assert_close(amp.float(), ref, atol=0.1, rtol=0.1)
    half = MinBert(CFG).to(torch.bfloat16).eval()
    half.load_state_dict(model.state_dict())
    out = half(ids, mask, types)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.1)
