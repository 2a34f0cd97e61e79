"""Counted bytes per step against the traffic formulas."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

import gradbalance
from gradbalance.distributed import (
    ReplicatedTaskGradients,
    ShardedTaskGradients,
    count_collectives,
    step_traffic,
)

from _multitask import TASKS, batches, make_model, shard
from _ranks import rank_job


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Summed(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, data: list) -> torch.Tensor:
        return sum(nn.functional.mse_loss(self.net(t, x), y) for t, (x, y) in enumerate(data))


def _step(model, buffer, combiner, rank, world, segments=None):
    for t, batch in enumerate(batches(0)):
        x, y = shard(batch, rank, world)
        with buffer.task(t):
            nn.functional.mse_loss(model(t, x), y).backward()
    return buffer.combine(combiner, segments)


@rank_job
def _traffic(rank: int, world: int, out: str) -> None:
    result = {}
    model = make_model()
    buffer = ReplicatedTaskGradients(model.trunk, TASKS, replicated=model)
    combiner = gradbalance.create("upgrad")
    _step(model, buffer, combiner, rank, world)  # the first combine also checks layouts
    with count_collectives() as traffic:
        _step(model, buffer, combiner, rank, world)
    result["replicated"] = (traffic.calls, traffic.payload, buffer.bytes_per_step())

    model = make_model()
    buffer = ReplicatedTaskGradients(model.trunk, TASKS, replicated=model, scatter=True)
    _step(model, buffer, combiner, rank, world)
    with count_collectives() as traffic:
        _step(model, buffer, combiner, rank, world)
    result["scatter"] = (traffic.calls, traffic.payload, buffer.bytes_per_step())

    # Plain DDP needs one forward per step (its reducer fires once per parameter): the
    # summed loss of every task in one forward.
    ddp = DistributedDataParallel(Summed(make_model()), find_unused_parameters=True)
    ddp.register_comm_hook(None, allreduce_hook)  # a Python hook, so its all-reduce is counted
    with count_collectives() as traffic:
        ddp([shard(b, rank, world) for b in batches(0)]).backward()
    result["ddp"] = (traffic.calls, traffic.payload)

    model = make_model()
    for layer in model.trunk:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    buffer = ShardedTaskGradients(model.trunk, TASKS)
    combiner = gradbalance.create("upgrad")
    _step(model, buffer, combiner, rank, world, buffer.segments("tensor"))
    model.zero_grad()
    with count_collectives() as traffic:
        _step(model, buffer, combiner, rank, world, buffer.segments("tensor"))
    result["sharded"] = (traffic.calls, traffic.payload)
    torch.save(result, f"{out}/rank{rank}.pt")


def test_counted_bytes_per_step_match_the_formulas(rank_results):
    model = make_model()
    trunk, head, heads = _numel(model.trunk), _numel(model.heads[0]), _numel(model.heads)
    segments = len(list(model.trunk.parameters()))
    for result in rank_results(_traffic):
        calls, payload, buffer_bytes = result["replicated"]
        assert calls == {"all_reduce": 1}
        want = step_traffic("replicated", shared=trunk, heads=heads, tasks=TASKS).total
        assert (
            payload["all_reduce"] == buffer_bytes == want + 4 * len(list(model.heads.parameters()))
        )  # flags

        calls, payload, buffer_bytes = result["scatter"]  # the trunk splits evenly: no padding
        want = step_traffic("scatter", shared=trunk, heads=heads, tasks=TASKS)
        scatter, gather = (
            ("reduce_scatter_single", "all_gather_single")
            if hasattr(dist, "all_gather_single")
            else ("reduce_scatter_tensor", "all_gather_into_tensor")
        )
        assert calls == {scatter: TASKS, "all_reduce": 2, gather: 1}
        assert payload[scatter] == want.reduce_scatter
        assert payload[gather] == want.all_gather
        assert payload["all_reduce"] == want.all_reduce + want.small_all_reduce + 4 * len(
            list(model.heads.parameters())
        )
        assert buffer_bytes == want.total - want.small_all_reduce + 4 * len(list(model.heads.parameters()))

        calls, payload = result["ddp"]
        assert payload == {"all_reduce": step_traffic("ddp", shared=trunk, heads=heads, tasks=TASKS).total}

        calls, payload = result["sharded"]
        # One small all-reduce of the S·T·T float64 Gramians; FSDP2 reduce-scatters the trunk
        # and the one head each task reaches, once per task.
        assert calls["all_reduce"] == 1
        assert (
            payload["all_reduce"]
            == step_traffic(
                "sharded", shared=trunk, heads=heads, tasks=TASKS, segments=segments
            ).small_all_reduce
        )
        assert payload["reduce_scatter_single"] == TASKS * (trunk + head) * 4
        assert payload["all_gather_single"] > 0


def test_counting_wraps_torch_distributed_only_inside_the_block():
    original = dist.all_reduce
    with count_collectives() as outer:
        assert dist.all_reduce is not original
        with count_collectives():
            pass
        assert dist.all_reduce is not original  # the inner block leaves the outer one counting
        outer.add("all_reduce", 8)
    assert dist.all_reduce is original and outer.ring_bytes(4) == 2 * 3 / 4 * 8


def _traffic_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "scripts" / "distributed_traffic.py"
    spec = importlib.util.spec_from_file_location("distributed_traffic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path.parents[1] / "docs" / "distributed.md"


def test_the_docs_table_is_the_projection_scripts_output():
    script, page = _traffic_script()
    text = page.read_text()
    start = text.index("<!-- distributed_traffic.py -->\n") + len("<!-- distributed_traffic.py -->\n")
    assert text[start : text.index("\n<!-- /distributed_traffic.py -->")] == script.table()


def test_projected_bert_sizes_are_the_real_models():
    transformers = pytest.importorskip("transformers")
    script, _ = _traffic_script()
    for layers, hidden, intermediate in script.MODELS.values():
        config = transformers.BertConfig(
            num_hidden_layers=layers,
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_attention_heads=hidden // 64,
        )
        with torch.device("meta"):
            model = transformers.BertModel(config)
        params = list(model.parameters())
        assert script.bert_size(layers, hidden, intermediate) == (sum(p.numel() for p in params), len(params))
