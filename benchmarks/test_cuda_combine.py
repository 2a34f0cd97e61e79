"""Combine time on a GPU against the one-pass floor ``G.sum(0)`` on the device, same run.

P = 109,482,240 float32 columns (BERT-base's parameter count), T = 3; CUDA events, medians of
interleaved repetitions. Skipped without CUDA. Prints one row per built-in:

    pytest benchmarks/test_cuda_combine.py -s
"""

from __future__ import annotations

import statistics

import pytest
import torch

import gradbalance
from gradbalance import _builtins

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

P_BERT_BASE = 109_482_240
NAMES = [cls.name for cls in _builtins.gradbalance_combiners() if cls.name != "sum"]


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def test_combine_against_sum_at_bert_base_size():
    gen = torch.Generator(device="cuda").manual_seed(0)
    G = torch.randn(3, P_BERT_BASE, device="cuda", generator=gen)
    out = torch.empty(P_BERT_BASE, device="cuda")
    combiners = {
        name: gradbalance.create(name, **({"seed": 0} if name in ("pcgrad", "gradvac") else {}))
        for name in NAMES
    }
    candidates = {"G.sum(0)": lambda: torch.sum(G, 0, out=out)}
    candidates.update({name: (lambda c=c: c.combine(G, out=out)) for name, c in combiners.items()})
    for fn in candidates.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(7):
        for name, fn in candidates.items():
            samples[name].append(_median_ms(fn, 3))
    floor = statistics.median(samples["G.sum(0)"])
    bound = (2 * 3 + 1) / (3 + 1)  # read G twice and write [P], against read once and write once
    print(f"\n{torch.cuda.get_device_name()}: G.sum(0) {floor:.2f} ms; traffic bound {bound:.2f}x")
    for name in NAMES:
        ratio = statistics.median(samples[name]) / floor
        print(f"  {name:<12} {ratio:5.2f}x G.sum(0)   {ratio / bound:5.2f}x the bound")
        assert ratio < 10, f"{name} {ratio:.1f}x G.sum(0): far off the two-pass design"
