"""Every built-in under the conformance kit (gradbalance.testing), plus the contract details
the kit does not cover: zero matrices, error messages, segment naming, plugin-side checks."""

import pytest
import torch

import gradbalance
from gradbalance import IMTLG, MGDA, AlignedMTL, GramianCombiner, NonFiniteGradientError, UPGrad, _builtins
from gradbalance.testing import applicable_checks, check_combiner

BUILTINS = [cls.name for cls in _builtins.gradbalance_combiners()]
CLASSES = {cls.name: cls for cls in _builtins.gradbalance_combiners()}

# Declared properties hold for every option value: the defaults, plus the options that change
# the maths most (randomized methods get a seed, which the kit needs to compare runs).
OPTION_SETS = {
    "pcgrad": [{"seed": 0}, {"seed": 1, "reduction": "mean"}],
    "gradvac": [{"seed": 0}, {"seed": 1, "beta": 0.5}],
    "cagrad": [{}, {"c": 2.0, "rescale": False, "reduction": "sum"}],
    "fairgrad": [{}, {"alpha": 3.0}],
    "upgrad": [{}, {"reduction": "sum"}],
}
CASES = [
    pytest.param(
        name,
        options,
        check,
        id=f"{name}{'-' + '-'.join(f'{k}={v}' for k, v in options.items()) if options else ''}-{check}",
    )
    for name in BUILTINS
    for options in OPTION_SETS.get(name, [{}])
    for check in applicable_checks(CLASSES[name])
]


def make(name: str):
    return gradbalance.create(name, seed=0) if name in ("pcgrad", "gradvac") else gradbalance.create(name)


def test_every_builtin_is_under_the_kit():
    assert sorted(CLASSES) == sorted(BUILTINS)


@pytest.mark.parametrize("name, options, check", CASES)
def test_conformance(name, options, check):
    check_combiner(CLASSES[name], checks=[check], **options)


@pytest.mark.parametrize("name", BUILTINS)
def test_all_zero_rows_give_zero(name):
    assert torch.equal(make(name).combine(torch.zeros(4, 33)), torch.zeros(33))


def test_nonfinite_row_is_named_with_its_segment():
    G = torch.randn(3, 100)
    G[1, 80] = float("nan")
    with pytest.raises(NonFiniteGradientError, match=r"task 1 \(segment 1\)"):
        make("gradvac").combine(G, [50, 50])


@pytest.mark.parametrize("name", ["pcgrad", "gradvac"])
def test_huge_finite_rows_do_not_overflow(name):
    G = torch.randn(3, 5000, generator=torch.Generator().manual_seed(0)) * 1e19  # G Gᵀ > f32 max
    G[1] = -G[0] + 0.5 * G[1]
    d = make(name).combine(G)
    want = make(name).combine(G.double())
    assert torch.isfinite(d).all()
    torch.testing.assert_close(d.double(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_accumulate_wide_and_return_their_dtype(name, dtype):
    gen = torch.Generator().manual_seed(1)
    G64 = torch.randn(3, 20000, generator=gen, dtype=torch.float64)
    G64[1] = -0.7 * G64[0] + 0.3 * G64[1]
    G = G64.to(dtype)
    d = make(name).combine(G)
    assert d.dtype == dtype
    want = make(name).combine(G.double())  # same rounded inputs, exact arithmetic
    # What the method delivers: the Gramian is formed in float32 (products of half values are
    # exact there), so its rounding, amplified by the tasks' cosine condition number κ (the
    # solvers' weights), and half an ulp of the result's dtype. Measured: 0.21-0.22 ε for
    # float16/bfloat16 (the output rounding alone), up to 8.6 ε for float32 (κ = 24 here; the old bound, 4 ε κ, allowed
    # 0.74 relative for bfloat16).
    unit = G64 / G64.norm(dim=1, keepdim=True)
    kappa = float(torch.linalg.cond(unit @ unit.T))
    bound = torch.finfo(dtype).eps / 2 + kappa * torch.finfo(torch.float32).eps
    err = (d.double() - want).norm() / want.norm()
    assert err < bound, f"relative error {err:.2e} for {dtype}, bound {bound:.2e}"


@pytest.mark.parametrize(
    "G, segments, out, match",
    [
        (torch.randn(5), None, None, r"shape \[T, P\]"),
        (torch.randn(3, 10, dtype=torch.float64).long(), None, None, "floating-point"),
        (torch.randn(3, 10), [4, 5], None, "sum to 9"),
        (torch.randn(3, 10), [10, 0], None, "positive"),
        (torch.randn(3, 10), None, torch.empty(9), r"shape \(10,\)"),
        (torch.randn(3, 10), None, torch.empty(10, dtype=torch.float64), "dtype and device"),
    ],
)
def test_bad_inputs_say_what_is_wrong(G, segments, out, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make("pcgrad").combine(G, segments, out=out)


# Stateless combiners with a sum/mean reduction: the registry class and the reduction that is
# not the default.
REDUCED = {
    "imtl-g": (IMTLG, "sum"),
    "mgda": (MGDA, "sum"),
    "aligned-mtl": (AlignedMTL, "mean"),
    "upgrad": (UPGrad, "sum"),
}


@pytest.mark.parametrize("name", REDUCED)
def test_registered_by_name_and_validates_reduction(name):
    cls, other = REDUCED[name]
    assert isinstance(gradbalance.create(name), cls)
    assert gradbalance.create(name, reduction=other).reduction == other
    with pytest.raises(ValueError, match=f"{cls.__name__} reduction must be 'sum' or 'mean', got 'max'"):
        cls(reduction="max")


def test_a_plugin_writes_only_the_weighting():
    class InverseNorm(GramianCombiner):
        name = "inverse-norm"

        def weights(self, gramian):
            norms = gramian.diagonal(dim1=-2, dim2=-1).sqrt()
            return torch.where(norms > 0, 1 / norms, 0.0)

    G = torch.randn(3, 100, dtype=torch.float64)
    info = InverseNorm().combine_with_info(G, [40, 60])
    for a, b in [(0, 40), (40, 100)]:
        want = (G[:, a:b] / G[:, a:b].norm(dim=1, keepdim=True)).sum(0)
        torch.testing.assert_close(info.direction[a:b], want)
    torch.testing.assert_close(info.gramian[0], G[:, :40] @ G[:, :40].T)
    cos = info.cosines()
    torch.testing.assert_close(cos[1].diagonal(), torch.ones(3, dtype=torch.float64))


def test_weights_of_the_wrong_shape_are_reported():
    class Broken(GramianCombiner):
        name = "broken"

        def weights(self, gramian):
            return torch.ones(gramian.shape[-1])

    with pytest.raises(RuntimeError, match=r"expected \(1, 3\)"):
        Broken().combine(torch.randn(3, 8))


@pytest.mark.parametrize("name", ["sum", "mean"])
def test_stateless_combiners(name):
    c = make(name)
    assert c.state_dict() == {}
    c.load_state_dict({})
    with pytest.raises(ValueError, match="stateless"):
        c.load_state_dict({"x": 1})
