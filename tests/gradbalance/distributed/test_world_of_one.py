"""In one process (a world of one, or no process group at all) the distributed buffers are the
plain buffer: the same parameters bit for bit, or a clear error without init_process_group."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import gradbalance
from gradbalance.distributed import ReplicatedTaskGradients, ShardedTaskGradients, sharded_combine

from _multitask import STEPS, TASKS, combiners, make_model, reference, sgd, train


def test_without_a_process_group_the_error_says_what_to_do():
    assert not dist.is_initialized()
    model = make_model()
    with pytest.raises(RuntimeError, match="init_process_group"):
        ReplicatedTaskGradients(model.trunk, TASKS, replicated=model)
    with pytest.raises(RuntimeError, match="init_process_group"):
        sharded_combine(combiners()["upgrad"], torch.ones(2, 3))


@pytest.fixture
def world_of_one(tmp_path):
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp_path / 'store'}",
        rank=0,
        world_size=1,
        timeout=timedelta(seconds=30),
    )
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["pcgrad", "gradvac"])
def test_a_world_of_one_trains_exactly_as_one_process(world_of_one, name):
    want = reference(name)[0].state_dict()
    for mode in ("plain", "overlap", "scatter", "fsdp2"):
        model = make_model()
        if mode == "fsdp2":
            fully_shard(model)
            buffer = ShardedTaskGradients(model.trunk, TASKS)
        else:
            buffer = ReplicatedTaskGradients(
                model.trunk, TASKS, replicated=model, overlap=mode == "overlap", scatter=mode == "scatter"
            )
        train(model, model, buffer, combiners()[name], name, range(STEPS), sgd(model))
        for key, value in model.state_dict().items():
            value = value.full_tensor() if mode == "fsdp2" else value
            assert torch.equal(value, want[key]), f"{mode} {name} {key}"


@pytest.mark.parametrize(
    "name, options",
    [
        ("pcgrad", {"seed": 0, "reduction": "mean"}),
        ("aligned-mtl", {"reduction": "mean"}),
        ("upgrad", {"reduction": "sum"}),
        ("mgda", {"reduction": "sum"}),
        ("imtl-g", {"reduction": "sum"}),
        ("cagrad", {"reduction": "sum"}),
        ("cagrad", {"reduction": "sum", "rescale": False}),
    ],
)
def test_a_sharded_combine_applies_the_reduction(world_of_one, name, options):
    # The sharded path calls checked_weights on the all-reduced Gramians: the reduction that is
    # not the combiner's default must reach it as it reaches combine.
    G = torch.randn(3, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    G[1] -= 1.5 * G[0]  # a conflict, so no method reduces to the plain sum or mean
    got = sharded_combine(gradbalance.create(name, **options), G, [20, 30])
    want = gradbalance.create(name, **options).combine_with_info(G, [20, 30])
    assert torch.equal(got.weights, want.weights) and torch.equal(got.direction, want.direction)
    default = dict(options, reduction="mean" if options["reduction"] == "sum" else "sum")
    other = gradbalance.create(name, **default).combine_with_info(G, [20, 30]).weights
    ratio = 3.0 if options["reduction"] == "sum" else 1 / 3
    torch.testing.assert_close(got.weights, other * ratio, rtol=1e-14, atol=0)
