"""Cost of SMART (K=1 smoothness + Bregman proximal point) against a plain training step.

Both steps run on the same transformer encoder and batch, interleaved, timed with
``time.perf_counter`` after warm-up; the ratio of medians goes to ``benchmark.extra_info``.
Expected: about 3× (one clean forward+backward becomes: clean forward, one ascent
forward+backward-to-input, one adversarial forward, one teacher forward without gradients, and
a backward through both graphs). Set ``GRADBALANCE_BENCH_FULL=1`` for a 6-layer, 384-wide
BERT-like size, where the ratio must stay at or below 3.0.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradbalance.regularizers import BregmanProximalPoint, SmoothnessRegularizer

FULL = os.environ.get("GRADBALANCE_BENCH_FULL") == "1"
# layers, width, heads, batch, length, timed repetitions
SIZE = (6, 384, 12, 16, 64, 5) if FULL else (2, 64, 4, 16, 32, 9)
VOCAB, CLASSES = 1000, 5


class Encoder(nn.Module):
    """Token + position embeddings, then a transformer encoder and a mean-pooled linear head."""

    def __init__(self, layers: int, width: int, heads: int, length: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, width)
        self.positions = nn.Embedding(length, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.1, batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, CLASSES)

    def embed(self, ids: Tensor) -> Tensor:
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))

    def from_embeddings(self, embeddings: Tensor, mask: Tensor) -> Tensor:
        hidden = self.encoder(embeddings, src_key_padding_mask=mask == 0)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * weights).sum(1) / weights.sum(1))

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.from_embeddings(self.embed(ids), mask)


def _steps() -> tuple[Callable[[], None], Callable[[], None]]:
    layers, width, heads, batch, length, _ = SIZE
    torch.manual_seed(0)
    model = Encoder(layers, width, heads, length).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, VOCAB, (batch, length))
    mask = torch.ones(batch, length)
    mask[batch // 2 :, length * 3 // 4 :] = 0
    labels = torch.randint(0, CLASSES, (batch,))
    smart = SmoothnessRegularizer(steps=1, weight=1.0, divergence="softmax_kl")
    bregman = BregmanProximalPoint.from_module(model, beta=0.99, weight=1.0)
    generator = torch.Generator().manual_seed(0)

    def plain_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(ids, mask), labels)
        loss.backward()
        optimizer.step()

    def smart_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        embeddings = model.embed(ids)
        outputs = model.from_embeddings(embeddings, mask)
        loss = F.cross_entropy(outputs, labels)
        loss = loss + smart(
            lambda e: model.from_embeddings(e, mask), embeddings, outputs, mask, generator=generator
        )
        loss = loss + bregman.loss(outputs, bregman.teacher_outputs(model, ids, mask))
        loss.backward()
        optimizer.step()
        bregman.update(model)

    return plain_step, smart_step


def _interleaved_medians(
    first: Callable[[], None], second: Callable[[], None], repetitions: int, warmup: int = 2
) -> tuple[float, float]:
    for _ in range(warmup):
        first()
        second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repetitions):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


@pytest.fixture
def threads() -> Iterator[int]:
    # The small model is overhead-bound: on a busy 2-core machine extra intra-op threads only
    # add contention noise, so it runs on one thread; the full size keeps torch's default.
    before = torch.get_num_threads()
    if not FULL:
        torch.set_num_threads(1)
    yield torch.get_num_threads()
    torch.set_num_threads(before)


def test_smart_step_cost_ratio(benchmark: Any, threads: int) -> None:
    plain_step, smart_step = _steps()
    plain_s, smart_s = _interleaved_medians(plain_step, smart_step, repetitions=SIZE[-1])
    ratio = smart_s / plain_s
    layers, width = SIZE[0], SIZE[1]
    benchmark.extra_info.update(
        size=f"{layers}x{width}",
        threads=threads,
        plain_step_s=plain_s,
        smart_bregman_step_s=smart_s,
        ratio=ratio,
    )
    print(
        f"\nSMART(K=1)+Bregman vs plain step, {layers} layers x {width}: "
        f"{smart_s * 1e3:.1f} ms / {plain_s * 1e3:.1f} ms = {ratio:.2f}x"
    )
    # Registers the SMART step's own timing when benchmarks are enabled (one call otherwise).
    benchmark.pedantic(smart_step, rounds=1 if FULL else 3, iterations=1)

    assert math.isfinite(ratio)
    assert ratio <= (3.0 if FULL else 6.0)
