"""minbert_tasks plugins: built-ins, real tiny distributions loaded in a subprocess, isolation
of broken plugins, and loud name collisions."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradbalance import UnknownCombinerError
from minbert_tasks import plugins
from minbert_tasks.heads import HeadConfig
from minbert_tasks.samplers import BUILTIN_SAMPLERS
from minbert_tasks.tasks import BUILTIN_TASKS, TaskSpec

REPO = Path(__file__).resolve().parents[2]

TOY_MODULE = """
import attrs
from minbert_tasks.heads import HeadConfig
from minbert_tasks.samplers import SequentialSampler
from minbert_tasks.tasks import TaskSpec


def read_toy(split, data_dir=None, strict=False):
    raise NotImplementedError


TOY = TaskSpec(name="toy", kind="single", output="binary", num_outputs=1, reader=read_toy)


@attrs.frozen
class ReversedSampler(SequentialSampler):
    name = "reversed"

    def plan(self, tasks, epoch, seed):
        return super().plan(tasks, epoch, seed)[::-1]


WIDE = HeadConfig(stack="mlp", mlp_layers=3)
"""


def make_dist(
    root: Path, dist: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]
) -> None:
    """A real (unpacked) distribution: ``<dist>-0.1.dist-info`` plus top-level modules."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, items in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in items.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


PROBE = """
import json, sys, warnings
from gradbalance import UnknownCombinerError
from minbert_tasks import plugins

def discover(lookups):
    result = {}
    try:
        result["tasks"] = {n: type(t).__name__ for n, t in plugins.tasks().items()}
        result["samplers"] = sorted(plugins.samplers())
        result["heads"] = sorted(plugins.heads())
        result["sources"] = {n: e.source for n, e in plugins.entries("task").items()}
        if "toy" in result["tasks"]:
            toy = plugins.get_task("toy")
            result["toy_kind"] = [toy.kind, toy.output, toy.divergence]
        if "reversed" in result["samplers"]:
            from minbert_tasks.samplers import TaskData
            plan = plugins.get_sampler("reversed")().plan([TaskData("a", 4, 2)], 0, 0)
            result["reversed_steps"] = len(plan)
    except Exception as exc:
        result["error"] = [type(exc).__name__, str(exc)]
    for kind, name in lookups:
        try:
            getattr(plugins, "get_" + kind)(name)
        except Exception as exc:
            result.setdefault("lookup_errors", {})[name] = [type(exc).__name__, str(exc)]
    return result

results = {}
base = list(sys.path)
for name, (paths, lookups) in json.loads(sys.argv[1]).items():
    sys.path[:] = paths + base
    plugins.refresh()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results[name] = discover(lookups)
    results[name]["warnings"] = [
        [w.category.__name__, str(w.message)] for w in caught if "minbert_tasks" in str(w.message)
    ]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Discovery results of several sys.path layouts, all from one fresh interpreter.

    Each layout holds real unpacked distributions; the interpreter puts a layout's folders on
    sys.path, forgets earlier discoveries and discovers again. (One process keeps this test
    module fast: importing torch dominates.)
    """
    root = tmp_path_factory.mktemp("dists")
    toy = root / "toy"
    make_dist(
        toy,
        "toyplug",
        {
            "minbert_tasks.tasks": {"toy": "toyplug:TOY"},
            "minbert_tasks.samplers": {"reversed": "toyplug:ReversedSampler"},
            "minbert_tasks.heads": {"wide": "toyplug:WIDE"},
        },
        {"toyplug": TOY_MODULE},
    )
    make_dist(
        root / "broken",
        "brokenplug",
        {
            "minbert_tasks.tasks": {"broken": "brokenplug:TASK", "wrongtype": "brokenplug:NOT_A_TASK"},
            "minbert_tasks.samplers": {"nameless": "brokenplug:Nameless"},
        },
        {"brokenplug": "raise ImportError('missing dependency frobnicate')\n"},
    )
    make_dist(
        root / "wrong",
        "wrongplug",
        {"minbert_tasks.tasks": {"number": "wrongplug:NUMBER"}},
        {"wrongplug": "NUMBER = 42\n"},
    )
    clash = TOY_MODULE.replace('name="toy"', 'name="sst"')
    make_dist(
        root / "clash", "clashplug", {"minbert_tasks.tasks": {"sst": "clashplug:TOY"}}, {"clashplug": clash}
    )
    for dist in ("alphaplug", "betaplug"):
        make_dist(
            root / dist,
            dist,
            {"minbert_tasks.samplers": {"reversed": f"{dist}:ReversedSampler"}},
            {dist: TOY_MODULE},
        )
    layouts = {  # the folders on sys.path, and the names to look up after discovery
        "none": ([], []),
        "fourth": ([toy], []),
        "broken": ([toy, root / "broken", root / "wrong"], []),
        "clash": ([root / "clash"], [("task", "sst")]),
        "sampler_clash": ([root / "alphaplug", root / "betaplug"], [("sampler", "reversed")]),
    }
    arg = json.dumps({k: ([str(p) for p in paths], lookups) for k, (paths, lookups) in layouts.items()})
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, arg], env=env, capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_builtins_are_available_in_process() -> None:
    plugins.refresh()
    assert set(plugins.tasks()) >= set(BUILTIN_TASKS)
    assert all(isinstance(t, TaskSpec) for t in plugins.tasks().values())
    assert plugins.get_task("sts") is BUILTIN_TASKS["sts"]
    assert set(plugins.samplers()) >= set(BUILTIN_SAMPLERS)
    assert plugins.get_sampler("round_robin") is BUILTIN_SAMPLERS["round_robin"]
    assert isinstance(plugins.get_head("siamese_cosine"), HeadConfig)


def test_unknown_names_list_what_is_available() -> None:
    with pytest.raises(plugins.UnknownPluginError, match=r"no task named 'nli'; available: .*para.*sst.*sts"):
        plugins.get_task("nli")
    with pytest.raises(plugins.UnknownPluginError, match=r"available: .*round_robin"):
        plugins.get_sampler("zigzag")
    with pytest.raises(
        plugins.UnknownPluginError, match=r"no sampler named 'round-robin' \(did you mean 'round_robin'\?\)"
    ):
        plugins.get_sampler("round-robin")
    assert plugins.UnknownPluginError is UnknownCombinerError  # one error for every unknown name
    with pytest.raises(KeyError):
        plugins.get_head("nope")
    with pytest.raises(ValueError, match="kind"):
        plugins.entries("combiner")


def test_without_plugins_only_builtins_load(scenarios: dict[str, dict]) -> None:
    got = scenarios["none"]
    assert "error" not in got and got["warnings"] == []
    assert got["tasks"] == {"para": "TaskSpec", "sst": "TaskSpec", "sts": "TaskSpec"}
    assert got["samplers"] == sorted(BUILTIN_SAMPLERS)


def test_a_third_party_distribution_adds_a_fourth_task(scenarios: dict[str, dict]) -> None:
    got = scenarios["fourth"]
    assert "error" not in got and got["warnings"] == []
    assert got["tasks"] == {"para": "TaskSpec", "sst": "TaskSpec", "sts": "TaskSpec", "toy": "TaskSpec"}
    assert got["sources"]["toy"].startswith("toyplug")
    assert "minbert_tasks" in got["sources"]["sst"]
    assert got["toy_kind"] == ["single", "binary", "bernoulli_kl"]
    assert "reversed" in got["samplers"] and "round_robin" in got["samplers"]
    assert got["reversed_steps"] == 2
    assert "wide" in got["heads"] and "cls_linear" in got["heads"]


def test_a_broken_plugin_is_skipped_with_a_warning(scenarios: dict[str, dict]) -> None:
    got = scenarios["broken"]
    assert "error" not in got
    assert set(got["tasks"]) == {"sst", "para", "sts", "toy"}
    assert "reversed" in got["samplers"]
    messages = [m for _, m in got["warnings"]]
    assert {c for c, _ in got["warnings"]} == {"PluginLoadWarning"}
    assert any("brokenplug" in m and "'broken'" in m and "frobnicate" in m for m in messages)
    assert any("brokenplug" in m and "'nameless'" in m for m in messages)
    assert any("wrongplug" in m and "TaskSpec" in m for m in messages)
    assert len(messages) == 4, messages  # broken, wrongtype, nameless, number


def test_two_tasks_with_one_name_raise_naming_both_sources(scenarios: dict[str, dict]) -> None:
    got = scenarios["clash"]
    assert "error" not in got
    assert got["tasks"] == {"para": "TaskSpec", "sts": "TaskSpec"}  # the other names keep working
    name, message = got["lookup_errors"]["sst"]
    assert name == "PluginConflictError"
    assert "'sst'" in message and "clashplug" in message and "minbert_tasks" in message
    [(category, warning)] = got["warnings"]
    assert category == "PluginLoadWarning"
    assert warning.startswith("minbert_tasks: 2 tasks are named 'sst'") and "clashplug" in warning


def test_two_third_party_samplers_with_one_name_raise(scenarios: dict[str, dict]) -> None:
    got = scenarios["sampler_clash"]
    assert "error" not in got and "reversed" not in got["samplers"] and "round_robin" in got["samplers"]
    name, message = got["lookup_errors"]["reversed"]
    assert name == "PluginConflictError"
    assert "'reversed'" in message and "alphaplug" in message and "betaplug" in message


def test_own_entry_points_replace_the_builtin_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once pyproject's entry points are installed, the built-ins come only from them: no
    # fallback copy, hence no self-collision.
    own = [
        importlib.metadata.EntryPoint(name, f"minbert_tasks.tasks:{name.upper()}", "minbert_tasks.tasks")
        for name in ("sst", "para", "sts")
    ]
    real = importlib.metadata.entry_points

    def fake(**kwargs: str) -> object:
        return own if kwargs.get("group") == "minbert_tasks.tasks" else real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    plugins.refresh()
    try:
        found = plugins.entries("task")
        assert set(found) == {"sst", "para", "sts"}
        assert all("minbert_tasks.tasks:" in e.source for e in found.values())
        assert found["para"].obj is BUILTIN_TASKS["para"]
    finally:
        plugins.refresh()
