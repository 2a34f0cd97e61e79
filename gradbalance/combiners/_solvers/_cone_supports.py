"""Each unit row projected onto the dual cone of all of them by trying passive sets rather
than walking to one (UPGrad's projections): for a few rows every passive set's equality
solution from one batched inverse, the optimality test picking the one that is optimal; for
more, a few rounds of guessed passive sets, each round one batched solve.

Lawson & Hanson's active-set walk (:func:`cone_multipliers`) adds one row per step, each
step a batched solve plus the bookkeeping around it; these cost about one step, or a few.
They settle a problem only where the answer is unambiguous, and leave the rest (a row whose
test passes on two passive sets, or within a margin of failing; nearly dependent rows) to
the walk.
"""

from __future__ import annotations

import functools

import numpy as np

from ._common import batched_inverse

#: The most rows :func:`unit_projection_multipliers` enumerates: every passive set of at most
#: two rows, inverted in closed form. At four the sets' batched inverses cost more than the
#: guesses for many segments (20: 238 against 157 µs).
MOST_ENUMERATED_ROWS = 3
# A passive set's rows count as independent while every diagonal entry of the inverse of their
# cosine matrix, 1 / (1 − R_j²) with R_j the multiple correlation of row j with the others,
# is at most this (for two rows, 1 / (1 − s²) with s their cosine); the condition number is
# then below m² times it, so the solution is good to ~1e-12 relative. Beyond it the problem
# goes to the walk, which handles dependent rows.
_MOST_INFLATED = 1e3
# The guesses (more rows) need the whole cosine matrix this well conditioned: its optimum is
# then unique, every passive set's solution good to ~1e-12, and an optimum that passes the
# test with _MARGIN to spare is the one the walk ends at, on the same passive set.
_MOST_INFLATED_GUESSED = 1e2
_MARGIN = 1e-7
# Rounds of guesses: the rows violated at v = 0, then each round the rows kept with v > 0
# plus those violated. Five settle all but ~1 in 3000 problems of 6 to 10 random rows in 40
# dimensions, and all of 4000 of 8 rows with a conflicting pair in 16 or 64 (three: 1 in 20).
_GUESS_ROUNDS = 5


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
    """For cosine matrices ``C = cos [N, m, m]`` of at most :data:`MOST_ENUMERATED_ROWS` rows (unit diagonal, taken as exactly 1; a zero row
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
    if m > MOST_ENUMERATED_ROWS:
        raise ValueError(
            f"passive sets are enumerated for at most {MOST_ENUMERATED_ROWS} rows, got {m}; "
            "use guessed_unit_projection_multipliers"
        )
    off_pairs, rows, minus_rows, least, eye = _supports(m)
    off = cos[:, None] * off_pairs  # [N, P, m, m]: C_PP off its diagonal, 0 elsewhere
    rhs = cos[:, None] * minus_rows  # −C_{P,i}, 0 off P
    # Passive sets of at most two rows: C_PP = I + O with O = [[0, s], [s, 0]], whose inverse
    # is (I − O) / (1 − s²), and 1 − s² = 1 − Σ O² / 2 is the determinant (clipped where the
    # rows are too dependent to settle: no division by zero).
    determinant = 1.0 - 0.5 * np.einsum("npij,npij->np", off, off)
    independent = (determinant >= 1.0 / _MOST_INFLATED).all(1)
    v = (rhs - off @ rhs) / np.fmax(determinant, 1.0 / _MOST_INFLATED)[:, :, None, None]
    # (C + tolerance) (e_i + v) = C (e_i + v) + tolerance · (1 + Σ_k v_k): constraints plus slack.
    slackened = (cos + tolerance)[:, None] @ (v + eye)  # [N, P, k, i]
    passing = (np.where(rows, v, slackened) >= least).all(2)  # [N, P, i]
    settled = (passing.sum(1) == 1).all(1) & independent
    return np.einsum("npki,npi->nki", v, passing), settled


def small_unit_projection_multipliers(cos: list[list[float]], tolerance: float) -> list[list[float]] | None:
    """:func:`unit_projection_multipliers` for one cosine matrix of up to three rows as nested
    lists, in Python floats: ``v[i]``, program ``i``'s multipliers, or ``None`` where that
    function leaves the problem open (the numpy path decides). The same passive sets (those
    without ``i``: a set holding it never passes), the same closed form for two rows, the same
    test; a pair of rows with ``1 − s² < 1 / _MOST_INFLATED`` leaves the problem open."""
    m = len(cos)
    if m > 3:
        return None
    for j in range(m):
        for k in range(j + 1, m):
            if not 1.0 - 0.5 * (cos[j][k] * cos[j][k] + cos[k][j] * cos[k][j]) >= 1.0 / _MOST_INFLATED:
                return None
    plus = [[c + tolerance for c in row] for row in cos]  # (C + tolerance): constraints plus slack
    out = []
    for i in range(m):
        found = None
        for passive in _small_passive_sets(m, i):
            v = _small_equality_solution(cos, i, passive)
            if _small_passes(plus, i, passive, v):
                if found is not None:  # two passive sets pass: rounding decides, not this
                    return None
                found = v
        if found is None:
            return None
        out.append(found)
    return out


@functools.cache
def _small_passive_sets(m: int, i: int) -> tuple[tuple[int, ...], ...]:
    """The passive sets program ``i`` of ``m ≤ 3`` rows can end on: those without ``i``."""
    others = tuple(j for j in range(m) if j != i)
    return ((), *((j,) for j in others), *((others,) if len(others) == 2 else ()))


def _small_passes(plus: list[list[float]], i: int, passive: tuple[int, ...], v: list[float]) -> bool:
    """The optimality test of :func:`unit_projection_multipliers` for one candidate:
    ``v_P > 0``, and ``(C + tolerance)(e_i + v) ≥ 0`` off ``P``."""
    for j in passive:
        if not v[j] > 0:
            return False
    for j, row in enumerate(plus):
        if j in passive:
            continue
        total = row[i]
        for k in passive:
            total += row[k] * v[k]
        if total < 0:
            return False
    return True


def _small_equality_solution(cos: list[list[float]], i: int, passive: tuple[int, ...]) -> list[float]:
    """Program ``i``'s ``v`` on a passive set of at most two rows: ``v_P = −C_PP⁻¹ C_{P,i}``
    with ``C_PP⁻¹ = (I − O) / (1 − s²)``, as :func:`unit_projection_multipliers` computes it."""
    v = [0.0] * len(cos)
    if len(passive) == 1:
        v[passive[0]] = -cos[passive[0]][i]
    elif len(passive) == 2:
        j, k = passive
        determinant = 1.0 - 0.5 * (cos[j][k] * cos[j][k] + cos[k][j] * cos[k][j])
        v[j] = (-cos[j][i] - cos[j][k] * -cos[k][i]) / determinant
        v[k] = (-cos[k][i] - cos[k][j] * -cos[j][i]) / determinant
    return v


def guessed_unit_projection_multipliers(cos: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unit_projection_multipliers` by guessing each program's passive set: first the
    rows whose constraint ``ĝ_i`` violates, then each round the rows the last guess weights
    positively plus those it violates, up to :data:`_GUESS_ROUNDS` rounds, each one batched
    solve for every program. A program is settled by a guess that passes the optimality test
    with :data:`_MARGIN` to spare (``v_P`` and the other constraints above ``_MARGIN · Σ_k
    |e_i + v|_k``) on a problem whose cosine matrix is well conditioned (its optimum unique),
    so the walk would end on the same passive set. A row orthogonal to every other (a zero
    row, say) needs no margin: its constraint stays exactly 0 and it never enters, and as a
    program it projects to itself. Returns ``v [N, m, m]`` (column ``i``: program ``i``) and
    which problems ``[N]`` it settled (every program)."""
    N, m, _ = cos.shape
    eye = np.eye(m)
    conditioned = np.asarray(_within(batched_inverse(cos).diagonal(0, 1, 2), _MOST_INFLATED_GUESSED).all(1))
    if not conditioned.all():  # solved on the identity (nothing to project), then left open
        cos = np.where(conditioned[:, None, None], cos, eye)
    orthogonal = cos == 0
    exempt = False
    if orthogonal.any():
        isolated = orthogonal.sum(2) == m - 1  # [n, j]
        exempt = isolated[:, None, :] | isolated[:, :, None]  # as a constraint, as a program
    columns = cos.transpose(0, 2, 1)  # [n, i, j]: ĝ_j · ĝ_i, constraint j of program i at v = 0
    passive = columns + tolerance < 0
    v = np.zeros((N, m, m))  # [n, i, k]
    settled = np.zeros((N, m), dtype=bool)
    for _ in range(_GUESS_ROUNDS):
        systems = (
            cos[:, None] * (passive[:, :, :, None] & passive[:, :, None, :]) + eye * ~passive[:, :, :, None]
        )
        try:
            guess = np.linalg.solve(systems, (-columns * passive)[:, :, :, None])[:, :, :, 0]
        except np.linalg.LinAlgError:  # only rounding can make a well-conditioned set singular
            return v.transpose(0, 2, 1), np.zeros(N, dtype=bool)
        y = guess + eye
        constraints = y @ columns  # [n, i, j]: ĝ_j · (ĝ_i + Σ_k v_k ĝ_k)
        total = np.abs(y).sum(2, keepdims=True)
        passing = (np.where(passive, guess, constraints) > _MARGIN * total) | exempt
        new = passing.all(2) & ~settled
        v[new] = guess[new]
        settled |= new
        if settled.all():
            break
        passive = np.where(passive, guess > 0, constraints < -tolerance * total)
    return v.transpose(0, 2, 1), settled.all(1) & conditioned


def _within(inverse_diagonal: np.ndarray, bound: float) -> np.ndarray:
    """Where the diagonal of a cosine matrix's inverse says its rows are independent: in
    ``(0, bound]``. A singular matrix's computed inverse can have huge diagonal entries of
    either sign (and NaN, from :func:`batched_inverse`, fails too)."""
    return (inverse_diagonal > 0) & (inverse_diagonal <= bound)
