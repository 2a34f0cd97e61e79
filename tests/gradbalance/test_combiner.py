"""The combiner contract: a class writes ``combine`` or ``combine_with_info`` (or ``weights``)."""

import abc
from typing import Literal

import attrs
import numpy as np
import pytest
import torch
from torch import nn

import gradbalance
from gradbalance import GradientCombiner, GramianCombiner, NonFiniteGradientError, TaskGradients
from gradbalance._checks import reduction_field
from gradbalance._combiner import GramianCombinerWithReduction


class HalfSum(GradientCombiner):
    """Written against the documented contract only: ``combine``."""

    name = "half-sum"

    def __init__(self) -> None:
        self.calls = 0

    def combine(self, G, segments=None, *, out=None):
        self.calls += 1
        return torch.sum(G, 0, out=out).div_(2) if out is not None else G.sum(0) / 2


class NoOut(GradientCombiner):
    """A ``combine`` without the ``out`` parameter."""

    name = "no-out"

    def combine(self, G, segments=None):
        return G.sum(0) * 3


def test_a_combine_only_class_instantiates_and_runs_everywhere():
    G = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    want = torch.tensor([2.0, 3.0])
    c = HalfSum()
    torch.testing.assert_close(c.combine(G), want)
    torch.testing.assert_close(c(G), want)
    info = c.combine_with_info(G)
    assert isinstance(info, gradbalance.Combination) and info.gramian is None and info.weights is None
    torch.testing.assert_close(info.direction, want)
    out = torch.empty(2)
    assert c.combine_with_info(G, out=out).direction is out
    torch.testing.assert_close(out, want)


def test_a_combine_without_out_still_honours_out():
    out = torch.empty(2)
    direction = NoOut().combine_with_info(torch.ones(2, 2), out=out).direction
    assert direction is out and torch.equal(out, torch.full((2,), 6.0))
    assert torch.equal(NoOut()(torch.ones(2, 2)), torch.full((2,), 6.0))


def test_a_combine_only_class_drives_task_gradients():
    torch.manual_seed(0)
    shared = nn.Linear(3, 2)
    buffer = TaskGradients(shared, num_tasks=2)
    x = torch.randn(4, 3)
    for t in range(2):
        with buffer.task(t):
            (shared(x).sum() * (t + 1)).backward()
    combiner = HalfSum()
    info = buffer.combine(combiner)
    assert combiner.calls == 1
    torch.testing.assert_close(buffer.result, buffer.rows.sum(0) / 2)
    assert info.direction.data_ptr() == buffer.result.data_ptr()
    assert shared.weight.grad.data_ptr() == buffer.result.data_ptr()


def test_a_class_with_neither_method_fails_at_definition():
    with pytest.raises(
        TypeError, match=r"Neither must implement combine\(self, G, segments=None, \*, out=None\)"
    ):

        class Neither(GradientCombiner):
            name = "neither"

    with pytest.raises(
        TypeError,
        match=r"NoWeights must implement weights\(self, gramian\) \(abstract in gradbalance.GramianCombiner\)",
    ):

        class NoWeights(GramianCombiner):
            name = "no-weights"


def test_abstract_bases_are_exempt_but_stay_uninstantiable():
    class Declared(GradientCombiner):  # declares an abstract method of its own, like GramianCombiner
        @abc.abstractmethod
        def scale(self) -> float: ...

    with pytest.raises(TypeError, match="abstract"):
        Declared()

    class Base(GradientCombiner, abstract=True):
        def helper(self) -> int:
            return 1

    with pytest.raises(TypeError, match="abstract"):
        Base()

    class Concrete(Base):
        name = "concrete"

        def combine(self, G, segments=None, *, out=None):
            return G.sum(0) * self.helper()

    assert torch.equal(Concrete()(torch.ones(2, 2)), torch.full((2,), 2.0))


def test_overriding_combine_over_a_builtin_is_what_task_gradients_runs():
    class Doubled(gradbalance.Sum):
        name = "doubled"

        def combine(self, G, segments=None, *, out=None):
            return 2 * super().combine(G, segments)

    G = torch.ones(2, 3)
    torch.testing.assert_close(Doubled().combine_with_info(G).direction, torch.full((3,), 4.0))

    class SuperOnly(GradientCombiner):
        name = "super-only"

        def combine(self, G, segments=None, *, out=None):
            return super().combine(G, segments, out=out)

    with pytest.raises(TypeError, match="through super"):
        SuperOnly().combine(G)


def test_a_combine_result_is_checked():
    class WrongShape(GradientCombiner):
        name = "wrong-shape"

        def combine(self, G, segments=None, *, out=None):
            return G

    class NotATensor(GradientCombiner):
        name = "not-a-tensor"

        def combine(self, G, segments=None, *, out=None):
            return G.sum(0).tolist()

    with pytest.raises(ValueError, match=r"WrongShape.combine returned shape \(2, 3\); expected \(3,\)"):
        WrongShape().combine_with_info(torch.ones(2, 3))
    with pytest.raises(
        TypeError, match=r"NotATensor.combine must return a torch.Tensor of shape \(3,\), got a list"
    ):
        NotATensor().combine_with_info(torch.ones(2, 3))
    G = torch.ones(3, 4)
    G[2, 1] = float("inf")
    with pytest.raises(NonFiniteGradientError, match="task 2"):
        HalfSum().combine_with_info(G)


@pytest.mark.parametrize("kind", [list, np.asarray])
def test_weights_that_are_not_a_tensor_say_what_was_expected(kind):
    class Listed(GramianCombiner):
        name = "listed"

        def weights(self, gramian):
            return kind([[1.0] * gramian.shape[-1]])

    expected = "list" if kind is list else "numpy.ndarray"
    with pytest.raises(
        TypeError,
        match=rf"Listed.weights must return a torch.Tensor of shape \(1, 3\) \(segments, tasks\).*got a {expected}",
    ):
        Listed().combine(torch.randn(3, 8))


def _reducing(unreduced, default, divisor=1.0):
    """A combiner with a ``reduction`` option whose unreduced weights are all ones."""

    @attrs.define
    class Ones(GramianCombinerWithReduction):
        name = "ones"
        reduction: Literal["sum", "mean"] = reduction_field(default)

        def unreduced_weights(self, gramian):
            return torch.ones(gramian.shape[:2], dtype=gramian.dtype)

        def divisor(self):
            return divisor

    Ones.unreduced = unreduced
    return Ones


@pytest.mark.parametrize("unreduced", ["sum", "mean"])
def test_the_base_class_applies_the_reduction(unreduced):
    K = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    cls = _reducing(unreduced, "mean")
    assert cls().reduction == "mean" and cls(reduction="sum").reduction == "sum"
    ones = torch.ones(2, 4, dtype=torch.float64)
    on_scale = {
        "sum": ones * (4 if unreduced == "mean" else 1),
        "mean": ones / (4 if unreduced == "sum" else 1),
    }
    for reduction, want in on_scale.items():
        assert torch.equal(cls(reduction=reduction).weights(K), want)
        assert torch.equal(_reducing(unreduced, reduction, divisor=8.0)().weights(K), want / 8)
    with pytest.raises(ValueError, match="Ones reduction must be 'sum' or 'mean', got 'max'"):
        cls(reduction="max")


def test_a_reduction_combiner_without_unreduced_weights_fails_at_definition():
    with pytest.raises(TypeError, match=r"unreduced_weights\(self, gramian\).*GramianCombinerWithReduction"):

        class Forgot(GramianCombinerWithReduction):
            name = "forgot"
            unreduced = "sum"
