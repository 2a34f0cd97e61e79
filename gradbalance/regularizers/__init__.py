"""Loss-level SMART regularisers (Jiang et al. 2019, arXiv:1911.03437).

Both pieces are model-agnostic and compose with any gradient combiner: each task's regularised
loss is what fills that task's gradient row.

- :class:`SmoothnessRegularizer` (``"smart"``): adversarial smoothness term λ_s·R_s.
- :class:`BregmanProximalPoint` (``"bregman"``): momentum-teacher proximal term μ·D.
- ℓ_s divergences: :func:`symmetric_kl_softmax`, :func:`symmetric_kl_bernoulli`,
  :func:`squared_error`, looked up by name with :func:`divergence`.
"""

from gradbalance.regularizers._bregman import BregmanProximalPoint
from gradbalance.regularizers._divergence import (
    Divergence,
    DivergenceFn,
    divergence,
    squared_error,
    symmetric_kl_bernoulli,
    symmetric_kl_softmax,
)
from gradbalance.regularizers._smoothness import SmoothnessRegularizer

__all__ = [
    "BregmanProximalPoint",
    "Divergence",
    "DivergenceFn",
    "SmoothnessRegularizer",
    "divergence",
    "squared_error",
    "symmetric_kl_bernoulli",
    "symmetric_kl_softmax",
]
