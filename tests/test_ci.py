"""The CI script selects the derandomized hypothesis profile by itself."""

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
    for tool in ("python", "mkdocs"):
        _executable(tmp_path / ".venv" / "bin" / tool, f'#!/bin/sh\necho "CI=${{CI-unset}} {tool} $*"\n')
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "CI=true python -m pytest"


def test_the_ci_variable_loads_the_derandomized_profile():
    code = ("import runpy, hypothesis; runpy.run_path('tests/conftest.py'); "
            "print(hypothesis.settings.default.derandomize)")
    seen = {}
    for value in ("true", None):
        env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": value} if value else {})
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        seen[value] = out.stdout.strip()
    assert seen == {"true": "True", None: "False"}
