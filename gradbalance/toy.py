"""The two-objective toy problem of the CAGrad (Liu et al., NeurIPS 2021) and Nash-MTL
(Navon et al., ICML 2022) papers, and a runner that optimizes it with any combiner.

Two conflicting objectives over ``x ∈ R²``. Below the ``x₂ = 0`` line each is a shallow
quadratic bowl with a different centre; above it each is a log-valley whose floors cross, so
the Pareto set is a curve between them. Plain summed gradients stall in the middle or slide
along one valley; a good combiner reaches the Pareto set from every start.

Several starting points are optimized at once as *segments* of one parameter vector: each
segment is an independent problem for every combiner (GradVac keeps its own targets per
segment), so one ``combine`` call per step serves all starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from ._combiner import GradientCombiner

#: Starting points used in the CAGrad paper's figure.
DEFAULT_STARTS: tuple[tuple[float, float], ...] = (
    (-8.5, 7.5),
    (-8.5, -5.0),
    (9.0, 9.0),
    (-7.5, -0.5),
    (9.0, -1.0),
)

_FLOOR = 5e-6  # the log-valley's floor, as in the papers


def objectives(x: Tensor) -> Tensor:
    """``[f1, f2]`` at points ``x[..., 2]``, as a tensor ``[2, ...]``."""
    x1, x2 = x[..., 0], x[..., 1]
    valley1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), _FLOOR).log() + 6
    valley2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), _FLOOR).log() + 6
    bowl1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    bowl2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    upper = torch.clamp(torch.tanh(0.5 * x2), min=0)
    lower = torch.clamp(torch.tanh(-0.5 * x2), min=0)
    return torch.stack([valley1 * upper + bowl1 * lower, valley2 * upper + bowl2 * lower])


@attrs.frozen
class ToyRun:
    """One combiner's trajectories from every start.

    Attributes:
        name: the combiner's name.
        path: ``[steps + 1, starts, 2]`` positions.
        losses: ``[steps + 1, starts, 2]`` objective values along the path.
        steps_to_converge: per start, the first step after which the point never again moved
            more than ``tol`` in a step, or ``None`` if it was still moving at the end.
    """

    name: str
    path: Tensor
    losses: Tensor
    steps_to_converge: list[int | None]


def optimize(
    combiner: GradientCombiner,
    starts: Sequence[tuple[float, float]] = DEFAULT_STARTS,
    *,
    steps: int = 3000,
    lr: float = 0.01,
    tol: float = 1e-3,
) -> ToyRun:
    """Run Adam on the combined gradient from every start at once (float64)."""
    x = torch.tensor(starts, dtype=torch.float64, requires_grad=True)
    n = x.shape[0]
    optimizer = torch.optim.Adam([x], lr=lr)
    segments = [2] * n
    path = [x.detach().clone()]
    losses = []
    for _ in range(steps):
        f = objectives(x)  # [2, n]
        losses.append(f.detach().T.clone())
        rows = torch.stack(
            [torch.autograd.grad(f[t].sum(), x, retain_graph=t == 0)[0].flatten() for t in range(2)]
        )
        direction = combiner.combine(rows, segments)
        optimizer.zero_grad()
        x.grad = direction.view_as(x)
        optimizer.step()
        path.append(x.detach().clone())
    losses.append(objectives(x.detach()).T.clone())
    positions = torch.stack(path)
    moves = (positions[1:] - positions[:-1]).norm(dim=-1)  # [steps, n]
    converged: list[int | None] = []
    for k in range(n):
        moving = (moves[:, k] > tol).nonzero()
        last = int(moving[-1, 0]) + 1 if moving.numel() else 0
        converged.append(last if last < steps else None)
    return ToyRun(type(combiner).name, positions, torch.stack(losses), converged)


def plot(runs: Sequence[ToyRun], path: str, starts: Sequence[tuple[float, float]] = DEFAULT_STARTS) -> None:
    """Write a PNG: one panel per combiner, trajectories over contours of ``f1 + f2``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "plotting needs matplotlib: pip install 'gradbalance[plot]'"
        ) from exc
    grid = torch.linspace(-10, 10, 300, dtype=torch.float64)
    X, Y = torch.meshgrid(grid, grid, indexing="xy")
    Z = objectives(torch.stack([X, Y], dim=-1)).sum(0)
    cols = min(len(runs), 3)
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    colors = plt.cm.viridis(torch.linspace(0, 0.9, len(starts)).numpy())
    for ax, run in zip(axes.flat, runs):
        ax.contourf(X.numpy(), Y.numpy(), Z.numpy(), levels=30, cmap="Greys", alpha=0.6)
        for k in range(len(starts)):
            traj = run.path[:, k].numpy()
            ax.plot(traj[:, 0], traj[:, 1], color=colors[k], lw=2)
            ax.plot(traj[0, 0], traj[0, 1], "o", color=colors[k], ms=6)
            ax.plot(traj[-1, 0], traj[-1, 1], "*", color="red", ms=10)
        ax.set_title(run.name)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle("Two-objective toy problem (CAGrad / Nash-MTL): trajectories over f1 + f2")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
