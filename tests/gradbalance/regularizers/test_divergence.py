"""ℓ_s divergences: metric-like properties, reference formulas, large logits."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbalance.regularizers import (
    _divergence,
    divergence,
    squared_error,
    symmetric_kl_bernoulli,
    symmetric_kl_softmax,
)

ALL = {
    "softmax_kl": symmetric_kl_softmax,
    "bernoulli_kl": symmetric_kl_bernoulli,
    "squared_error": squared_error,
}

finite = st.floats(-30.0, 30.0, allow_nan=False, width=64)


@st.composite
def output_pairs(draw: st.DrawFn, min_classes: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    batch = draw(st.integers(1, 4))
    classes = draw(st.integers(min_classes, 5))
    values = st.lists(finite, min_size=batch * classes, max_size=batch * classes)
    p = torch.tensor(draw(values), dtype=torch.float64).reshape(batch, classes)
    q = torch.tensor(draw(values), dtype=torch.float64).reshape(batch, classes)
    return p, q


def _reference_softmax_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    pp, qq = torch.softmax(p, -1), torch.softmax(q, -1)
    kl_pq = (pp * (pp.log() - qq.log())).sum(-1)
    kl_qp = (qq * (qq.log() - pp.log())).sum(-1)
    return (kl_pq + kl_qp).mean()


def _reference_bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    a, b = torch.sigmoid(p), torch.sigmoid(q)

    def kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * (x / y).log() + (1 - x) * ((1 - x) / (1 - y)).log()

    return (kl(a, b) + kl(b, a)).reshape(len(p), -1).sum(1).mean()


@pytest.mark.parametrize("name", sorted(ALL))
@settings(max_examples=60, deadline=None)
@given(pair=output_pairs(min_classes=2))
def test_zero_for_identical_symmetric_and_non_negative(name: str, pair) -> None:
    p, q = pair
    fn = divergence(name)
    assert fn(p, p).item() == pytest.approx(0.0, abs=1e-12)
    assert fn(p, q).item() == pytest.approx(fn(q, p).item(), rel=1e-9, abs=1e-12)
    assert fn(p, q).item() >= 0.0


@settings(max_examples=60, deadline=None)
@given(pair=output_pairs(min_classes=2))
def test_softmax_kl_matches_reference(pair) -> None:
    p, q = pair
    # The naive formula loses precision once probabilities underflow; keep logits moderate.
    p, q = p / 3, q / 3
    assert symmetric_kl_softmax(p, q).item() == pytest.approx(
        _reference_softmax_kl(p, q).item(), rel=1e-7, abs=1e-10
    )


@settings(max_examples=60, deadline=None)
@given(pair=output_pairs())
def test_bernoulli_kl_matches_reference(pair) -> None:
    p, q = pair
    p, q = p / 3, q / 3
    assert symmetric_kl_bernoulli(p, q).item() == pytest.approx(
        _reference_bernoulli_kl(p, q).item(), rel=1e-6, abs=1e-10
    )


@settings(max_examples=60, deadline=None)
@given(pair=output_pairs())
def test_squared_error_matches_reference(pair) -> None:
    p, q = pair
    expected = ((p - q) ** 2).sum(1).mean()
    assert squared_error(p, q).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("shape", [(3,), (3, 1)])
@pytest.mark.parametrize("name", ["bernoulli_kl", "squared_error"])
def test_one_output_heads_are_not_identically_zero(name: str, shape: tuple[int, ...]) -> None:
    p = torch.tensor([0.5, -1.0, 2.0]).reshape(shape)
    q = torch.tensor([0.0, 1.0, 2.5]).reshape(shape)
    assert divergence(name)(p, q).item() > 1e-3


def test_softmax_kl_refuses_a_single_logit() -> None:
    # A softmax over one logit is 1 whatever the logit: the KL would silently be zero.
    with pytest.raises(ValueError, match="bernoulli_kl"):
        symmetric_kl_softmax(torch.zeros(3, 1), torch.ones(3, 1))
    with pytest.raises(ValueError, match="bernoulli_kl"):
        symmetric_kl_softmax(torch.zeros(3), torch.ones(3))


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_large_logits_stay_finite(name: str, dtype: torch.dtype) -> None:
    big = 1e4 if dtype is not torch.float32 else 1e30
    if name == "squared_error" and dtype is torch.float32:
        big = 1e15  # a squared error of 1e30-sized outputs genuinely overflows float32
    p = torch.tensor([[big, -big], [-big, big], [0.0, big]]).to(dtype)
    q = torch.tensor([[-big, big], [-big, big], [big, 0.0]]).to(dtype)
    if name == "bernoulli_kl":
        p, q = p[:, :1], q[:, :1]
    p.requires_grad_(True)
    value = divergence(name)(p, q)
    value.backward()
    assert math.isfinite(value.item())
    assert value.item() > 0
    assert p.grad is not None and torch.isfinite(p.grad).all()


def test_saturated_logits_known_values() -> None:
    # Opposite saturated binary logits ±z: σ(z) − σ(−z) → 1, times 2z.
    z = 50.0
    p, q = torch.tensor([z]), torch.tensor([-z])
    assert symmetric_kl_bernoulli(p, q).item() == pytest.approx(2 * z, rel=1e-6)
    # Softmax: two classes with logit gap 2z → ≈ 2z as well.
    p2, q2 = torch.tensor([[z, -z]]), torch.tensor([[-z, z]])
    assert symmetric_kl_softmax(p2, q2).item() == pytest.approx(4 * z, rel=1e-6)


def test_mean_over_batch_not_sum() -> None:
    p, q = torch.tensor([[1.0], [1.0]]), torch.tensor([[0.0], [0.0]])
    assert squared_error(p, q).item() == pytest.approx(1.0)
    assert squared_error(p[:1], q[:1]).item() == pytest.approx(1.0)


def test_shape_mismatch_and_lookup_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        squared_error(torch.zeros(3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="softmax_kl.*bernoulli_kl.*squared_error"):
        divergence("kl")  # type: ignore[arg-type]
    custom = lambda p, q: (p - q).abs().mean()  # noqa: E731
    assert divergence(custom) is custom
    for name, fn in ALL.items():
        assert divergence(name) is fn  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    assert doctest.testmod(_divergence).failed == 0
