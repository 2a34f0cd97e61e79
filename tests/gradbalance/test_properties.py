"""The combiners × properties table in the docs is the rendering of the declarations."""

from pathlib import Path

import pytest

from gradbalance import Property, Sum
from gradbalance._properties import TABLE_END, TABLE_START, builtin_table, properties_table, replace_table
from gradbalance._render_properties import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "properties.md"


def test_docs_table_matches_the_declarations():
    text = DOC.read_text(encoding="utf-8")
    assert replace_table(text, builtin_table()) == text, (
        "docs/properties.md is out of date: run python -m gradbalance._render_properties docs/properties.md"
    )


def test_the_table_marks_exactly_the_declared_properties():
    lines = properties_table([Sum]).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    row = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert header == ["combiner", *(p.value for p in Property)]
    assert row[0] == "`sum`"
    assert {Property(h) for h, mark in zip(header[1:], row[1:]) if mark == "✓"} == Sum.properties


def test_regeneration_rewrites_only_the_block(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(f"intro\n{TABLE_START}\nstale\n{TABLE_END}\noutro\n", encoding="utf-8")
    assert main([str(path)]) == 0
    assert path.read_text(encoding="utf-8") == f"intro\n{TABLE_START}\n{builtin_table()}{TABLE_END}\noutro\n"
    with pytest.raises(ValueError, match="no <!-- properties-table:start -->"):
        replace_table("no markers", builtin_table())
