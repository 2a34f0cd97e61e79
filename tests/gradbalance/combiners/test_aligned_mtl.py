import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradbalance import AlignedMTL
from gradbalance.combiners._solvers import SMALL_TASKS

from _matrices import scale_of, task_matrices

EPS32 = torch.finfo(torch.float32).eps


def reference_aligned(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Senushkin et al. 2023 in vector space: thin SVD G = U S Vᵀ, singular values with
    s² ≤ T·ε₃₂·s_max² dropped, aligned rows Ĝ = s_min U Vᵀ, update Σ_t ĝ_t. Also returns the
    kept squared singular values relative to the largest."""
    T = G.shape[0]
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    if float(S.max()) == 0:
        return torch.zeros(G.shape[1], dtype=G.dtype), S
    kept = S**2 > T * EPS32 * S.max() ** 2
    aligned = S[kept].min() * U[:, kept] @ Vh[kept]
    return aligned.sum(0), (S / S.max()) ** 2


@settings(max_examples=200, deadline=None)
@given(G=task_matrices(), reduction=st.sampled_from(["sum", "mean"]))
def test_matches_the_svd_reference(G, reduction):
    want, relative = reference_aligned(G)
    T = G.shape[0]
    # Away from the rank threshold, where rounding could put a direction on either side.
    threshold = T * EPS32
    assume(not bool(((relative > threshold / 100) & (relative < threshold * 100)).any()))
    d = AlignedMTL(reduction=reduction).combine(G)
    if reduction == "mean":
        want = want / T
    assert (d - want).norm() <= 1e-6 * float(want.norm()) + 1e-12 * scale_of(G)


@settings(max_examples=100, deadline=None)
@given(G=task_matrices(kinds=("normal",)))
def test_update_has_the_norm_of_orthogonal_rows_of_norm_sigma_min(G):
    # Full rank: the aligned rows are orthogonal with norm σ_min each, so their sum has norm
    # √T σ_min, and it lies in the span of the task gradients.
    T, P = G.shape
    S = torch.linalg.svdvals(G)
    assume(T <= P and float(S.min() / S.max()) > 1e-3)
    d = AlignedMTL().combine(G)
    assert float(d.norm()) == pytest.approx(T**0.5 * float(S.min()), rel=1e-9)
    in_span = G.T @ torch.linalg.lstsq(G.T, d.unsqueeze(1)).solution[:, 0]
    assert float((d - in_span).norm()) <= 1e-9 * float(d.norm())


@settings(max_examples=200, deadline=None)
@given(G=task_matrices(max_tasks=SMALL_TASKS))
def test_one_small_segment_in_python_floats_matches_the_numpy_path(G):
    # One segment of a few tasks finishes in Python floats after its eigendecomposition; two
    # segments stay in numpy.
    K = (G @ G.T)[None]
    small = AlignedMTL().weights(K)[0]
    batched = AlignedMTL().weights(K.expand(2, -1, -1).contiguous())[0]
    torch.testing.assert_close(small, batched, rtol=1e-12, atol=1e-12 * float(batched.abs().max()))


def test_orthogonal_tasks_are_all_scaled_to_the_smallest():
    G = torch.diag(torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64))
    info = AlignedMTL().combine_with_info(G)
    torch.testing.assert_close(info.weights[0], torch.tensor([0.1, 0.01, 1.0], dtype=torch.float64))
    torch.testing.assert_close(info.direction, torch.full((3,), 0.1, dtype=torch.float64))


def test_parallel_opposed_and_absent_tasks():
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    # Rank one: σ_min is the only singular value, the alignment changes nothing, sum is kept.
    torch.testing.assert_close(AlignedMTL().combine(torch.stack([g, 2 * g])), 3 * g)
    # Opposed: the aligned rows are opposed too and cancel.
    assert AlignedMTL().combine(torch.stack([g, -g])).abs().max() < 1e-12
    info = AlignedMTL().combine_with_info(torch.stack([g, torch.zeros(2, dtype=torch.float64)]))
    torch.testing.assert_close(info.weights[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
