"""The two memory passes every Gramian-based combiner makes.

Pass 1, :func:`segment_gramians`: ``K_s = G_s G_sᵀ`` for each column segment ``s``. Pass 2,
:func:`apply_weights`: ``d_s = w_s G_s``. Everything between the two works on ``[S, T, T]``
matrices and costs microseconds (the combiners' weightings, and the solvers they share in
``gradbalance.combiners._solvers``).

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

from . import _fused
from ._checks import all_finite, first_nonfinite_row
from ._fused import block_owners, fused_apply, fused_segment_gramians, shared_block, use_fused
from .errors import NonFiniteGradientError

#: Columns per block product; float32 error grows with the block length, not with P.
BLOCK = 65536
#: Below this common block length, per-segment products beat one batched product of tiny blocks.
MIN_SHARED_BLOCK = 64
#: Up to this many tasks and :data:`MAX_DOT_BYTES` of ``G``, CPU Gramians are the ``T(T+1)/2``
#: row-pair dot products per block: a ``T×T`` SGEMM over a long flat matrix spends ~2× a pass
#: over it packing its operands, the dots stream the rows from the caches (measured at T = 3:
#: 1.1× ``G.sum(0)`` against 2.8× at P = 1e5; 0.54 against 1.3 ms at P = 1e6). On a large ``G``
#: the batched product streams memory better (dots 10-30% slower at P = 15.6M), and at T = 8
#: the two are on par.
MAX_DOT_TASKS = 4
MAX_DOT_BYTES = 16 << 20

_HALF = (torch.float16, torch.bfloat16)
_DOT_DTYPES = (torch.float32, torch.float64)


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


def _dot_gramian(rows: np.ndarray, sizes: Sequence[int]) -> tuple[Tensor, bool]:
    """Segment Gramians of ``rows`` (a CPU float32/float64 ``G`` as numpy) from row-pair dot
    products per :data:`BLOCK` columns (float32 within a block, as the batched product; float64
    across blocks), and whether every entry is finite.

    The fixed cost is the point at small sizes: one ``np.dot`` per pair and block, Python floats
    for the float64 sums, one array built from them, and the finiteness read off those floats.
    """
    T = rows.shape[0]
    values: list[float] = []  # K row by row, every segment in turn
    start = 0
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing rows are redone in float64
        for size in sizes:
            stop = start + size
            totals = [0.0] * (T * T)  # Python floats: the float64 sum across blocks
            for lo in range(start, stop, BLOCK):
                block = list(rows[:, lo : min(lo + BLOCK, stop)])  # row views
                for i in range(T):
                    dot = block[i].dot  # ndarray.dot is np.dot without the module lookup
                    for j in range(i, T):
                        totals[i * T + j] += float(dot(block[j]))
            for i in range(1, T):  # each pair's product computed once, written to both halves
                for j in range(i):
                    totals[i * T + j] = totals[j * T + i]
            values += totals
            start = stop
    finite = all(map(math.isfinite, values))
    return torch.from_numpy(np.array(values).reshape(len(sizes), T, T)), finite


def dot_rows(G: Tensor) -> np.ndarray | None:
    """``G`` as a numpy array when its Gramians are row-pair dots (see :data:`MAX_DOT_TASKS`):
    a small float32/float64 CPU matrix the fused kernels do not take; otherwise ``None``."""
    if G.dtype in _DOT_DTYPES and G.is_cpu and G.shape[0] <= MAX_DOT_TASKS:
        rows: np.ndarray = (G.detach() if G.requires_grad else G).numpy()
        if rows.nbytes <= MAX_DOT_BYTES and (rows.size < _fused.FUSED_MIN_ELEMENTS or not use_fused(G)):
            return rows
    return None


def dot_gramians(G: Tensor, rows: np.ndarray, sizes: Sequence[int]) -> Tensor:
    """:func:`segment_gramians` of a ``G`` that :func:`dot_rows` turned into ``rows``."""
    K, finite = _dot_gramian(rows, sizes)  # symmetric, on the CPU, finiteness known
    return K if finite else _symmetric(_recover_nonfinite(G, sizes, K))


def _common_block(sizes: Sequence[int]) -> int:
    """The largest block length ≤ :data:`BLOCK` that divides every segment size (maybe 1)."""
    return shared_block(sizes, BLOCK)


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
    rows = dot_rows(G)
    if rows is not None:
        return dot_gramians(G, rows, sizes)
    block = _common_block(sizes) if len(sizes) > 1 and G.dtype == torch.float32 else 0
    if use_fused(G):  # a large float32 G on the CPU: one fused pass, symmetric by construction
        K, symmetric = fused_segment_gramians(G, sizes), True
    elif block >= MIN_SHARED_BLOCK:
        # Segments that share a block length (per-tensor segments of a network are multiples of
        # its width): one batched product over the whole of G, then a float64 sum per segment,
        # instead of a handful of small kernels per segment.
        T, P = G.shape
        blocks = G.view(T, P // block, block).transpose(0, 1)
        products = torch.bmm(blocks, blocks.transpose(1, 2)).to(torch.float64).view(-1, T * T)
        K = torch.zeros(len(sizes), T * T, dtype=torch.float64, device=G.device)
        K = K.index_add_(0, block_owners(sizes, block, G.device), products).view(len(sizes), T, T)
        symmetric = False
    else:
        K = torch.stack([_block_gramian(segment) for segment in G.split(list(sizes), dim=1)])
        symmetric = False
    # One device-to-host transfer per step: the T×T algebra then runs on the CPU without
    # stalling the stream once per task pair.
    K = K.cpu()
    if not all_finite(K):
        K, symmetric = _recover_nonfinite(G, sizes, K), False
    # The fused pass, like the row-pair dots, is symmetric already: (K + Kᵀ)/2 would return K
    # bit for bit after ~10 µs of torch calls.
    return K if symmetric else _symmetric(K)


def _symmetric(K: Tensor) -> Tensor:
    """``(K + Kᵀ)/2``: a float32 GEMM need not round ``K_ij`` and ``K_ji`` alike, and the
    solvers compare task progress computed from both halves (CAGrad fell back to the mean on a
    5e-8 relative asymmetry)."""
    return (K + K.mT) / 2


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


def apply_weights(G: Tensor, weights: Tensor, sizes: Sequence[int], out: Tensor | None) -> Tensor:
    """``d_s = w_s G_s`` for every segment, written into ``out`` (allocated when ``None``).

    ``weights`` is ``[S, T]`` (any dtype/device); the result has G's dtype and device. Half
    inputs are combined in float32 (bf16 weights alone would cost 0.4% relative error).
    """
    rows = dot_rows(G)
    if rows is not None:
        return numpy_apply(rows, weights, sizes, out)
    if out is None:
        out = torch.empty(G.shape[1], dtype=G.dtype, device=G.device)
    if use_fused(G):
        return fused_apply(G, weights, sizes, out)
    if G.is_cpu and G.dtype in _DOT_DTYPES:
        return numpy_apply(G.detach().numpy(), weights, sizes, out)
    half = G.dtype in _HALF
    w_device = weights.to(device=G.device, dtype=torch.float32 if half else G.dtype)
    start = 0
    for s, size in enumerate(sizes):
        if half:
            for lo in range(start, start + size, BLOCK * 16):
                hi = min(lo + BLOCK * 16, start + size)
                out[lo:hi] = w_device[s] @ G[:, lo:hi].to(torch.float32)
        else:
            # mv over the transposed view: one streaming pass, no T×P temporary.
            torch.mv(G[:, start : start + size].T, w_device[s], out=out[start : start + size])
        start += size
    return out


def numpy_apply(rows: np.ndarray, weights: Tensor, sizes: Sequence[int], out: Tensor | None) -> Tensor:
    """:func:`apply_weights` for a CPU float32/float64 ``G`` given as ``rows``, its numpy view:
    numpy's gemv straight into ``out``, no torch dispatch or weight conversion per segment."""
    if out is None:
        out = torch.empty(rows.shape[1], dtype=torch.float32 if rows.dtype == np.float32 else torch.float64)
        dest = out.numpy()
    else:
        dest = out.detach().numpy()
    w = (weights if weights.is_cpu and not weights.requires_grad else weights.detach().cpu()).numpy()
    w = w.astype(rows.dtype)
    if len(sizes) == 1:
        w[0].dot(rows, out=dest)
        return out
    start = 0
    for s, size in enumerate(sizes):
        w[s].dot(rows[:, start : start + size], out=dest[start : start + size])
        start += size
    return out
