"""The ``T×T`` solvers shared between combiners, between the two memory passes.

Everything here works on float64 numpy Gramians (torch's per-op dispatch would cost more than
the arithmetic on such arrays); each combiner module keeps only its weighting and imports its
solvers from here, never from a sibling combiner. One module per problem:

- ``_common``: a solver run over each segment's non-zero rows (or over the segments sharing
  them, batched), the two-task closed forms' dispatch, and the small linear solves;
- ``_min_norm``: the min-norm point of the convex hull (MGDA; the Pareto-stationarity test of
  FairGrad and Nash-MTL);
- ``_cone``: projection onto the dual cone (UPGrad's projections, CAGrad's nearest optimal
  direction);
- ``_fair``: the α-fair allocation (FairGrad; Nash-MTL at ``α = 1``), one segment;
  ``_fair_batched`` the same for every segment at once, ``_fair_small`` its steps in Python
  floats for one segment of a few tasks;
- ``_small``: one small segment in Python floats: its dispatch, and the elimination the
  Python-float steps share.
"""

from ._common import (
    batched_nonzero_row_weights,
    nonzero_row_weights,
    solve_small,
    stacked_solve,
    with_two_task_form,
)
from ._cone import cone_multipliers
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
    "SMALL_TASKS",
    "as_weights",
    "batched_fair_weights",
    "positive_definite_solve",
    "small_gramian",
    "small_min_norm_weights",
    "batched_min_norm_weights",
    "batched_nonzero_row_weights",
    "cone_multipliers",
    "fair_weights",
    "min_norm_weights",
    "nonzero_row_weights",
    "solve_small",
    "stacked_solve",
    "two_task_bargaining_weights",
    "two_task_min_norm_weights",
    "with_two_task_form",
]
