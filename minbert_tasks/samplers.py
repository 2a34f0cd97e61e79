"""Task samplers: which tasks contribute a batch to each training step of an epoch.

Protocol
--------
A sampler turns the task list and ``(epoch, seed)`` into an epoch *plan*: a list of steps, each
step a dict mapping the name of every task that contributes a batch to that step to the example
indices (``int64`` array, indices into that task's dataset) of its batch::

    plan = RoundRobinSampler(align_to="sst").plan(tasks, epoch=3, seed=11)
    for step, batches in enumerate(plan[resume_step:], start=resume_step):
        for task, indices in batches.items(): ...

The plan is a pure function of ``(sampler options, tasks, epoch, seed)``: no global RNG, no
hidden state. Resuming mid-epoch therefore needs only the integer ``(epoch, step)`` position —
rebuild the plan and skip the consumed steps (``plan[step:]``). Data order inside each task is
part of the plan, so it is reproducible and resumable too. A sampler is looked up by name with
:func:`minbert_tasks.plugins.get_sampler` (the built-ins and any plugin).

Randomness comes from ``numpy.random.SeedSequence([seed, epoch, <stable hash of a purpose and a
task name>])``: each task's shuffles depend only on ``(seed, epoch, task name)``, not on which
other tasks are present. Different epochs get independent shuffles.

Length grouping: a :class:`TaskData` may carry per-example token counts (``lengths``); every
pass of that task is then shuffled, cut into windows of :data:`GROUP_WINDOW_BATCHES` batches,
sorted by length inside each window and batched, and the batches of the pass are shuffled. Each
batch then pads to nearly its own length (on the CS224N training files random batches of 32
pad to 2.0-2.5× their real tokens, grouped ones to 1.03-1.05×), and every example is still seen
once per pass. Without ``lengths`` the plans are exactly the ungrouped ones.

Batching: a task of ``size`` examples and ``batch_size`` yields ``ceil(size / batch_size)``
batches per pass over a fresh permutation; the last batch of a pass may be smaller (it is not
dropped, so that a pass covers every example exactly once). A *cycled* task whose pass is used
up starts another pass (a new permutation, or the same one for :class:`RecyclingSampler`), like
restarting an exhausted ``DataLoader`` iterator.

Built-ins (``BUILTIN_SAMPLERS``, keyed by each class's ``name``):

=================  ==========================================================================
``sequential``     one task's whole shuffled epoch, then the next; one task per step.
``round_robin``    every step has a batch of every task; epoch aligned to one task's length.
``recycling``      every step has a batch of every task; epoch = largest task; smaller tasks
                   repeat the same order.
``random_subset``  a fresh random subset of one big task per epoch, then round-robin.
``proportional``   one task per step, drawn in proportion to its batches; exact coverage.
``temperature``    one task per step, drawn i.i.d. with probability ∝ batches^(1/T).
=================  ==========================================================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BUILTIN_SAMPLERS",
    "GROUP_WINDOW_BATCHES",
    "Plan",
    "ProportionalSampler",
    "RandomSubsetSampler",
    "RecyclingSampler",
    "RoundRobinSampler",
    "Sampler",
    "SequentialSampler",
    "Step",
    "TaskData",
    "TemperatureSampler",
]

Indices = NDArray[np.int64]
#: One training step: task name -> example indices of that task's batch.
Step = dict[str, Indices]
#: One epoch: the steps in order.
Plan = list[Step]


def _positive_int(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen
class TaskData:
    """A task as the sampler sees it: a name, a dataset size (examples) and a batch size."""

    name: str = attrs.field()
    size: int = attrs.field(validator=_positive_int)
    batch_size: int = attrs.field(validator=_positive_int)
    #: Optional per-example token counts; when given, batches are grouped by length.
    lengths: Indices | None = attrs.field(default=None, eq=False, repr=False)

    @lengths.validator
    def _check_lengths(self, _attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        if not isinstance(value, np.ndarray) or value.ndim != 1 or len(value) != self.size:
            raise ValueError(
                f"task {self.name!r}: lengths must be a 1-D array of {self.size} token counts "
                f"(one per example), got {getattr(value, 'shape', type(value).__name__)}"
            )

    @name.validator
    def _check_name(self, _attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"task name must be a non-empty string, got {value!r}")

    @property
    def num_batches(self) -> int:
        """Batches in one pass over the task (the last one may be partial)."""
        return -(-int(self.size) // int(self.batch_size))


@runtime_checkable
class Sampler(Protocol):
    """Anything with a registry ``name`` and a pure ``plan`` method."""

    name: ClassVar[str]

    def plan(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Plan:
        """Steps of ``epoch``; a pure function of (options, tasks, epoch, seed)."""
        ...


# --------------------------------------------------------------------------- plumbing


def _stable_key(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _rng(seed: int, epoch: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, _stable_key(*parts)]))


def _check_args(tasks: Sequence[TaskData], epoch: int, seed: int) -> list[TaskData]:
    for what, value in (("epoch", epoch), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("no tasks to sample from")
    for t in tasks:
        if not isinstance(t, TaskData):
            raise TypeError(f"tasks must be TaskData, got {type(t).__name__}")
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate task names: {', '.join(dupes)}")
    return tasks


def _find(tasks: Sequence[TaskData], name: str) -> TaskData:
    for t in tasks:
        if t.name == name:
            return t
    raise ValueError(f"unknown task {name!r}; tasks are {', '.join(t.name for t in tasks)}")


def _split(order: Indices, batch_size: int) -> list[Indices]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


#: Length grouping sorts windows of this many batches of a shuffled pass by length.
GROUP_WINDOW_BATCHES = 50


def _one_pass(
    pool: Indices, batch_size: int, rng: np.random.Generator, lengths: Indices | None
) -> list[Indices]:
    order = pool[rng.permutation(len(pool))]
    if lengths is None:
        return _split(order, batch_size)
    # Length grouping: sort each window of the shuffled pass by length (longest first, ties in
    # shuffled order), cut it into batches, then shuffle the batches of the whole pass. Batches
    # hold similar lengths, so little padding, while which examples meet stays random.
    window = GROUP_WINDOW_BATCHES * batch_size
    batches: list[Indices] = []
    for start in range(0, len(order), window):
        part = order[start : start + window]
        batches.extend(_split(part[np.argsort(-lengths[part], kind="stable")], batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _batches(
    pool: Indices,
    batch_size: int,
    count: int,
    rng: np.random.Generator,
    reshuffle: bool = True,
    lengths: Indices | None = None,
) -> list[Indices]:
    """``count`` batches over successive passes through ``pool``.

    Each pass is a permutation of ``pool`` cut into batches (the last one possibly partial);
    when a pass is used up the next starts, with a fresh permutation (``reshuffle``) or the same
    one again. The first pass is the same whatever ``count`` is. With ``lengths`` (token counts
    indexed like the dataset) each pass is grouped by length (see :data:`GROUP_WINDOW_BATCHES`).
    """
    out: list[Indices] = []
    one_pass: list[Indices] = []
    while len(out) < count:
        if reshuffle or not one_pass:
            one_pass = _one_pass(pool, batch_size, rng, lengths)
        out.extend(one_pass[: count - len(out)])
    return out


def _task_batches(task: TaskData, count: int, epoch: int, seed: int, reshuffle: bool = True) -> list[Indices]:
    rng = _rng(seed, epoch, "shuffle", task.name)
    pool = np.arange(task.size, dtype=np.int64)
    return _batches(pool, task.batch_size, count, rng, reshuffle, task.lengths)


def _align(tasks: Sequence[TaskData], align_to: str) -> int:
    if align_to == "max":
        return max(t.num_batches for t in tasks)
    if align_to == "min":
        return min(t.num_batches for t in tasks)
    return _find(tasks, align_to).num_batches


def _zip_steps(names: Sequence[str], streams: Sequence[list[Indices]]) -> Plan:
    return [dict(zip(names, batches)) for batches in zip(*streams)]


def _check_align(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"align_to must be 'max', 'min' or a task name, got {value!r}")


# --------------------------------------------------------------------------- built-ins


@attrs.frozen
class SequentialSampler:
    """Each task's whole shuffled epoch, one task after another (one task per step).

    ``order`` lists the task names in training order (every task exactly once); by default the
    order of ``tasks``. Every example of every task appears exactly once per epoch. This is the
    seeds' "sequential" baseline within an epoch.
    """

    name: ClassVar[str] = "sequential"
    order: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))

    @order.validator
    def _check_order(self, _attribute: attrs.Attribute[Any], value: tuple[str, ...] | None) -> None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"order must list distinct task names, got {value!r}")

    def _ordered(self, tasks: Sequence[TaskData]) -> list[TaskData]:
        if self.order is None:
            return list(tasks)
        if sorted(self.order) != sorted(t.name for t in tasks):
            raise ValueError(
                f"order {list(self.order)} must name each task exactly once: {[t.name for t in tasks]}"
            )
        return [_find(tasks, n) for n in self.order]

    def num_steps(self, tasks: Sequence[TaskData]) -> int:
        return sum(t.num_batches for t in tasks)

    def plan(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Plan:
        tasks = _check_args(tasks, epoch, seed)
        return [
            {t.name: batch}
            for t in self._ordered(tasks)
            for batch in _task_batches(t, t.num_batches, epoch, seed)
        ]


@attrs.frozen
class RoundRobinSampler:
    """Every step has one batch of every task; the epoch has ``L`` steps.

    ``L`` is the number of batches of ``align_to``: a task name, ``"max"`` (the largest task) or
    ``"min"`` (the smallest). A task with fewer batches than ``L`` cycles — reshuffled each time
    it is exhausted, like a ``CyclingIterator``; a task with more is cut after ``L`` batches of
    its shuffled pass (a different random part each epoch). The aligned task is covered exactly
    once per epoch.
    """

    name: ClassVar[str] = "round_robin"
    align_to: str = attrs.field(default="max", validator=_check_align)

    def num_steps(self, tasks: Sequence[TaskData]) -> int:
        return _align(tasks, self.align_to)

    def plan(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Plan:
        tasks = _check_args(tasks, epoch, seed)
        steps = _align(tasks, self.align_to)
        streams = [_task_batches(t, steps, epoch, seed) for t in tasks]
        return _zip_steps([t.name for t in tasks], streams)


@attrs.frozen
class RecyclingSampler:
    """Simple recycling: every step has a batch of every task; epoch = the largest task.

    The largest task (most batches) is covered exactly once; a smaller task is shuffled once per
    epoch and, when exhausted, repeats from its start in the same order (unlike
    :class:`RoundRobinSampler`, which reshuffles).
    """

    name: ClassVar[str] = "recycling"

    def num_steps(self, tasks: Sequence[TaskData]) -> int:
        return max(t.num_batches for t in tasks)

    def plan(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Plan:
        tasks = _check_args(tasks, epoch, seed)
        steps = self.num_steps(tasks)
        streams = [_task_batches(t, steps, epoch, seed, reshuffle=False) for t in tasks]
        return _zip_steps([t.name for t in tasks], streams)


@attrs.frozen
class RandomSubsetSampler:
    """Random subset sampling (RSS): a fresh subset of one big task each epoch, then round-robin.

    Each epoch draws ``subset_size`` distinct examples of ``task`` (independently per epoch) and
    batches them with ``batch_size`` (default: the task's own). The other tasks are used in full.
    Steps then go round-robin as in :class:`RoundRobinSampler` with ``align_to`` (the subset
    task counts with its subset's batches); tasks shorter than the epoch cycle within their own
    pool (the subset, for ``task``). With the default ``align_to="max"`` every drawn subset
    example and every example of the largest task appears exactly once.
    """

    name: ClassVar[str] = "random_subset"
    task: str = attrs.field()
    subset_size: int = attrs.field(validator=_positive_int)
    batch_size: int | None = attrs.field(default=None, validator=attrs.validators.optional(_positive_int))
    align_to: str = attrs.field(default="max", validator=_check_align)

    @task.validator
    def _check_task(self, _attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"task must be a task name, got {value!r}")

    def _effective(self, tasks: Sequence[TaskData]) -> list[TaskData]:
        big = _find(tasks, self.task)
        if self.subset_size > big.size:
            raise ValueError(
                f"subset_size {self.subset_size} exceeds the {big.size} examples of {big.name!r}"
            )
        small = TaskData(big.name, self.subset_size, self.batch_size or big.batch_size)
        return [small if t.name == self.task else t for t in tasks]

    def subset(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Indices:
        """The example indices of ``task`` used in ``epoch`` (sorted)."""
        tasks = _check_args(tasks, epoch, seed)
        big = _find(tasks, self.task)
        self._effective(tasks)
        rng = _rng(seed, epoch, "subset", big.name)
        return np.sort(rng.choice(big.size, size=self.subset_size, replace=False)).astype(np.int64)

    def num_steps(self, tasks: Sequence[TaskData]) -> int:
        return _align(self._effective(tasks), self.align_to)

    def plan(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Plan:
        tasks = _check_args(tasks, epoch, seed)
        effective = self._effective(tasks)
        big = _find(tasks, self.task)  # its lengths index the whole dataset, like the subset
        steps = _align(effective, self.align_to)
        streams = []
        for t in effective:
            if t.name == self.task:
                pool = self.subset(tasks, epoch, seed)
                rng = _rng(seed, epoch, "shuffle", t.name)
                streams.append(_batches(pool, t.batch_size, steps, rng, lengths=big.lengths))
            else:
                streams.append(_task_batches(t, steps, epoch, seed))
        return _zip_steps([t.name for t in effective], streams)


@attrs.frozen
class ProportionalSampler:
    """One task per step, chosen with probability proportional to its size; exact coverage.

    The epoch has ``sum(num_batches)`` steps and is a uniformly random interleaving of every
    task's shuffled batches: at each step a task is drawn with probability proportional to its
    *remaining* batches (sampling without replacement), so over the epoch each task gets a
    share of steps ∝ its number of batches (∝ its size when batch sizes are equal) and every
    example appears exactly once. Sizes are counted in batches so that a task with a larger
    batch size does not get more steps than it has data.
    """

    name: ClassVar[str] = "proportional"

    def num_steps(self, tasks: Sequence[TaskData]) -> int:
        return sum(t.num_batches for t in tasks)

    def plan(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Plan:
        tasks = _check_args(tasks, epoch, seed)
        slots = np.repeat(np.arange(len(tasks)), [t.num_batches for t in tasks])
        choice = slots[_rng(seed, epoch, "interleave").permutation(len(slots))]
        streams = [iter(_task_batches(t, t.num_batches, epoch, seed)) for t in tasks]
        return [{tasks[k].name: next(streams[k])} for k in choice]


def _check_temperature(_inst: object, _attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:  # also refuses nan
        raise ValueError(f"temperature must be > 0, got {value!r}")


@attrs.frozen
class TemperatureSampler:
    """One task per step, drawn i.i.d. with probability ∝ num_batches^(1 / temperature).

    ``temperature=1`` is proportional sampling in expectation, larger values flatten towards
    uniform (``float("inf")`` is uniform), values below 1 favour big tasks. The epoch has
    ``num_steps`` steps (default: the total number of batches of all tasks). Because draws are
    independent there is no exact-coverage promise: each task's batches come from its own
    cycling stream (reshuffled whenever exhausted), so a task drawn fewer times than it has
    batches leaves part of its data out of that epoch.
    """

    name: ClassVar[str] = "temperature"
    temperature: float = attrs.field(default=2.0, converter=float, validator=_check_temperature)
    steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(_positive_int))

    def probabilities(self, tasks: Sequence[TaskData]) -> NDArray[np.float64]:
        """Per-task draw probability, in the order of ``tasks``."""
        sizes = np.array([t.num_batches for t in tasks], dtype=np.float64)
        logits = np.log(sizes) / self.temperature
        weights = np.exp(logits - logits.max())  # stable for huge sizes and small T
        probs: NDArray[np.float64] = weights / weights.sum()
        return probs

    def num_steps(self, tasks: Sequence[TaskData]) -> int:
        return self.steps if self.steps is not None else sum(t.num_batches for t in tasks)

    def plan(self, tasks: Sequence[TaskData], epoch: int, seed: int) -> Plan:
        tasks = _check_args(tasks, epoch, seed)
        n = self.num_steps(tasks)
        choice = _rng(seed, epoch, "draw").choice(len(tasks), size=n, p=self.probabilities(tasks))
        counts = np.bincount(choice, minlength=len(tasks))
        streams = [iter(_task_batches(t, int(c), epoch, seed)) for t, c in zip(tasks, counts)]
        return [{tasks[k].name: next(streams[k])} for k in choice]


BUILTIN_SAMPLERS: Mapping[str, type[Any]] = {
    cls.name: cls
    for cls in (
        SequentialSampler,
        RoundRobinSampler,
        RecyclingSampler,
        RandomSubsetSampler,
        ProportionalSampler,
        TemperatureSampler,
    )
}
