"""The CI script: the derandomized hypothesis profile, and mypy between setup and pytest."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_ci_run_exports_ci_to_the_test_command(tmp_path):
    # .ci/run in a copy of the layout, with setup and the venv's tools replaced by recorders.
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    _executable(tmp_path / "scripts" / "setup.sh", "true\n")
    for tool in ("python", "mkdocs", "mypy"):
        _executable(tmp_path / ".venv" / "bin" / tool, f'#!/bin/sh\necho "CI=${{CI-unset}} {tool} $*"\n')
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "CI=true python -m pytest"


def test_ci_run_type_checks_after_setup_and_before_the_tests(tmp_path):
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    _executable(tmp_path / "scripts" / "setup.sh", "echo setup\n")
    for tool in ("python", "mkdocs", "mypy"):
        _executable(tmp_path / ".venv" / "bin" / tool, f'#!/bin/sh\necho "{tool} $*"\n')
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    steps = [line.split()[0] for line in lines]
    assert steps.index("setup") < steps.index("mypy") < steps.index("python"), lines
    # No arguments: mypy takes its files from pyproject.toml, which names both packages.
    assert lines[steps.index("mypy")] == "mypy"


def test_a_failing_type_check_fails_ci(tmp_path):
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    _executable(tmp_path / "scripts" / "setup.sh", "true\n")
    _executable(tmp_path / ".venv" / "bin" / "mkdocs", "true\n")
    _executable(tmp_path / ".venv" / "bin" / "mypy", "#!/bin/sh\nexit 1\n")
    _executable(tmp_path / ".venv" / "bin" / "python", '#!/bin/sh\necho "pytest ran"\n')
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pytest ran" not in result.stdout


def test_mypy_covers_both_packages():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert sorted(config["files"]) == ["gradbalance", "minbert_tasks"]
    assert config["warn_unused_ignores"] and config["disallow_untyped_defs"]


def test_the_ci_variable_loads_the_derandomized_profile():
    code = (
        "import runpy, hypothesis; runpy.run_path('tests/conftest.py'); "
        "print(hypothesis.settings.default.derandomize)"
    )
    seen = {}
    for value in ("true", None):
        env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": value} if value else {})
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        seen[value] = out.stdout.strip()
    assert seen == {"true": "True", None: "False"}
