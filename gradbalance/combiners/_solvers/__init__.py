"""The ``T×T`` solvers shared between combiners, between the two memory passes.

Everything here works on float64 numpy Gramians (torch's per-op dispatch would cost more than
the arithmetic on such arrays); each combiner module keeps only its weighting and imports its
solvers from here, never from a sibling combiner. One module per problem:

- ``_common``: a solver run over each segment's non-zero rows, the two-task closed forms'
  dispatch, and the small linear solve every solver uses;
- ``_min_norm``: the min-norm point of the convex hull (MGDA; the Pareto-stationarity test of
  FairGrad and Nash-MTL);
- ``_cone``: projection onto the dual cone (UPGrad's projections, CAGrad's nearest optimal
  direction);
- ``_fair``: the α-fair allocation (FairGrad; Nash-MTL at ``α = 1``);
- ``_small``: the dispatch of one small segment to a combiner's Python-float step.
"""

from ._common import nonzero_row_weights, solve_small, with_two_task_form
from ._cone import cone_multipliers
from ._fair import fair_weights, two_task_bargaining_weights
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
    "positive_definite_solve",
    "small_gramian",
    "small_min_norm_weights",
    "batched_min_norm_weights",
    "cone_multipliers",
    "fair_weights",
    "min_norm_weights",
    "nonzero_row_weights",
    "solve_small",
    "two_task_bargaining_weights",
    "two_task_min_norm_weights",
    "with_two_task_form",
]
