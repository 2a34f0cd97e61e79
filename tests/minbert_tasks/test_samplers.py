"""Property tests for minbert_tasks.samplers: coverage, determinism, resumability, frequencies."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minbert_tasks import plugins
from minbert_tasks.samplers import (
    BUILTIN_SAMPLERS,
    GROUP_WINDOW_BATCHES,
    Plan,
    ProportionalSampler,
    RandomSubsetSampler,
    RecyclingSampler,
    RoundRobinSampler,
    Sampler,
    SequentialSampler,
    TaskData,
    TemperatureSampler,
)

NAMES = ("sst", "para", "sts", "extra")


@st.composite
def task_lists(draw: st.DrawFn, min_tasks: int = 1, max_size: int = 60) -> list[TaskData]:
    n = draw(st.integers(min_tasks, len(NAMES)))
    names = draw(st.permutations(NAMES))[:n]
    return [TaskData(name, draw(st.integers(1, max_size)), draw(st.integers(1, 8))) for name in names]


seeds = st.integers(0, 2**32 - 1)
epochs = st.integers(0, 1000)
FAST = settings(max_examples=60, deadline=None)


def frozen(plan: Plan) -> list[tuple[tuple[str, tuple[int, ...]], ...]]:
    return [tuple((name, tuple(idx.tolist())) for name, idx in step.items()) for step in plan]


def stream(plan: Plan, name: str) -> list[np.ndarray]:
    return [step[name] for step in plan if name in step]


def step_counts(plan: Plan) -> dict[str, int]:
    """How many steps of ``plan`` each task contributes a batch to."""
    counts: dict[str, int] = {}
    for step in plan:
        for name in step:
            counts[name] = counts.get(name, 0) + 1
    return counts


def assert_passes(task: TaskData, batches: Sequence[np.ndarray], *, complete: bool) -> None:
    """``batches`` are successive passes over ``task``: each pass a permutation cut into
    ``num_batches`` batches; with ``complete`` the stream ends on a pass boundary."""
    nb = task.num_batches
    for start in range(0, len(batches), nb):
        one_pass = batches[start : start + nb]
        for b in one_pass[:-1]:
            assert len(b) == task.batch_size
        flat = np.concatenate(one_pass)
        assert len(np.unique(flat)) == len(flat)
        assert flat.min() >= 0 and flat.max() < task.size
        if len(one_pass) == nb:
            assert sorted(flat.tolist()) == list(range(task.size))
        else:
            assert not complete
    for b in batches:
        assert b.dtype == np.int64 and 1 <= len(b) <= task.batch_size


def all_samplers(tasks: Sequence[TaskData]) -> list[Sampler]:
    biggest = max(tasks, key=lambda t: t.size)
    return [
        SequentialSampler(),
        RoundRobinSampler(),
        RoundRobinSampler(align_to="min"),
        RoundRobinSampler(align_to=tasks[0].name),
        RecyclingSampler(),
        RandomSubsetSampler(task=biggest.name, subset_size=max(1, biggest.size // 2)),
        ProportionalSampler(),
        TemperatureSampler(temperature=3.0),
    ]


# --------------------------------------------------------------------------- registry / protocol


def test_builtin_registry() -> None:
    assert set(BUILTIN_SAMPLERS) == {
        "sequential",
        "round_robin",
        "recycling",
        "random_subset",
        "proportional",
        "temperature",
    }
    for name, cls in BUILTIN_SAMPLERS.items():
        assert cls.name == name
    # A run builds its samplers by name through the plugin registry, options checked by the class.
    assert isinstance(plugins.get_sampler("round_robin")(align_to="sst"), RoundRobinSampler)
    assert plugins.get_sampler("temperature")(temperature=5).temperature == 5.0
    with pytest.raises(plugins.UnknownPluginError, match="no sampler named 'nope'.*proportional"):
        plugins.get_sampler("nope")
    with pytest.raises(TypeError):
        plugins.get_sampler("recycling")(bogus=1)
    sampler = plugins.get_sampler("random_subset")(task="para", subset_size=10)
    assert isinstance(sampler, Sampler)
    assert "subset_size=10" in repr(sampler)


@pytest.mark.parametrize(
    "build",
    [
        lambda: TaskData("", 3, 1),
        lambda: TaskData("a", 0, 1),
        lambda: TaskData("a", 3, 0),
        lambda: TaskData("a", 2.5, 1),
        lambda: TaskData("a", True, 1),
        lambda: SequentialSampler(order=()),
        lambda: SequentialSampler(order=("a", "a")),
        lambda: RoundRobinSampler(align_to=""),
        lambda: RandomSubsetSampler(task="para", subset_size=0),
        lambda: RandomSubsetSampler(task="para", subset_size=5, batch_size=0),
        lambda: RandomSubsetSampler(task="", subset_size=5),
        lambda: TemperatureSampler(temperature=0.0),
        lambda: TemperatureSampler(temperature=-1.0),
        lambda: TemperatureSampler(temperature=float("nan")),
        lambda: TemperatureSampler(steps=0),
    ],
)
def test_options_validated_at_construction(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_plan_time_errors() -> None:
    tasks = [TaskData("a", 10, 2), TaskData("b", 5, 2)]
    with pytest.raises(ValueError, match="unknown task 'c'"):
        RoundRobinSampler(align_to="c").plan(tasks, 0, 0)
    with pytest.raises(ValueError, match="exactly once"):
        SequentialSampler(order=("a",)).plan(tasks, 0, 0)
    with pytest.raises(ValueError, match="exceeds the 10 examples"):
        RandomSubsetSampler(task="a", subset_size=11).plan(tasks, 0, 0)
    with pytest.raises(ValueError, match="unknown task"):
        RandomSubsetSampler(task="z", subset_size=1).plan(tasks, 0, 0)
    with pytest.raises(ValueError, match="duplicate task names: a"):
        ProportionalSampler().plan([*tasks, TaskData("a", 3, 1)], 0, 0)
    with pytest.raises(ValueError, match="no tasks"):
        ProportionalSampler().plan([], 0, 0)
    with pytest.raises(ValueError, match="seed"):
        ProportionalSampler().plan(tasks, 0, -1)
    with pytest.raises(ValueError, match="epoch"):
        ProportionalSampler().plan(tasks, -1, 0)


def test_num_batches() -> None:
    assert TaskData("a", 10, 3).num_batches == 4
    assert TaskData("a", 9, 3).num_batches == 3
    assert TaskData("a", 1, 64).num_batches == 1


# --------------------------------------------------------------------------- shared properties


@FAST
@given(task_lists(), seeds, epochs)
def test_deterministic(tasks: list[TaskData], seed: int, epoch: int) -> None:
    for sampler in all_samplers(tasks):
        plan = sampler.plan(tasks, epoch, seed)
        assert frozen(plan) == frozen(sampler.plan(list(tasks), epoch, seed))
        assert len(plan) == sampler.num_steps(tasks)  # type: ignore[attr-defined]
        for step in plan:
            assert step and set(step) <= {t.name for t in tasks}


def stop_and_resume(
    sampler: Sampler, tasks: list[TaskData], seed: int, epochs: int, stop: tuple[int, int]
) -> Plan:
    """What a run that is killed after step ``stop[1]`` of epoch ``stop[0]`` trains on: the
    steps so far from ``sampler``, then, after the process's global RNGs have moved on, the
    rest from a new sampler built from the saved name and options, as a resumed run builds it."""
    seen: Plan = []
    for epoch in range(stop[0]):
        seen += sampler.plan(tasks, epoch, seed)
    seen += sampler.plan(tasks, stop[0], seed)[: stop[1]]
    random.seed(seed + 1)  # a new process: global generators in another state
    np.random.seed((seed + 1) % 2**32)
    fresh = plugins.get_sampler(sampler.name)(**attrs.asdict(sampler))
    for epoch in range(stop[0], epochs):
        seen += fresh.plan(tasks, epoch, seed)[stop[1] if epoch == stop[0] else 0 :]
    return seen


def uninterrupted(sampler: Sampler, tasks: list[TaskData], seed: int, epochs: int) -> Plan:
    return [s for epoch in range(epochs) for s in sampler.plan(tasks, epoch, seed)]


@FAST
@given(task_lists(), seeds, st.integers(1, 3), st.data())
def test_a_run_resumed_mid_epoch_sees_the_steps_an_uninterrupted_one_does(
    tasks: list[TaskData], seed: int, epochs: int, data: st.DataObject
) -> None:
    for sampler in all_samplers(tasks):
        stop_epoch = data.draw(st.integers(0, epochs - 1), label="stop epoch")
        stop_step = data.draw(st.integers(0, sampler.num_steps(tasks)), label="stop step")  # type: ignore[attr-defined]
        resumed = stop_and_resume(sampler, tasks, seed, epochs, (stop_epoch, stop_step))
        assert frozen(resumed) == frozen(uninterrupted(sampler, tasks, seed, epochs))


_RESUME_IN_CHILD = """
import json, sys
from minbert_tasks import plugins
from minbert_tasks.samplers import TaskData
cases = json.loads(sys.stdin.read())
out = []
for case in cases:
    tasks = [TaskData(*t) for t in case["tasks"]]
    sampler = plugins.get_sampler(case["name"])(**case["options"])
    epoch, start = case["stop"]
    out.append([{k: v.tolist() for k, v in step.items()}
                for step in sampler.plan(tasks, epoch, case["seed"])[start:]])
print(json.dumps(out))
"""


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_a_resumed_process_plans_the_rest_of_the_epoch_like_the_first_one(hash_seed: str) -> None:
    """Resumption across processes: a child with another string-hash seed plans the rest of an
    interrupted epoch from the sampler's name and options alone (a plan seeded through
    ``hash(str)`` would pass every in-process test and fail here)."""
    rng = random.Random(hash_seed)
    cases, expected = [], []
    for _ in range(6):
        tasks = [
            TaskData(name, rng.randint(1, 40), rng.randint(1, 6))
            for name in rng.sample(NAMES, rng.randint(1, 4))
        ]
        seed, epoch = rng.randrange(2**32), rng.randrange(50)
        for sampler in all_samplers(tasks):
            plan = sampler.plan(tasks, epoch, seed)
            start = rng.randint(0, len(plan))
            cases.append(
                {
                    "tasks": [[t.name, t.size, t.batch_size] for t in tasks],
                    "name": sampler.name,
                    "options": attrs.asdict(sampler),
                    "seed": seed,
                    "stop": [epoch, start],
                }
            )
            expected.append([{k: v.tolist() for k, v in step.items()} for step in plan[start:]])
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": path}
    child = subprocess.run(
        [sys.executable, "-c", _RESUME_IN_CHILD],
        input=json.dumps(cases),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(child.stdout) == expected


@FAST
@given(task_lists(), seeds, epochs)
def test_epochs_and_seeds_differ(tasks: list[TaskData], seed: int, epoch: int) -> None:
    # With >= 12 examples in one task, two independent shuffles coincide with chance < 1/12!.
    tasks = [TaskData(t.name, t.size + 12, t.batch_size) for t in tasks]
    for sampler in all_samplers(tasks):
        plan = frozen(sampler.plan(tasks, epoch, seed))
        assert plan != frozen(sampler.plan(tasks, epoch + 1, seed))
        assert plan != frozen(sampler.plan(tasks, epoch, seed + 1))


@FAST
@given(task_lists(min_tasks=2), seeds, epochs)
def test_task_order_independent_of_other_tasks(tasks: list[TaskData], seed: int, epoch: int) -> None:
    """A task's data order depends on (seed, epoch, its name) only, not on the other tasks."""
    alone = SequentialSampler().plan(tasks[:1], epoch, seed)
    together = SequentialSampler().plan(tasks, epoch, seed)
    name = tasks[0].name
    assert frozen(alone) == frozen([s for s in together if name in s])


# --------------------------------------------------------------------------- per sampler


@FAST
@given(task_lists(), seeds, epochs, st.randoms(use_true_random=False))
def test_sequential_covers_each_example_once_in_order(
    tasks: list[TaskData], seed: int, epoch: int, rnd: object
) -> None:
    order = [t.name for t in tasks]
    rnd.shuffle(order)  # type: ignore[attr-defined]
    plan = SequentialSampler(order=order).plan(tasks, epoch, seed)
    assert all(len(step) == 1 for step in plan)
    assert len(plan) == sum(t.num_batches for t in tasks)
    # Tasks come one after another, in the requested order.
    seen = [next(iter(step)) for step in plan]
    assert [n for i, n in enumerate(seen) if i == 0 or seen[i - 1] != n] == order
    for t in tasks:
        assert_passes(t, stream(plan, t.name), complete=True)
        assert len(stream(plan, t.name)) == t.num_batches


@FAST
@given(task_lists(), seeds, epochs, st.data())
def test_round_robin_step_counts_and_cycling(
    tasks: list[TaskData], seed: int, epoch: int, data: st.DataObject
) -> None:
    align = data.draw(st.sampled_from(["max", "min", *[t.name for t in tasks]]))
    plan = RoundRobinSampler(align_to=align).plan(tasks, epoch, seed)
    nbs = {t.name: t.num_batches for t in tasks}
    expected = {"max": max(nbs.values()), "min": min(nbs.values())}.get(align) or nbs[align]
    assert len(plan) == expected
    for step in plan:
        assert list(step) == [t.name for t in tasks]  # every task, in task order
    for t in tasks:
        batches = stream(plan, t.name)
        if t.num_batches <= len(plan):
            assert_passes(t, batches, complete=len(plan) % t.num_batches == 0)
        else:  # cut short: a part of one pass, no repeats
            flat = np.concatenate(batches)
            assert len(np.unique(flat)) == len(flat) and all(len(b) == t.batch_size for b in batches)
        if align != "min" and (align == "max" or align == t.name) and t.num_batches == len(plan):
            assert sorted(np.concatenate(batches).tolist()) == list(range(t.size))


def test_round_robin_reshuffles_cycled_task() -> None:
    tasks = [TaskData("big", 100, 1), TaskData("small", 10, 1)]
    plan = RoundRobinSampler().plan(tasks, 0, 0)
    small = [int(b[0]) for b in stream(plan, "small")]
    passes = [small[i : i + 10] for i in range(0, 100, 10)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # fresh permutation per pass


@FAST
@given(task_lists(), seeds, epochs)
def test_recycling_repeats_same_order(tasks: list[TaskData], seed: int, epoch: int) -> None:
    plan = RecyclingSampler().plan(tasks, epoch, seed)
    steps = max(t.num_batches for t in tasks)
    assert len(plan) == steps and all(len(s) == len(tasks) for s in plan)
    for t in tasks:
        batches = stream(plan, t.name)
        first = batches[: t.num_batches]
        assert sorted(np.concatenate(first).tolist()) == list(range(t.size))
        for i, b in enumerate(batches):
            np.testing.assert_array_equal(b, first[i % t.num_batches])


@FAST
@given(task_lists(min_tasks=2, max_size=40), seeds, epochs, st.data())
def test_random_subset(tasks: list[TaskData], seed: int, epoch: int, data: st.DataObject) -> None:
    big = data.draw(st.sampled_from(tasks))
    subset_size = data.draw(st.integers(1, big.size))
    batch_size = data.draw(st.none() | st.integers(1, 8))
    sampler = RandomSubsetSampler(task=big.name, subset_size=subset_size, batch_size=batch_size)
    subset = sampler.subset(tasks, epoch, seed)
    assert len(subset) == subset_size == len(np.unique(subset))
    assert subset.min() >= 0 and subset.max() < big.size
    plan = sampler.plan(tasks, epoch, seed)
    bs = batch_size or big.batch_size
    sub_batches = -(-subset_size // bs)
    others = [t.num_batches for t in tasks if t.name != big.name]
    assert len(plan) == max(sub_batches, *others)
    big_batches = stream(plan, big.name)
    assert all(len(b) <= bs for b in big_batches)
    used = np.concatenate(big_batches)
    assert set(used.tolist()) == set(subset.tolist())  # the whole subset, nothing else
    if len(plan) == sub_batches:  # the subset task is the longest: each example exactly once
        assert len(used) == subset_size
    for t in tasks:
        if t.name != big.name and t.num_batches == len(plan):
            assert sorted(np.concatenate(stream(plan, t.name)).tolist()) == list(range(t.size))


def test_random_subset_fresh_per_epoch() -> None:
    tasks = [TaskData("para", 1000, 16), TaskData("sst", 80, 16)]
    sampler = RandomSubsetSampler(task="para", subset_size=100, batch_size=10)
    subsets = [set(sampler.subset(tasks, e, 7).tolist()) for e in range(5)]
    assert all(len(s) == 100 for s in subsets)
    # Independent 10% subsets overlap in about 10 examples, never entirely.
    for i in range(5):
        for j in range(i + 1, 5):
            assert len(subsets[i] & subsets[j]) < 40
    assert set(sampler.subset(tasks, 3, 7).tolist()) == subsets[3]  # pure in (seed, epoch)
    assert set(sampler.subset(tasks, 3, 8).tolist()) != subsets[3]
    plan = sampler.plan(tasks, 0, 7)
    assert len(plan) == 10 and all(len(s["para"]) == 10 for s in plan)


@FAST
@given(task_lists(), seeds, epochs)
def test_proportional_exact_coverage(tasks: list[TaskData], seed: int, epoch: int) -> None:
    plan = ProportionalSampler().plan(tasks, epoch, seed)
    assert all(len(step) == 1 for step in plan)
    assert step_counts(plan) == {t.name: t.num_batches for t in tasks}
    for t in tasks:
        assert_passes(t, stream(plan, t.name), complete=True)


def test_proportional_frequencies() -> None:
    """Where a task's batches fall is uniform: P(task at step k) = its share of the batches."""
    tasks = [TaskData("a", 10, 1), TaskData("b", 30, 1), TaskData("c", 60, 1)]
    sampler = ProportionalSampler()
    trials = 1500
    firsts = np.zeros(3)
    lasts = np.zeros(3)
    middle = np.zeros(3)
    for seed in range(trials):
        names = [next(iter(s)) for s in sampler.plan(tasks, 0, seed)]
        firsts["abc".index(names[0])] += 1
        lasts["abc".index(names[-1])] += 1
        middle["abc".index(names[50])] += 1
    expected = np.array([0.1, 0.3, 0.6])
    tolerance = 4 * np.sqrt(expected * (1 - expected) / trials)
    for counts in (firsts, lasts, middle):
        assert np.all(np.abs(counts / trials - expected) < tolerance)


def test_temperature_probabilities() -> None:
    tasks = [TaskData("a", 10, 10), TaskData("b", 40, 10)]  # 1 and 4 batches
    np.testing.assert_allclose(TemperatureSampler(1.0).probabilities(tasks), [0.2, 0.8])
    np.testing.assert_allclose(TemperatureSampler(2.0).probabilities(tasks), [1 / 3, 2 / 3])
    np.testing.assert_allclose(TemperatureSampler(math.inf).probabilities(tasks), [0.5, 0.5])
    np.testing.assert_allclose(TemperatureSampler(0.5).probabilities(tasks), [1 / 17, 16 / 17])
    huge = [TaskData("a", 10**9, 1), TaskData("b", 1, 1)]
    assert np.isfinite(TemperatureSampler(0.01).probabilities(huge)).all()


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_temperature_frequencies(temperature: float) -> None:
    tasks = [TaskData("sst", 8544, 32), TaskData("para", 14205, 32), TaskData("sts", 5749, 32)]
    sampler = TemperatureSampler(temperature=temperature, steps=20000)
    plan = sampler.plan(tasks, 4, 123)
    assert len(plan) == 20000 and all(len(s) == 1 for s in plan)
    counts = step_counts(plan)
    p = sampler.probabilities(tasks)
    for t, expected in zip(tasks, p):
        assert abs(counts[t.name] / 20000 - expected) < 4 * math.sqrt(expected * (1 - expected) / 20000)
        # Each task's batches are successive reshuffled passes.
        assert_passes(t, stream(plan, t.name), complete=False)


def test_temperature_default_epoch_length() -> None:
    tasks = [TaskData("a", 30, 4), TaskData("b", 7, 2)]
    plan = TemperatureSampler().plan(tasks, 0, 0)
    assert len(plan) == 8 + 4


# --------------------------------------------------------------------------- length grouping


def with_lengths(task: TaskData, rng: np.random.Generator, high: int = 64) -> TaskData:
    return attrs.evolve(task, lengths=rng.integers(1, high + 1, size=task.size).astype(np.int64))


def padding_ratio(batches: Sequence[np.ndarray], lengths: np.ndarray) -> float:
    """Tokens after padding each batch to its longest member, over the real tokens."""
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return padded / sum(int(lengths[b].sum()) for b in batches)


@FAST
@given(task_lists(min_tasks=2), seeds, epochs)
def test_length_grouping_covers_every_example_once_per_pass(
    tasks: list[TaskData], seed: int, epoch: int
) -> None:
    rng = np.random.default_rng(seed)
    grouped = [with_lengths(t, rng) for t in tasks]
    for sampler in (SequentialSampler(), RoundRobinSampler(align_to="max"), ProportionalSampler()):
        plan = sampler.plan(grouped, epoch, seed)
        assert frozen(plan) == frozen(sampler.plan(grouped, epoch, seed))  # still a pure function
        assert len(plan) == len(sampler.plan(tasks, epoch, seed))  # same shape as ungrouped
        for t in grouped:
            batches = stream(plan, t.name)
            for start in range(0, len(batches), t.num_batches):
                one_pass = batches[start : start + t.num_batches]
                flat = np.concatenate(one_pass)
                assert len(np.unique(flat)) == len(flat) and flat.max() < t.size
                assert sum(len(b) < t.batch_size for b in one_pass) <= 1  # one partial batch at most
                if len(one_pass) == t.num_batches:
                    assert sorted(flat.tolist()) == list(range(t.size))


def test_length_grouping_cuts_padding_and_keeps_batch_order_random() -> None:
    rng = np.random.default_rng(0)
    task = with_lengths(TaskData("sst", 8544, 32), rng)
    plain = RoundRobinSampler().plan([attrs.evolve(task, lengths=None)], 0, 3)
    grouped = RoundRobinSampler().plan([task], 0, 3)
    assert padding_ratio(stream(plain, "sst"), task.lengths) > 1.5
    assert padding_ratio(stream(grouped, "sst"), task.lengths) < 1.1
    # Batches are sorted inside windows only, then shuffled: the position of a batch in the
    # epoch says nothing about its length, and the shuffle differs from epoch to epoch.
    longest = np.array([task.lengths[b].max() for b in stream(grouped, "sst")], dtype=float)
    assert abs(np.corrcoef(np.arange(len(longest)), longest)[0, 1]) < 0.2
    assert frozen(grouped) != frozen(RoundRobinSampler().plan([task], 1, 3))
    assert GROUP_WINDOW_BATCHES * 32 < task.size  # the windows are a real constraint here


def test_length_grouping_of_a_random_subset_uses_the_subset() -> None:
    rng = np.random.default_rng(1)
    big = with_lengths(TaskData("para", 5000, 16), rng)
    sampler = RandomSubsetSampler(task="para", subset_size=1000)
    plan = sampler.plan([big, TaskData("sst", 40, 8)], 2, 5)
    batches = stream(plan, "para")
    assert set(np.concatenate(batches).tolist()) <= set(sampler.subset([big], 2, 5).tolist())
    assert padding_ratio(batches, big.lengths) < 1.1


def test_lengths_must_match_the_task() -> None:
    with pytest.raises(ValueError, match="'sst'.*1-D array of 10 token counts"):
        TaskData("sst", 10, 4, np.ones(9, dtype=np.int64))
    with pytest.raises(ValueError, match="1-D array"):
        TaskData("sst", 10, 4, [1] * 10)  # type: ignore[arg-type]
