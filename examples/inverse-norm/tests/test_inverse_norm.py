import pytest
import torch

import gradbalance
from gradbalance.testing import conformance_tests
from inverse_norm.plugin import InverseNorm


def test_installed_and_listed():
    assert "inverse-norm" in gradbalance.available()
    assert gradbalance.options("inverse-norm") == ["reduction"]


def test_every_task_contributes_a_unit_vector():
    G = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])  # norms 5, 2 and an absent task
    d = gradbalance.create("inverse-norm").combine(G)
    torch.testing.assert_close(d, torch.tensor([0.6, 1.8]))


def test_a_bad_option_fails_at_create():
    with pytest.raises(ValueError):
        gradbalance.create("inverse-norm", reduction="median")


def test_works_in_the_buffer():
    layer = torch.nn.Linear(2, 2)
    buffer = gradbalance.TaskGradients(layer, num_tasks=2)
    for t in range(2):
        with buffer.task(t):
            layer(torch.randn(4, 2)).pow(2).sum().backward()
    buffer.combine(gradbalance.create("inverse-norm", reduction="mean"))
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


# The conformance kit: the contract and InverseNorm's declared properties, one test per check.
test_conformance = conformance_tests(InverseNorm)
test_conformance_mean = conformance_tests(InverseNorm, reduction="mean")
