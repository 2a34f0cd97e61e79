"""The helpers every ``T×T`` solver runs through: the per-segment dispatch over non-zero rows,
the two-task closed forms' fallback, and the small solve that survives singular systems."""

import numpy as np
import pytest
import torch

from gradbalance.combiners._solvers import nonzero_row_weights, solve_small, with_two_task_form


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
