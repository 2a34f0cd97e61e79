import pytest
import torch

import gradbalance
from gradbalance import GramianCombiner, toy
from gradbalance.cli import _seeded


def test_the_batched_runner_repeats_each_combiners_own_run():
    # Every built-in from every start, 120 steps: one batched problem against one plain loop per
    # combiner (its own Adam, its own combine on its own segments). Same trajectories to rounding
    # (bit for bit where the Gramian and the weighted sum round alike).
    names = gradbalance.available()
    together = toy.optimize_all([_seeded(n) for n in names], steps=120)
    for name, run in zip(names, together):
        alone = toy.optimize(_seeded(name), steps=120)  # type: ignore[arg-type]
        assert run.name == alone.name == name
        torch.testing.assert_close(run.path, alone.path, rtol=0, atol=1e-12, msg=name)
        torch.testing.assert_close(run.losses, alone.losses, rtol=0, atol=1e-12, msg=name)
        assert run.steps_to_converge == alone.steps_to_converge


class _MeanDespiteWeights(GramianCombiner):
    """PCGrad's ``weights``, but a ``combine_with_info`` that returns the mean of the rows: the
    batched runner must go through ``combine`` for it, not through ``weights``."""

    name = "mean-despite-weights"

    def __init__(self) -> None:
        self.inner = gradbalance.create("pcgrad", seed=0)

    def weights(self, gramian):
        return self.inner.weights(gramian)

    def combine_with_info(self, G, segments=None, *, out=None):
        return gradbalance.Combination(G.mean(0))


def test_a_combiner_that_overrides_combine_runs_through_combine():
    together = toy.optimize_all([_MeanDespiteWeights(), _seeded("pcgrad")], steps=60)
    alone = toy.optimize(_MeanDespiteWeights(), steps=60)
    torch.testing.assert_close(together[0].path, alone.path, rtol=0, atol=1e-12)
    assert not torch.allclose(together[0].path, together[1].path)  # not PCGrad's weights


def test_progress_is_reported_as_the_run_goes():
    seen = []
    toy.optimize_all([_seeded("sum")], steps=25, progress=seen.append, report_every=10)
    assert seen == [10, 20, 25]


def test_the_pareto_set_is_the_floor_between_the_bowls_and_nothing_dominates_it():
    points, front = toy.pareto_set()
    # The bowls' centres are (±7, −8); the set joins them just below x2 = −8 (the lower branch's
    # weight tanh(−x2/2) pulls it down).
    assert float(points[:, 0].min()) == pytest.approx(-7, abs=0.1)
    assert float(points[:, 0].max()) == pytest.approx(7, abs=0.1)
    assert bool(((points[:, 1] > -8.5) & (points[:, 1] < -8.0)).all())
    # A front: sorted by f1, f2 strictly falls.
    assert bool((front[1:, 0] >= front[:-1, 0]).all() and (front[1:, 1] < front[:-1, 1]).all())
    # No random point of the plane beats a front point by more than the grid's spacing allows.
    probes = torch.rand(20000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 20 - 10
    assert float(toy.pareto_gap(toy.objectives(probes).T, front).min()) > -0.05
    assert float(toy.pareto_gap(front, front).max()) <= 0


def test_the_pareto_gap_is_the_most_both_objectives_could_still_fall():
    front = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    points = torch.tensor([[2.0, 0.5], [1.0, -1.0], [-1.0, 3.0], [-1.0, -2.0]], dtype=torch.float64)
    # (2, .5): (1, −1) improves both by min(1, 1.5) = 1, (0, 0) by min(2, .5); on the front: 0;
    # (−1, 3) is beaten on f2 only (gap −1 < 0); (−1, −2) beats the whole front by at least 2.
    assert toy.pareto_gap(points, front).tolist() == [1.0, 0.0, -1.0, -2.0]
    _, toy_front = toy.pareto_set()
    start = toy.objectives(torch.tensor([9.0, 9.0], dtype=torch.float64))
    assert float(toy.pareto_gap(start, toy_front)) > 5  # the start (9, 9) is far from it


def test_closed_form_gradients_are_autograds_to_rounding():
    # Random points over the plotted square and beyond, and the kinks: x2 = 0 (where the
    # bowls hand over to the valleys) and both valley floors (|z| at and below the clamp).
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5000, 2, dtype=torch.float64, generator=gen) * 30 - 15
    x[:100, 1] = 0.0
    t = torch.tanh(x[100:300, 1])
    x[100:200, 0] = 2 * (t[:100] - 3.5)  # valley 1's floor: z1 = 0
    x[200:300, 0] = 2 * (3.5 - t[100:]) + 1e-6 * torch.rand(100, dtype=torch.float64, generator=gen)
    leaf = x.clone().requires_grad_()
    f = toy.objectives(leaf)
    rows = torch.stack([torch.autograd.grad(f[k].sum(), leaf, retain_graph=True)[0] for k in range(2)])
    values, gradients = toy.objectives_and_gradients(x)
    assert torch.equal(values, f.detach())
    # Rounding of a sum of terms: relative to the largest term, which 1/|z| (≤ 2e5) bounds.
    torch.testing.assert_close(gradients, rows, rtol=1e-12, atol=1e-10)
    assert torch.equal(gradients[:, 100:200] == 0, rows[:, 100:200] == 0)  # floors: same zeros


def test_the_runners_adam_is_torchs_bit_for_bit():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(11, 5, 2, dtype=torch.float64, generator=gen)
    reference = x.clone().requires_grad_()
    optimizer = torch.optim.Adam([reference], lr=0.01)
    mine = toy._Adam(x, 0.01)
    for step in range(300):
        grad = torch.randn(11, 5, 2, dtype=torch.float64, generator=gen) * 10.0 ** (step % 7 - 3)
        reference.grad = grad.clone()
        optimizer.step()
        mine.step(grad)
    assert torch.equal(x, reference.detach())
