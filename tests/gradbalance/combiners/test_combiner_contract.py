"""Properties every built-in combiner shares, run over the same matrix families."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _matrices import cosine_condition, scale_of, segment_pieces, task_matrices

import gradbalance
from gradbalance import IMTLG, MGDA, AlignedMTL, GramianCombiner, NonFiniteGradientError, UPGrad

BUILTINS = ["sum", "mean", "pcgrad", "gradvac", "imtl-g", "mgda", "aligned-mtl", "upgrad", "cagrad", "nash-mtl", "fairgrad"]


def make(name: str):
    return gradbalance.create(name, seed=0) if name in ("pcgrad", "gradvac") else gradbalance.create(name)


@pytest.mark.parametrize("name", BUILTINS)
@settings(max_examples=30, deadline=None)
@given(G=task_matrices(max_columns=500))
def test_finite_output_of_the_right_shape(name, G):
    d = make(name).combine(G)
    assert d.shape == (G.shape[1],) and d.dtype == G.dtype
    assert torch.isfinite(d).all()


@pytest.mark.parametrize("name", BUILTINS)
def test_all_zero_rows_give_zero(name):
    assert torch.equal(make(name).combine(torch.zeros(4, 33)), torch.zeros(33))


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_row_is_named(name, bad):
    G = torch.randn(4, 1000)
    G[2, 417] = bad
    with pytest.raises(NonFiniteGradientError, match="task 2") as info:
        make(name).combine(G)
    assert info.value.task == 2


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
    eps = torch.finfo(dtype).eps
    if name in ("imtl-g", "mgda", "aligned-mtl", "upgrad", "cagrad", "nash-mtl", "fairgrad"):
        # These solve a system in the Gramian (IMTL-G's cosine matrix, MGDA's and CAGrad's KKT
        # systems, UPGrad's projections, Aligned-MTL's eigenvectors, Nash-MTL's and FairGrad's
        # equations): Gramian rounding (a few eps
        # of a float32 block product) reaches their weights amplified by the condition number of
        # the tasks' cosine matrix.
        eps *= cosine_condition(G64)
    err = (d.double() - want).norm() / want.norm()
    assert err < 4 * eps, f"relative error {err:.2e} for {dtype}"


@pytest.mark.parametrize("name", BUILTINS)
def test_out_is_filled_in_place(name):
    G = torch.randn(3, 777)
    out = torch.empty(777)
    d = make(name).combine(G, out=out)
    assert d.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, make(name).combine(G))


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


@pytest.mark.parametrize("name", [*REDUCED, "nash-mtl", "fairgrad"])
@settings(max_examples=40, deadline=None)
@given(G=task_matrices(max_columns=400), cuts=st.lists(st.integers(1, 399), max_size=4))
def test_segments_are_independent_problems(name, G, cuts):
    pieces = segment_pieces(G.shape[1], cuts)
    got = make(name).combine(G, [b - a for a, b in pieces])
    want = torch.cat([make(name).combine(G[:, a:b]) for a, b in pieces])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * scale_of(G))


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
