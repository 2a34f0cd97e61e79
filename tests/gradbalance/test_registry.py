"""Plugin discovery through real distributions in a temporary site directory."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradbalance
from gradbalance import PCGrad, Registry, UnknownCombinerError


def make_distribution(site: Path, dist: str, module: str, source: str) -> None:
    """Write an installed distribution (dist-info with an entry point) and its module."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gradbalance]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


GOOD = """
    import torch
    import gradbalance

    class HalfSum(gradbalance.GramianCombiner):
        '''Half the sum of the task gradients.'''
        name = "half-sum"

        def weights(self, gramian):
            return torch.full(gramian.shape[:2], 0.5, dtype=gramian.dtype)

    @gradbalance.hookimpl
    def gradbalance_combiners():
        return [HalfSum]
"""

BROKEN = """
    raise ImportError("this plugin needs a package that is not installed")
"""

CLASH = """
    import gradbalance

    class MyPCGrad(gradbalance.Sum):
        name = "pcgrad"

    @gradbalance.hookimpl
    def gradbalance_combiners():
        return [MyPCGrad]
"""


def run_python(site: Path, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


def test_builtins_come_through_the_packages_own_entry_point():
    entries = gradbalance.plugin_entries()
    assert {e.name for e in entries} >= {"sum", "mean", "pcgrad", "gradvac"}
    assert {e.source for e in entries if e.name in ("sum", "pcgrad")} == {"gradbalance"}


def test_unknown_name_lists_what_is_available():
    with pytest.raises(UnknownCombinerError, match="available: .*gradvac.*pcgrad"):
        gradbalance.create("pc-grad")


def test_options_lists_what_a_registered_class_accepts():
    assert gradbalance.options("pcgrad") == ["seed", "reduction"]
    assert gradbalance.options("nash-mtl") == []
    assert "epsilon" in gradbalance.options("smart", kind="regularizer")
    with pytest.raises(UnknownCombinerError, match="available: .*pcgrad"):
        gradbalance.options("pc-grad")


def test_bad_options_name_the_accepted_ones():
    with pytest.raises(TypeError, match="it accepts: seed, reduction"):
        gradbalance.create("pcgrad", sed=1)


def test_third_party_distribution_is_discovered_and_broken_one_isolated(tmp_path):
    make_distribution(tmp_path, "acme-balancers", "acme_balancers", GOOD)
    make_distribution(tmp_path, "broken-plugin", "broken_plugin", BROKEN)
    result = run_python(
        tmp_path,
        """
        import torch, gradbalance
        print(gradbalance.available())
        c = gradbalance.create("half-sum")
        print(c.combine(torch.ones(2, 3)).tolist())
        print([e.source for e in gradbalance.plugin_entries() if e.name == "half-sum"])
        """,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "half-sum" in lines[0] and "pcgrad" in lines[0]
    assert lines[1] == "[1.0, 1.0, 1.0]"
    assert lines[2] == "['acme-balancers']"
    assert "PluginLoadWarning" in result.stderr
    assert "'broken-plugin'" in result.stderr and "not installed" in result.stderr


def test_two_plugins_claiming_one_name_is_an_error_naming_both(tmp_path):
    make_distribution(tmp_path, "pcgrad-fork", "pcgrad_fork", CLASH)
    result = run_python(tmp_path, "import gradbalance; gradbalance.available()")
    assert result.returncode != 0
    assert "PluginConflictError" in result.stderr
    assert "'gradbalance'" in result.stderr and "'pcgrad-fork'" in result.stderr


def test_in_process_registration_and_bad_plugins():
    registry = Registry(group="gradbalance-test-empty-group")

    class Doubled(gradbalance.Sum):
        """Twice the sum."""

        name = "doubled"

    class Plugin:
        @gradbalance.hookimpl
        def gradbalance_combiners(self):
            return [Doubled, PCGrad]

    registry.register(Plugin(), source="tests")
    assert registry.available() == ["doubled", "pcgrad"]
    assert registry.entries()["doubled"].source == "tests"
    assert registry.entries()["doubled"].summary == "Twice the sum."

    class NotACombiner:
        name = "nope"

    class BadPlugin:
        @gradbalance.hookimpl
        def gradbalance_combiners(self):
            return [NotACombiner]

    class SingleClassPlugin:
        @gradbalance.hookimpl
        def gradbalance_combiners(self):
            return Doubled  # not a list

    registry.register(BadPlugin(), source="bad")
    registry.register(SingleClassPlugin(), source="single")
    with pytest.warns(gradbalance.PluginLoadWarning) as caught:
        assert registry.available() == ["doubled", "pcgrad"]  # the others still work
    messages = sorted(str(w.message) for w in caught)
    assert "'bad'" in messages[0] and "does not subclass gradbalance.GradientCombiner" in messages[0]
    assert "'single'" in messages[1] and "must return a list of classes" in messages[1]


def test_regularizers_are_a_plugin_kind_of_their_own():
    names = gradbalance.available("regularizer")
    assert names == sorted(names) and {"smart", "bregman"} <= set(names)
    assert "smart" not in gradbalance.available()
    with pytest.raises(ValueError, match="unknown plugin kind"):
        gradbalance.available("optimizer")


def test_load_entry_points_loads_each_on_its_own(monkeypatch):
    from importlib.metadata import EntryPoint

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

    with pytest.warns(gradbalance.PluginLoadWarning) as caught:
        loaded = gradbalance.load_entry_points("some.group", check, owner="mypkg", what="task plugin")
    assert [(ep.name, dist, value) for ep, dist, value in loaded] == [
        ("good", "<unknown distribution>", "dumps"),
        ("also-good", "<unknown distribution>", "JSONDecoder"),
    ]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert messages[0].startswith("mypkg: skipped task plugin 'missing' (no_such_module_xyz:thing)")
    assert "ModuleNotFoundError" in messages[0]
    assert "'rejected' (json:loads)" in messages[1] and "TypeError: not a balancer" in messages[1]
    import json

    with pytest.warns(gradbalance.PluginLoadWarning, match="gradbalance: skipped plugin 'missing'"):
        loaded = gradbalance.load_entry_points("some.group")  # no check: the objects themselves
    assert [value for _, _, value in loaded] == [json.dumps, json.loads, json.JSONDecoder]


LAZY_BROKEN = """
    import gradbalance

    @gradbalance.hookimpl
    def gradbalance_combiners():
        from heavy_dependency_xyz import Fancy  # a lazy import whose dependency is missing
        return [Fancy]
"""


def test_a_plugin_whose_hook_fails_costs_only_itself(tmp_path):
    make_distribution(tmp_path, "lazy-plugin", "lazy_plugin", LAZY_BROKEN)
    make_distribution(tmp_path, "acme-balancers", "acme_balancers", GOOD)
    result = run_python(
        tmp_path,
        """
        import gradbalance
        print(gradbalance.create("pcgrad", seed=0).seed)
        print("half-sum" in gradbalance.available())
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0", "True"]
    assert "PluginLoadWarning" in result.stderr
    assert "'lazy-plugin'" in result.stderr and "heavy_dependency_xyz" in result.stderr


def test_rerunning_a_notebook_cell_replaces_the_earlier_registration():
    registry = Registry(group="gradbalance-test-empty-group")

    def cell(factor: float) -> None:
        class Scaled(gradbalance.Sum):
            """A scaled sum."""

            name = "scaled"

        Scaled.factor = factor

        class Plugin:
            @gradbalance.hookimpl
            def gradbalance_combiners(self):
                return [Scaled, PCGrad]

        registry.register(Plugin())

    cell(1.0)
    cell(2.0)  # the same cell, edited and run again
    assert registry.available() == ["pcgrad", "scaled"]
    assert registry.get("scaled").factor == 2.0
    assert registry.entries()["scaled"].source.endswith("cell.<locals>.Plugin")
    import json

    registry.register(json)
    registry.register(json)  # a module registered twice: no error


def test_unknown_names_and_options_suggest_a_close_match():
    with pytest.raises(UnknownCombinerError, match=r"no combiner named 'pc-grad' \(did you mean 'pcgrad'\?\)"):
        gradbalance.create("pc-grad")
    with pytest.raises(TypeError, match=r"'sed'.*\(did you mean 'seed'\?\); it accepts: seed, reduction"):
        gradbalance.create("pcgrad", sed=1)


def test_options_named_like_the_registry_arguments_reach_the_class():
    registry = Registry(group="gradbalance-test-empty-group")

    class Kinded(gradbalance.Sum):
        name = "kinded"

        def __init__(self, kind: str = "a", *args: int, **rest: int) -> None:
            super().__init__()
            self.kind = kind

    class Plugin:
        @gradbalance.hookimpl
        def gradbalance_combiners(self):
            return [Kinded]

    registry.register(Plugin())
    assert registry.create("kinded", "combiner", kind="b").kind == "b"
    assert registry.options("kinded") == ["kind"]
