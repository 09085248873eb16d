"""Reading tables: file formats round trip, bad files are InputErrors naming the path, in-memory inputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from luodi.data.sources import fingerprint_file, read_table, to_table
from luodi.errors import InputError


def frame() -> pd.DataFrame:
    return pd.DataFrame({"age": [31.0, None, 45.5], "city": ["Oslo", "none", None], "member": [True, False, True]})


def write(path: Path, data: pd.DataFrame) -> Path:
    suffix = path.suffix
    if suffix in (".csv", ".tsv"):
        data.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    elif suffix == ".parquet":
        data.to_parquet(path, index=False)
    else:
        data.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    table = read_table(write(tmp_path / f"data{suffix}", frame()))
    assert table.column_names == ["age", "city", "member"]
    assert table.column("age").to_pylist() == [31.0, None, 45.5]
    assert table.column("city").to_pylist() == ["Oslo", "none", None]  # lowercase "none" stays a value
    assert table.column("member").to_pylist() == [True, False, True]


def test_csv_null_tokens(tmp_path: Path) -> None:
    path = tmp_path / "nulls.csv"
    path.write_text("x,y\n1,NA\n2,\n3,null\n4,ok\n", encoding="utf-8")
    assert read_table(path).column("y").to_pylist() == [None, None, None, "ok"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(InputError, match="data file not found") as caught:
        read_table(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("empty.csv", "", "the file is empty"),
    ("header.csv", "a,b,y\n", "has a header but no rows"),
    ("data.xlsx", "a,b\n1,2\n", "unsupported file type '.xlsx'"),
    ("bad.jsonl", '{"a": 1}\n{"a": \n', "cannot read as JSONL"),
    ("bad.parquet", "not parquet at all", "cannot read as PARQUET"),
    ("blank.jsonl", "\n", "no columns found"),
])
def test_bad_files_name_the_path(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_table(path)
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(InputError, match="is not a file"):
        read_table(folder)


def test_records_with_mixed_types_become_text() -> None:
    table = to_table([{"a": 1, "b": "x"}, {"a": "two", "c": 2.5}])
    assert table.column_names == ["a", "b", "c"]
    assert table.column("a").to_pylist() == ["1", "two"]
    assert table.column("b").to_pylist() == ["x", None]
    assert table.column("c").to_pylist() == [None, 2.5]


def test_single_record_dict() -> None:
    assert to_table({"age": 3, "city": "Oslo"}).to_pylist() == [{"age": 3, "city": "Oslo"}]


def test_dataframe_and_arrow_table() -> None:
    data = frame()
    assert to_table(data).column("age").to_pylist() == [31.0, None, 45.5]
    arrow = pa.table({"x": [1, 2]})
    assert to_table(arrow) is arrow


def test_path_goes_through_read_table(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", frame())
    assert to_table(str(path)).num_rows == 3
    assert to_table(path).num_rows == 3


@pytest.mark.parametrize(("data", "fragment"), [
    ([], "no rows"), ([{"a": 1}, 5], "row 2 is a int"), (42, "got int"), (pd.DataFrame({"a": []}), "no rows"),
])
def test_bad_in_memory_inputs(data: object, fragment: str) -> None:
    with pytest.raises(InputError, match="request") as caught:
        to_table(data, source="request")
    assert fragment in str(caught.value)


def test_fingerprint_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x\n1\n", encoding="utf-8")
    first = fingerprint_file(path)
    assert first == fingerprint_file(path)
    assert first["bytes"] == 4 and len(first["sha256"]) == 64
    path.write_text("x\n2\n", encoding="utf-8")
    assert fingerprint_file(path)["sha256"] != first["sha256"]


def test_text_files_and_folders_read_as_a_text_column(tmp_path: Path) -> None:
    (tmp_path / "paragraphs.txt").write_text("First one,\nstill first.\n\n  \nSecond.\n\nThird.\n", encoding="utf-8")
    assert read_table(tmp_path / "paragraphs.txt").column("text").to_pylist() == [
        "First one,\nstill first.", "Second.", "Third."]
    (tmp_path / "lines.txt").write_text("one\ntwo\n\nthree", encoding="utf-8")  # one blank line: paragraphs
    assert read_table(tmp_path / "lines.txt").column("text").to_pylist() == ["one\ntwo", "three"]
    (tmp_path / "plain.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")  # none: a row per line
    assert read_table(tmp_path / "plain.txt").column("text").to_pylist() == ["one", "two", "three"]
    folder = tmp_path / "books"
    (folder / "more").mkdir(parents=True)
    (folder / "a.txt").write_text("book a", encoding="utf-8")
    (folder / "more" / "b.txt").write_text("book b\n\nchapter 2", encoding="utf-8")
    (folder / ".hidden.txt").write_text("no", encoding="utf-8")
    assert read_table(folder).column("text").to_pylist() == ["book a", "book b\n\nchapter 2"]
    assert fingerprint_file(folder)["bytes"] == len("book a") + len("book b\n\nchapter 2")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match="not UTF-8"):
        read_table(tmp_path / "latin1.txt")
