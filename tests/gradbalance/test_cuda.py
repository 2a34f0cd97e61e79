"""The CUDA path, run wherever a GPU is present (skipped elsewhere).

- every built-in combines on CUDA to the CPU result, to float32 rounding;
- fp16/bf16 rows combine to the result of the same rounded rows in float64;
- the host synchronizes a fixed number of times per ``combine``, however many tasks and
  segments (the Gramian crosses to the CPU once; no sync per task pair or per segment),
  counted with torch's CUDA sync debug mode;
- the Gramian stays full float32 with TF32 switched on by the user.
"""

import warnings

import pytest
import torch

import gradbalance
from gradbalance import _builtins

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

BUILTINS = [cls.name for cls in _builtins.gradbalance_combiners()]


def make(name: str) -> gradbalance.GradientCombiner:
    return gradbalance.create(name, seed=0) if name in ("pcgrad", "gradvac") else gradbalance.create(name)


def conflicting_rows(T: int, P: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(T, P, generator=gen, dtype=torch.float64)
    G[1] = -0.6 * G[0] + 0.4 * G[1]  # a conflicting pair, so projecting methods act
    scales = torch.logspace(-1, 1, T, dtype=torch.float64)  # norms two decades apart
    return (G * scales[:, None]).to(dtype)


@pytest.mark.parametrize("name", BUILTINS)
def test_cuda_equals_cpu(name):
    G = conflicting_rows(4, 300_000)
    segments = [100_000, 150_000, 50_000]
    want = make(name).combine(G, segments)
    got = make(name).combine(G.cuda(), segments)
    assert got.is_cuda and got.dtype == torch.float32
    torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_rows_on_cuda(name, dtype):
    G = conflicting_rows(3, 200_000, dtype)
    got = make(name).combine(G.cuda())
    assert got.dtype == dtype
    want = make(name).combine(G.double())  # the same rounded inputs, exact arithmetic
    err = float((got.cpu().double() - want).norm() / want.norm())
    assert err < 4 * torch.finfo(dtype).eps, f"{name} {dtype}: relative error {err:.2e}"


def _syncs(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("name", BUILTINS)
def test_syncs_per_combine_do_not_grow_with_tasks_or_segments(name):
    counts = {}
    for T, S in ((3, 1), (8, 1), (8, 16)):
        G = conflicting_rows(T, 64 * 1024, seed=T).cuda()
        segments = [G.shape[1] // S] * S
        combiner = make(name)
        combiner.combine(G, segments)  # warm-up: lazy CUDA initialisation syncs once
        counts[(T, S)] = _syncs(lambda c=combiner, G=G, s=segments: c.combine(G, s))
    assert len(set(counts.values())) == 1, f"{name}: host syncs per combine by (T, S): {counts}"
    assert counts[(3, 1)] <= 3, f"{name}: {counts[(3, 1)]} host syncs per combine"


def test_gramian_ignores_tf32():
    G = conflicting_rows(3, 2_000_000)
    exact = G.double() @ G.double().T
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    matmul.allow_tf32 = True
    try:
        K = gradbalance.create("upgrad").combine_with_info(G.cuda()).gramian
    finally:
        matmul.allow_tf32 = before
    assert K is not None
    err = float((K[0] - exact).abs().max() / exact.abs().max())
    assert err < 1e-5, f"Gramian relative error {err:.1e}: TF32 was used (its error is ~1e-3)"
