"""A registry kind read from an entry-point group of its own, one object per entry point (how
minbert_tasks registers its tasks, samplers and head presets)."""

import math
from importlib.metadata import EntryPoint

import pytest

from gradbalance import UnknownCombinerError
from gradbalance.plugins import (
    PluginConflictError,
    PluginKind,
    PluginLoadWarning,
    Registry,
    UnknownPluginError,
)

GROUP = "gradbalance-test.constants"


def constant_name(obj, entry_point_name):
    if not isinstance(obj, float):
        raise TypeError(f"expected a float, got {obj!r}")
    return entry_point_name


CONSTANT = PluginKind("constant", constant_name, group=GROUP, builtins=lambda: {"half": 0.5})


def installed(monkeypatch, *targets: tuple[str, str]) -> None:
    eps = [EntryPoint(name, value, GROUP) for name, value in targets]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: eps if group == GROUP else [])


def test_a_kind_read_from_its_own_entry_point_group(monkeypatch):
    installed(
        monkeypatch,
        ("pi", "math:pi"),
        ("circle", "math:pi"),
        ("circle", "math:tau"),
        ("root", "math:sqrt"),
        ("gone", "no_such_module_xyz:thing"),
    )
    registry = Registry(group=None, kinds=[CONSTANT], owner="mathkit")
    with pytest.warns(PluginLoadWarning) as caught:
        assert registry.available("constant") == ["half", "pi"]
    messages = sorted(str(w.message) for w in caught)
    assert messages[0] == (
        "mathkit: 2 constants are named 'circle': a float from '<unknown distribution> (math:pi)' and a "
        "float from '<unknown distribution> (math:tau)'; 'circle' is unavailable until you uninstall all "
        "but one of these distributions or rename them; the other names still work"
    )
    assert messages[1].startswith("mathkit: skipped constant plugin 'gone' (no_such_module_xyz:thing)")
    assert messages[2].endswith(
        "'root' (math:sqrt) of distribution '<unknown distribution>': TypeError: "
        "expected a float, got <built-in function sqrt>"
    )
    assert len(messages) == 3
    assert registry.get("pi", "constant") == math.pi
    assert registry.entries("constant")["half"].source == "mathkit (built-in)"
    assert registry.entries("constant")["pi"].source == "<unknown distribution> (math:pi)"
    with pytest.raises(PluginConflictError, match=r"'circle'.*math:pi.*math:tau"):
        registry.get("circle", "constant")
    with pytest.raises(
        UnknownPluginError, match=r"no constant named 'pie' \(did you mean 'pi'\?\); available: half, pi$"
    ):
        registry.get("pie", "constant")
    with pytest.raises(ValueError, match=r"unknown plugin kind 'combiner'; expected one of \['constant'\]"):
        registry.available()


def test_the_owners_own_entry_points_replace_its_builtins(monkeypatch):
    installed(monkeypatch, ("pi", "math:pi"), ("pi", "math:pi"))  # one distribution twice on sys.path
    registry = Registry(group=None, kinds=[CONSTANT], owner="math")
    assert registry.available("constant") == ["pi"]
    assert registry.conflicts("constant") == {}


def test_one_unknown_name_error_for_every_kind():
    assert UnknownCombinerError is UnknownPluginError
    assert issubclass(UnknownPluginError, KeyError)
    assert str(UnknownPluginError("no task named 'x'")) == "no task named 'x'"  # not quoted as KeyError would
