"""``python -m gradbalance._render_properties FILE.md``: rewrite the combiners × properties table
between the markers in FILE.md from the built-ins' declarations."""

from __future__ import annotations

import sys
from pathlib import Path

from ._properties import builtin_table, replace_table


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gradbalance._render_properties FILE.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(replace_table(path.read_text(encoding="utf-8"), builtin_table()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
