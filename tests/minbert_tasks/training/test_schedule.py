"""The schedule alone: phases, plans, step counts, the learning-rate factor and stopping, from a
config and task sizes (no model, no data files)."""

import math

import pytest

from minbert_tasks import plugins
from minbert_tasks.config import PhaseConfig, TaskConfig, TrainConfig
from minbert_tasks.samplers import TaskData
from minbert_tasks.training import Position, Schedule, layer_lr_scale
from minbert_tasks.training._schedule import budget_reason, stop_reason

#: sst 10 examples in batches of 4 (3 batches), para 12 in 2 (6), sts 5 in 5 (1).
TASKS = {"sst": TaskData("sst", 10, 4), "para": TaskData("para", 12, 2), "sts": TaskData("sts", 5, 5)}


def config(**options) -> TrainConfig:
    """A run of the three tasks; by default 2 round-robin epochs of 6 steps."""
    options.setdefault("phases", [PhaseConfig(epochs=2)])
    return TrainConfig(tasks=[TaskConfig(name=name) for name in TASKS], **options)


def never() -> float:
    raise AssertionError("the schedule read the clock")


def test_phases_plan_their_own_tasks_with_their_own_sampler_and_seed():
    phases = [
        PhaseConfig(tasks=("para",), sampler="sequential"),
        PhaseConfig(epochs=2, sampler="round_robin"),
    ]
    schedule = Schedule(config(phases=phases, seed=5), TASKS)
    assert schedule.phase_tasks(0) == ["para"]
    assert schedule.phase_tasks(1) == ["sst", "para", "sts"]  # a phase without tasks trains all
    first = schedule.plan(0, 0)
    assert len(first) == 6 and all(set(step) == {"para"} for step in first)
    expected = plugins.get_sampler("round_robin")().plan(list(TASKS.values()), 1, 5 + 1000)
    got = schedule.plan(1, 1)
    assert [{k: v.tolist() for k, v in s.items()} for s in got] == [
        {k: v.tolist() for k, v in s.items()} for s in expected
    ]
    # A pure function of (seed, phase, epoch): asked again, the same plan; another epoch, another.
    assert [s["para"].tolist() for s in schedule.plan(0, 0)] == [s["para"].tolist() for s in first]
    assert [s["para"].tolist() for s in schedule.plan(0, 1)] != [s["para"].tolist() for s in first]


def test_steps_count_accumulated_groups_over_every_epoch_and_stop_at_max_steps():
    phases = [PhaseConfig(tasks=("sst",), sampler="sequential", epochs=3), PhaseConfig(sampler="round_robin")]
    for accumulation, steps in ((1, [3, 6]), (2, [2, 3]), (4, [1, 2])):
        schedule = Schedule(config(phases=phases, grad_accumulation=accumulation), TASKS)
        assert [schedule.steps_in_phase(k) for k in range(2)] == steps
        assert schedule.total_steps == 3 * steps[0] + steps[1]
    assert Schedule(config(phases=phases, max_steps=4), TASKS).total_steps == 4
    assert Schedule(config(phases=phases, max_steps=100), TASKS).total_steps == 15


def test_a_task_without_training_data_is_refused():
    with pytest.raises(ValueError, match="no training data for task.*sts"):
        Schedule(config(), {k: v for k, v in TASKS.items() if k != "sts"})


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_the_rate_warms_up_linearly_then_decays_to_zero_by_the_last_step(kind):
    schedule = Schedule(config(warmup=0.25, schedule=kind, max_steps=8), TASKS)
    assert schedule.total_steps == 8
    factors = [schedule.lr_factor(step, never) for step in range(9)]
    assert factors[:2] == [0.5, 1.0]  # 2 warmup steps: (step + 1) / 2
    progress = [(step - 2) / 6 for step in range(2, 9)]
    decay = {
        "linear": [1 - p for p in progress],
        "cosine": [0.5 * (1 + math.cos(math.pi * p)) for p in progress],
        "constant": [1.0] * 7,
    }[kind]
    assert factors[2:] == pytest.approx(decay)


def test_a_schedule_fitted_to_the_budget_follows_time_when_it_is_ahead():
    fitted = Schedule(
        config(warmup=0.0, max_steps=10, time_budget_minutes=2, fit_schedule_to_budget=True), TASKS
    )
    assert fitted.lr_factor(5, lambda: 0.0) == pytest.approx(0.5)  # steps ahead
    assert fitted.lr_factor(5, lambda: 0.8 * 120) == pytest.approx(0.2)  # time ahead
    assert fitted.lr_factor(0, lambda: 200.0) == 0.0  # over budget: no further than the end
    # The clock is read only by a fitted, non-deterministic schedule with a budget.
    for options in (
        {"time_budget_minutes": 2},
        {"time_budget_minutes": 2, "fit_schedule_to_budget": True, "deterministic": True},
    ):
        assert Schedule(config(warmup=0.0, max_steps=10, **options), TASKS).lr_factor(
            5, never
        ) == pytest.approx(0.5)


def test_layer_wise_scale_decays_one_factor_per_layer_below_the_top():
    assert layer_lr_scale("encoder.embeddings.word_embeddings.weight", 0.5, 3) == 0.125
    assert [
        layer_lr_scale(f"encoder.encoder.layer.{k}.attention.self.query.weight", 0.5, 3) for k in range(3)
    ] == [0.25, 0.5, 1.0]
    assert layer_lr_scale("encoder.pooler.dense.weight", 0.5, 3) == 1.0
    assert layer_lr_scale("encoder.encoder.layer.0.output.dense.bias", 1.0, 3) == 1.0  # ξ = 1: off


def test_a_run_stops_when_its_phases_steps_or_time_are_spent():
    phases = [PhaseConfig(epochs=2), PhaseConfig(epochs=3)]
    run = config(phases=phases, max_steps=50, time_budget_minutes=1.5)
    assert stop_reason(run, Position(phase=1, epoch=2, step=4, global_step=49), 90.0) is None
    assert stop_reason(run, Position(phase=1, epoch=3), 0.0) == "every phase is done"
    assert stop_reason(run, Position(phase=2), 0.0) == "every phase is done"
    assert stop_reason(run, Position(phase=0, epoch=5), 0.0) is None  # only the last phase's epochs end it
    assert stop_reason(run, Position(global_step=50), 0.0) == "max_steps=50 reached"
    assert stop_reason(run, Position(), 90.5) == "its time budget of 1.5 minutes is spent"
    assert budget_reason(config(), 10**6, 10.0**9) is None  # no limits: only the phases end a run
