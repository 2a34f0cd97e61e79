"""The conformance kit: test a combiner against the contract and the properties it declares.

In a plugin's test file, two lines run every check as its own pytest test::

    from gradbalance.testing import conformance_tests
    test_my_combiner = conformance_tests(MyCombiner, seed=0)

or, anywhere, ``check_combiner(MyCombiner, seed=0)`` (raises ``AssertionError``). Needs the
``testing`` extra (``pip install gradbalance[testing]``: hypothesis and pytest).
"""

try:
    import hypothesis  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gradbalance.testing needs hypothesis; install the testing extra: pip install 'gradbalance[testing]'"
    ) from error

from .._properties import Property, properties_table
from ._conformance import CHECKS, Check, applicable_checks, check_combiner
from ._pytest import conformance_tests
from ._subject import Kit
from .strategies import (
    ROW_KINDS,
    Steps,
    nonconflicting_matrices,
    segmentations,
    step_sequences,
    task_matrices,
)

__all__ = [
    "CHECKS",
    "Check",
    "Kit",
    "Property",
    "ROW_KINDS",
    "Steps",
    "applicable_checks",
    "check_combiner",
    "conformance_tests",
    "nonconflicting_matrices",
    "properties_table",
    "segmentations",
    "step_sequences",
    "task_matrices",
]
