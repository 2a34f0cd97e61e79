#!/usr/bin/env bash
# Create .venv and install the project with its development extras, offline weights included.
# torch is pinned to the CPU build that pip finds on this machine's disk; a bare "torch" would
# pull a multi-GB CUDA build. On a GPU machine, install the torch build you need first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "setup done: $(.venv/bin/python -c 'import torch, gradbalance; print("torch", torch.__version__, "| combiners:", ", ".join(gradbalance.available()))')"
