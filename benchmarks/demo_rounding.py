"""Which of the default demo's endpoints does rounding decide? Run the default demo's batched
problem (every installed combiner, the five starts, 3000 Adam steps at lr 0.01) as is and with
every task-gradient entry multiplied by ``1 + 1e-15 ξ`` (``ξ`` standard normal, one draw per
entry and step), and print, per start, how far the perturbed run's final ``f1``, ``f2`` ended
from the unperturbed one's.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/demo_rounding.py [SEED ...]

Starts that move by more than the printed precision (1e-3) under a perturbation the size of
float64 rounding cannot be held to a recorded endpoint by any change that rounds differently.
"""

from __future__ import annotations

import sys

import torch

import gradbalance
from gradbalance import toy
from gradbalance.cli import _seeded


def final_losses(seed: int | None) -> torch.Tensor:
    """``[combiners, starts, 2]`` final losses, with the gradients perturbed under ``seed``."""
    combiners = [_seeded(name) for name in gradbalance.available()]
    exact = toy._Batch.directions
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)

        def perturbed(self: toy._Batch, rows: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(rows.shape, dtype=rows.dtype, generator=generator)
            return exact(self, rows * (1 + 1e-15 * noise))

        toy._Batch.directions = perturbed  # type: ignore[method-assign]
    try:
        runs = toy.optimize_all(combiners)
    finally:
        toy._Batch.directions = exact  # type: ignore[method-assign]
    return torch.stack([run.losses[-1] for run in runs])


def main(seeds: list[int]) -> None:
    torch.set_num_threads(1)
    names = gradbalance.available()
    reference = final_losses(None)
    moved = torch.stack([(final_losses(seed) - reference).abs().amax(-1) for seed in seeds]).amax(0)
    for i, name in enumerate(names):
        for k, start in enumerate(toy.DEFAULT_STARTS):
            flag = "  rounding decides" if moved[i, k] > 1e-3 else ""
            print(f"{name:<12} {str(start):>14}  moved {float(moved[i, k]):9.2e}{flag}")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 1])
