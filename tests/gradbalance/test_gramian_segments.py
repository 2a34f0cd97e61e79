"""Segment Gramians on the CPU's row-pair paths: each segment's own ``G_s G_sᵀ``."""

import pytest
import torch

import gradbalance
from gradbalance import _gramian
from gradbalance._gramian import segment_gramians


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-15), (torch.float32, 1e-6)])
@pytest.mark.parametrize("sizes", [[2, 1, 7, 3, 2, 256, 5], [2] * 5, [257, 3]])
def test_each_segment_gets_its_own_gramian(dtype, tol, sizes):
    # The row-pair dots per segment, symmetric as computed (no averaging of the halves): every
    # segment's Gramian, none shifted into its neighbour, to the input precision's rounding.
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(3, sum(sizes), generator=gen, dtype=torch.float64).to(dtype)
    K = segment_gramians(G, sizes)
    want = torch.stack([g @ g.T for g in G.double().split(sizes, dim=1)])
    torch.testing.assert_close(K, want, rtol=tol, atol=tol * float(want.abs().max()))
    assert K.dtype == torch.float64 and torch.equal(K, K.mT)


def test_segments_sharing_a_block_length_on_the_library_kernels():
    # Six tasks (past the row-pair dots) and per-tensor-like sizes, multiples of 64: one batched
    # product of 64-column blocks, summed into each segment by its block owners.
    sizes = [128, 64, 640, 192]
    assert _gramian._common_block(sizes) == 64
    G = torch.randn(6, sum(sizes), generator=torch.Generator().manual_seed(1))
    K = segment_gramians(G, sizes)
    want = torch.stack([g @ g.T for g in G.double().split(sizes, dim=1)])
    torch.testing.assert_close(K, want, rtol=1e-6, atol=1e-6 * float(want.abs().max()))
    assert torch.equal(K, K.mT)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("sizes", [None, [300, 7, 1000], [70_000, 3]])
def test_small_combine_matches_the_library_kernels(monkeypatch, dtype, tol, sizes):
    # A small CPU G takes both passes on one numpy view (row-pair dots, then numpy's gemv):
    # its Gramian, weights and direction, written into out, match the torch path's.
    gen = torch.Generator().manual_seed(2)
    P = 1307 if sizes is None else sum(sizes)
    G = torch.randn(3, P, generator=gen, dtype=torch.float64).to(dtype)
    G[1] = -0.6 * G[0] + 0.4 * G[1]
    combiner = gradbalance.create("upgrad")
    out = torch.empty(P, dtype=dtype)
    small = combiner.combine_with_info(G, sizes, out=out)
    monkeypatch.setattr(_gramian, "MAX_DOT_TASKS", 0)  # the batched products and torch.mv
    assert _gramian.dot_rows(G) is None
    library = combiner.combine_with_info(G, sizes)
    assert small.direction is out and out.dtype == dtype
    assert small.gramian is not None and library.gramian is not None
    assert small.weights is not None and library.weights is not None
    assert torch.equal(small.gramian, small.gramian.mT)
    for mine, theirs in [(small.gramian, library.gramian), (small.weights, library.weights)]:
        torch.testing.assert_close(mine, theirs, rtol=tol, atol=tol * float(theirs.abs().max()))
    scale = float(library.direction.abs().max())
    torch.testing.assert_close(out, library.direction, rtol=tol, atol=tol * scale)
