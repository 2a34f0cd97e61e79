"""Mathematical properties a combiner can declare, and the docs table rendered from them.

A combiner class lists in ``properties`` what it guarantees for every choice of its options;
:mod:`gradbalance.testing` checks each declared property, and the table of combiners ×
properties in ``docs/properties.md`` is rendered from the same declarations
(``python -m gradbalance._render_properties docs/properties.md`` rewrites it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # _combiner imports this module
    from ._combiner import GradientCombiner

__all__ = ["Property", "properties_table"]


class Property(enum.Enum):
    """A property of the map ``G ↦ d`` (``G[T, P]`` task gradients, ``d[P]`` the update).

    Stateful combiners hold it step by step along a sequence of steps, comparing two fresh
    instances with the same options.
    """

    #: Reordering the task rows leaves ``d`` unchanged: ``d(ΠG) = d(G)``.
    PERMUTATION_EQUIVARIANT = "permutation-equivariant"
    #: Scaling every row by ``c > 0`` scales ``d`` by ``c``: ``d(cG) = c d(G)``.
    POSITIVELY_HOMOGENEOUS = "positively-homogeneous"
    #: ``d`` conflicts with no task: ``g_t · d ≥ 0`` for every ``t``.
    NON_CONFLICTING = "non-conflicting"
    #: Without conflict (``g_i · g_j ≥ 0`` for all pairs) ``d = c_T Σ_t g_t``, one factor
    #: ``c_T > 0`` per task count (1 for a sum, ``1/T`` for a mean).
    SUM_WITHOUT_CONFLICT = "sum-without-conflict"
    #: Scaling one task's row by ``c > 0`` leaves the direction of ``d`` unchanged.
    TASK_SCALE_INVARIANT = "task-scale-invariant"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Property.PERMUTATION_EQUIVARIANT: "reordering the tasks leaves the update unchanged",
    Property.POSITIVELY_HOMOGENEOUS: "scaling every gradient by c > 0 scales the update by c",
    Property.NON_CONFLICTING: "the update conflicts with no task: g_t · d ≥ 0",
    Property.SUM_WITHOUT_CONFLICT: "without conflicting pairs the update is c_T Σ g_t (sum or mean)",
    Property.TASK_SCALE_INVARIANT: "scaling one task's gradient leaves the update's direction unchanged",
}

#: Markers around the generated table in a markdown file.
TABLE_START = "<!-- properties-table:start -->"
TABLE_END = "<!-- properties-table:end -->"


def properties_table(classes: Iterable[type[GradientCombiner]]) -> str:
    """A markdown table: one row per combiner class (its ``name``), one column per property."""
    props = list(Property)
    lines = [
        "| combiner | " + " | ".join(p.value for p in props) + " |",
        "|---|" + "---|" * len(props),
    ]
    for cls in classes:
        declared: frozenset[Property] = getattr(cls, "properties", frozenset())
        marks = ["✓" if p in declared else "" for p in props]
        lines.append(f"| `{cls.name}` | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"


def builtin_table() -> str:
    """:func:`properties_table` of the built-in combiners, in registration order."""
    from . import _builtins

    return properties_table(_builtins.gradbalance_combiners())


def replace_table(text: str, table: str) -> str:
    """``text`` with the part between :data:`TABLE_START` and :data:`TABLE_END` set to ``table``."""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"no {TABLE_START} ... {TABLE_END} block to fill in")
    return text[: start + len(TABLE_START)] + "\n" + table + text[end:]
