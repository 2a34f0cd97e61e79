"""Task heads on the tiny random minBERT: shapes, masking, the SMART split, siamese symmetry."""

from __future__ import annotations

import itertools

import attrs
import pytest
import torch

from minbert_tasks.heads import (
    PRESETS,
    HeadConfig,
    TaskHead,
    build_head,
    masked_max,
    masked_mean,
)
from minbert_tasks.model import BertConfig, MinBert

H = 32  # BertConfig.tiny().hidden_size
CNN_OPTIONS = [(False, False), (True, False), (True, True)]


@pytest.fixture(scope="module")
def encoder() -> MinBert:
    torch.manual_seed(0)
    return MinBert(BertConfig.tiny()).eval()


def batch(seed: int, lengths: list[int], pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Random ids with a [CLS]-like first token; rows padded (id 0, mask 0) to ``pad_to``."""
    g = torch.Generator().manual_seed(seed)
    width = pad_to or max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, 100, (n,), generator=g)
        ids[i, 0] = 2
        mask[i, :n] = 1
    types = torch.zeros_like(ids)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def pad(inputs: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    return {k: torch.nn.functional.pad(v, (0, extra)) for k, v in inputs.items()}


def inputs_for(config: HeadConfig, extra_pad: int = 0) -> dict:
    a = batch(1, [6, 3, 5])
    if config.pair_encoding == "cross":
        return pad(a, extra_pad)
    b = batch(2, [4, 7, 2])
    inputs = {"a": pad(a, extra_pad), "b": pad(b, extra_pad)}
    if config.pair_encoding == "hybrid":
        inputs["ab"] = pad(batch(3, [9, 10, 7]), extra_pad)
    return inputs


def all_configs() -> list[HeadConfig]:
    configs = []
    for pooling, stack, (cnn, residual), pair in itertools.product(
        ("cls", "mean", "max", "pooler"), ("linear", "mlp"), CNN_OPTIONS, ("cross", "siamese", "hybrid")
    ):
        outputs = ("linear", "classes") + (("cosine", "cosine_logit") if pair == "siamese" else ())
        for output in outputs:
            configs.append(
                HeadConfig(
                    pooling=pooling,
                    stack=stack,
                    mlp_layers=2,
                    mlp_hidden=16,
                    cnn=cnn,
                    residual=residual,
                    pair_encoding=pair,
                    output=output,
                )
            )
    return configs


CONFIGS = all_configs()


def config_id(c: HeadConfig) -> str:
    cnn = "res" if c.residual else ("cnn" if c.cnn else "nocnn")
    return f"{c.pooling}-{c.stack}-{cnn}-{c.pair_encoding}-{c.output}"


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_every_combination_shapes_smart_split_and_padding(encoder: MinBert, config: HeadConfig) -> None:
    torch.manual_seed(0)
    num_outputs = 6 if config.output == "classes" else 1
    head = build_head(config, H, num_outputs).eval()
    inputs = inputs_for(config)
    out = head(encoder, inputs)
    assert out.shape == ((3,) if num_outputs == 1 else (3, num_outputs))
    assert torch.isfinite(out).all()
    # The SMART split is exactly the forward.
    emb = head.embed(encoder, inputs)
    if config.pair_encoding == "siamese":
        assert isinstance(emb, tuple) and len(emb) == 2
        assert emb[0].shape == (3, 6, H) and emb[1].shape == (3, 7, H)
    elif config.pair_encoding == "hybrid":
        assert isinstance(emb, tuple) and len(emb) == 3
        assert [e.shape for e in emb] == [(3, 6, H), (3, 7, H), (3, 10, H)]
    else:
        assert emb.shape == (3, 6, H)
    torch.testing.assert_close(head.forward_from_embeddings(encoder, emb, inputs), out, rtol=0, atol=0)
    # Perturbing the embeddings changes the output (the split is not a detached shortcut).
    if isinstance(emb, tuple):  # every part of a pair reaches the output
        for k in range(len(emb)):
            bumped = tuple(e + 0.5 * torch.randn_like(e) if j == k else e for j, e in enumerate(emb))
            assert not torch.allclose(head.forward_from_embeddings(encoder, bumped, inputs), out)
    else:
        bumped = emb + 0.5 * torch.randn_like(emb)
        assert not torch.allclose(head.forward_from_embeddings(encoder, bumped, inputs), out)
    # Appending padding changes nothing (masked attention, CNN and pooling).
    with torch.no_grad():
        padded = head(encoder, inputs_for(config, extra_pad=4))
    torch.testing.assert_close(padded, out.detach(), rtol=1e-5, atol=1e-5)


def test_masked_pooling_ignores_padded_values() -> None:
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    poisoned = hidden.clone()
    poisoned[0, 3:] = 1e4  # would dominate a max and a mean if padding leaked in
    torch.testing.assert_close(masked_mean(poisoned, mask)[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(masked_max(poisoned, mask)[0], hidden[0, :3].amax(0))
    torch.testing.assert_close(masked_mean(poisoned, mask)[1], hidden[1].mean(0))
    torch.testing.assert_close(masked_max(poisoned, mask)[1], hidden[1].amax(0))
    # An all-padding row gives zeros, not NaN or -inf.
    empty = torch.zeros(1, 5, dtype=torch.long)
    assert masked_mean(hidden[:1], empty).eq(0).all()
    assert masked_max(hidden[:1], empty).eq(0).all()


def test_pooling_matches_reference(encoder: MinBert) -> None:
    inputs = batch(3, [6, 3, 5])
    with torch.no_grad():
        hidden = encoder(**inputs)
        pooled = {
            p: build_head(HeadConfig(pooling=p), H, 2).pooled(encoder, inputs)
            for p in ("cls", "mean", "max", "pooler")
        }
    torch.testing.assert_close(pooled["cls"], hidden[:, 0])
    torch.testing.assert_close(pooled["pooler"], encoder.pool(hidden))
    torch.testing.assert_close(pooled["mean"][1], hidden[1, :3].mean(0))
    torch.testing.assert_close(pooled["max"][1], hidden[1, :3].amax(0))


def test_siamese_encodes_each_sentence_on_its_own(encoder: MinBert) -> None:
    # The head encodes both sides in one padded call; that must equal separate encodings.
    head = build_head(HeadConfig(pooling="mean", pair_encoding="siamese"), H, 1)
    a, b = batch(1, [6, 3]), batch(2, [4, 8])
    with torch.no_grad():
        u, v = head.pooled(encoder, {"a": a, "b": b})
        torch.testing.assert_close(u, masked_mean(encoder(**a), a["attention_mask"]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v, masked_mean(encoder(**b), b["attention_mask"]), atol=1e-5, rtol=1e-5)


def test_siamese_features_and_cosine_are_symmetric(encoder: MinBert) -> None:
    a, b = batch(1, [6, 3, 5]), batch(2, [4, 7, 2])
    with torch.no_grad():
        feats = build_head(HeadConfig(pooling="mean", pair_encoding="siamese"), H, 1)
        u, v = feats.pooled(encoder, {"a": a, "b": b})
        v2, u2 = feats.pooled(encoder, {"a": b, "b": a})
        torch.testing.assert_close((u2, v2), (u, v), atol=1e-5, rtol=1e-5)
        f_ab, f_ba = TaskHead.pair_features(u, v), TaskHead.pair_features(v, u)
        assert f_ab.shape == (3, 3 * H)
        torch.testing.assert_close(f_ab[:, 2 * H :], f_ba[:, 2 * H :])  # |u − v| is symmetric
        torch.testing.assert_close(f_ab[:, :H], f_ba[:, H : 2 * H])  # u and v swap places
        assert not torch.allclose(f_ab, f_ba)
        g_ab, g_ba = (TaskHead.pair_features(x, y, product=True) for x, y in ((u, v), (v, u)))
        torch.testing.assert_close(g_ab, torch.cat([u, v, (u - v).abs(), u * v], dim=-1))
        torch.testing.assert_close(g_ab[:, 2 * H :], g_ba[:, 2 * H :])  # |u − v| and u ⊙ v

        for stack in ("linear", "mlp"):
            cos = build_head(
                HeadConfig(pooling="mean", pair_encoding="siamese", output="cosine", stack=stack), H, 1
            ).eval()
            ab, ba = cos(encoder, {"a": a, "b": b}), cos(encoder, {"a": b, "b": a})
            torch.testing.assert_close(ab, ba, atol=1e-5, rtol=1e-5)
            assert ((ab >= -5) & (ab <= 5)).all()
            same = cos(encoder, {"a": a, "b": a})
            torch.testing.assert_close(same, torch.full_like(same, 5.0), atol=1e-4, rtol=0)


def test_cosine_head_is_five_times_the_cosine() -> None:
    class Fixed(torch.nn.Module):  # an "encoder" whose hidden states are the embeddings
        def embed(self, ids: torch.Tensor, types: torch.Tensor | None) -> torch.Tensor:
            return torch.nn.functional.one_hot(ids, 4).float() * 2.0 - 1.0

        def encode(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return emb

    head = build_head(HeadConfig(pooling="cls", pair_encoding="siamese", output="cosine"), 4, 1)
    head.eval()
    ids = torch.tensor([[0], [1]])
    one = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    out = head(Fixed(), {"a": one, "b": {**one, "input_ids": torch.tensor([[0], [0]])}})
    # cos = 1 -> 5; cos([-1, 1, -1, -1], [1, -1, -1, -1]) = 0 -> 0
    torch.testing.assert_close(out, torch.tensor([5.0, 0.0]))
    neg = {**one, "input_ids": torch.tensor([[0], [0]])}
    out = head.forward_from_embeddings(
        Fixed(), (torch.ones(2, 1, 4), -torch.ones(2, 1, 4)), {"a": neg, "b": neg}
    )
    torch.testing.assert_close(out, torch.full((2,), -5.0))  # clamped only when predicting


def test_cosine_logit_head_matches_reference_and_learns_scale_and_threshold(encoder: MinBert) -> None:
    """``s · (cos(u, v) − t)``, starting at s = 20, t = 0.8; symmetric; s and t get gradients."""
    config = HeadConfig(pooling="mean", pair_encoding="siamese", output="cosine_logit", dropout=0.0)
    head = build_head(config, H, 1)
    assert head.log_scale.exp().item() == pytest.approx(20.0)
    assert head.threshold.item() == pytest.approx(0.8)
    a, b = batch(1, [6, 3, 5]), batch(2, [4, 7, 2])
    with torch.no_grad():
        head.log_scale.fill_(torch.log(torch.tensor(3.0)))
        head.threshold.fill_(0.25)
    u, v = head.pooled(encoder, {"a": a, "b": b})
    reference = 3.0 * (torch.nn.functional.cosine_similarity(u, v, dim=-1) - 0.25)
    out = head(encoder, {"a": a, "b": b})
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head(encoder, {"a": b, "b": a}), out, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert head.log_scale.grad is not None and head.log_scale.grad.abs() > 0
    assert head.threshold.grad == pytest.approx(-3.0 * 3)  # d/dt of Σ 3 (cos − t) over 3 pairs


def test_cnn_residual_changes_features_and_grads_reach_encoder(encoder: MinBert) -> None:
    inputs = batch(4, [6, 3, 5])
    torch.manual_seed(0)
    plain = build_head(HeadConfig(pooling="mean", cnn=True), H, 2).eval()
    torch.manual_seed(0)
    residual = build_head(HeadConfig(pooling="mean", cnn=True, residual=True), H, 2).eval()
    assert plain.cnn is not None and plain.cnn.conv.kernel_size == (3,)
    with torch.no_grad():
        p, r = plain.pooled(encoder, inputs), residual.pooled(encoder, inputs)
        hidden = encoder(**inputs)
        torch.testing.assert_close(r - p, masked_mean(hidden, inputs["attention_mask"]), atol=1e-5, rtol=1e-5)

    encoder.zero_grad()
    residual(encoder, inputs).sum().backward()
    assert encoder.embeddings.word_embeddings.weight.grad is not None
    assert residual.cnn.conv.weight.grad is not None
    encoder.zero_grad()


@pytest.mark.parametrize("product", [False, True])
def test_pair_symmetric_head_averages_both_orders(encoder: MinBert, product: bool) -> None:
    config = HeadConfig(
        pooling="mean", pair_encoding="siamese", stack="mlp", mlp_hidden=16, pair_product=product
    )
    a, b = batch(1, [6, 3, 5]), batch(2, [4, 7, 2])
    torch.manual_seed(0)
    plain = build_head(config, H, 3).eval()
    torch.manual_seed(0)
    symmetric = build_head(attrs.evolve(config, pair_symmetric=True), H, 3).eval()
    with torch.no_grad():
        ab, ba = plain(encoder, {"a": a, "b": b}), plain(encoder, {"a": b, "b": a})
        assert not torch.allclose(ab, ba, atol=1e-4)  # the plain head depends on the order
        expected = 0.5 * (ab + ba)
        torch.testing.assert_close(symmetric(encoder, {"a": a, "b": b}), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(symmetric(encoder, {"a": b, "b": a}), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("symmetric", [False, True])
def test_hybrid_head_averages_a_siamese_and_a_cross_head(encoder: MinBert, symmetric: bool) -> None:
    """hybrid = ½ (the siamese head + the cross head) when they hold the hybrid's two stacks."""
    options = {"pooling": "mean", "stack": "mlp", "mlp_hidden": 16}
    torch.manual_seed(0)
    hybrid = build_head(HeadConfig(pair_encoding="hybrid", pair_symmetric=symmetric, **options), H, 3).eval()
    siamese = build_head(
        HeadConfig(pair_encoding="siamese", pair_symmetric=symmetric, **options), H, 3
    ).eval()
    cross = build_head(HeadConfig(**options), H, 3).eval()
    siamese.stack.load_state_dict(hybrid.stack.state_dict())
    assert hybrid.cross_stack is not None
    cross.stack.load_state_dict(hybrid.cross_stack.state_dict())
    a, b, ab = batch(1, [6, 3, 5]), batch(2, [4, 7, 2]), batch(3, [9, 10, 7])
    with torch.no_grad():
        expected = 0.5 * (siamese(encoder, {"a": a, "b": b}) + cross(encoder, ab))
        torch.testing.assert_close(hybrid(encoder, {"a": a, "b": b, "ab": ab}), expected)
        assert not torch.allclose(expected, siamese(encoder, {"a": a, "b": b}), atol=1e-3)
        torch.testing.assert_close(
            hybrid.pooled(encoder, {"a": a, "b": b, "ab": ab}), siamese.pooled(encoder, {"a": a, "b": b})
        )
    # The two views keep separate parameters.
    assert hybrid.cross_stack[1].weight.shape == (16, H) and hybrid.stack[1].weight.shape == (16, 3 * H)


def test_mlp_depth_and_dropout() -> None:
    head = build_head(HeadConfig(stack="mlp", mlp_layers=3, mlp_hidden=8, dropout=0.5), H, 5)
    linears = [m for m in head.stack if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(H, 8), (8, 8), (8, 8), (8, 5)]
    assert sum(isinstance(m, torch.nn.GELU) for m in head.stack) == 3
    assert all(m.p == 0.5 for m in head.stack if isinstance(m, torch.nn.Dropout))
    siamese = build_head(HeadConfig(pair_encoding="siamese"), H, 1)
    assert [m.in_features for m in siamese.stack if isinstance(m, torch.nn.Linear)] == [3 * H]
    product = build_head(HeadConfig(pair_encoding="siamese", pair_product=True), H, 1)
    assert [m.in_features for m in product.stack if isinstance(m, torch.nn.Linear)] == [4 * H]


def test_pair_product_head_reads_the_product(encoder: MinBert) -> None:
    """The product head's output layer sees exactly (u, v, |u − v|, u ⊙ v): zeroing the
    product's weights turns it into the plain siamese head with the same other weights."""
    config = HeadConfig(pooling="mean", pair_encoding="siamese")
    inputs = {"a": batch(1, [6, 3, 5]), "b": batch(2, [4, 7, 2])}
    torch.manual_seed(0)
    plain = build_head(config, H, 2).eval()
    product = build_head(attrs.evolve(config, pair_product=True), H, 2).eval()
    out_plain, out_product = plain.stack[-1], product.stack[-1]
    with torch.no_grad():
        out_product.weight.copy_(torch.cat([out_plain.weight, torch.zeros(2, H)], dim=1))
        out_product.bias.copy_(out_plain.bias)
        torch.testing.assert_close(product(encoder, inputs), plain(encoder, inputs))
        out_product.weight[:, 3 * H :] = 1.0
        u, v = plain.pooled(encoder, inputs)
        shift = (u * v).sum(-1, keepdim=True).expand(-1, 2)
        torch.testing.assert_close(product(encoder, inputs), plain(encoder, inputs) + shift)


@pytest.mark.parametrize(
    "options",
    [
        {"pooling": "first"},
        {"stack": "cnn"},
        {"mlp_layers": 0},
        {"mlp_layers": True},
        {"mlp_hidden": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"residual": True},
        {"output": "cosine"},  # needs siamese
        {"output": "cosine_logit"},  # needs siamese
        {"pair_symmetric": True, "pair_encoding": "siamese", "output": "cosine_logit"},
        {"output": "softmax"},
        {"pair_encoding": "bi"},
        {"cnn": 1},
        {"pair_product": True},  # needs siamese
        {"pair_product": True, "pair_encoding": "siamese", "output": "cosine"},
        {"pair_product": 1, "pair_encoding": "siamese"},
        {"pair_symmetric": True},  # needs siamese
        {"pair_symmetric": True, "pair_encoding": "siamese", "output": "cosine"},
        {"pair_encoding": "hybrid", "output": "cosine"},  # compares u and v only
        {"pair_encoding": "hybrid", "output": "cosine_logit"},
    ],
)
def test_bad_options_are_refused(options: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        HeadConfig(**options)


def test_config_aliases_repr_and_presets() -> None:
    assert HeadConfig(output="regression") == HeadConfig(output="logits") == HeadConfig()
    assert "pooling='mean'" in repr(HeadConfig(pooling="mean"))
    assert all(isinstance(c, HeadConfig) for c in PRESETS.values())
    with pytest.raises(ValueError, match="cosine head"):
        build_head(HeadConfig(pair_encoding="siamese", output="cosine"), H, 5)
    with pytest.raises(ValueError, match="num_outputs"):
        build_head(HeadConfig(), H, 0)
    with pytest.raises(TypeError):
        build_head({"pooling": "cls"}, H, 2)  # type: ignore[arg-type]


def test_wrong_input_layout_is_explained(encoder: MinBert) -> None:
    inputs = batch(1, [3, 2])
    with pytest.raises(KeyError, match="siamese"):
        build_head(HeadConfig(pair_encoding="siamese"), H, 1)(encoder, inputs)
    with pytest.raises(KeyError, match="input_ids"):
        build_head(HeadConfig(), H, 1)(encoder, {"a": inputs, "b": inputs})
    with pytest.raises(KeyError, match="'ab'"):
        build_head(HeadConfig(pair_encoding="hybrid"), H, 1)(encoder, {"a": inputs, "b": inputs})
    with pytest.raises(ValueError, match="different numbers"):
        build_head(HeadConfig(pair_encoding="hybrid"), H, 1)(
            encoder, {"a": inputs, "b": inputs, "ab": batch(2, [3, 2, 4])}
        )
