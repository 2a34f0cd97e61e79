"""The demo's figure: what the CAGrad and Nash-MTL papers draw for the toy problem.

Per combiner, two panels: the parameter plane (contours of both objectives, the Pareto set, the
trajectory from each start) and the loss plane (``f1`` against ``f2``: the Pareto front and the
same trajectories), so where each start ended up reads both as a point and as a trade-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .toy import ToyRun, objectives, pareto_set

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_COLUMNS = 4
_BOUND = 10.0


def plot(runs: Sequence[ToyRun], path: str, starts: Sequence[tuple[float, float]]) -> None:
    """Write a PNG with two panels per combiner (parameter plane above, loss plane below)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("plotting needs matplotlib: pip install 'gradbalance[plot]'") from exc
    grid = torch.linspace(-_BOUND, _BOUND, 200, dtype=torch.float64)
    X, Y = torch.meshgrid(grid, grid, indexing="xy")
    F = objectives(torch.stack([X, Y], dim=-1)).numpy()
    front_x, front_f = (t.numpy() for t in pareto_set())
    cols = min(len(runs), _COLUMNS)
    pairs = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(
        2 * pairs, cols, figsize=(4.1 * cols, 7.6 * pairs + 1.2), squeeze=False, layout="constrained"
    )
    colors = plt.cm.tab10(range(len(starts)))
    for index, run in enumerate(runs):
        top, bottom = axes[2 * (index // cols), index % cols], axes[2 * (index // cols) + 1, index % cols]
        _parameter_panel(top, run, X.numpy(), Y.numpy(), F, front_x, colors)
        _loss_panel(bottom, run, front_f, colors)
    for index in range(len(runs), pairs * cols):
        axes[2 * (index // cols), index % cols].axis("off")
        axes[2 * (index // cols) + 1, index % cols].axis("off")
    handles = [
        Line2D([], [], color=colors[k], marker="o", ls="-", label=f"start {tuple(s)}")
        for k, s in enumerate(starts)
    ] + [
        Line2D([], [], color="black", marker="*", ms=11, ls="", label="end"),
        Line2D([], [], color="crimson", lw=3, label="Pareto set / front"),
        Line2D([], [], color="tab:blue", lw=1, label="f1 contours"),
        Line2D([], [], color="tab:orange", lw=1, label="f2 contours"),
    ]
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncol=5,
        fontsize=10,
        frameon=False,
        title="Two-objective toy problem (CAGrad / Nash-MTL papers): Adam on each combiner's update;"
        " parameter plane above, loss plane (f1, f2) below",
        title_fontsize=13,
    )
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _parameter_panel(
    ax: Axes,
    run: ToyRun,
    X: np.ndarray,
    Y: np.ndarray,
    F: np.ndarray,
    front_x: np.ndarray,
    colors: np.ndarray,
) -> None:
    for f, color in ((F[0], "tab:blue"), (F[1], "tab:orange")):
        ax.contour(X, Y, f, levels=10, colors=color, linewidths=0.6, alpha=0.45)
    # The grid's non-dominated points, one (mean) x2 per grid column: a curve, not a band.
    columns, column = np.unique(front_x[:, 0], return_inverse=True)
    height = np.bincount(column, front_x[:, 1]) / np.bincount(column)
    ax.plot(columns, height, color="crimson", lw=2.5, alpha=0.7)
    for k in range(run.path.shape[1]):
        traj = run.path[:, k].numpy()
        ax.plot(traj[:, 0], traj[:, 1], color=colors[k], lw=1.6)
        ax.plot(traj[0, 0], traj[0, 1], "o", color=colors[k], ms=6)
        ax.plot(traj[-1, 0], traj[-1, 1], "*", color=colors[k], mec="black", mew=0.6, ms=12)
    ax.set_title(run.name, fontsize=12, fontweight="bold")
    ax.set_xlim(-_BOUND, _BOUND)
    ax.set_ylim(-_BOUND, _BOUND)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def _loss_panel(ax: Axes, run: ToyRun, front_f: np.ndarray, colors: np.ndarray) -> None:
    ax.plot(front_f[:, 0], front_f[:, 1], color="crimson", lw=3, alpha=0.6)
    for k in range(run.losses.shape[1]):
        traj = run.losses[:, k].numpy()
        ax.plot(traj[:, 0], traj[:, 1], color=colors[k], lw=1.2)
        ax.plot(traj[0, 0], traj[0, 1], "o", color=colors[k], ms=6)
        ax.plot(traj[-1, 0], traj[-1, 1], "*", color=colors[k], mec="black", mew=0.6, ms=12)
    ax.set_xlabel("$f_1$")
    ax.set_ylabel("$f_2$")
    ax.set_title(f"{run.name}: loss space", fontsize=10)
    ax.grid(alpha=0.3)
