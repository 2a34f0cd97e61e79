"""Combiner state saved once (rank 0) resumes on any number of ranks; heads and layout checks."""

from __future__ import annotations

import torch
from torch import nn

import gradbalance
from gradbalance import TaskGradients
from gradbalance.distributed import ReplicatedTaskGradients

from _multitask import TASKS, batches, make_model, sgd, shard, train
from _ranks import assert_identical_across_ranks, rank_job

FIRST, LAST = 2, 4  # checkpoint after step FIRST, end after step LAST


def _gradvac() -> gradbalance.GradientCombiner:
    return gradbalance.create("gradvac", seed=0, beta=0.5)


def _checkpoint(model, optimizer, combiner) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "combiner": combiner.state_dict(),
    }


def _resume(rank: int, world: int, checkpoint: dict | None):
    """A model, optimizer, buffer and combiner, restored from ``checkpoint`` when given: the
    combiner state is loaded on rank 0 only (the buffer's first combine hands it to the others)."""
    model = make_model()
    optimizer = sgd(model)
    combiner = _gradvac()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if rank == 0:
            combiner.load_state_dict(checkpoint["combiner"])
    buffer = (
        ReplicatedTaskGradients(model.trunk, TASKS, replicated=model)
        if world > 1
        else TaskGradients(model.trunk, TASKS)
    )
    return model, optimizer, buffer, combiner


def _run(model, optimizer, buffer, combiner, steps, rank, world) -> None:
    check = None
    if world > 1:

        def check() -> None:
            assert_identical_across_ranks(model.parameters(), "gradvac resume")

    train(model, model, buffer, combiner, "gradvac", steps, optimizer, rank, world, after_step=check)


def _one_process(steps: range, checkpoint: dict | None = None):
    model, optimizer, buffer, combiner = _resume(0, 1, checkpoint)
    _run(model, optimizer, buffer, combiner, steps, 0, 1)
    return model, optimizer, combiner


@rank_job
def _two_ranks(rank: int, world: int, out: str) -> None:
    # 2 ranks from scratch, checkpoint (rank 0) after FIRST steps, on to LAST.
    model, optimizer, buffer, combiner = _resume(rank, world, None)
    _run(model, optimizer, buffer, combiner, range(FIRST), rank, world)
    if rank == 0:
        torch.save(_checkpoint(model, optimizer, combiner), f"{out}/two_ranks_at_first.pt")
    _run(model, optimizer, buffer, combiner, range(FIRST, LAST), rank, world)
    final = {"scratch": model.state_dict()}
    # A one-process checkpoint (each rank computes the same one) resumed on 2 ranks.
    one_process = _checkpoint(*_one_process(range(FIRST)))
    model, optimizer, buffer, combiner = _resume(rank, world, one_process)
    _run(model, optimizer, buffer, combiner, range(FIRST, LAST), rank, world)
    final["resumed from one process"] = model.state_dict()
    torch.save(final, f"{out}/rank{rank}.pt")


def test_state_saved_on_rank_0_resumes_on_one_or_two_ranks(rank_results, _job_folders):
    ranks = rank_results(_two_ranks)
    want = _one_process(range(LAST))[0].state_dict()
    # The 2-rank checkpoint resumed in one process.
    checkpoint = torch.load(_job_folders["_two_ranks"] / "two_ranks_at_first.pt")
    runs = {"two ranks resumed on one": _one_process(range(FIRST, LAST), checkpoint)[0].state_dict()}
    for rank in range(2):
        for key, state in ranks[rank].items():
            runs[f"{key}, rank {rank}"] = state
    for run, state in runs.items():
        for key in want:
            torch.testing.assert_close(
                state[key], want[key], rtol=1e-5, atol=1e-6, msg=lambda m: f"{run} {key}: {m}"
            )


class UnitSum(gradbalance.GradientCombiner):
    """A plugin-style combiner that needs whole rows."""

    name = "unit-sum"

    def combine(self, G, segments=None, *, out=None):
        return (G / G.norm(dim=1, keepdim=True).clamp_min(1e-12)).sum(0)


@rank_job
def _edge_cases(rank: int, world: int, out: str) -> None:
    result: dict = {}
    # Head use differs across ranks: head 0 used on rank 0 only, head 1 on rank 1 only.
    model = make_model()
    buffer = ReplicatedTaskGradients(model.trunk, TASKS, replicated=model)
    x, y = shard(batches(0)[0], rank, world)
    with buffer.task(0):
        nn.functional.mse_loss(model(rank, x), y).backward()
    result["local"] = [None if h.weight.grad is None else h.weight.grad.clone() for h in model.heads]
    buffer.combine(gradbalance.create("sum"))
    result["averaged"] = [None if h.weight.grad is None else h.weight.grad.clone() for h in model.heads]
    # Rank 1 skips task 0 and runs task 2 before task 1: with overlap the rows still pair up.
    for overlap in (False, True):
        model = make_model()
        buffer = ReplicatedTaskGradients(model.trunk, TASKS, replicated=model, overlap=overlap)
        for t in (0, 1, 2) if rank == 0 else (2, 1):
            x, y = shard(batches(0)[t], rank, world)
            with buffer.task(t):
                nn.functional.mse_loss(model(t, x), y).backward()
        buffer.combine(gradbalance.create("sum"))
        result["rows", overlap] = buffer.rows.clone()
    # Scatter mode with 15 shared columns on 2 ranks: one padding column, a segment split.
    for scatter in (False, True):
        torch.manual_seed(0)
        layer = nn.Linear(5, 3)
        buffer = ReplicatedTaskGradients([layer.weight], TASKS, replicated=layer, scatter=scatter)
        for t in range(TASKS):
            x = torch.randn(4, 5, generator=torch.Generator().manual_seed(10 * t + rank))
            with buffer.task(t):
                layer(x).pow(t + 1).mean().backward()
        info = buffer.combine(gradbalance.create("upgrad"), [4, 11])
        result["padded", scatter] = (
            buffer.result.clone(),
            info.gramian,
            layer.weight.grad.clone(),
            layer.bias.grad.clone(),
        )
    # A combiner that needs whole rows is refused by scatter mode, on every rank alike.
    model = make_model()
    buffer = ReplicatedTaskGradients(model.trunk, TASKS, replicated=model, scatter=True)
    x, y = shard(batches(0)[0], rank, world)
    with buffer.task(0):
        nn.functional.mse_loss(model(0, x), y).backward()
    try:
        buffer.combine(UnitSum())
    except TypeError as error:
        result["whole rows"] = str(error)
    # A rank with another number of tasks: a clear error on every rank, no hang.
    try:
        ReplicatedTaskGradients(model.trunk, TASKS + rank, replicated=model)
    except ValueError as error:
        result["mismatch"] = str(error)
    torch.save(result, f"{out}/rank{rank}.pt")


def test_heads_average_as_ddp_would_and_unused_heads_keep_no_grad(rank_results):
    edge_cases = rank_results(_edge_cases)
    local = [edge_cases[r]["local"] for r in range(2)]
    for rank in range(2):
        averaged = edge_cases[rank]["averaged"]
        torch.testing.assert_close(averaged[0], local[0][0] / 2)  # rank 1 contributed zeros
        torch.testing.assert_close(averaged[1], local[1][1] / 2)
        assert averaged[2] is None and averaged[3] is None


def test_overlapped_rows_pair_up_when_ranks_run_different_tasks(rank_results):
    for result in rank_results(_edge_cases):
        assert torch.count_nonzero(result["rows", False]) > 0
        assert torch.equal(result["rows", True], result["rows", False])


def test_scattered_combine_equals_the_all_reduced_one_with_padding(rank_results):
    ranks = rank_results(_edge_cases)
    for result in ranks:
        everything, sliced = result["padded", False], result["padded", True]
        torch.testing.assert_close(sliced[0], everything[0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(sliced[1], everything[1], rtol=1e-6, atol=0)
        assert torch.equal(sliced[2], sliced[0].view(3, 5))  # .grad reads the gathered result
        assert torch.equal(sliced[3], everything[3])  # the head (bias) averaged alike
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["padded", True], ranks[1]["padded", True]))


def test_scatter_mode_refuses_a_combiner_that_needs_whole_rows(rank_results):
    for result in rank_results(_edge_cases):
        message = result.get("whole rows")
        assert message is not None and "'unit-sum'" in message and "scatter=False" in message


def test_ranks_with_different_layouts_fail_clearly_on_every_rank(rank_results):
    edge_cases = rank_results(_edge_cases)
    for rank in range(2):
        message = edge_cases[rank].get("mismatch")
        assert message is not None and "tasks: [3, 4]" in message
