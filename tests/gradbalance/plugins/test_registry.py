"""Plugin discovery through real distributions in a temporary site directory."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradbalance
from gradbalance import PCGrad, UnknownCombinerError
from gradbalance.plugins import PluginConflictError, PluginLoadWarning, Registry, plugin_entries


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


ROOT = Path(__file__).resolve().parents[2]


def run_python(site: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` (or ``-m module`` when ``code`` is ``"-m"``) in a fresh interpreter that sees the
    distributions in ``site`` and this checkout's packages (ahead of any installed copy)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", *args] if code == "-m" else [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_builtins_come_through_the_packages_own_entry_point():
    entries = plugin_entries()
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
        print([e.source for e in gradbalance.plugins.plugin_entries() if e.name == "half-sum"])
        """,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "half-sum" in lines[0] and "pcgrad" in lines[0]
    assert lines[1] == "[1.0, 1.0, 1.0]"
    assert lines[2] == "['acme-balancers']"
    assert "PluginLoadWarning" in result.stderr
    assert "'broken-plugin'" in result.stderr and "not installed" in result.stderr


def test_a_name_clash_disables_only_that_name(tmp_path):
    make_distribution(tmp_path, "pcgrad-fork", "pcgrad_fork", CLASH)
    result = run_python(
        tmp_path,
        """
        import gradbalance
        print(type(gradbalance.create("sum")).__qualname__)
        print("pcgrad" in gradbalance.available(), "gradvac" in gradbalance.available())
        try:
            gradbalance.create("pcgrad")
        except gradbalance.plugins.PluginConflictError as exc:
            print("error:", exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Sum", "False True"]
    assert lines[2] == (
        "error: 2 combiners are named 'pcgrad': gradbalance.combiners._pcgrad.PCGrad from 'gradbalance' "
        "and pcgrad_fork.MyPCGrad from 'pcgrad-fork'; 'pcgrad' is unavailable until you uninstall all "
        "but one of these distributions or rename the classes"
    )
    assert "PluginLoadWarning: gradbalance: 2 combiners are named 'pcgrad'" in result.stderr


def test_conflicting_in_process_plugins():
    registry = Registry(group="gradbalance-test-empty-group")

    class Mine(gradbalance.Sum):
        name = "pcgrad"

    class Plugin:
        @gradbalance.hookimpl
        def gradbalance_combiners(self):
            return [Mine, PCGrad, gradbalance.Mean]

    registry.register(Plugin(), source="mine")
    with pytest.warns(PluginLoadWarning, match="2 combiners are named 'pcgrad'"):
        assert registry.available() == ["mean"]
    assert [e.obj for e in registry.conflicts()["pcgrad"]] == [Mine, PCGrad]
    with pytest.raises(PluginConflictError, match="Mine from 'mine' and .*PCGrad from 'mine'"):
        registry.create("pcgrad")
    assert isinstance(registry.create("mean"), gradbalance.Mean)


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
    with pytest.warns(PluginLoadWarning) as caught:
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
    registry.register(gradbalance._builtins)
    registry.register(gradbalance._builtins)  # a module registered twice: no error


def test_unknown_names_and_options_suggest_a_close_match():
    with pytest.raises(
        UnknownCombinerError, match=r"no combiner named 'pc-grad' \(did you mean 'pcgrad'\?\)"
    ):
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


COMBINE_ONLY = """
    import torch
    import gradbalance

    class UnitSum(gradbalance.GradientCombiner):
        '''Sum of the task gradients, each scaled to unit norm.'''
        name = "unit-sum"

        def combine(self, G, segments=None, *, out=None):
            return (G / G.norm(dim=1, keepdim=True)).sum(0)

    @gradbalance.hookimpl
    def gradbalance_combiners():
        return [UnitSum]
"""

NEITHER_METHOD = """
    import gradbalance

    class Unfinished(gradbalance.GradientCombiner):
        name = "unfinished"

        def weights(self, gramian):  # meant to subclass GramianCombiner
            return gramian.diagonal(dim1=-2, dim2=-1)

    @gradbalance.hookimpl
    def gradbalance_combiners():
        return [Unfinished]
"""

UNMARKED = """
    import gradbalance

    def gradbalance_combiners():  # no @gradbalance.hookimpl
        return [gradbalance.Sum]
"""

MISSPELLED = """
    import gradbalance

    @gradbalance.hookimpl
    def gradbalance_combiner():  # the hook is gradbalance_combiners
        return [gradbalance.Sum]
"""


@pytest.fixture(scope="module")
def contract_runs(tmp_path_factory):
    """A site directory with a combine-only balancer beside three distributions that break, and
    two fresh interpreters on it (run once for the tests below): a script that creates the
    balancer by name and combines through ``TaskGradients``, and ``gradbalance list``."""
    site = tmp_path_factory.mktemp("site")
    make_distribution(site, "unit-balancers", "unit_balancers", COMBINE_ONLY)
    make_distribution(site, "unfinished-balancers", "unfinished_balancers", NEITHER_METHOD)
    make_distribution(site, "unmarked-balancers", "unmarked_balancers", UNMARKED)
    make_distribution(site, "typo-balancers", "typo_balancers", MISSPELLED)
    script = run_python(
        site,
        """
        import torch, gradbalance
        print(gradbalance.available())
        combiner = gradbalance.create("unit-sum")
        torch.manual_seed(0)
        shared = torch.nn.Linear(3, 2)
        buffer = gradbalance.TaskGradients(shared, num_tasks=2)
        for t in range(2):
            with buffer.task(t):
                (shared(torch.randn(4, 3)).sum() * (t + 1)).backward()
        buffer.combine(combiner)
        rows = buffer.rows
        want = rows[0] / rows[0].norm() + rows[1] / rows[1].norm()
        print(torch.allclose(buffer.result, want), shared.weight.grad.data_ptr() == buffer.result.data_ptr())
        """,
    )
    return script, run_python(site, "-m", "gradbalance", "list")


def plugin_warnings(stderr: str) -> dict[str, str]:
    """The PluginLoadWarning messages in ``stderr``, keyed by the distribution each names."""
    found = {}
    for line in stderr.splitlines():
        if "PluginLoadWarning: " in line:
            message = line.split("PluginLoadWarning: ", 1)[1]
            named = message.split("of distribution ", 1)[-1]  # a load failure names the entry point first
            found[named.split("'")[1]] = message
    return found


def test_a_combine_only_distribution_is_listed_created_and_run_in_task_gradients(contract_runs):
    script, listing = contract_runs
    assert script.returncode == 0, script.stderr
    names, check = script.stdout.splitlines()
    assert "'unit-sum'" in names and "'unfinished'" not in names and "'pcgrad'" in names
    assert check == "True True"
    assert listing.returncode == 0, listing.stderr
    rows = [line.split()[:3] for line in listing.stdout.splitlines()]
    assert ["unit-sum", "combiner", "unit-balancers"] in rows and [
        "pcgrad",
        "combiner",
        "gradbalance",
    ] in rows
    assert "Sum of the task gradients, each scaled to unit norm." in listing.stdout


def test_a_class_with_neither_method_costs_only_its_distribution(contract_runs):
    for run in contract_runs:
        warned = plugin_warnings(run.stderr)
        assert "Traceback" not in run.stderr
        assert warned["unfinished-balancers"] == (
            "gradbalance: skipped plugin 'unfinished_balancers' (unfinished_balancers) of distribution "
            "'unfinished-balancers': TypeError: Unfinished must implement combine(self, G, segments=None, *, "
            "out=None) returning the [P] update direction (or combine_with_info returning a "
            "gradbalance.Combination), or subclass gradbalance.GramianCombiner and implement weights(self, "
            "gramian); for an abstract base class write class Unfinished(..., abstract=True)"
        )


def test_a_plugin_that_contributes_nothing_is_named_with_what_was_found(contract_runs):
    tail = ". A plugin implements gradbalance_combiners() and/or gradbalance_regularizers(), each marked @gradbalance.hookimpl"
    for run in contract_runs:
        warned = plugin_warnings(run.stderr)
        assert sorted(warned) == ["typo-balancers", "unfinished-balancers", "unmarked-balancers"]
        assert warned["unmarked-balancers"] == (
            "gradbalance: plugin 'unmarked-balancers' (unmarked_balancers) contributes nothing: "
            "gradbalance_combiners() is not marked @gradbalance.hookimpl" + tail
        )
        assert warned["typo-balancers"] == (
            "gradbalance: plugin 'typo-balancers' (typo_balancers) contributes nothing: @gradbalance.hookimpl "
            "marks gradbalance_combiner(), which is no gradbalance hook (did you mean 'gradbalance_combiners'?)"
            + tail
        )


def test_hook_problems_of_in_process_plugins():
    registry = Registry(group="gradbalance-test-empty-group")

    class Partly:
        @gradbalance.hookimpl
        def gradbalance_combiners(self):
            return [PCGrad]

        def gradbalance_regularizers(self):  # forgot the marker
            return []

    class Optional:
        @gradbalance.hookimpl(optionalhook=True)
        def gradbalance_future_hook(self):
            return []

        @gradbalance.hookimpl
        def gradbalance_combiners(self):
            return []

    with pytest.warns(PluginLoadWarning) as caught:
        registry.register(Partly(), source="partly")
        registry.register(Optional(), source="optional")
        registry.register(object(), source="empty")
    assert [str(w.message).split(". A plugin")[0] for w in caught] == [
        "gradbalance: plugin 'partly' (test_hook_problems_of_in_process_plugins.<locals>.Partly) contributes "
        "only gradbalance_combiners: gradbalance_regularizers() is not marked @gradbalance.hookimpl",
        "gradbalance: plugin 'empty' (object) contributes nothing: it has no function marked @gradbalance.hookimpl",
    ]
    assert registry.available() == ["pcgrad"]
