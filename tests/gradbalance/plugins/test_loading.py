"""Entry points loaded one by one: a broken or rejected one costs only itself."""

import json
from importlib.metadata import EntryPoint

import pytest

from gradbalance.plugins import PluginLoadWarning, load_entry_points


def test_load_entry_points_loads_each_on_its_own(monkeypatch):
    eps = [
        EntryPoint("good", "json:dumps", "some.group"),
        EntryPoint("missing", "no_such_module_xyz:thing", "some.group"),
        EntryPoint("rejected", "json:loads", "some.group"),
        EntryPoint("also-good", "json:JSONDecoder", "some.group"),
    ]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: eps if group == "some.group" else [])

    def check(ep, obj):
        if ep.name == "rejected":
            raise TypeError("not a balancer")
        return obj.__name__

    with pytest.warns(PluginLoadWarning) as caught:
        loaded = load_entry_points("some.group", check, owner="mypkg", what="task plugin")
    assert [(ep.name, dist, value) for ep, dist, value in loaded] == [
        ("good", "<unknown distribution>", "dumps"),
        ("also-good", "<unknown distribution>", "JSONDecoder"),
    ]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert messages[0].startswith("mypkg: skipped task plugin 'missing' (no_such_module_xyz:thing)")
    assert "ModuleNotFoundError" in messages[0]
    assert "'rejected' (json:loads)" in messages[1] and "TypeError: not a balancer" in messages[1]
    with pytest.warns(PluginLoadWarning, match="gradbalance: skipped plugin 'missing'"):
        loaded = load_entry_points("some.group")  # no check: the objects themselves
    assert [value for _, _, value in loaded] == [json.dumps, json.loads, json.JSONDecoder]
