"""Tests for minbert_tasks.data: the CS224N files shipped with the package and small temp files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from minbert_tasks.data import (
    BUNDLED_DATA_DIR,
    TASK_FILES,
    DataError,
    PairExample,
    SentenceExample,
    SkippedRow,
    default_data_dir,
    read_pairs,
    read_sentences,
    read_task_split,
    task_file,
)


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return BUNDLED_DATA_DIR


def write(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


SST_HEADER = "\tid\tsentence\tsentiment\n"
PAIR_HEADER = "\tid\tsentence1\tsentence2\tis_duplicate\n"
STS_HEADER = "\tid\tsentence1\tsentence2\tsimilarity\n"


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize(
    ("task", "split", "rows"),
    [
        ("sst", "train", 8544),
        ("sst", "dev", 1101),
        ("sts", "train", 5749),
        ("sts", "dev", 1500),
        ("para", "train", 14206),
        ("para", "dev", 1988),
    ],
)
def test_real_row_counts(data_dir: Path, task: str, split: str, rows: int) -> None:
    result = read_task_split(task, split, data_dir)
    assert len(result.examples) + len(result.skipped) == rows
    expected_skips = 1 if (task, split) == ("para", "train") else 0
    assert len(result.skipped) == expected_skips
    ids = [ex.id for ex in result.examples]
    assert len(set(ids)) == len(ids)
    for ex in result.examples[:50]:
        if task == "sst":
            assert isinstance(ex, SentenceExample) and isinstance(ex.label, int)
            assert 0 <= ex.label <= 4 and ex.text == ex.text.strip()
        else:
            assert isinstance(ex, PairExample)
            assert ex.text_a and ex.text_b
            if task == "para":
                assert ex.label in (0, 1) and isinstance(ex.label, int)
            else:
                assert isinstance(ex.label, float) and 0.0 <= ex.label <= 5.0


def test_real_labels_match_csv_reference(data_dir: Path) -> None:
    """Same ids, texts and labels as the CS224N reference reader (csv.DictReader, tab)."""
    with open(data_dir / "sts-dev.csv", newline="", encoding="utf-8") as fp:
        ref = [
            (r["id"].strip(), r["sentence1"].strip(), r["sentence2"].strip(), float(r["similarity"]))
            for r in csv.DictReader(fp, delimiter="\t")
        ]
    ours = read_task_split("sts", "dev", data_dir).examples
    assert [(e.id, e.text_a, e.text_b, e.label) for e in ours] == ref


def test_real_quora_malformed_row_reported(data_dir: Path) -> None:
    result = read_task_split("para", "train", data_dir)
    assert result.skipped == [SkippedRow(10012, "empty label")]
    # Physical line 10012 really is the row with the empty label.
    line = (data_dir / "quora-train.csv").read_text(encoding="utf-8").splitlines()[10011]
    assert line.split("\t")[1] == "9054345d02cd6c5642a4904dc"
    assert "9054345d02cd6c5642a4904dc" not in {ex.id for ex in result.examples}
    report = result.report()
    assert "quora-train.csv" in report and "skipped 1 malformed row" in report
    assert "line 10012: empty label" in report and "\n" not in report


def test_real_quora_quoting(data_dir: Path) -> None:
    dev = read_task_split("para", "dev", data_dir)
    assert dev.examples[1].text_a == '"What does ""turning the ship slowly"" mean?"'


def test_real_strict_raises(data_dir: Path) -> None:
    with pytest.raises(DataError, match=r"quora-train\.csv, line 10012: empty label"):
        read_task_split("para", "train", data_dir, strict=True)
    # Strict mode is harmless on clean files.
    assert len(read_task_split("sst", "dev", data_dir, strict=True).examples) == 1101


def test_real_unlabeled_read(data_dir: Path) -> None:
    result = read_sentences(data_dir / "ids-sst-dev.csv", labeled=False)
    assert len(result.examples) == 1101 and all(ex.label is None for ex in result.examples)


# --------------------------------------------------------------------------- data folder


def test_default_data_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MINBERT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert task_file("sts", "dev") == tmp_path / "sts-dev.csv"


def test_default_data_dir_is_the_bundled_copy_wherever_we_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MINBERT_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)  # a folder beside the checkout is not read
    monkeypatch.chdir(tmp_path / "shared")
    assert default_data_dir() == BUNDLED_DATA_DIR
    assert task_file("sst", "train") == BUNDLED_DATA_DIR / "ids-sst-train.csv"
    assert all((BUNDLED_DATA_DIR / name).is_file() for name in TASK_FILES.values())


def test_task_file_validation(tmp_path: Path) -> None:
    assert task_file("para", "train", tmp_path) == tmp_path / "quora-train.csv"
    assert task_file("sst", "dev", tmp_path) == tmp_path / "ids-sst-dev.csv"
    with pytest.raises(ValueError, match="unknown task"):
        task_file("nli", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        task_file("sst", "test", tmp_path)


# --------------------------------------------------------------------------- small files


def test_quoting_and_stripping(tmp_path: Path) -> None:
    text = (
        PAIR_HEADER
        + '0\tq1\t"""What does """"turning"""" mean?"""\t  plain b  \t1\n'
        + '1\t q2 \t"tab\tinside"\t"multi\nline"\t0.0\n'
        + "2\tq3\ta\tb\t1.0\n"
    )
    result = read_pairs(write(tmp_path, text))
    assert result.skipped == []
    assert result.examples == [
        PairExample("q1", '"What does ""turning"" mean?"', "plain b", 1),
        PairExample("q2", "tab\tinside", "multi\nline", 0),
        PairExample("q3", "a", "b", 1),
    ]
    assert all(isinstance(ex.label, int) for ex in result.examples)


def test_crlf_and_blank_lines(tmp_path: Path) -> None:
    text = SST_HEADER.replace("\n", "\r\n") + "0\ta\t good \t4\r\n\r\n1\tb\tbad\t0\r\n"
    result = read_sentences(write(tmp_path, text))
    assert result.examples == [SentenceExample("a", "good", 4), SentenceExample("b", "bad", 0)]


def test_malformed_rows_skipped_with_physical_lines(tmp_path: Path) -> None:
    text = (
        SST_HEADER  # line 1
        + "0\ta\tfine\t3\n"  # 2
        + "1\tb\tno label\n"  # 3: missing column
        + "2\tc\ttoo high\t5\n"  # 4: out of range
        + '3\td\t"two\nlines"\t-1\n'  # 5-6: out of range, reported at its first line
        + "4\te\tempty label\t\n"  # 7
        + "5\tf\tnot a number\tgood\n"  # 8
        + "6\tg\tfraction\t2.5\n"  # 9
        + "7\th\textra\t1\tx\n"  # 10
        + "8\ti\t   \t1\n"  # 11: empty sentence
        + "9\tj\tok again\t3.0\n"  # 12
    )
    result = read_sentences(write(tmp_path, text))
    assert [ex.id for ex in result.examples] == ["a", "j"]
    assert result.examples[1].label == 3
    lines = [s.line for s in result.skipped]
    assert lines == [3, 4, 5, 7, 8, 9, 10, 11]
    reasons = [s.reason for s in result.skipped]
    assert reasons[0].startswith("missing columns")
    assert "outside [0, 4]" in reasons[1] and "outside [0, 4]" in reasons[2]
    assert reasons[3] == "empty label"
    assert "unparseable" in reasons[4] and "non-integer" in reasons[5]
    assert reasons[6].startswith("too many columns") and reasons[7] == "empty sentence"
    report = result.report()
    assert "skipped 8 malformed rows" in report and "line 3: missing columns" in report
    assert "5 more" in report


def test_strict_names_file_line_reason(tmp_path: Path) -> None:
    path = write(tmp_path, SST_HEADER + "0\ta\tfine\t3\n1\tb\tbad\t7\n", "sst.csv")
    with pytest.raises(DataError) as info:
        read_sentences(path, strict=True)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "outside [0, 4]" in message


def test_label_range_option(tmp_path: Path) -> None:
    path = write(tmp_path, SST_HEADER + "0\ta\tx\t1\n1\tb\ty\t2\n")
    result = read_sentences(path, label_range=(0, 1))
    assert [ex.id for ex in result.examples] == ["a"] and result.skipped[0].line == 3


def test_binary_labels(tmp_path: Path) -> None:
    text = PAIR_HEADER + "0\ta\tx\ty\t0\n1\tb\tx\ty\t2\n2\tc\tx\ty\t0.5\n3\td\tx\ty\tnan\n"
    result = read_pairs(write(tmp_path, text), label_kind="binary")
    assert [ex.id for ex in result.examples] == ["a"]
    assert [s.line for s in result.skipped] == [3, 4, 5]


def test_score_labels(tmp_path: Path) -> None:
    text = (
        STS_HEADER
        + "0\ta\tx\ty\t0.000\n1\tb\tx\ty\t5\n2\tc\tx\ty\t2.75\n"
        + "3\td\tx\ty\t5.01\n4\te\tx\ty\t-0.1\n5\tf\tx\ty\tinf\n6\tg\tx\ty\t\n"
    )
    result = read_pairs(write(tmp_path, text), label_kind="score")
    assert [(ex.id, ex.label) for ex in result.examples] == [("a", 0.0), ("b", 5.0), ("c", 2.75)]
    assert all(isinstance(ex.label, float) for ex in result.examples)
    assert [s.line for s in result.skipped] == [5, 6, 7, 8]
    assert "outside [0, 5]" in result.skipped[0].reason
    assert result.skipped[3].reason == "empty label"


def test_bad_label_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label_kind"):
        read_pairs(write(tmp_path, PAIR_HEADER), label_kind="multi")  # type: ignore[arg-type]


def test_unlabeled_files(tmp_path: Path) -> None:
    sst = write(tmp_path, "\tid\tsentence\n0\ta\t x \n1\tb\ty\n", "sst-test.csv")
    result = read_sentences(sst, labeled=False)
    assert result.examples == [SentenceExample("a", "x", None), SentenceExample("b", "y", None)]
    pairs = write(tmp_path, "\tid\tsentence1\tsentence2\n0\ta\tx\ty\n", "para-test.csv")
    assert read_pairs(pairs, labeled=False).examples == [PairExample("a", "x", "y", None)]
    # Asking for labels from a file without a label column is a whole-file error.
    with pytest.raises(DataError, match="no label column"):
        read_sentences(sst)
    with pytest.raises(DataError, match="no label column"):
        read_pairs(pairs)


def test_unlabeled_ignores_label_column(tmp_path: Path) -> None:
    path = write(tmp_path, SST_HEADER + "0\ta\tx\t\n1\tb\ty\t9\n")
    result = read_sentences(path, labeled=False)
    assert [ex.label for ex in result.examples] == [None, None] and result.skipped == []


def test_columns_found_by_header_name(tmp_path: Path) -> None:
    text = "sentiment\tsentence\tid\n4\thello\tx1\n"
    assert read_sentences(write(tmp_path, text)).examples == [SentenceExample("x1", "hello", 4)]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        read_sentences(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    with pytest.raises(DataError, match="nope"):
        read_task_split("sst", "train", tmp_path / "nope")


def test_directory_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_pairs(tmp_path)
    bad = tmp_path / "latin.csv"
    bad.write_bytes(SST_HEADER.encode() + b"0\ta\tcaf\xe9\t1\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_sentences(bad)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty file"):
        read_sentences(write(tmp_path, ""))
    assert read_sentences(write(tmp_path, SST_HEADER)).examples == []


def test_missing_data_folder_is_named_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"data folder .*nope does not exist .*--data-dir, set \$MINBERT_DATA"
    ):
        read_task_split("sts", "dev", tmp_path / "nope")
    with pytest.raises(DataError, match="is not a folder"):
        read_task_split("sts", "dev", write(tmp_path, SST_HEADER))


def test_a_file_of_the_other_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="two sentence columns"):
        read_sentences(write(tmp_path, PAIR_HEADER + "0\tp1\ta\tb\t1\n"), labeled=False)
    for labeled in (True, False):
        with pytest.raises(DataError, match="no sentence1, sentence2 column"):
            read_pairs(write(tmp_path, SST_HEADER + "0\ts1\thello\t3\n"), labeled=labeled)
    # an unnamed layout still reads by position
    pairs = read_pairs(write(tmp_path, "\tid\ta\tb\tscore\n0\tp1\tx\ty\t1\n"))
    assert pairs.examples == [PairExample("p1", "x", "y", 1)]
