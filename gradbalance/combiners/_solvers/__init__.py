"""The ``T×T`` solvers shared between combiners, between the two memory passes.

Everything here works on float64 numpy Gramians (torch's per-op dispatch would cost more than
the arithmetic on such arrays); each combiner module keeps only its weighting and imports its
solvers from here, never from a sibling combiner. One module per problem:

- ``_common``: a solver run over each segment's non-zero rows (or over the segments sharing
  them, batched), the batched closed forms' dispatch, the small linear solves, and a batched
  inverse that survives a singular member;
- ``_min_norm``: the min-norm point of the convex hull (MGDA; the Pareto-stationarity test of
  FairGrad and Nash-MTL);
- ``_cone``: projection onto the dual cone (UPGrad's projections, CAGrad's nearest optimal
  direction), by Lawson & Hanson's active-set walk;
- ``_cone_supports``: the same projections of unit rows by trying passive sets, every one at
  once for a few rows, a few rounds of guesses for more (UPGrad's), and in Python floats for
  one small problem;
- ``_fair``: the α-fair allocation (FairGrad; Nash-MTL at ``α = 1``), one segment;
  ``_fair_batched`` the same for every segment at once, ``_fair_small`` its steps in Python
  floats for one segment of a few tasks;
- ``_small``: one small segment in Python floats: its dispatch, and the elimination the
  Python-float steps share.
"""

from ._common import (
    batched_inverse,
    batched_nonzero_row_weights,
    nonzero_row_weights,
    solve_small,
    stacked_solve,
    with_closed_form,
    with_two_task_form,
)
from ._cone import cone_multipliers
from ._cone_supports import (
    MOST_ENUMERATED_ROWS,
    guessed_unit_projection_multipliers,
    small_unit_projection_multipliers,
    unit_projection_multipliers,
)
from ._fair import fair_weights, two_task_bargaining_weights
from ._fair_batched import batched_fair_weights
from ._min_norm import (
    batched_min_norm_weights,
    min_norm_weights,
    small_min_norm_weights,
    two_task_min_norm_weights,
)
from ._small import SMALL_TASKS, as_weights, positive_definite_solve, small_gramian

__all__ = [
    "MOST_ENUMERATED_ROWS",
    "SMALL_TASKS",
    "as_weights",
    "batched_fair_weights",
    "batched_inverse",
    "positive_definite_solve",
    "small_gramian",
    "small_min_norm_weights",
    "small_unit_projection_multipliers",
    "batched_min_norm_weights",
    "batched_nonzero_row_weights",
    "cone_multipliers",
    "fair_weights",
    "guessed_unit_projection_multipliers",
    "min_norm_weights",
    "nonzero_row_weights",
    "solve_small",
    "stacked_solve",
    "two_task_bargaining_weights",
    "two_task_min_norm_weights",
    "unit_projection_multipliers",
    "with_closed_form",
    "with_two_task_form",
]
