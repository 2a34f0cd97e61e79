"""The two memory passes every Gramian-based combiner makes.

Pass 1, :func:`segment_gramians`: ``K_s = G_s G_sᵀ`` for each column segment ``s``. Pass 2,
:func:`apply_weights`: ``d_s = w_s G_s``. Everything between the two works on ``[S, T, T]``
matrices and costs microseconds.

Accuracy: one float32 GEMM over millions of columns accumulates its rounding error (2e-3
relative at 22.7M columns). We instead multiply column blocks of :data:`BLOCK` columns in the
input precision (float32 for half inputs) and add the block products in float64: about 3e-7
relative at that size, and faster than one large SGEMM because the batched product streams ``G``
once.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from .errors import NonFiniteGradientError
from ._checks import first_nonfinite_row

#: Columns per block product; float32 error grows with the block length, not with P.
BLOCK = 65536
#: Below this common block length, per-segment products beat one batched product of tiny blocks.
MIN_SHARED_BLOCK = 64

_HALF = (torch.float16, torch.bfloat16)


def _block_gramian(G: Tensor) -> Tensor:
    """``G Gᵀ`` for one column range, accumulated blockwise, as float64 on G's device."""
    T, n = G.shape
    if G.dtype == torch.float64:
        return G @ G.T
    work = torch.float32
    full = n // BLOCK
    K = torch.zeros(T, T, dtype=torch.float64, device=G.device)
    if full:
        # [T, full, BLOCK] viewed as a batch of [T, BLOCK] blocks: no copy for float32.
        blocks = G[:, : full * BLOCK].view(T, full, BLOCK).transpose(0, 1)
        if blocks.dtype != work:
            blocks = blocks.to(work)
        K += torch.bmm(blocks, blocks.transpose(1, 2)).to(torch.float64).sum(0)
    rest = G[:, full * BLOCK :]
    if rest.shape[1]:
        rest = rest.to(work)
        K += (rest @ rest.T).to(torch.float64)
    return K


def _common_block(sizes: Sequence[int]) -> int:
    """The largest block length ≤ :data:`BLOCK` that divides every segment size (maybe 1)."""
    g = 0
    for size in sizes:
        g = math.gcd(g, size)
    for parts in range(-(-g // BLOCK), g + 1):
        if g % parts == 0:
            return g // parts
    return 1


@contextlib.contextmanager
def full_float32_matmul() -> Iterator[None]:
    """CUDA float32 products in full precision inside the block, whatever TF32 setting the user
    chose: TF32's 10-bit mantissa would cost ~1e-3 relative in the Gramian.

    Nothing is written when TF32 is already off. Otherwise the setting is switched and restored
    through the API the user set it with: torch refuses to mix the legacy ``allow_tf32`` flag
    and the newer ``fp32_precision`` in one process.
    """
    matmul = torch.backends.cuda.matmul
    try:
        legacy: bool | None = matmul.allow_tf32
    except RuntimeError:  # the user set fp32_precision: read and write only that
        legacy = None
    if legacy is None and matmul.fp32_precision not in ("ieee", "none"):
        precision = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = precision
    elif legacy:
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = True
    else:
        yield


def _without_tf32(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    @functools.wraps(fn)
    def run(G: Tensor, *args: object) -> Tensor:
        if not G.is_cuda:
            return fn(G, *args)
        with full_float32_matmul():
            return fn(G, *args)

    return run


@_without_tf32
def segment_gramians(G: Tensor, sizes: Sequence[int]) -> Tensor:
    """Gramians of the column segments of ``G`` as a float64 CPU tensor ``[S, T, T]``.

    Raises :class:`NonFiniteGradientError` naming the task (and segment) when a row holds NaN or
    Inf. Rows large enough to overflow float32 products are recomputed in float64. On CUDA the
    products run without TF32 (:func:`full_float32_matmul`).
    """
    block = _common_block(sizes) if len(sizes) > 1 and G.dtype == torch.float32 else 0
    if block >= MIN_SHARED_BLOCK:
        # Segments that share a block length (per-tensor segments of a network are multiples of
        # its width): one batched product over the whole of G, then a float64 sum per segment,
        # instead of a handful of small kernels per segment.
        T, P = G.shape
        blocks = G.view(T, P // block, block).transpose(0, 1)
        products = torch.bmm(blocks, blocks.transpose(1, 2)).to(torch.float64).view(-1, T * T)
        owner = torch.repeat_interleave(
            torch.arange(len(sizes), device=G.device),
            torch.tensor([s // block for s in sizes], device=G.device),
        )
        K = torch.zeros(len(sizes), T * T, dtype=torch.float64, device=G.device)
        K = K.index_add_(0, owner, products).view(len(sizes), T, T)
    else:
        parts = []
        start = 0
        for size in sizes:
            parts.append(_block_gramian(G[:, start : start + size]))
            start += size
        K = torch.stack(parts)
    # One device-to-host transfer per step: the T×T algebra then runs on the CPU without
    # stalling the stream once per task pair.
    K = K.cpu()
    if not bool(torch.isfinite(K).all()):
        K = _recover_nonfinite(G, sizes, K)
    return K


def _recover_nonfinite(G: Tensor, sizes: Sequence[int], K: Tensor) -> Tensor:
    start = 0
    for s, size in enumerate(sizes):
        if not bool(torch.isfinite(K[s]).all()):
            block = G[:, start : start + size]
            task = first_nonfinite_row(block)
            if task is not None:
                raise NonFiniteGradientError(task, s if len(sizes) > 1 else None)
            # Finite rows whose float32 products overflowed: redo this segment in float64.
            K[s] = _block_gramian(block.to(torch.float64)).cpu()
        start += size
    return K


def nonzero_row_weights(gramian: Tensor, solve: Callable[[Tensor], Tensor]) -> Tensor:
    """``[S, T]`` weights from ``solve`` applied to each segment's Gramian restricted to its
    non-zero rows (positive diagonal); zero rows, and segments without any, get weight 0.

    A zero row is a task that sat out the step or a segment it does not touch: the combiners
    that solve a problem over the tasks leave it out rather than let it constrain the others.
    """
    S, T, _ = gramian.shape
    weights = torch.zeros(S, T, dtype=gramian.dtype)
    for s in range(S):
        active = (gramian[s].diagonal() > 0).nonzero().flatten()
        if len(active) > 0:
            weights[s, active] = solve(gramian[s][active][:, active])
    return weights


def solve_small(system: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``system⁻¹ rhs`` for the small systems the combiners solve between the two passes, by
    least squares where rounding makes ``system`` singular (dependent active rows, parallel
    tasks, weights 1e300 apart)."""
    try:
        return np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(system, rhs, rcond=None)[0]


def apply_weights(G: Tensor, weights: Tensor, sizes: Sequence[int], out: Tensor | None) -> Tensor:
    """``d_s = w_s G_s`` for every segment, written into ``out`` (allocated when ``None``).

    ``weights`` is ``[S, T]`` (any dtype/device); the result has G's dtype and device. Half
    inputs are combined in float32 (bf16 weights alone would cost 0.4% relative error).
    """
    if out is None:
        out = torch.empty(G.shape[1], dtype=G.dtype, device=G.device)
    half = G.dtype in _HALF
    w = weights.to(device=G.device, dtype=torch.float32 if half else G.dtype)
    start = 0
    for s, size in enumerate(sizes):
        if half:
            for lo in range(start, start + size, BLOCK * 16):
                hi = min(lo + BLOCK * 16, start + size)
                out[lo:hi] = w[s] @ G[:, lo:hi].to(torch.float32)
        else:
            # mv over the transposed view: one streaming pass, no T×P temporary.
            torch.mv(G[:, start : start + size].T, w[s], out=out[start : start + size])
        start += size
    return out
