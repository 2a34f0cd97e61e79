"""The dual-cone projection (UPGrad's programs, CAGrad's nearest optimal direction) from the
Gramian: the optimality (KKT) conditions of the projection it returns."""

import numpy as np
import pytest

from gradbalance.combiners._solvers import cone_multipliers


def _programs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gramians ``[6, 4, 4]`` of four rows in three dimensions (so some rows conflict) and one
    row ``e_i`` to project per program."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((6, 4, 3))
    A[:, 1] = -0.8 * A[:, 0] + 0.2 * A[:, 1]  # a conflicting pair in every program
    return A @ A.transpose(0, 2, 1), np.eye(4)[rng.integers(0, 4, 6)]


def _tiny_slack(v: np.ndarray) -> np.ndarray:
    return np.full(v.shape, 1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_projection_meets_every_constraint_and_is_tight_where_it_pushes(seed):
    K, x = _programs(seed)
    v = cone_multipliers(K, x, _tiny_slack)
    constraints = ((K @ (x + v)[:, :, None])[:, :, 0]) / np.sqrt(np.einsum("nii->ni", K))
    assert (v >= 0).all() and (v > 0).any()  # some row was projected
    assert (constraints >= -1e-9).all()  # g_j · y ≥ 0 for every row j
    np.testing.assert_allclose(constraints[v > 0], 0.0, atol=1e-9)  # tight where v_j > 0
