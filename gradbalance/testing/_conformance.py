"""The conformance checks: the contract every combiner keeps, and the properties it declares."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import Tensor

from .._properties import Property
from ..errors import NonFiniteGradientError
from ._subject import SAFETY, Kit, Subject, assert_close, pieces, round_trip, tolerance
from .strategies import ROW_KINDS, Steps, segmentations, step_sequences

__all__ = ["CHECKS", "Check", "applicable_checks", "check_combiner"]

_EPS64 = torch.finfo(torch.float64).eps
_EPS32 = torch.finfo(torch.float32).eps
_EASY = ("normal", "zero", "parallel", "antiparallel")
# Rows in general position (no exact or near dependence when T ≤ P): the precision check's
# families. Near a singular Gramian the float32 Gramian of low-precision inputs moves its small
# eigenvalues by ~ε32 ‖g‖², which decides rank and Pareto-stationarity tests; no bound on the
# result holds there (see docs/design.md).
_GENERAL = ("normal", "zero", "tiny", "huge")


@attrs.frozen
class Check:
    """One conformance check: a hypothesis strategy of examples and the assertion on each."""

    name: str
    strategy: Callable[[Subject], st.SearchStrategy]
    body: Callable[[Subject, Any], None]
    declared: Property | None = None  # run only for classes that declare this property


def _steps(
    subject: Subject,
    *,
    dtypes: Iterable[torch.dtype] = (torch.float64,),
    kinds: Sequence[str] = ROW_KINDS,
    min_steps: int = 1,
    segments: bool = True,
    general: bool = False,
) -> st.SearchStrategy[Steps]:
    """Sequences of steps for ``subject`` (one step unless it is stateful); ``general``: one
    segment and ``T ≤ P``, so that rows of the general kinds are independent."""
    kit = subject.kit
    strategy = step_sequences(
        min_steps=min_steps,
        max_steps=max(min_steps, kit.max_steps if subject.stateful else 1),
        max_tasks=kit.max_tasks,
        max_columns=kit.max_columns,
        kinds=kinds,
        dtype=list(dtypes),
        segments=segments and not general,
        device=kit.device,
    )
    return strategy.filter(lambda x: x.shape[0] <= x.shape[1]) if general else strategy


# -- the contract ------------------------------------------------------------------------------


def _result(subject: Subject, steps: Steps) -> None:
    P = steps.shape[1]
    for k, d in enumerate(subject.run(steps.matrices, steps.segments)):
        G = steps.matrices[k]
        if not isinstance(d, Tensor):
            raise AssertionError(f"combine returned {type(d).__name__}, not a Tensor")
        if tuple(d.shape) != (P,) or d.dtype != G.dtype or d.device != G.device:
            raise AssertionError(
                f"step {k}: result has shape {tuple(d.shape)}, {d.dtype} on {d.device}; expected "
                f"({P},), {G.dtype} on {G.device} (G's dtype and device)"
            )


def _finite(subject: Subject, steps: Steps) -> None:
    for k, d in enumerate(subject.run(steps.matrices, steps.segments)):
        if not bool(torch.isfinite(d).all()):
            raise AssertionError(
                f"step {k}: non-finite result for finite {steps.matrices[k].dtype} input "
                f"(rows of norms {steps.matrices[k].double().norm(dim=1).tolist()})"
            )


def _precision(subject: Subject, steps: Steps) -> None:
    # Same rounded inputs in float64: what is left is the method's own arithmetic, the Gramian
    # in float32 at least (probe ε = float32's) and the result rounded to G's dtype.
    dtype = steps.matrices[0].dtype
    got = subject.run(steps.matrices, steps.segments)
    want = subject.run([G.double() for G in steps.matrices], steps.segments)
    deviations = subject.deviations(steps, _EPS32, gramian=False)  # rows in general position
    info = torch.finfo(dtype)
    floor = info.smallest_normal * info.eps * steps.shape[1] ** 0.5  # subnormal rounding
    for k, (g, w, dev) in enumerate(zip(got, want, deviations)):
        assert_close(
            g,
            w,
            tolerance(dev, w, steps.shape[0], _EPS32, info.eps, floor),
            f"step {k}: {dtype} result against float64 on the same inputs",
        )


def _out(subject: Subject, steps: Steps) -> None:
    combiner = subject.make()
    outs = []
    for k, G in enumerate(steps.matrices):
        out = torch.full((G.shape[1],), float("nan"), dtype=G.dtype, device=G.device)
        d = combiner.combine(G, steps.segments, out=out)
        if d.data_ptr() != out.data_ptr() or d.shape != out.shape:
            raise AssertionError(f"step {k}: combine(..., out=out) did not return out itself")
        outs.append(out)
    _compare_runs(
        subject, steps, outs, subject.run(steps.matrices, steps.segments), "out= result against none"
    )


def _compare_runs(subject: Subject, steps: Steps, got: list[Tensor], want: list[Tensor], what: str) -> None:
    if all(torch.equal(g, w) for g, w in zip(got, want)):
        return
    deviations = subject.deviations(steps, _EPS64)
    for k, (g, w, dev) in enumerate(zip(got, want, deviations)):
        assert_close(g, w, tolerance(dev, w, steps.shape[0]), f"step {k}: {what}")


def _segments(subject: Subject, example: tuple[Steps, list[int]]) -> None:
    steps, sizes = example
    steps = Steps(steps.matrices, sizes)
    joint = subject.run(steps.matrices, sizes)
    for piece in pieces(sizes, steps.shape[1]):
        alone = Steps([G[:, piece] for G in steps.matrices], None)
        separate = subject.run(alone.matrices, None)
        deviations = subject.deviations(alone, _EPS64)
        for k, (d, s, dev) in enumerate(zip(joint, separate, deviations)):
            assert_close(
                d[piece],
                s,
                tolerance(dev, s, steps.shape[0]),
                f"step {k}: segment {piece.start}:{piece.stop} of a segmented call against it alone",
            )


def _segmented_steps(subject: Subject) -> st.SearchStrategy:
    return (
        _steps(subject, segments=False)
        .filter(lambda s: s.shape[1] >= 2)
        .flatmap(lambda s: st.tuples(st.just(s), segmentations(s.shape[1]).filter(lambda x: x is not None)))
    )


def _reproducible(subject: Subject, steps: Steps) -> None:
    a, b = subject.run(steps.matrices, steps.segments), subject.run(steps.matrices, steps.segments)
    for k, (x, y) in enumerate(zip(a, b)):
        if not torch.equal(x, y):
            raise AssertionError(
                f"step {k}: two instances built with the same options {dict(subject.options)} give "
                "different results; pass the options that fix the randomness (a seed) to the kit"
            )


def _state(subject: Subject, example: tuple[Steps, int]) -> None:
    steps, cut = example
    first = subject.make()
    subject.run(steps.matrices[:cut], steps.segments, first)
    state = round_trip(first.state_dict())
    later = subject.run(steps.matrices[cut:], steps.segments, first)
    resumed = subject.make()
    resumed.load_state_dict(state)
    again = subject.run(steps.matrices[cut:], steps.segments, resumed)
    for k, (x, y) in enumerate(zip(later, again)):
        if not torch.equal(x, y):
            raise AssertionError(
                f"step {cut + k}: an instance resumed from state_dict() after step {cut - 1} "
                f"differs from the uninterrupted one by {float((x - y).double().norm()):.3g}"
            )


def _nonfinite(subject: Subject, example: tuple[Steps, Any]) -> None:
    steps, (bad, task, column) = example
    T, P = steps.shape
    G = steps.matrices[0].clone()
    G[task % T, column % P] = bad
    try:
        subject.make().combine(G, steps.segments)
    except NonFiniteGradientError as error:
        if error.task != task % T or f"task {task % T}" not in str(error):
            raise AssertionError(
                f"{bad} in row {task % T}: the error names task {error.task} ({error})"
            ) from error
        return
    raise AssertionError(f"{bad} in row {task % T} of G was not rejected with NonFiniteGradientError")


# -- declared properties -----------------------------------------------------------------------


def _permutation(subject: Subject, example: tuple[Steps, int]) -> None:
    steps, seed = example
    order = torch.randperm(steps.shape[0], generator=torch.Generator().manual_seed(seed))
    got = subject.run([G[order.to(G.device)] for G in steps.matrices], steps.segments)
    _compare_runs(
        subject,
        steps,
        got,
        subject.run(steps.matrices, steps.segments),
        f"tasks reordered as {order.tolist()}",
    )


def _homogeneity(subject: Subject, example: tuple[Steps, float]) -> None:
    steps, exponent = example
    c = 10.0**exponent
    got = subject.run([c * G for G in steps.matrices], steps.segments)
    want = [c * d for d in subject.run(steps.matrices, steps.segments)]
    if all(torch.equal(g, w) for g, w in zip(got, want)):
        return
    for k, (g, w, dev) in enumerate(zip(got, want, subject.deviations(steps, _EPS64))):
        assert_close(
            g, w, c * tolerance(dev, w / c, steps.shape[0]), f"step {k}: d({c:.3g} G) against {c:.3g} d(G)"
        )


def _nonconflicting(subject: Subject, steps: Steps) -> None:
    results = subject.run(steps.matrices, steps.segments)
    deviations = subject.deviations(steps, _EPS64)
    P = steps.shape[1]
    for k, (G, d, dev) in enumerate(zip(steps.matrices, results, deviations)):
        for piece in pieces(steps.segments, P):
            g, x = G[:, piece].double(), d[piece].double()
            norms = g.norm(dim=1)
            # the result's own uncertainty, the rounding of a combination of the rows with
            # weights of order one, and that of g_t · d over the piece
            scale = float(norms.sum()) + x.numel() * float(x.norm())
            slack = norms * (tolerance(dev[piece], x, len(g)) + SAFETY * _EPS64 * scale)
            progress = g @ x
            if bool((progress < -slack).any()):
                t = int(torch.argmin(progress + slack))
                raise AssertionError(
                    f"step {k}, columns {piece.start}:{piece.stop}: g_{t} · d = {float(progress[t]):.3g} "
                    f"< 0 beyond rounding ({float(slack[t]):.3g}); the update conflicts with task {t}"
                )


def _sum_without_conflict(subject: Subject, steps: Steps) -> None:
    steps = Steps([G.abs() for G in steps.matrices], steps.segments)  # g_i · g_j ≥ 0
    T = steps.shape[0]
    eye = torch.eye(T, dtype=torch.float64, device=steps.matrices[0].device)
    unit = subject.run([eye] * len(steps.matrices), None)
    results = subject.run(steps.matrices, steps.segments)
    deviations = subject.deviations(steps, _EPS64)
    for k, (u, G, d, dev) in enumerate(zip(unit, steps.matrices, results, deviations)):
        c = float(u.double().mean())
        assert_close(
            u,
            torch.full_like(u, c),
            SAFETY * _EPS64 * T * abs(c),
            f"step {k}: orthonormal rows (no conflict) give the same multiple of the sum everywhere",
        )
        if not c > 0:
            raise AssertionError(
                f"step {k}: orthonormal rows give {c:.3g} times their sum, not a positive multiple"
            )
        want = c * G.sum(0)
        assert_close(
            d,
            want,
            tolerance(dev, want, T) + SAFETY * T * _EPS64 * float(want.norm()),
            f"step {k}: non-conflicting rows against {c:.3g} × their sum",
        )


def _task_scale(subject: Subject, example: tuple[Steps, list[float]]) -> None:
    steps, exponents = example
    scales = torch.tensor([10.0**e for e in exponents[: steps.shape[0]]], dtype=torch.float64)
    scaled = Steps([G * scales[:, None].to(G.device) for G in steps.matrices], steps.segments)
    first, second = subject.run(steps.matrices, steps.segments), subject.run(scaled.matrices, steps.segments)
    first_dev, second_dev = subject.deviations(steps, _EPS64), subject.deviations(scaled, _EPS64)
    for k in range(len(steps.matrices)):
        for piece in pieces(steps.segments, steps.shape[1]):
            a, b, da, db = first[k][piece], second[k][piece], first_dev[k][piece], second_dev[k][piece]
            na, nb = float(a.norm()), float(b.norm())
            ta, tb = tolerance(da, a, steps.shape[0]), tolerance(db, b, steps.shape[0])
            if na == 0 or nb == 0:  # no direction to compare: the other must vanish to its tolerance
                if na > ta or nb > tb:
                    raise AssertionError(
                        f"step {k}: one update vanishes ({na:.3g} vs {nb:.3g}), the other does not"
                    )
                continue
            assert_close(
                b / nb,
                a / na,
                ta / na + tb / nb,
                f"step {k}, columns {piece.start}:{piece.stop}: direction after scaling the tasks by {scales.tolist()}",
            )


def _build_checks() -> tuple[Check, ...]:
    exponents = st.floats(-6.0, 6.0)
    nonfinite = st.tuples(
        st.sampled_from([float("nan"), float("inf"), -float("inf")]),
        st.integers(0, 63),
        st.integers(0, 10**6),
    )  # value, row, column (modulo the shape)

    def low(s: Subject) -> list[torch.dtype]:
        return [d for d in s.kit.dtypes if d != torch.float64] or [torch.float32]

    def with_cut(x: Steps) -> st.SearchStrategy:
        return st.tuples(st.just(x), st.integers(1, len(x.matrices) - 1))

    def scales(s: Subject) -> st.SearchStrategy:
        return st.lists(exponents, min_size=s.kit.max_tasks, max_size=s.kit.max_tasks)

    P = Property
    return (
        Check("result", lambda s: _steps(s, dtypes=s.kit.dtypes, kinds=_EASY), _result),
        Check("finite", lambda s: _steps(s, dtypes=s.kit.dtypes), _finite),
        Check("precision", lambda s: _steps(s, dtypes=low(s), kinds=_GENERAL, general=True), _precision),
        Check("out", lambda s: _steps(s, dtypes=[torch.float32, torch.float64]), _out),
        Check("segments", _segmented_steps, _segments),
        Check("reproducible", lambda s: _steps(s), _reproducible),
        Check("state", lambda s: _steps(s, min_steps=2).flatmap(with_cut), _state),
        Check(
            "nonfinite",
            lambda s: st.tuples(_steps(s, dtypes=s.kit.dtypes, kinds=_EASY), nonfinite),
            _nonfinite,
        ),
        Check(
            P.PERMUTATION_EQUIVARIANT.value,
            lambda s: st.tuples(_steps(s), st.integers(0, 2**31 - 1)),
            _permutation,
            P.PERMUTATION_EQUIVARIANT,
        ),
        Check(
            P.POSITIVELY_HOMOGENEOUS.value,
            lambda s: st.tuples(_steps(s), exponents),
            _homogeneity,
            P.POSITIVELY_HOMOGENEOUS,
        ),
        Check(P.NON_CONFLICTING.value, _steps, _nonconflicting, P.NON_CONFLICTING),
        Check(P.SUM_WITHOUT_CONFLICT.value, _steps, _sum_without_conflict, P.SUM_WITHOUT_CONFLICT),
        Check(
            P.TASK_SCALE_INVARIANT.value,
            lambda s: st.tuples(_steps(s), scales(s)),
            _task_scale,
            P.TASK_SCALE_INVARIANT,
        ),
    )


#: Every check, contract first, then one per property.
CHECKS = _build_checks()
_BY_NAME = {check.name: check for check in CHECKS}


def applicable_checks(cls: type) -> list[str]:
    """Names of the checks that apply to ``cls``: the contract and its declared properties."""
    declared = frozenset(getattr(cls, "properties", frozenset()))
    return [c.name for c in CHECKS if c.declared is None or c.declared in declared]


def check_combiner(
    cls: type, *, checks: Iterable[str] | None = None, kit: Kit | None = None, **options: Any
) -> None:
    """Run the conformance checks on combiner class ``cls`` built with ``options``.

    ``checks`` selects by name (default: every check that applies, see
    :func:`applicable_checks`); ``kit`` sets example counts and sizes. Raises
    ``AssertionError`` naming the check, with hypothesis's smallest failing example.
    Randomized combiners must be given the options that fix their randomness (a seed).
    """
    kit = kit or Kit()
    try:
        subject = Subject(cls, options, kit)
        subject.make()
    except Exception as error:
        raise AssertionError(
            f"{getattr(cls, '__name__', cls)}(**{options}) cannot be built: {error}"
        ) from error
    names = applicable_checks(cls) if checks is None else list(checks)
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {sorted(_BY_NAME)}")
    for name in names:
        _run_check(subject, _BY_NAME[name])


def _run_check(subject: Subject, check: Check) -> None:
    @settings(
        max_examples=subject.kit.max_examples,
        deadline=None,
        database=None,  # one inner function serves every check: a shared database would mix them
        phases=list(Phase) if subject.kit.shrink else [p for p in Phase if p is not Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(check.strategy(subject))
    def run(example: Any) -> None:
        check.body(subject, example)

    try:
        run()
    except AssertionError as error:
        raise AssertionError(
            f"{subject.cls.__name__} fails conformance check {check.name!r}: {error}"
        ) from error
