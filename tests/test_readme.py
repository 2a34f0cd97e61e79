"""The README's code blocks run as written (with a small model standing in for `model`)."""

import copy
import re
from pathlib import Path

import torch
from torch import nn

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def block_with(text: str) -> str:
    """The one README python block containing ``text`` (blocks move as sections grow)."""
    found = [block for block in python_blocks() if text in block]
    assert len(found) == 1, f"{len(found)} README python blocks contain {text!r}"
    return found[0]


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])


def row_of(model: Model, loss: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.encoder.parameters()))])


def test_both_drop_in_loops_train_with_pcgrad():
    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    targets = [torch.randn(16, 1) for _ in range(3)]

    def task_losses(model, *batches):  # separate batches, one encoder pass each
        shared = [model.encoder(b) for b in batches]
        return [((model.heads[t](h) - targets[t]) ** 2).mean() for t, h in enumerate(shared)]

    loader = [tuple(torch.randn(16, 4) for _ in range(3)) for _ in range(5)]
    namespace = {"model": model, "optimizer": optimizer, "loader": loader, "task_losses": task_losses}
    before = model.encoder[0].weight.detach().clone()
    exec(block_with("task_losses(model, batch_a, batch_b, batch_c)"), namespace)
    assert not torch.equal(before, model.encoder[0].weight)
    assert namespace["buffer"].rows.shape == (3, 4 * 8 + 8)

    def shared_forward_losses(model, batch):  # one encoder pass, three heads on it
        h = model.encoder(batch)
        return [((head(h) - target) ** 2).mean() for head, target in zip(model.heads, targets)]

    batches = [torch.randn(16, 4) for _ in range(5)]
    snapshots = []

    def loader_with_snapshots():  # keeps the model as each step saw it
        for batch in batches:
            snapshots.append(copy.deepcopy(model))
            yield batch

    namespace.update(loader=loader_with_snapshots(), shared_forward_losses=shared_forward_losses)
    exec(block_with("shared_forward_losses(model, batch)"), namespace)
    assert not torch.equal(snapshots[0].encoder[0].weight, model.encoder[0].weight)
    last = snapshots[-1]  # the last step's rows hold each task's own gradient, not a mix
    for t in range(3):
        torch.testing.assert_close(
            namespace["buffer"].rows[t], row_of(last, shared_forward_losses(last, batches[-1])[t])
        )


def test_plugin_example_defines_a_working_combiner():
    namespace: dict = {}
    exec(block_with("class InverseNorm"), namespace)
    combiner = namespace["InverseNorm"]()
    G = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(combiner.combine(G), torch.tensor([0.6, 1.8]))


def test_plugin_example_runs_the_conformance_kit_in_two_lines():
    namespace: dict = {}
    exec(block_with("class InverseNorm"), namespace)
    exec(block_with("conformance_tests"), namespace)
    test = namespace["test_inverse_norm"]
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    assert mark.args[0] == "check" and "state" in mark.args[1]
    for check in mark.args[1]:
        test(check)
