r'''Reading the CS224N task files (SST-5, Quora paraphrase, STS-B).

The files are tab-separated with a header line. The first column is a running index (its header
cell is empty), the second a stable example id, then one or two sentences, then (in labelled
files) the label::

    <TAB>id<TAB>sentence<TAB>sentiment                       ids-sst-*.csv      (0..4)
    <TAB>id<TAB>sentence1<TAB>sentence2<TAB>is_duplicate     quora-*.csv        (0/1)
    <TAB>id<TAB>sentence1<TAB>sentence2<TAB>similarity       sts-*.csv          (0..5)

Fields are parsed exactly as the CS224N reference does (``csv`` with ``delimiter='\t'`` and the
default double-quote quoting: a field wrapped in quotes has its inner doubled quotes collapsed,
so the Quora cell ``"""What does """"x"""" mean?"""`` reads as ``"What does ""x"" mean?"``);
sentences and ids are stripped. Unlike the reference, which silently drops Quora rows whose
label does not parse, a malformed row is *skipped and reported* with its physical line number
(1-based, the header is line 1; a quoted multi-line record is reported by its first line), or
raises :class:`DataError` with ``strict=True``.

Columns are found by header name (``id``; ``sentence`` or ``sentence1``/``sentence2``; the label
column ``sentiment``/``is_duplicate``/``similarity``/``label``), falling back to the positional
layout above when the header does not name them. A test file without a label column reads with
``labeled=False``; its examples have ``label=None``.
'''

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import attrs

__all__ = [
    "DataError",
    "PairExample",
    "ReadResult",
    "SentenceExample",
    "SkippedRow",
    "SPLITS",
    "TASK_FILES",
    "TASKS",
    "BUNDLED_DATA_DIR",
    "default_data_dir",
    "read_pairs",
    "read_sentences",
    "read_task_split",
    "task_file",
]

#: Environment variable that overrides :func:`default_data_dir`.
DATA_DIR_ENV = "MINBERT_DATA"

TASKS: tuple[str, ...] = ("sst", "para", "sts")
SPLITS: tuple[str, ...] = ("train", "dev")

#: File name of each (task, split) inside the data folder.
TASK_FILES: dict[tuple[str, str], str] = {
    ("sst", "train"): "ids-sst-train.csv",
    ("sst", "dev"): "ids-sst-dev.csv",
    ("para", "train"): "quora-train.csv",
    ("para", "dev"): "quora-dev.csv",
    ("sts", "train"): "sts-train.csv",
    ("sts", "dev"): "sts-dev.csv",
}

_LABEL_HEADERS = ("sentiment", "is_duplicate", "similarity", "label")
_SCORE_RANGE = (0.0, 5.0)


class DataError(Exception):
    """A task file is missing, unreadable, has an unusable header, or (strict mode) a bad row."""


@attrs.frozen
class SentenceExample:
    """One single-sentence example (SST). ``label`` is ``None`` for unlabelled files."""

    id: str
    text: str
    label: int | None


@attrs.frozen
class PairExample:
    """One sentence-pair example: Quora (``label`` 0/1) or STS (``label`` a float in [0, 5])."""

    id: str
    text_a: str
    text_b: str
    label: float | int | None


@attrs.frozen
class SkippedRow:
    """A malformed row that was left out: its physical line (1-based; header = line 1)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@attrs.frozen
class ReadResult:
    """Examples read from one file, in file order, plus the rows that were skipped."""

    path: Path
    examples: list[SentenceExample] | list[PairExample]
    skipped: list[SkippedRow] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[SentenceExample | PairExample]:
        return iter(self.examples)

    def report(self, max_rows: int = 3) -> str:
        """One-line summary, e.g. ``quora-train.csv: 14205 examples, skipped 1 malformed row
        (line 10012: empty label)``."""
        n = len(self.skipped)
        head = f"{self.path.name}: {len(self.examples)} examples"
        if n == 0:
            return head + ", no malformed rows"
        shown = "; ".join(str(s) for s in self.skipped[:max_rows])
        more = f"; ... {n - max_rows} more" if n > max_rows else ""
        noun = "row" if n == 1 else "rows"
        return f"{head}, skipped {n} malformed {noun} ({shown}{more})"


# --------------------------------------------------------------------------- data folder


#: The CS224N task files shipped inside the package (see its README.md for sources and terms).
BUNDLED_DATA_DIR = Path(__file__).resolve().parent / "task_data"


def default_data_dir() -> Path:
    """Folder holding the task files: ``$MINBERT_DATA`` if set, else the copy shipped with the
    package (:data:`BUNDLED_DATA_DIR`), so a fresh clone or install trains with no data flag."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return BUNDLED_DATA_DIR


def task_file(task: str, split: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the standard file for ``task`` in {sst, para, sts} and ``split`` in {train, dev}."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    return folder / TASK_FILES[(task, split)]


def _check_folder(path: Path) -> None:
    """A missing data folder is named as such, with how to point at the right one."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(
            f"data folder {folder} {what} (looking for {path.name}); pass --data-dir, set "
            f"${DATA_DIR_ENV} or data_dir in the config to the folder of the CS224N task files"
        )


def read_task_split(
    task: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    strict: bool = False,
) -> ReadResult:
    """Read the standard labelled file of one task and split (see :data:`TASK_FILES`)."""
    path = task_file(task, split, data_dir)
    _check_folder(path)
    if task == "sst":
        return read_sentences(path, strict=strict)
    return read_pairs(path, label_kind="binary" if task == "para" else "score", strict=strict)


# --------------------------------------------------------------------------- readers


class _RowError(Exception):
    pass


def _read_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (first physical line, fields) for every non-blank record, header included."""
    try:
        fp = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(f"cannot read data file {path}: {reason}") from None
    with fp:
        reader = csv.reader(fp, delimiter="\t")
        start = 1
        try:
            for fields in reader:
                if fields and any(f.strip() for f in fields):
                    yield start, fields
                start = reader.line_num + 1
        except UnicodeDecodeError as exc:
            raise DataError(f"cannot read data file {path}: not UTF-8 ({exc.reason})") from None
        except csv.Error as exc:
            raise DataError(f"{path}, line {start}: unparseable CSV ({exc})") from None


def _find_columns(
    path: Path, header: list[str], text_names: Sequence[str], labeled: bool
) -> tuple[int, list[int], int | None]:
    """Return (id column, text columns, label column or None) from the header."""
    names = [h.strip().lower() for h in header]
    n_text = len(text_names)
    # Positional layout: index, id, text..., [label]
    id_col = names.index("id") if "id" in names else 1
    if all(t in names for t in text_names):
        text_cols = [names.index(t) for t in text_names]
    elif n_text == 1 and "sentence1" in names:
        if "sentence2" in names:
            raise DataError(
                f"{path}: header {header!r} has two sentence columns, but this task reads one sentence "
                "per row (a sentence-pair file, or the wrong --task?)"
            )
        text_cols = [names.index("sentence1")]
    else:
        text_cols = list(range(id_col + 1, id_col + 1 + n_text))
        # Positional columns must not land on a column the header names as something else.
        named = {*_LABEL_HEADERS, "sentence", "sentence1", "sentence2"} - set(text_names)
        if any(c < len(names) and names[c] in named for c in text_cols):
            raise DataError(
                f"{path}: header {header!r} has no {', '.join(text_names)} column(s) "
                "(a file of another task, or the wrong --task?)"
            )
    label_col: int | None = None
    if labeled:
        found = [names.index(n) for n in _LABEL_HEADERS if n in names]
        if found:
            label_col = found[0]
        elif max(text_cols) + 1 < len(names):
            label_col = max(text_cols) + 1
        else:
            raise DataError(
                f"{path}: header has no label column ({'|'.join(_LABEL_HEADERS)}); read it with labeled=False"
            )
    used = [id_col, *text_cols] + ([label_col] if label_col is not None else [])
    if len(set(used)) != len(used) or max(used) >= len(names):
        raise DataError(
            f"{path}: header {header!r} does not have the expected columns "
            f"(id, {', '.join(text_names)}{', label' if labeled else ''})"
        )
    return id_col, text_cols, label_col


def _read(
    path: str | os.PathLike[str],
    text_names: Sequence[str],
    labeled: bool,
    parse_label: Callable[[str], float | int],
    strict: bool,
) -> tuple[Path, list[tuple[str, list[str], float | int | None]], list[SkippedRow]]:
    path = Path(path)
    rows = _read_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{path}: empty file (no header)") from None
    id_col, text_cols, label_col = _find_columns(path, header, text_names, labeled)
    width = len(header)
    parsed: list[tuple[str, list[str], float | int | None]] = []
    skipped: list[SkippedRow] = []
    for line, fields in rows:
        try:
            if len(fields) < width:
                raise _RowError(f"missing columns (expected {width}, got {len(fields)})")
            if len(fields) > width:
                raise _RowError(f"too many columns (expected {width}, got {len(fields)})")
            label = parse_label(fields[label_col]) if label_col is not None else None
            ex_id = fields[id_col].strip()
            if not ex_id:
                raise _RowError("empty id")
            texts = [fields[c].strip() for c in text_cols]
            for name, text in zip(text_names, texts):
                if not text:
                    raise _RowError(f"empty {name}")
        except _RowError as exc:
            if strict:
                raise DataError(f"{path}, line {line}: {exc}") from None
            skipped.append(SkippedRow(line, str(exc)))
            continue
        parsed.append((ex_id, texts, label))
    return path, parsed, skipped


def _float_label(raw: str) -> float:
    text = raw.strip()
    if not text:
        raise _RowError("empty label")
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"unparseable label {text!r}") from None
    if not math.isfinite(value):
        raise _RowError(f"non-finite label {text!r}")
    return value


def _int_label(raw: str, low: int, high: int) -> int:
    value = _float_label(raw)
    if value != int(value):
        raise _RowError(f"non-integer label {raw.strip()!r}")
    if not low <= value <= high:
        raise _RowError(f"label {raw.strip()!r} outside [{low}, {high}]")
    return int(value)


def read_sentences(
    path: str | os.PathLike[str],
    *,
    labeled: bool = True,
    label_range: tuple[int, int] = (0, 4),
    strict: bool = False,
) -> ReadResult:
    """Read a single-sentence file (SST layout) into :class:`SentenceExample` records.

    Labels must be integers within ``label_range`` (inclusive; ``"3.0"`` is accepted as 3).
    With ``labeled=False`` any label column is ignored and ``label`` is ``None``.
    """
    low, high = label_range
    path, rows, skipped = _read(path, ("sentence",), labeled, lambda raw: _int_label(raw, low, high), strict)
    examples = [
        SentenceExample(ex_id, texts[0], None if label is None else int(label))
        for ex_id, texts, label in rows
    ]
    return ReadResult(path, examples, skipped)


def read_pairs(
    path: str | os.PathLike[str],
    *,
    labeled: bool = True,
    label_kind: Literal["binary", "score"] = "binary",
    strict: bool = False,
) -> ReadResult:
    """Read a sentence-pair file (Quora / STS layout) into :class:`PairExample` records.

    ``label_kind="binary"``: labels 0/1 (``"0.0"``/``"1.0"`` accepted), stored as ``int``.
    ``label_kind="score"``: a finite float in [0, 5], stored as ``float``.
    """
    if label_kind == "binary":

        def parse(raw: str) -> float | int:
            return _int_label(raw, 0, 1)

    elif label_kind == "score":

        def parse(raw: str) -> float | int:
            value = _float_label(raw)
            low, high = _SCORE_RANGE
            if not low <= value <= high:
                raise _RowError(f"label {raw.strip()!r} outside [{low:g}, {high:g}]")
            return value

    else:
        raise ValueError(f"label_kind must be 'binary' or 'score', got {label_kind!r}")
    path, rows, skipped = _read(path, ("sentence1", "sentence2"), labeled, parse, strict)
    examples = [PairExample(ex_id, texts[0], texts[1], label) for ex_id, texts, label in rows]
    return ReadResult(path, examples, skipped)
