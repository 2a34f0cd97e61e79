"""Segment Gramians on the CPU's row-pair paths: each segment's own ``G_s G_sᵀ``."""

import pytest
import torch

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
