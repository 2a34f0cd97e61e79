"""Each of a few unit rows projected onto their dual cone by support enumeration: every
passive set's equality solution from one batched inverse, then the optimality test picks the
one that is optimal (UPGrad's projections for a handful of tasks).

For a few rows this costs fewer numpy calls than Lawson & Hanson's active-set walk
(:func:`cone_multipliers`), whose steps are each a batched solve plus the bookkeeping around
it, and the cost is that of one step. It settles a problem only where the answer is
unambiguous, and leaves the rest (a row whose test passes on two passive sets, nearly
dependent rows) to the walk.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

# A passive set's rows count as independent while every diagonal entry of the inverse of their
# cosine matrix, 1 / (1 − R_j²) with R_j the multiple correlation of row j with the others,
# is at most this (for two rows, 1 / (1 − s²) with s their cosine); the condition number is
# then below m² times it, so the solution is good to ~1e-12 relative. Beyond it the problem
# goes to the walk, which handles dependent rows.
_MOST_INFLATED = 1e3


@functools.cache
def _supports(m: int) -> tuple[np.ndarray, ...]:
    """For the proper subsets ``P`` of ``range(m)``, ``2^m − 1`` of them (read-only, cached):
    the masks of ``P × P`` off the diagonal ``[2^m − 1, m, m]``, the masks as a column
    ``[2^m − 1, m, 1]`` and minus them (floats), the least value each row's test accepts (the
    least positive float on ``P``, 0 off it), and the identity."""
    masks = (np.arange(2**m - 1)[:, None] >> np.arange(m)) & 1 == 1
    column = masks[:, :, None]
    arrays = (
        column & masks[:, None, :] & ~np.eye(m, dtype=bool),
        column,
        -1.0 * column,
        np.where(column, np.nextafter(0.0, 1.0), 0.0),
        np.eye(m),
    )
    for array in arrays:
        array.flags.writeable = False
    return arrays


def unit_projection_multipliers(cos: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For cosine matrices ``C = cos [N, m, m]`` (unit diagonal, taken as exactly 1; a zero row
    is a row and column of the identity), ``v [N, m, m]`` whose column ``i`` is ``v ≥ 0``
    minimizing ``½ vᵀCv + vᵀC e_i``: ``ĝ_i + Σ_k v_k ĝ_k`` is the projection of the unit row
    ``ĝ_i`` onto the dual cone ``{y : ĝ_j · y ≥ 0 for every j}``. Also which problems ``[N]``
    it settled; the others' columns are not meaningful.

    The programs and optimality test of :func:`cone_multipliers` (Lawson & Hanson's KKT
    conditions), solved by trying every passive set ``P``: on ``P``,
    ``v_P = −C_PP⁻¹ C_{P,i}`` and ``v = 0`` off ``P``; it is optimal when ``v_P > 0`` and
    every constraint off ``P`` is met down to ``−tolerance · (1 + Σ_k v_k)``, the rounding
    of ``ĝ_j · y`` from the cosines. A set holding ``i`` never passes (``v_i = −1``), so the
    full set is left out. A problem is settled when, for every ``i``, exactly one passive set
    passes, and every passive set's rows are independent.
    """
    m = cos.shape[1]
    off_pairs, rows, minus_rows, least, eye = _supports(m)
    off = cos[:, None] * off_pairs  # [N, P, m, m]: C_PP off its diagonal, 0 elsewhere
    rhs = cos[:, None] * minus_rows  # −C_{P,i}, 0 off P
    if m <= 3:
        # Passive sets of at most two rows: C_PP = I + O with O = [[0, s], [s, 0]], whose
        # inverse is (I − O) / (1 − s²), and 1 − s² = 1 − Σ O² / 2 is the determinant (clipped
        # where the rows are too dependent to settle: no division by zero).
        determinant = 1.0 - 0.5 * np.einsum("npij,npij->np", off, off)
        independent = (determinant >= 1.0 / _MOST_INFLATED).all(1)
        v = (rhs - off @ rhs) / np.fmax(determinant, 1.0 / _MOST_INFLATED)[:, :, None, None]
    else:
        inverse = _inverses(off + eye)  # [N, P, m, m]: C_PP bordered by the identity
        v = inverse @ rhs
        independent = (inverse.diagonal(0, 2, 3) <= _MOST_INFLATED).all((1, 2))
    # (C + tolerance) (e_i + v) = C (e_i + v) + tolerance · (1 + Σ_k v_k): constraints plus slack.
    slackened = (cos + tolerance)[:, None] @ (v + eye)  # [N, P, k, i]
    passing = (np.where(rows, v, slackened) >= least).all(2)  # [N, P, i]
    settled = (passing.sum(1) == 1).all(1) & independent
    return np.einsum("npki,npi->nki", v, passing), settled


def _inverses(systems: np.ndarray) -> np.ndarray:
    """The inverses of ``systems [N, ...]``, in one batch unless some problem's are singular
    (exactly dependent rows: a one-column segment, say); then problem by problem, NaN for a
    problem with a singular one (it fails every test, and goes to the walk)."""
    try:
        return np.linalg.inv(systems)
    except np.linalg.LinAlgError:
        out = np.full(systems.shape, np.nan)
        for n, problem in enumerate(systems):
            with contextlib.suppress(np.linalg.LinAlgError):
                out[n] = np.linalg.inv(problem)
        return out
