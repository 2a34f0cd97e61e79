"""Mean and sum: the unbalanced baselines, value by value (every other check is the kit's)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbalance import Mean, Sum
from gradbalance.testing import segmentations

from _matrices import task_matrices


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_mean_is_the_average_row_and_sum_the_total(data, dtype):
    G = data.draw(task_matrices(max_columns=300, dtype=dtype))
    segments = data.draw(segmentations(G.shape[1]))
    T = G.shape[0]
    total = G.double().sum(0)
    # one rounding per addition, relative to the magnitudes added
    bound = 2 * T * torch.finfo(dtype).eps * float(G.double().abs().sum(0).norm()) + 1e-300
    mean = Mean().combine(G, segments)
    assert float((mean.double() - total / T).norm()) <= bound / T
    assert float((Sum().combine(G, segments).double() - total).norm()) <= bound


def test_mean_of_three_rows():
    G = torch.tensor([[3.0, 0.0], [0.0, 6.0], [-3.0, 3.0]])
    out = torch.empty(2)
    Mean().combine(G, [1, 1], out=out)
    assert torch.equal(out, torch.tensor([0.0, 3.0]))
    assert torch.equal(Sum().combine(G), torch.tensor([0.0, 9.0]))
