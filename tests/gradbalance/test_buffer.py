import pytest
import torch
from torch import nn

import gradbalance
from gradbalance import TaskGradients


class Trunk(nn.Module):
    """A shared trunk with three task heads; task 2 never reaches `deep`."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.deep = nn.Linear(8, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])

    def loss(self, t: int, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.embed(x))
        if t != 2:
            h = torch.tanh(self.deep(h))
        return (self.heads[t](h) ** 2).mean() * (t + 1)


def shared(model: Trunk) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if not n.startswith("heads")]


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = Trunk()
    xs = [torch.randn(5, 6) for _ in range(3)]
    return model, xs


def test_rows_match_per_task_autograd(setup):
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    params = [p for _, p in shared(model)]
    for t in range(3):
        with buffer.task(t):
            model.loss(t, xs[t]).backward()
    for t in range(3):
        grads = torch.autograd.grad(model.loss(t, xs[t]), params, allow_unused=True)
        want = torch.cat(
            [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]
        )
        torch.testing.assert_close(buffer.rows[t], want)
    # task 2 never reaches `deep`: its slice reads zeros, not garbage
    names = buffer.names
    start = sum(p.numel() for n, p in shared(model)[: names.index("deep.weight")])
    assert torch.count_nonzero(buffer.rows[2, start:]) == 0


def test_gradients_land_in_the_rows_without_copies_across_steps(setup):
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    storage = buffer.rows.untyped_storage().data_ptr()
    lo, hi = buffer.rows.data_ptr(), buffer.rows.data_ptr() + buffer.rows.numel() * 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        for t in range(3):
            with buffer.task(t):
                p = buffer.parameters[0]
                assert p.grad.untyped_storage().data_ptr() == storage
                model.loss(t, xs[t]).backward()
                assert lo <= p.grad.data_ptr() < hi
        buffer.combine(gradbalance.create("pcgrad", seed=0))
        for p in buffer.parameters:
            assert p.grad.untyped_storage().data_ptr() == buffer.result.untyped_storage().data_ptr()
        opt.step()
    assert buffer.rows.untyped_storage().data_ptr() == storage


def test_sum_reproduces_summed_loss_backward(setup):
    model, xs = setup
    reference = Trunk()
    reference.load_state_dict(model.state_dict())
    sum(reference.loss(t, xs[t]) for t in range(3)).backward()

    buffer = TaskGradients(shared(model), num_tasks=3)
    for t in range(3):
        with buffer.task(t):
            model.loss(t, xs[t]).backward()
    buffer.combine(gradbalance.create("sum"))
    for (n, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)  # heads accumulate normally too


def test_micro_batch_accumulation_is_exact(setup):
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    halves = xs[0].split([2, 3])
    with buffer.task(0):
        model.loss(0, halves[0]).backward()
    with buffer.task(1):
        model.loss(1, xs[1]).backward()
    with buffer.task(0):
        model.loss(0, halves[1]).backward()
    params = buffer.parameters
    grads = torch.autograd.grad(model.loss(0, halves[0]) + model.loss(0, halves[1]), params)
    torch.testing.assert_close(buffer.rows[0], torch.cat([g.flatten() for g in grads]))


def test_rows_are_zeroed_for_the_next_step(setup):
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    for t in range(3):
        with buffer.task(t):
            model.loss(t, xs[t]).backward()
    buffer.combine(gradbalance.create("sum"))
    with buffer.task(0):  # next step: only task 0 runs
        model.loss(0, xs[0]).backward()
    assert torch.count_nonzero(buffer.rows[1:]) == 0


def test_a_step_whose_combine_failed_can_be_skipped(setup):
    # The usual answer to a NaN loss is to skip that step: the next step must start from zero
    # rows, not accumulate onto the rejected gradients (which would reject every later step).
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    for t in range(3):
        with buffer.task(t):
            (model.loss(t, xs[t]) * (float("nan") if t == 1 else 1.0)).backward()
    with pytest.raises(gradbalance.NonFiniteGradientError, match="task 1"):
        buffer.combine(gradbalance.create("sum"))
    assert torch.isnan(buffer.rows[1]).all()  # still there to inspect until the next step
    for t in range(3):
        with buffer.task(t):
            model.loss(t, xs[t]).backward()
    params = buffer.parameters
    for t in range(3):
        grads = torch.autograd.grad(model.loss(t, xs[t]), params, allow_unused=True)
        want = torch.cat(
            [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]
        )
        torch.testing.assert_close(buffer.rows[t], want)
    buffer.combine(gradbalance.create("sum"))
    torch.testing.assert_close(buffer.result, buffer.rows.sum(0))


def test_segments_by_tensor_module_whole_and_function(setup):
    model, _ = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    assert buffer.segments("tensor") == [48, 8, 64, 8]
    assert buffer.segments("module") == [56, 72]
    assert buffer.segments("whole") == [128]
    assert buffer.segments(lambda name: name.endswith("bias")) == [48, 8, 64, 8]
    with pytest.raises(ValueError, match="must be 'tensor'"):
        buffer.segments("layer")


def test_frozen_and_tied_parameters_are_left_out():
    a = nn.Linear(3, 3)
    a.bias.requires_grad_(False)
    buffer = TaskGradients([a.weight, a.bias, a.weight], num_tasks=2)
    assert buffer.rows.shape == (2, 9)


@pytest.mark.filterwarnings(r"ignore:Using backward\(\) with create_graph=True")
def test_autograd_replacing_grad_is_caught_and_kept():
    w = nn.Parameter(torch.randn(4))
    buffer = TaskGradients([w], num_tasks=1)
    with buffer.task(0):
        (w**2).sum().backward(create_graph=True)  # AccumulateGrad goes out of place here
    torch.testing.assert_close(buffer.rows[0], 2 * w.detach())


def test_misuse_is_reported():
    w = nn.Parameter(torch.randn(4))
    buffer = TaskGradients([w], num_tasks=2)
    with pytest.raises(IndexError, match="out of range for 2 tasks"):
        with buffer.task(2):
            pass
    with pytest.raises(RuntimeError, match="do not nest"):
        with buffer.task(0):
            with buffer.task(1):
                pass
    with pytest.raises(RuntimeError, match="was cleared inside task"):
        with buffer.task(0):
            w.grad = None
    with pytest.raises(ValueError, match="at least one shared parameter"):
        TaskGradients([torch.zeros(3)], num_tasks=2)
    with pytest.raises(ValueError, match="num_tasks must be >= 1"):
        TaskGradients([w], num_tasks=0)


def test_grouped_gradvac_through_the_buffer_runs_and_logs_cosines(setup):
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    combiner = gradbalance.create("gradvac", seed=0)
    for t in range(3):
        with buffer.task(t):
            model.loss(t, xs[t]).backward()
    info = buffer.combine(combiner, buffer.segments("module"))
    assert info.gramian.shape == (2, 3, 3)
    assert combiner.targets.shape == (2, 3, 3)
    cos = info.cosines()
    assert cos.shape == (2, 3, 3) and torch.all(cos.abs() <= 1)


def run_tasks(buffer: TaskGradients, model: Trunk, xs: list[torch.Tensor]) -> None:
    for t in range(3):
        with buffer.task(t):
            model.loss(t, xs[t]).backward()


def test_a_step_without_combine_is_refused_before_anything_moves(setup):
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    heads_only = torch.optim.SGD(model.heads.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run_tasks(buffer, model, xs)
    with pytest.raises(
        RuntimeError,
        match=r"SGD.step\(\) was called while TaskGradients\(num_tasks=3.*never combined.*call buffer.combine\(combiner\)",
    ):
        optimizer.step()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    heads_only.step()  # an optimizer without shared parameters is none of the buffer's business
    run_tasks(buffer, model, xs)  # micro-batches: tasks may run again before the step
    buffer.combine(gradbalance.create("sum"))
    optimizer.step()
    assert not torch.equal(model.embed.weight, before["embed.weight"])
    optimizer.zero_grad()
    run_tasks(buffer, model, xs)
    buffer.zero_()  # dropping the step's task gradients is a choice, not a mistake
    optimizer.step()


def test_a_gradient_from_outside_the_tasks_is_an_error(setup):
    model, xs = setup
    buffer = TaskGradients(shared(model), num_tasks=3)
    extra = lambda: (model.embed(xs[0]) ** 2).mean()  # noqa: E731 - a loss outside any task
    extra().backward()
    with pytest.raises(
        RuntimeError,
        match=r"shared parameter 'embed.weight' already holds a gradient at task\(0\): a backward\(\) ran outside",
    ):
        with buffer.task(0):
            pass
    model.zero_grad(set_to_none=False)  # zeros left in .grad carry nothing: no error
    with buffer.task(0):
        model.loss(0, xs[0]).backward()
    extra().backward()  # between two tasks
    with pytest.raises(RuntimeError, match=r"at task\(1\)"):
        with buffer.task(1):
            pass
    model.zero_grad()
    run_tasks(buffer, model, xs)
    extra().backward()  # after the last task
    with pytest.raises(RuntimeError, match=r"at combine\(\)"):
        buffer.combine(gradbalance.create("sum"))
    with pytest.raises(RuntimeError, match="never combined"):  # nothing changed: still uncombined
        torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    run_tasks(buffer, model, xs)
    buffer.combine(gradbalance.create("sum"))
    combined = buffer.result.clone()
    extra().backward()  # after combine: adds to the combined gradient, as documented
    params = buffer.parameters
    grads = torch.autograd.grad(extra(), params, allow_unused=True)
    added = torch.cat(
        [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]
    )
    torch.testing.assert_close(buffer.result, combined + added)
    with buffer.task(0):  # the next step starts cleanly from the combined .grad
        pass
