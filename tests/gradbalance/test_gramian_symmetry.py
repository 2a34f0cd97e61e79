"""The exact symmetry of the Gramians, which the solvers rely on."""

import pytest
import torch

from gradbalance import CAGrad
from gradbalance._gramian import segment_gramians

# Two float16 task rows whose float32 Gramian came out asymmetric (K01 and K10 5e-8 apart).
# fmt: off
ROWS = [
    [-0.311279296875, -0.712890625, 0.57373046875, 1.5693359375, 0.87353515625, -3.705078125,
     -1.814453125, -1.8427734375, 0.0941162109375],
    [0.51171875, 1.052734375, -0.1563720703125, -2.1015625, 1.580078125, 1.0830078125,
     0.8896484375, -1.9287109375, -0.27099609375],
]
# fmt: on


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [[9], [4, 5]])
def test_gramians_are_exactly_symmetric(dtype, sizes):
    gen = torch.Generator().manual_seed(0)
    for G in (torch.tensor(ROWS, dtype=dtype), torch.randn(5, 9, generator=gen).to(dtype)):
        K = segment_gramians(G, sizes)
        assert torch.equal(K, K.mT)


def test_cagrad_on_half_inputs_matches_float64():
    # With the asymmetric Gramian CAGrad's KKT test failed and it returned the mean, 0.47 away.
    G = torch.tensor(ROWS, dtype=torch.float16)
    want = CAGrad().combine(G.double())
    got = CAGrad().combine(G)
    assert float((got.double() - want).norm()) <= 2e-3 * float(want.norm())
