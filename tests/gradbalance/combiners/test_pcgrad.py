import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbalance
from gradbalance import PCGrad
from gradbalance.combiners._solvers import SMALL_TASKS

from _matrices import reference_pcgrad, scale_of, task_matrices


@settings(max_examples=150, deadline=None)
@given(G=task_matrices(), seed=st.integers(0, 1000), reduction=st.sampled_from(["sum", "mean"]))
def test_matches_vector_space_reference(G, seed, reduction):
    got = PCGrad(seed=seed, reduction=reduction).combine(G)
    want = reference_pcgrad(G, seed, reduction)
    assert torch.isfinite(got).all()
    assert (got - want).norm() <= 1e-9 * scale_of(G) * G.shape[0]


@settings(max_examples=150, deadline=None)
@given(G=task_matrices(max_tasks=SMALL_TASKS), seed=st.integers(0, 1000))
def test_one_small_segment_in_python_floats_matches_the_numpy_steps(G, seed):
    # One segment of a few tasks takes the Python-float steps; two segments take numpy's, with
    # the same visiting orders from the same seed.
    K = (G @ G.T)[None]
    small = PCGrad(seed=seed).weights(K)
    batched = PCGrad(seed=seed).weights(K.expand(2, -1, -1).contiguous())
    scale = float(batched.abs().max()) + 1e-300
    torch.testing.assert_close(small[0], batched[0], rtol=1e-12, atol=1e-12 * scale)


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


def test_seeded_orders_are_reproducible_and_private():
    G = torch.randn(6, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = PCGrad(seed=5).combine(G)
    after = torch.rand(1)
    assert torch.equal(before, after), "combining must not consume the global RNG"
    assert torch.equal(a, PCGrad(seed=5).combine(G))


def test_reduction_is_validated_with_a_clear_message():
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        PCGrad(reduction="max")  # type: ignore[arg-type]
    assert repr(PCGrad(seed=1)) == "PCGrad(seed=1, reduction='sum')"


def test_created_by_name():
    assert isinstance(gradbalance.create("pcgrad", seed=0), PCGrad)
