import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _matrices import reference_pcgrad, scale_of, segment_pieces, task_matrices

import gradbalance
from gradbalance import PCGrad


@settings(max_examples=150, deadline=None)
@given(G=task_matrices(), seed=st.integers(0, 1000), reduction=st.sampled_from(["sum", "mean"]))
def test_matches_vector_space_reference(G, seed, reduction):
    got = PCGrad(seed=seed, reduction=reduction).combine(G)
    want = reference_pcgrad(G, seed, reduction)
    assert torch.isfinite(got).all()
    assert (got - want).norm() <= 1e-9 * scale_of(G) * G.shape[0]


@settings(max_examples=50, deadline=None)
@given(T=st.integers(1, 8), P=st.integers(1, 500), seed=st.integers(0, 2**31 - 1))
def test_no_conflict_is_the_sum(T, P, seed):
    G = torch.rand(T, P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(PCGrad(seed=0).combine(G), G.sum(0))


@settings(max_examples=60, deadline=None)
@given(G=task_matrices(max_tasks=2, kinds=("normal", "antiparallel", "zero")))
def test_two_task_closed_form(G):
    if G.shape[0] != 2:
        G = torch.cat([G, -0.5 * G[:1] + 0.1 * torch.ones_like(G[:1])])[:2]
    g1, g2 = G
    dot = torch.dot(g1, g2)
    want = g1 + g2
    if dot < 0:
        want = want - dot / torch.dot(g2, g2) * g2 - dot / torch.dot(g1, g1) * g1
    torch.testing.assert_close(PCGrad(seed=3).combine(G), want, rtol=1e-9, atol=1e-9 * scale_of(G))


@settings(max_examples=60, deadline=None)
@given(G=task_matrices(max_columns=300), c=st.floats(1e-6, 1e6), seed=st.integers(0, 100))
def test_positive_homogeneity(G, c, seed):
    torch.testing.assert_close(
        PCGrad(seed=seed).combine(c * G),
        c * PCGrad(seed=seed).combine(G),
        rtol=1e-7,
        atol=1e-7 * c * scale_of(G),
    )


@settings(max_examples=40, deadline=None)
@given(G=task_matrices(max_columns=400), cuts=st.lists(st.integers(1, 399), max_size=4), seed=st.integers(0, 99))
def test_segments_are_independent_problems(G, cuts, seed):
    pieces = segment_pieces(G.shape[1], cuts)
    got = PCGrad(seed=seed).combine(G, [b - a for a, b in pieces])
    want = torch.cat([PCGrad(seed=seed).combine(G[:, a:b]) for a, b in pieces])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * scale_of(G) * G.shape[0])


def test_seeded_orders_are_reproducible_and_private():
    G = torch.randn(6, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = PCGrad(seed=5).combine(G)
    after = torch.rand(1)
    assert torch.equal(before, after), "combining must not consume the global RNG"
    assert torch.equal(a, PCGrad(seed=5).combine(G))


def test_state_round_trip_continues_the_order_stream():
    G = torch.randn(5, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = PCGrad(seed=1)
    a.combine(G)
    b = PCGrad(seed=99)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.combine(G), b.combine(G))


def test_reduction_is_validated_with_a_clear_message():
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        PCGrad(reduction="max")  # type: ignore[arg-type]
    assert repr(PCGrad(seed=1)) == "PCGrad(seed=1, reduction='sum')"


def test_created_by_name():
    assert isinstance(gradbalance.create("pcgrad", seed=0), PCGrad)
