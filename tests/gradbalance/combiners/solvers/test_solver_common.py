"""The helpers every ``T×T`` solver runs through: the per-segment and batched dispatch over
non-zero rows, the two-task closed forms' fallback, and the small solves that survive singular
systems."""

import numpy as np
import pytest
import torch

from gradbalance.combiners._solvers import (
    _common,
    batched_nonzero_row_weights,
    nonzero_row_weights,
    solve_small,
    stacked_solve,
    with_two_task_form,
)


def _recording(calls):
    """A solver that records the matrices it is given and weights row ``t`` by ``t + 1``."""

    def solve(K):
        calls.append(K.copy())
        return np.arange(1.0, len(K) + 1)

    return solve


def test_zero_rows_sit_out_and_a_segment_without_rows_is_never_solved():
    K = torch.zeros(3, 3, 3, dtype=torch.float64)
    K[0] = torch.eye(3, dtype=torch.float64) * 4  # every row non-zero
    K[1, 0, 0], K[1, 2, 2], K[1, 0, 2], K[1, 2, 0] = 1.0, 9.0, 2.0, 2.0  # row 1 zero
    calls = []
    weights = nonzero_row_weights(K, _recording(calls))
    assert weights.dtype == torch.float64
    assert weights.tolist() == [[1.0, 2.0, 3.0], [1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]
    assert len(calls) == 2  # segment 2 has no non-zero row
    np.testing.assert_array_equal(calls[1], [[1.0, 2.0], [2.0, 9.0]])  # rows 0 and 2 only


def test_two_tasks_go_to_the_closed_form_and_what_it_leaves_to_the_solver():
    K = torch.eye(2, dtype=torch.float64).repeat(3, 1, 1)
    K[2, 1, 1] = 0.0  # a zero row: left to the solver, which sees row 0 alone

    def closed_form(K):
        return np.full((len(K), 2), 7.0), np.array([True, True, False])

    calls = []
    weights = with_two_task_form(K, closed_form, _recording(calls))
    assert weights.tolist() == [[7.0, 7.0], [7.0, 7.0], [1.0, 0.0]]
    assert [c.tolist() for c in calls] == [[[1.0]]]


def test_other_task_counts_never_reach_the_closed_form():
    def closed_form(K):
        raise AssertionError("the closed form is for two tasks")

    calls = []
    weights = with_two_task_form(torch.eye(3, dtype=torch.float64)[None], closed_form, _recording(calls))
    assert weights.tolist() == [[1.0, 2.0, 3.0]] and len(calls) == 1


def test_a_singular_system_is_solved_by_least_squares():
    system = np.array([[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.solve(system, np.array([2.0, 2.0]))
    np.testing.assert_allclose(solve_small(system, np.array([2.0, 2.0])), [1.0, 1.0])  # least norm
    regular = np.array([[2.0, 1.0], [1.0, 3.0]])
    np.testing.assert_array_equal(
        solve_small(regular, np.array([3.0, 4.0])), np.linalg.solve(regular, [3.0, 4.0])
    )


def _recording_batched(calls):
    """A batched solver that records the stacks it is given and weights row ``t`` by ``t + 1``."""

    def solve(K):
        calls.append(K.copy())
        return np.tile(np.arange(1.0, K.shape[1] + 1), (len(K), 1))

    return solve


def test_segments_sharing_their_rows_are_solved_in_one_call():
    K = (
        torch.eye(3, dtype=torch.float64).repeat(5, 1, 1)
        * torch.arange(1.0, 6.0, dtype=torch.float64)[:, None, None]
    )
    K[1, 1, 1] = K[3, 1, 1] = 0.0  # row 1 sits out segments 1 and 3
    K[4] = 0.0  # no row at all
    calls = []
    weights = batched_nonzero_row_weights(K, _recording_batched(calls))
    assert weights.tolist() == [[1.0, 2.0, 3.0], [1.0, 0.0, 2.0], [1.0, 2.0, 3.0], [1.0, 0.0, 2.0], [0.0] * 3]
    assert sorted(c.shape for c in calls) == [(2, 2, 2), (2, 3, 3)]
    rows_0_and_2 = next(c for c in calls if c.shape == (2, 2, 2))
    np.testing.assert_array_equal(rows_0_and_2, [np.diag([2.0, 2.0]), np.diag([4.0, 4.0])])
    everywhere = []
    batched_nonzero_row_weights(K[[0, 2]], _recording_batched(everywhere))
    assert [c.shape for c in everywhere] == [(2, 3, 3)]  # every row non-zero: one call on the whole stack


def test_two_tasks_with_a_batched_solver_for_the_rest():
    K = torch.eye(2, dtype=torch.float64).repeat(3, 1, 1)
    K[2, 1, 1] = 0.0

    def closed_form(K):
        return np.full((len(K), 2), 7.0), np.array([True, True, False])

    calls = []
    weights = with_two_task_form(K, closed_form, _recording_batched(calls), batched_nonzero_row_weights)
    assert weights.tolist() == [[7.0, 7.0], [7.0, 7.0], [1.0, 0.0]]
    assert [c.tolist() for c in calls] == [[[[1.0]]]]


@pytest.mark.parametrize("lapack", [True, False], ids=["gufunc", "wrapper"])
def test_a_singular_system_in_a_stack_gets_nan_alone(monkeypatch, lapack):
    if not lapack:  # a numpy without the gufunc: np.linalg.solve, system by system on failure
        monkeypatch.setattr(_common, "_LAPACK_SOLVE", None)
    system = np.array([[[2.0, 1.0], [1.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]], [[4.0, 0.0], [0.0, 0.5]]])
    rhs = np.array([[3.0, 4.0], [2.0, 2.0], [1.0, 1.0]])
    with np.errstate(invalid="ignore"):
        x = stacked_solve(system, rhs)
    assert np.isnan(x[1]).all()
    for i in (0, 2):
        np.testing.assert_allclose(x[i], np.linalg.solve(system[i], rhs[i]), rtol=1e-15)
