"""Sharded mode on 2 gloo ranks: column shards by hand (sharded_combine) and FSDP2
(ShardedTaskGradients over fully_shard) against one process on whole rows."""

from __future__ import annotations

import pytest
import torch
from torch.distributed.fsdp import fully_shard

import gradbalance
from gradbalance import GradientCombiner, NonFiniteGradientError
from gradbalance.distributed import ShardedTaskGradients, sharded_combine

from _multitask import STEPS, TASKS, batches, combiners, make_model, reference, sgd, shard, train
from _ranks import assert_identical_across_ranks, rank_job

#: (columns, global segments, first column of rank 1, dtype): a segment straddles the split;
#: with 384 columns the segments share a block length (the batched Gramian path); each rank
#: holds zero columns of some segment. Float32 block products round differently on a shard
#: than on whole rows (3e-7 relative), float64 ones agree to float64 rounding.
LAYOUTS = [
    (50, [10, 7, 13, 20], 20, torch.float32),
    (384, [128, 64, 192], 192, torch.float32),
    (51, [10, 7, 13, 21], 20, torch.float64),
]
GRAMIAN_RTOL = {torch.float32: 2e-6, torch.float64: 1e-12}
NAMES = [
    "sum",
    "mean",
    "pcgrad",
    "gradvac",
    "upgrad",
    "mgda",
    "imtl-g",
    "cagrad",
    "nash-mtl",
    "aligned-mtl",
    "fairgrad",
]
CALLS = 2  # twice, so stateful combiners use their state


def _make(name: str) -> GradientCombiner:
    return gradbalance.create(name, seed=0) if name in ("pcgrad", "gradvac") else gradbalance.create(name)


def _matrix(columns: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(4, columns, generator=torch.Generator().manual_seed(columns), dtype=dtype)


def _local(rank: int, columns: int, segments: list[int], split: int) -> tuple[slice, list[int]]:
    lo, hi = (0, split) if rank == 0 else (split, columns)
    local, start = [], 0
    for size in segments:
        local.append(max(0, min(hi, start + size) - max(lo, start)))
        start += size
    return slice(lo, hi), local


class Rowwise(GradientCombiner):
    """A plugin combiner that needs whole rows (each row scaled by its norm)."""

    name = "rowwise"

    def combine_with_info(self, G, segments=None, *, out=None):
        return gradbalance.Combination((G / G.norm(dim=1, keepdim=True)).sum(0))


@rank_job
def _matrix_cases(rank: int, world: int, out: str) -> None:
    result: dict = {}
    for columns, segments, split, dtype in LAYOUTS:
        G = _matrix(columns, dtype)
        cols, local = _local(rank, columns, segments, split)
        for name in NAMES:
            combiner = _make(name)
            for call in range(CALLS):
                info = sharded_combine(combiner, G[:, cols].contiguous(), local)
                result[columns, name, call] = (info.direction, info.gramian, info.weights)
    G = _matrix(50)
    try:
        sharded_combine(Rowwise(), G[:, :25] if rank == 0 else G[:, 25:])
    except TypeError as error:
        result["rowwise"] = str(error)
    if rank == 1:
        G[2, 40] = float("nan")
    try:
        sharded_combine(_make("upgrad"), G[:, :25] if rank == 0 else G[:, 25:], [10, 15])
    except NonFiniteGradientError as error:
        result["nan"] = (error.task, error.segment)
    torch.save(result, f"{out}/rank{rank}.pt")


@pytest.fixture
def matrix_cases(rank_results):
    return rank_results(_matrix_cases)


@pytest.mark.parametrize("columns, segments, split, dtype", LAYOUTS)
def test_column_shards_combine_to_the_whole_rows_result(matrix_cases, columns, segments, split, dtype):
    G = _matrix(columns, dtype)
    for name in NAMES:
        if name == "cagrad" and dtype == torch.float32:
            # On these random rows CAGrad's answer moves by 0.3 between the float32 and the
            # float64 Gramian of the very same rows (3e-7 apart): compared in float64 only.
            continue
        combiner = _make(name)
        for call in range(CALLS):
            want = combiner.combine_with_info(G, segments)
            parts = [matrix_cases[r][columns, name, call] for r in range(2)]
            where = f"{name}, {columns} columns, call {call}"
            torch.testing.assert_close(
                torch.cat([p[0] for p in parts]),
                want.direction,
                rtol=1e-5,
                atol=1e-6,
                msg=lambda m: f"{where}: {m}",
            )
            if want.gramian is None:  # columnwise: no Gramian, no collective
                assert parts[0][1] is None and parts[1][1] is None, where
                continue
            # The all-reduced float64 Gramian is the whole rows' one; weights agree bitwise.
            torch.testing.assert_close(parts[0][1], want.gramian, rtol=GRAMIAN_RTOL[dtype], atol=0)
            assert parts[0][1].dtype == torch.float64
            assert torch.equal(parts[0][1], parts[1][1]) and torch.equal(parts[0][2], parts[1][2]), where
            torch.testing.assert_close(parts[0][2], want.weights, rtol=1e-4, atol=1e-6)


def test_a_combiner_needing_whole_rows_is_refused_by_name(matrix_cases):
    for rank in range(2):
        message = matrix_cases[rank].get("rowwise")
        assert message is not None and "'rowwise'" in message and "GramianCombiner" in message


def test_a_nan_on_one_rank_raises_on_every_rank(matrix_cases):
    # Column 40 of the global matrix is rank 1's local column 15, in its second local segment.
    assert [matrix_cases[r].get("nan") for r in range(2)] == [(2, 1), (2, 1)]


@rank_job
def _fsdp_training(rank: int, world: int, out: str) -> None:
    result: dict = {}
    for name, combiner in combiners(seed=0 if rank == 0 else 123).items():
        model = make_model()
        for layer in model.trunk:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        buffer = ShardedTaskGradients(model.trunk, TASKS)
        infos = train(model, model, buffer, combiner, name, range(STEPS), sgd(model), rank, world)
        assert_identical_across_ranks(
            [t for i in infos for t in (i.gramian, i.weights) if t is not None],
            f"{name} Gramians and weights",
        )
        result[name] = {k: v.full_tensor() for k, v in model.state_dict().items()}
        result[name, "gramians"] = [i.gramian for i in infos]
        result[name, "local sizes"] = buffer.segments("tensor")
    torch.save(result, f"{out}/rank{rank}.pt")


class AllHeads(torch.nn.Module):
    """One forward for every task: the shared trunk runs once, each head reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_model()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.net.trunk(x)
        return [head(hidden) for head in self.net.heads]


@rank_job
def _fsdp_shared_forward(rank: int, world: int, out: str) -> None:
    model = AllHeads()
    for layer in model.net.trunk:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    rows = []
    for shared in (True, False):
        buffer = ShardedTaskGradients(model.net.trunk, TASKS)
        x = shard(batches(0)[0], rank, world)[0]
        outputs = model(x)
        for t in range(TASKS):
            with buffer.task(t):
                output = outputs[t] if shared else model(x)[t]
                output.pow(2).mean().backward(retain_graph=shared and t < TASKS - 1)
        rows.append(buffer.rows.clone())
    torch.save(rows, f"{out}/rank{rank}.pt")


def test_fsdp2_with_one_shared_forward_fills_the_rows_of_separate_forwards(rank_results):
    for shared, separate in rank_results(_fsdp_shared_forward):
        assert torch.count_nonzero(separate) > 0
        assert torch.equal(shared, separate)


def test_fsdp2_training_matches_one_process_on_the_global_batch(rank_results):
    ranks = rank_results(_fsdp_training)
    # Each rank's rows hold its shard of every trunk tensor: together, the whole trunk.
    local = [ranks[r]["sum", "local sizes"] for r in range(2)]
    assert [a + b for a, b in zip(*local)] == [12 * 6, 12, 10 * 12, 10] and local[0] != [0, 0, 0, 0]
    for name in combiners():
        model, infos = reference(name)
        want = model.state_dict()
        for key in want:
            torch.testing.assert_close(
                ranks[0][name][key], want[key], rtol=1e-5, atol=1e-6, msg=lambda m: f"{name} {key}: {m}"
            )
        for got, ref in zip(ranks[0][name, "gramians"], infos):
            if ref.gramian is not None:
                torch.testing.assert_close(got, ref.gramian, rtol=1e-5, atol=1e-9)
