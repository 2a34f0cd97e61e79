"""The two-objective toy problem of the CAGrad (Liu et al., NeurIPS 2021) and Nash-MTL
(Navon et al., ICML 2022) papers, and runners that optimize it with any combiner.

Two conflicting objectives over ``x ∈ R²``. Below the ``x₂ = 0`` line each is a shallow
quadratic bowl with a different centre; above it each is a log-valley whose floors cross, so
the Pareto set is a curve between them. Plain summed gradients stall in the middle or slide
along one valley; a good combiner reaches the Pareto set from every start.

Several starting points are optimized at once as *segments* of one parameter vector: each
segment is an independent problem for every combiner (GradVac keeps its own targets per
segment), so one ``combine`` call per step serves all starts. :func:`optimize` runs one
combiner; :func:`optimize_all` runs many as one batched problem, with the same results.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import attrs
import numpy as np
import torch
from torch import Tensor

from ._checks import all_finite
from ._combiner import GradientCombiner, GramianCombiner

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


def objectives_and_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`objectives` at points ``x[..., 2]`` and both objectives' gradients there,
    ``[2, ..., 2]`` (task, point, coordinate), in closed form: what autograd computes, with the
    same subgradient conventions (a clamp passes the gradient at its bound, ``|z|`` has slope 0
    at 0), in ~40 elementwise operations instead of a vmapped backward pass (0.2 against 0.7 ms
    of CPU for the demo's 55 points)."""
    x1, x2 = x[..., 0], x[..., 1]
    t2 = torch.tanh(x2)
    dt2 = 1 - t2 * t2  # tanh'(x2)
    z1 = 0.5 * (-x1 - 7) + t2  # the valleys' arguments (tanh is odd: −tanh(−x2) = tanh(x2))
    z2 = 0.5 * (-x1 + 3) - t2 + 2
    a1, a2 = z1.abs(), z2.abs()
    valley1 = torch.clamp(a1, _FLOOR).log() + 6
    valley2 = torch.clamp(a2, _FLOOR).log() + 6
    # d log(max(|z|, floor)) / dz: sign(z)/|z| above the floor (clamp passes at the bound).
    s1 = torch.where(a1 >= _FLOOR, torch.sign(z1) / a1.clamp_min(_FLOOR), 0.0)
    s2 = torch.where(a2 >= _FLOOR, torch.sign(z2) / a2.clamp_min(_FLOOR), 0.0)
    u1, u2 = -x1 + 7, -x1 - 7
    v = -x2 - 8
    bowl1 = (u1 * u1 + 0.1 * (v * v)) / 10 - 20
    bowl2 = (u2 * u2 + 0.1 * (v * v)) / 10 - 20
    h = torch.tanh(0.5 * x2)
    dh = 0.5 * (1 - h * h)  # d tanh(x2/2) / dx2
    upper, lower = h.clamp_min(0), (-h).clamp_min(0)  # tanh(−x2/2) = −tanh(x2/2)
    d_upper = torch.where(h >= 0, dh, 0.0)
    d_lower = torch.where(h <= 0, -dh, 0.0)
    d_bowl2 = -0.02 * v  # d bowl / dx2, both bowls
    f = torch.stack([valley1 * upper + bowl1 * lower, valley2 * upper + bowl2 * lower])
    g1 = torch.stack(
        [
            -0.5 * s1 * upper - 0.2 * u1 * lower,
            s1 * dt2 * upper + valley1 * d_upper + d_bowl2 * lower + bowl1 * d_lower,
        ],
        dim=-1,
    )
    g2 = torch.stack(
        [
            -0.5 * s2 * upper - 0.2 * u2 * lower,
            -s2 * dt2 * upper + valley2 * d_upper + d_bowl2 * lower + bowl2 * d_lower,
        ],
        dim=-1,
    )
    return f, torch.stack([g1, g2])


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
    """Run Adam on the combined gradient from every start at once (float64).

    The plain one-combiner loop: the reference :func:`optimize_all` is tested against.
    """
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
    return ToyRun(type(combiner).name, positions, torch.stack(losses), _converged(positions, tol))


#: ``progress(step)``: called every ``report_every`` steps and after the last one.
Progress = Callable[[int], None]


def optimize_all(
    combiners: Sequence[GradientCombiner],
    starts: Sequence[tuple[float, float]] = DEFAULT_STARTS,
    *,
    steps: int = 3000,
    lr: float = 0.01,
    tol: float = 1e-3,
    progress: Progress | None = None,
    report_every: int = 250,
) -> list[ToyRun]:
    """:func:`optimize` for every combiner at once, as one batched problem; the same runs.

    One ``[combiners, starts, 2]`` float64 tensor under one Adam update (:class:`_Adam`, torch's
    own arithmetic; Adam is elementwise, so each combiner's points move exactly as under its own
    Adam at ``lr``), both tasks' gradients at all points in closed form
    (:func:`objectives_and_gradients`, autograd's values to rounding), and each combiner's
    update from its own rows with its starts as segments (independent problems) through
    ``combine``; for a :class:`GramianCombiner` that overrides neither ``combine`` nor
    ``combine_with_info``, through its ``weights`` on Gramians computed for all points in one
    product, which is what its ``combine`` computes.
    """
    batch = _Batch(list(combiners))
    x = torch.tensor(starts, dtype=torch.float64).repeat(len(combiners), 1, 1)
    optimizer = _Adam(x, lr)
    path, losses = [x.clone()], []
    for step in range(1, steps + 1):
        f, rows = objectives_and_gradients(x)  # [2, C, N], [2, C, N, 2]
        losses.append(f.permute(1, 2, 0))
        optimizer.step(batch.directions(rows))
        path.append(x.clone())
        if progress is not None and (step % report_every == 0 or step == steps):
            progress(step)
    losses.append(objectives(x.detach()).permute(1, 2, 0).clone())
    positions, values = torch.stack(path), torch.stack(losses)
    return [
        ToyRun(type(c).name, positions[:, i], values[:, i], _converged(positions[:, i], tol))
        for i, c in enumerate(combiners)
    ]


def _converged(positions: Tensor, tol: float) -> list[int | None]:
    """Per start, the first step after which it never again moved more than ``tol`` in a step
    (``None``: it still did in the last step)."""
    steps = positions.shape[0] - 1
    moves = (positions[1:] - positions[:-1]).norm(dim=-1)  # [steps, n]
    converged: list[int | None] = []
    for k in range(positions.shape[1]):
        moving = (moves[:, k] > tol).nonzero()
        last = int(moving[-1, 0]) + 1 if moving.numel() else 0
        converged.append(last if last < steps else None)
    return converged


class _Adam:
    """``torch.optim.Adam`` at its defaults (betas 0.9 and 0.999, eps 1e-8, no weight decay) on one
    CPU tensor, operation for operation as its single-tensor path computes it, so the iterates
    are bit for bit the same (tested). Written out because the optimizer's first step imports
    ``torch._dynamo``: 1.1 s of CPU, a seventh of the whole default demo."""

    def __init__(self, x: Tensor, lr: float) -> None:
        self.x, self.lr, self.steps = x, lr, 0
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(x), torch.zeros_like(x)

    def step(self, grad: Tensor) -> None:
        beta1, beta2 = 0.9, 0.999
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self.lr / (1 - beta1**self.steps)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2**self.steps) ** 0.5).add_(1e-8)
        self.x.addcdiv_(self.exp_avg, denom, value=-step_size)


class _Batch:
    """Turns the task rows of all points ``[2, C, N, 2]`` into each combiner's update."""

    def __init__(self, combiners: list[GradientCombiner]) -> None:
        self.combiners = combiners
        self.by_weights = [
            isinstance(c, GramianCombiner)
            and type(c).combine is GramianCombiner.combine
            and type(c).combine_with_info is GramianCombiner.combine_with_info
            for c in combiners
        ]

    def directions(self, rows: Tensor) -> Tensor:
        """``[C, N, 2]``: each combiner's update for its own points."""
        T, _, n, _ = rows.shape
        # Tiny arrays: numpy's per-call cost is a few times below torch's dispatch.
        g = rows.numpy()
        gramians = torch.from_numpy(np.einsum("tcnp,ucnp->cntu", g, g))  # every point's [T, T]
        out = np.empty(g.shape[1:])
        for i, combiner in enumerate(self.combiners):
            own = g[:, i]  # [T, n, 2]
            if self.by_weights[i]:
                weights = combiner.weights(gramians[i])  # type: ignore[attr-defined]
                if weights.shape != (n, T) or not all_finite(weights):
                    raise RuntimeError(
                        f"{type(combiner).__name__}.weights returned {tuple(weights.shape)} weights "
                        f"(all finite: {bool(torch.isfinite(weights).all())}), expected finite "
                        f"{(n, T)} (segments, tasks)"
                    )
                w = weights.detach().to("cpu", torch.float64).numpy()
                np.einsum("nt,tnp->np", w, own, out=out[i])
            else:
                out[i] = combiner.combine(rows[:, i].reshape(T, -1), [2] * n).view(n, 2).numpy()
        return torch.from_numpy(out)


def pareto_set(resolution: int = 801, bound: float = 10.0) -> tuple[Tensor, Tensor]:
    """The Pareto set of :func:`objectives` on ``[-bound, bound]²``, as the grid points no other
    grid point dominates: positions ``[M, 2]`` and their ``[f1, f2]`` ``[M, 2]``, by ``f1``.

    Exact up to the grid's spacing (``2 · bound / (resolution − 1)``): a sort by ``f1`` and a
    running minimum of ``f2``, so it finds non-convex parts of the front too. Computed once per
    grid (the demo's table and figure both ask); each call gets its own copies.
    """
    points, values = _pareto_set(resolution, bound)
    return points.clone(), values.clone()


@functools.lru_cache(maxsize=4)
def _pareto_set(resolution: int, bound: float) -> tuple[Tensor, Tensor]:
    grid = torch.linspace(-bound, bound, resolution, dtype=torch.float64)
    points = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), dim=-1).reshape(-1, 2)
    values = objectives(points).T  # [n, 2]
    order = torch.argsort(values[:, 0], stable=True)
    f2 = values[order, 1]
    best_before = torch.cat([f2.new_tensor([torch.inf]), torch.cummin(f2, 0).values[:-1]])
    keep = order[f2 < best_before]
    return points[keep], values[keep]


def pareto_gap(losses: Tensor, front: Tensor) -> Tensor:
    """How far points ``[..., 2]`` (in loss space) are from the Pareto front ``[M, 2]``: the
    most that some front point improves *both* objectives by (0 or less on the front)."""
    gain = (losses[..., None, :] - front).amin(-1)  # [..., M]: the smaller of the two gains
    return gain.amax(-1)
