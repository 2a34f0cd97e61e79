"""The fused CPU passes (gradbalance._fused) against a float64 reference written here.

The kernels compile once per task count; the tests keep to T = 2, 3 (and 8 for the Gramian,
where Inductor's default would split the 36 row-pair sums into three loops) so a run compiles
a handful of kernels, and lower ``FUSED_MIN_ELEMENTS`` so the inputs stay small.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbalance
from gradbalance import _fused
from gradbalance._gramian import apply_weights, segment_gramians
from gradbalance.errors import FusedKernelError, NonFiniteGradientError

BLOCK = _fused.FUSED_BLOCK

pytestmark = pytest.mark.skipif(
    not _fused.fused_available(), reason="torch.compile cannot build kernels here"
)


@pytest.fixture(autouse=True)
def fused_on_small_inputs(monkeypatch):
    monkeypatch.setattr(_fused, "FUSED_MIN_ELEMENTS", 0)
    monkeypatch.delenv("GRADBALANCE_COMPILE", raising=False)


def reference_gramians(G: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.stack([g @ g.T for g in G.double().split(sizes, dim=1)])


def reference_apply(G: torch.Tensor, W: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.cat([w @ g for w, g in zip(W.double(), G.double().split(sizes, dim=1))])


def assert_relative(got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    scale = (
        want.abs().amax(dim=tuple(range(1, want.dim())), keepdim=True) if want.dim() > 1 else want.abs().max()
    )
    assert float(((got.double() - want) / scale.clamp_min(1e-300)).abs().max()) <= tol


@pytest.mark.parametrize("T", [2, 3, 8])
def test_one_segment_gramian_is_float64_accurate(T):
    # Full blocks through the kernel and a ragged tail through a small product.
    gen = torch.Generator().manual_seed(T)
    G = torch.randn(T, 5 * BLOCK + 123, generator=gen)
    K = segment_gramians(G, [G.shape[1]])
    assert K.dtype == torch.float64 and torch.equal(K, K.mT)
    assert_relative(K, reference_gramians(G, [G.shape[1]]), 1e-6)


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * BLOCK), min_size=1, max_size=6),
    scale=st.floats(1e-3, 1e3),
    data=st.data(),
)
def test_segments_without_a_shared_block(sizes, scale, data):
    if sum(sizes) == 0:
        sizes = sizes + [1]
    seed = data.draw(st.integers(0, 2**31 - 1))
    G = torch.randn(2, sum(sizes), generator=torch.Generator().manual_seed(seed)) * scale
    W = torch.randn(len(sizes), 2, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    assert_relative(segment_gramians(G, sizes), reference_gramians(G, sizes), 2e-6)
    out = torch.full((G.shape[1],), float("nan"))
    assert apply_weights(G, W, sizes, out) is out
    torch.testing.assert_close(out.double(), reference_apply(G, W, sizes), rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("width", [64, 384])
def test_segments_sharing_a_block_length(width):
    # Per-tensor segments of a network: multiples of its width, one kernel over all of G.
    sizes = [width, 3 * width, width * 40, 2 * width, width * 17, width]
    assert _fused.shared_block(sizes) == width
    gen = torch.Generator().manual_seed(width)
    G = torch.randn(3, sum(sizes), generator=gen)
    W = torch.randn(len(sizes), 3, generator=gen, dtype=torch.float64)
    assert_relative(segment_gramians(G, sizes), reference_gramians(G, sizes), 1e-6)
    out = apply_weights(G, W, sizes, None)
    torch.testing.assert_close(out.double(), reference_apply(G, W, sizes), rtol=1e-5, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(multiples=st.lists(st.integers(1, 40), min_size=2, max_size=8), T=st.sampled_from([2, 8]))
def test_shared_block_segments_over_wide_blocks(multiples, T):
    # Segments of 384-column multiples: the kernels run over wide blocks of 10 × 384 columns
    # (inside a segment) and in 384-column blocks those that straddle a boundary and the tail.
    sizes = [384 * m for m in multiples]
    gen = torch.Generator().manual_seed(sum(multiples))
    G = torch.randn(T, sum(sizes), generator=gen)
    W = torch.randn(len(sizes), T, generator=gen, dtype=torch.float64)
    assert_relative(segment_gramians(G, sizes), reference_gramians(G, sizes), 1e-6)
    out = apply_weights(G, W, sizes, torch.full((G.shape[1],), float("nan")))
    torch.testing.assert_close(out.double(), reference_apply(G, W, sizes), rtol=1e-5, atol=1e-5)


def test_wide_blocks_inside_straddling_and_tail_are_each_counted_once():
    # Two wide blocks inside the first segment, one straddling into the second, a tail of three
    # 384-column blocks: ones make every pair sum a column count.
    sizes = [384 * 25, 384 * 8]
    K = _fused.fused_segment_gramians(torch.ones(2, sum(sizes)), sizes)
    assert K[:, 0, 0].tolist() == [float(s) for s in sizes]


def test_wide_blocks_leave_only_straddling_blocks_and_the_tail_narrow():
    sizes = [384 * 25, 384 * 8]  # 33 blocks: wide ones of 10, the third straddling, a tail of 3
    layout = _fused._WideBlocks.of(sizes, 384, sum(sizes))
    assert (layout.width, layout.wide_count) == (3840, 3)
    assert layout.inside.tolist() == [True, True, False] and layout.owner.tolist() == [0, 0, 0]
    assert layout.narrow.tolist() == list(range(20, 33))
    assert layout.narrow_owner.tolist() == [0] * 5 + [1] * 8
    # A shared block as long as the fused block: every block is a wide one, nothing gathered.
    full = _fused._WideBlocks.of([BLOCK * 2, BLOCK * 3], BLOCK, BLOCK * 5)
    assert full.wide_count == 5 and bool(full.inside.all()) and full.narrow.numel() == 0


def test_shared_block_is_the_largest_divisor_within_the_fused_block():
    assert _fused.shared_block([384 * 30522, 384, 1536 * 384]) == 384
    assert _fused.shared_block([BLOCK * 3, BLOCK * 5]) == BLOCK
    assert _fused.shared_block([6000, 12000]) == 3000
    assert _fused.shared_block([6000, 12000], limit=100) == 100
    assert _fused.shared_block([7, 11]) == 1


def test_combine_matches_the_library_kernels(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    G = torch.randn(3, 4 * BLOCK + 7, generator=gen)
    G[1] = -0.5 * G[0] + G[1]
    sizes = [BLOCK, 3 * BLOCK + 7]
    for name in ("pcgrad", "upgrad", "imtl-g", "gradvac"):
        seeded = {"seed": 0} if name in ("pcgrad", "gradvac") else {}  # the same task orders
        fused = gradbalance.create(name, **seeded).combine(G, sizes)
        monkeypatch.setenv("GRADBALANCE_COMPILE", "0")
        library = gradbalance.create(name, **seeded).combine(G, sizes)
        monkeypatch.delenv("GRADBALANCE_COMPILE")
        torch.testing.assert_close(fused, library, rtol=1e-5, atol=1e-6, msg=name)


def test_nonfinite_row_is_named():
    G = torch.randn(3, 2 * BLOCK)
    G[2, 77] = float("inf")
    with pytest.raises(NonFiniteGradientError, match="task 2"):
        segment_gramians(G, [G.shape[1]])


def test_overflowing_products_are_redone_in_float64():
    G = torch.full((2, 2 * BLOCK), 3e19)  # finite rows whose float32 products overflow
    K = segment_gramians(G, [G.shape[1]])
    assert torch.isfinite(K).all()
    assert_relative(K, reference_gramians(G, [G.shape[1]]), 1e-6)


def test_use_fused_selects_large_float32_cpu_rows(monkeypatch):
    monkeypatch.setattr(_fused, "FUSED_MIN_ELEMENTS", 1000)
    assert _fused.use_fused(torch.zeros(2, 500))
    assert not _fused.use_fused(torch.zeros(2, 499))
    assert not _fused.use_fused(torch.zeros(2, 500, dtype=torch.float64))
    assert not _fused.use_fused(torch.zeros(2, 500, dtype=torch.bfloat16))
    monkeypatch.setenv("GRADBALANCE_COMPILE", "0")
    assert not _fused.use_fused(torch.zeros(2, 500))


def test_a_failing_compiler_warns_once_and_falls_back(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _fused.fused_available.__wrapped__() is False
    assert len(caught) == 1 and "no C++ compiler" in str(caught[0].message)
    assert "GRADBALANCE_COMPILE=0" in str(caught[0].message)


def test_importing_gradbalance_does_not_import_the_compiler():
    # torch.compile imports dynamo (~2 s): only a combine over a large G may pay for it.
    code = "import sys, gradbalance; assert 'torch._dynamo' not in sys.modules, 'dynamo imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kernel", ["pair_sums", "weighted_sum"])
def test_a_failing_kernel_says_how_to_run_without_it(monkeypatch, kernel):
    # The probe compiled, yet a real kernel fails (a compiler error on some input): the error
    # names the kernel and the shapes and says how to use the library kernels.
    def broken(*args):
        raise RuntimeError("C++ compile error")

    kernels = _fused._kernels()
    monkeypatch.setattr(_fused, "_kernels", lambda: kernels._replace(**{kernel: broken}))
    G = torch.randn(2, 3 * BLOCK)
    with pytest.raises(FusedKernelError, match="GRADBALANCE_COMPILE=0") as caught:
        gradbalance.create("upgrad").combine(G)
    assert "C++ compile error" in str(caught.value) and "(2, " in str(caught.value)
    monkeypatch.setenv("GRADBALANCE_COMPILE", "0")
    assert torch.isfinite(gradbalance.create("upgrad").combine(G)).all()
