"""The trainer's tests write their task files with the helpers one folder up
(``tests/minbert_tasks/_task_files.py``), shared with the resume and distributed tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
