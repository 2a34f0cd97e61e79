"""The tree passes ruff's rules and is in ruff's format (both configured in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["gradbalance", "minbert_tasks", "tests", "benchmarks"]


def _ruff() -> str:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it is in the dev extra)")
    return ruff


def test_ruff_check_passes():
    result = subprocess.run(
        [_ruff(), "check", "--output-format", "concise", *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_the_tree_unchanged():
    result = subprocess.run([_ruff(), "format", "--check", *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (
        "run `ruff format " + " ".join(PATHS) + "`; it would change:\n" + result.stdout + result.stderr
    )


def test_the_lint_sees_a_violation_of_each_kind(tmp_path):
    # An unsorted import, an old-style Optional and a needless `if` in a throwaway tree under the
    # project's configuration: each rule family is switched on, and the formatter finds the spacing.
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    source = tmp_path / "bad.py"
    source.write_text(
        "import sys\nimport os\nfrom typing import Optional\n\n\n"
        "def f(x: Optional[int]) -> bool:\n    if x:\n        return True\n    else:\n        return False\n"
        "\n\nprint(os, sys,f)\n"
    )
    check = subprocess.run(
        [_ruff(), "check", "--output-format", "concise", "--no-cache", "bad.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    for rule in ("I001", "UP0", "SIM103"):  # UP's code for Optional has changed between releases
        assert rule in check.stdout, check.stdout + check.stderr
    fmt = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", "bad.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert fmt.returncode == 1, fmt.stdout + fmt.stderr
