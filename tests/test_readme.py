"""The README's code blocks run as written (with a small model standing in for `model`)."""

import re
from pathlib import Path

import torch
from torch import nn

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])


def test_drop_in_loop_trains_with_pcgrad():
    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    targets = [torch.randn(16, 1) for _ in range(3)]

    def task_losses(model, *batches):
        shared = [model.encoder(b) for b in batches]
        return [((model.heads[t](h) - targets[t]) ** 2).mean() for t, h in enumerate(shared)]

    loader = [tuple(torch.randn(16, 4) for _ in range(3)) for _ in range(5)]
    namespace = {"model": model, "optimizer": optimizer, "loader": loader, "task_losses": task_losses}
    before = model.encoder[0].weight.detach().clone()
    exec(python_blocks()[0], namespace)
    assert not torch.equal(before, model.encoder[0].weight)
    assert namespace["buffer"].rows.shape == (3, 4 * 8 + 8)


def test_plugin_example_defines_a_working_combiner():
    namespace: dict = {}
    exec(python_blocks()[1], namespace)
    combiner = namespace["InverseNorm"]()
    G = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    torch.testing.assert_close(combiner.combine(G), torch.tensor([0.6, 1.8]))


def test_plugin_example_runs_the_conformance_kit_in_two_lines():
    namespace: dict = {}
    exec(python_blocks()[1], namespace)
    exec(python_blocks()[2], namespace)
    test = namespace["test_inverse_norm"]
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    assert mark.args[0] == "check" and "state" in mark.args[1]
    for check in mark.args[1]:
        test(check)
