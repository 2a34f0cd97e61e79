"""A parametrized pytest test of one combiner class: one test item per conformance check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._conformance import applicable_checks, check_combiner
from ._subject import Kit


def conformance_tests(cls: type, *, kit: Kit | None = None, **options: Any) -> Callable[[str], None]:
    """A pytest test function, parametrized over the checks that apply to ``cls``.

    Assign it to a module-level name starting with ``test``::

        test_my_combiner = conformance_tests(MyCombiner, seed=0)
    """
    try:
        import pytest
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "conformance_tests needs pytest; install the testing extra: pip install 'gradbalance[testing]'"
        ) from error

    @pytest.mark.parametrize("check", applicable_checks(cls))
    def test_conformance(check: str) -> None:
        check_combiner(cls, checks=[check], kit=kit, **options)

    test_conformance.__name__ = f"test_{getattr(cls, 'name', cls.__name__)}_conformance".replace("-", "_")
    return test_conformance
