"""Plain vector-space references, and helpers; the matrix strategies are the kit's
(:mod:`gradbalance.testing.strategies`, re-exported here for the per-method tests).

The references loop over vectors exactly as the papers write the algorithms; the library works
in Gramian space. Agreement between the two is the point of the tests.
"""

from __future__ import annotations

import math

import torch

from gradbalance.testing import strategies

#: The per-method reference tests' families: every kind but ``nearly-parallel``, whose accuracy
#: each method states in test_nearly_parallel.py (solvers lose digits like 1/δ² there).
KINDS = tuple(k for k in strategies.ROW_KINDS if k != "nearly-parallel")


def task_matrices(max_tasks: int = 8, max_columns: int = 2000, kinds=KINDS, **kwargs):
    """The kit's matrices (:func:`gradbalance.testing.strategies.task_matrices`), float64."""
    return strategies.task_matrices(max_tasks, max_columns, kinds, **kwargs)


def scale_of(G: torch.Tensor) -> float:
    return float(G.norm(dim=1).sum()) + 1e-300


def segment_pieces(P: int, cuts: list[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` of the segments that ``cuts`` (any ints, out-of-range ones ignored)
    make of ``P`` columns."""
    bounds = sorted({c for c in cuts if 0 < c < P} | {0, P})
    return list(zip(bounds, bounds[1:]))


def cosine_condition(G: torch.Tensor) -> float:
    """Condition number of the rows' cosine matrix (rows must be non-zero)."""
    unit = G / G.norm(dim=1, keepdim=True)
    return float(torch.linalg.cond(unit @ unit.T))


def reference_pcgrad(G: torch.Tensor, seed: int, reduction: str = "sum") -> torch.Tensor:
    """Yu et al. 2020, Algorithm 1, vector by vector, with the documented order protocol."""
    gen = torch.Generator().manual_seed(seed)
    T = G.shape[0]
    projected = []
    for i in range(T):
        order = [j for j in torch.randperm(T, generator=gen).tolist() if j != i]
        g = G[i].clone()
        for j in order:
            dot = torch.dot(g, G[j])
            sq = torch.dot(G[j], G[j])
            if dot < 0 and sq > 0:
                g = g - dot / sq * G[j]
        projected.append(g)
    total = torch.stack(projected).sum(0)
    return total / T if reduction == "mean" else total


class ReferenceGradVac:
    """Wang et al. 2021, vector by vector, with EMA targets updated on every visit."""

    def __init__(self, beta: float, seed: int) -> None:
        self.beta = beta
        self.gen = torch.Generator().manual_seed(seed)
        self.targets: torch.Tensor | None = None

    def step(self, G: torch.Tensor) -> torch.Tensor:
        T = G.shape[0]
        if self.targets is None:
            self.targets = torch.zeros(T, T, dtype=torch.float64)
        out = []
        for i in range(T):
            order = [j for j in torch.randperm(T, generator=self.gen).tolist() if j != i]
            g = G[i].clone()
            bound = float(G[i].norm())  # Σ_k |c_ik| ‖g_k‖: what g is built from
            for j in order:
                ni, nj = float(g.norm()), float(G[j].norm())
                if ni <= 1e-7 * bound or nj == 0:
                    continue
                phi = max(-1.0, min(1.0, float(torch.dot(g, G[j])) / (ni * nj)))
                hat = float(self.targets[i, j])
                if phi < hat - 1e-10:
                    sin_hat = math.sqrt(max(1 - hat * hat, 1e-12))
                    coef = ni * (hat * math.sqrt(1 - phi * phi) - phi * sin_hat) / (nj * sin_hat)
                    g = g + coef * G[j]
                    bound += abs(coef) * nj
                self.targets[i, j] = (1 - self.beta) * hat + self.beta * phi
            out.append(g)
        return torch.stack(out).sum(0)
