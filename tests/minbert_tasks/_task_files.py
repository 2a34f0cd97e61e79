"""Tiny task files in the CS224N tab-separated layout, for the tests that train or run commands."""

import csv
import random
from pathlib import Path

WORDS = "good bad movie great awful plot actor scene story fine dull bright dark happy sad film".split()


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """A task file: a leading unnamed index column, then ``header``, one line per row."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["", *header])
        for k, row in enumerate(rows):
            writer.writerow([k, *row])


def write_task_files(folder: Path, seed: int, sizes: dict[str, int], *, malformed_para: bool = False) -> Path:
    """Random SST-5, Quora and STS-B files in ``folder``: ``sizes[split]`` rows per task and split,
    sentences of 3-9 words from :data:`WORDS`. ``malformed_para`` ends each Quora file with a row
    whose label is empty, as the real training file has one."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))

    for split, n in sizes.items():
        write(
            folder / f"ids-sst-{split}.csv",
            ["id", "sentence", "sentiment"],
            [[f"s{split}{k}", sentence(), str(rng.randint(0, 4))] for k in range(n)],
        )
        para = [[f"q{split}{k}", sentence(), sentence(), str(rng.randint(0, 1))] for k in range(n)]
        if malformed_para:
            para.append([f"q{split}bad", sentence(), sentence(), ""])
        write(folder / f"quora-{split}.csv", ["id", "sentence1", "sentence2", "is_duplicate"], para)
        write(
            folder / f"sts-{split}.csv",
            ["id", "sentence1", "sentence2", "similarity"],
            [[f"t{split}{k}", sentence(), sentence(), f"{rng.uniform(0, 5):.3f}"] for k in range(n)],
        )
    return folder
