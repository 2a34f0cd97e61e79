"""Tiny task files in the CS224N tab-separated layout, for the tests that train or run commands."""

import csv
from pathlib import Path

WORDS = "good bad movie great awful plot actor scene story fine dull bright dark happy sad film".split()


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """A task file: a leading unnamed index column, then ``header``, one line per row."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["", *header])
        for k, row in enumerate(rows):
            writer.writerow([k, *row])
