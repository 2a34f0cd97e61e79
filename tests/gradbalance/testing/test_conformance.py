"""The kit catches what it is named for: one deliberately broken combiner per check."""

import importlib
import re
import sys

import pytest
import torch

from gradbalance import GradientCombiner, GramianCombiner, Mean, Property, Sum
from gradbalance._combiner import Combination
from gradbalance.testing import Kit, applicable_checks, check_combiner, conformance_tests

KIT = Kit(max_examples=15)


class InverseNorm(GramianCombiner):
    """The README's plugin: unit task gradients summed."""

    name = "inverse-norm"
    properties = frozenset({Property.PERMUTATION_EQUIVARIANT, Property.TASK_SCALE_INVARIANT})

    def weights(self, gramian):
        norms = gramian.diagonal(dim1=-2, dim2=-1).sqrt()
        return torch.where(norms > 0, 1 / norms, 0.0)


# The README's two lines, on a plugin-style class: every applicable check is its own test.
test_inverse_norm = conformance_tests(InverseNorm, kit=KIT)


def weighted(fn):
    """A GramianCombiner subclass whose weights are ``fn(gramian)``."""
    return type("Weighted", (GramianCombiner,), {"name": "weighted", "weights": lambda self, K: fn(K)})


def plain(fn, **attributes):
    """A GradientCombiner subclass whose result is ``fn(self, G, segments, out)``."""

    def combine_with_info(self, G, segments=None, *, out=None):
        self._prepare(G, segments, out)
        return Combination(fn(self, G, segments, out))

    return type(
        "Plain", (GradientCombiner,), {"name": "plain", "combine_with_info": combine_with_info, **attributes}
    )


def ones(K):
    return torch.ones(K.shape[:2], dtype=K.dtype)


def declaring(cls, *properties):
    return type(cls.__name__, (cls,), {"properties": frozenset(properties)})


class Counting(Sum):
    """Scales step k by k + 1 but leaves the step count out of its state."""

    def __init__(self):
        self.steps = 0

    def combine_with_info(self, G, segments=None, *, out=None):
        self.steps += 1
        info = super().combine_with_info(G, segments, out=out)
        return Combination(info.direction * self.steps)

    def state_dict(self):
        return {"version": torch.tensor(1)}

    def load_state_dict(self, state):
        pass


BROKEN = {
    # weights favour task 0
    "permutation-equivariant": declaring(
        weighted(lambda K: ones(K) + torch.eye(K.shape[1], dtype=K.dtype)[0]),
        Property.PERMUTATION_EQUIVARIANT,
    ),
    # the sum normalized to the mean row norm: degree 0
    "positively-homogeneous": declaring(
        weighted(
            lambda K: ones(K) / K.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).sqrt().clamp_min(1e-300)
        ),
        Property.POSITIVELY_HOMOGENEOUS,
    ),
    "non-conflicting": declaring(Sum, Property.NON_CONFLICTING),
    # inverse-norm weights: not a multiple of the sum even without conflict
    "sum-without-conflict": declaring(InverseNorm, Property.SUM_WITHOUT_CONFLICT),
    "task-scale-invariant": declaring(Sum, Property.TASK_SCALE_INVARIANT),
    "result": plain(lambda self, G, s, out: G.double().sum(0)),
    # squares in the input dtype: huge rows overflow to inf / inf
    "finite": plain(lambda self, G, s, out: G.sum(0) * (G.norm() ** 2 / (G.norm() ** 2).clamp_min(1e-30))),
    # float16 arithmetic for every input but float64
    "precision": plain(
        lambda self, G, s, out: G.sum(0) if G.dtype == torch.float64 else G.half().sum(0).to(G.dtype)
    ),
    "out": plain(lambda self, G, s, out: G.sum(0)),  # ignores out
    "segments": weighted(
        lambda K: ones(K) / K.diagonal(dim1=-2, dim2=-1).sum(0, keepdim=True).sqrt().clamp_min(1e-300)
    ),
    "reproducible": weighted(lambda K: torch.rand(K.shape[:2], dtype=K.dtype)),  # the global RNG
    "state": Counting,
    # no NaN/Inf check: the result is NaN
    "nonfinite": plain(lambda self, G, s, out: torch.nan_to_num(G, nan=0.0).sum(0) * float("nan")),
}


@pytest.mark.parametrize("check", sorted(BROKEN))
def test_each_check_catches_its_broken_combiner(check):
    cls = BROKEN[check]
    assert check in applicable_checks(cls)
    with pytest.raises(AssertionError, match=f"fails conformance check '{check}'"):
        check_combiner(cls, checks=[check], kit=KIT)


def test_every_check_has_a_broken_combiner():
    everything = set(applicable_checks(declaring(Sum, *Property)))
    assert everything == set(BROKEN)


def test_undeclared_properties_are_not_checked():
    assert "non-conflicting" not in applicable_checks(Sum)
    check_combiner(Sum, checks=applicable_checks(Sum), kit=Kit(max_examples=5))


def test_the_nonfinite_check_wants_the_task_named():
    def wrong_task(self, G, segments, out):
        if not bool(torch.isfinite(G).all()):
            from gradbalance import NonFiniteGradientError

            raise NonFiniteGradientError(G.shape[0])  # one past the last row
        return G.sum(0)

    with pytest.raises(AssertionError, match="names task"):
        check_combiner(plain(wrong_task), checks=["nonfinite"], kit=KIT)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown checks \\['symmetry'\\]"):
        check_combiner(Mean, checks=["symmetry"])
    with pytest.raises(AssertionError, match="cannot be built"):
        check_combiner(Mean, alpha=2)


def test_missing_hypothesis_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # import hypothesis now fails
    for name in [m for m in sys.modules if m.startswith("gradbalance.testing")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=re.escape("pip install 'gradbalance[testing]'")):
        importlib.import_module("gradbalance.testing")
