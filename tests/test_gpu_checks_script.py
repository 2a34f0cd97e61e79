"""scripts/gpu_checks.sh, with a recording stand-in for Python: it refuses a machine without
CUDA, and on one runs the CUDA tests and the CUDA benchmark, keeping their logs."""

import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout(tmp_path: Path, cuda: bool, tests_exit: int) -> Path:
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    python = tmp_path / "fake-python"
    python.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/calls"\n'
        'case "$2" in *cuda.is_available*) exit ' + ("0" if cuda else "1") + ";; esac\n"
        'case "$*" in *test_cuda.py*) echo "3 passed"; exit ' + str(tests_exit) + ";; esac\n"
        'echo "ran $*"\n'
    )
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return python


def _run(tmp_path: Path, python: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(python), "OUT": str(tmp_path / "out")}
    script = tmp_path / "scripts" / "gpu_checks.sh"
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_refuses_a_machine_without_cuda(tmp_path):
    result = _run(tmp_path, _layout(tmp_path, cuda=False, tests_exit=0))
    assert result.returncode == 2
    assert "sees no CUDA device" in result.stderr
    assert "pytest" not in (tmp_path / "calls").read_text()
    assert not (tmp_path / "out").exists()


def test_runs_the_cuda_tests_and_benchmark_and_keeps_their_logs(tmp_path):
    result = _run(tmp_path, _layout(tmp_path, cuda=True, tests_exit=0))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "calls").read_text()
    assert "-m pytest -q -p no:cacheprovider tests/gradbalance/test_cuda.py" in calls
    assert "-m pytest -q -s -p no:cacheprovider benchmarks/test_cuda_combine.py" in calls
    assert "3 passed" in (tmp_path / "out" / "tests.log").read_text()
    assert "test_cuda_combine.py" in (tmp_path / "out" / "benchmark.log").read_text()


def test_a_failing_cuda_test_fails_the_run(tmp_path):
    result = _run(tmp_path, _layout(tmp_path, cuda=True, tests_exit=1))
    assert result.returncode == 1
    assert "tests exit 1" in result.stdout
