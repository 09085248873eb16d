"""Streaming tables: every row once per epoch in a seeded order that resumes exactly, one-pass statistics equal to
whole-column ones, and memory bounded while the file is several times the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from luodi.data.stream import fit_statistics, in_order, shuffled, split_codes, split_keep
from luodi.errors import InputError


def write(folder: Path, rows: int, kind: str) -> Path:
    generator = np.random.default_rng(3)
    table = pa.table({"id": np.arange(rows), "x": generator.normal(size=rows),
                      "color": generator.choice(["red", "green", "blue"], size=rows)})
    path = folder / f"rows.{kind}"
    if kind == "parquet":
        pq.write_table(table, path, row_group_size=70)
    else:
        pacsv.write_csv(table, path)
    return path


def ids(path: Path, seed: int, epoch: int, skip: int = 0) -> list[int]:
    return [value for block in shuffled(path, seed=seed, epoch=epoch, buffer_rows=64, skip_rows=skip)
            for value in block.column("id").to_pylist()]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_order_is_a_pure_function_of_seed_and_epoch(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, 1000, kind)
    order = ids(path, seed=7, epoch=0)
    assert sorted(order) == list(range(1000))  # every row exactly once
    assert order != list(range(1000)) and order == ids(path, seed=7, epoch=0)
    assert order != ids(path, seed=7, epoch=1) and order != ids(path, seed=8, epoch=0)
    for skip in (0, 1, 63, 64, 500, 999, 1000):  # a resumed epoch continues where the checkpoint stopped
        assert ids(path, seed=7, epoch=0, skip=skip) == order[skip:]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_one_pass_statistics_equal_whole_column_ones(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, 1000, kind)
    whole = pq.read_table(path) if kind == "parquet" else pacsv.read_csv(path)
    stats = fit_statistics(path, numeric=["x"], categories=["color"], batch_rows=37)
    x = whole.column("x").to_numpy()
    assert stats["x"].count == 1000 and stats["x"].mean == pytest.approx(x.mean(), rel=1e-12)
    assert stats["x"].std == pytest.approx(x.std(), rel=1e-12)
    assert (stats["x"].minimum, stats["x"].maximum) == (x.min(), x.max())
    assert dict(stats["color"].values) == {value: whole.column("color").to_pylist().count(value)
                                           for value in ("red", "green", "blue")}


@pytest.mark.parametrize("normalization", ["zscore", "log", "minmax"])
def test_a_streamed_numeric_state_is_what_the_encoder_fits(tmp_path: Path, normalization: str) -> None:
    """`normalization: log` included: the logged values' z-score, from one pass over batches (it used to stop at the
    log, unscaled, when streamed)."""
    from luodi.config import NumericFeature
    from luodi.features.encoders import NumericEncoder
    from luodi.jobs.streamed import feature_state

    amounts = np.random.default_rng(5).lognormal(3.0, 1.5, size=900) * np.where(np.arange(900) % 9 == 0, -1, 1)
    path = tmp_path / "amounts.parquet"
    pq.write_table(pa.table({"amount": amounts}), path, row_group_size=70)
    feature = NumericFeature(name="amount", normalization=normalization)  # type: ignore[arg-type]
    streamed = feature_state(feature, fit_statistics(path, numeric=["amount"], batch_rows=37)["amount"])
    encoder = NumericEncoder(feature)
    encoder.fit(pa.chunked_array([pa.array(amounts)]))
    assert streamed == pytest.approx(encoder.state(), rel=1e-9)


def test_bad_input_names_the_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 10, "parquet")
    with pytest.raises(InputError, match=r"rows.parquet: no column 'age'"):
        fit_statistics(path, numeric=["age"])
    with pytest.raises(InputError, match=r"not numeric"):
        fit_statistics(path, numeric=["color"])
    (tmp_path / "rows.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match=r"streaming reads .parquet"):
        next(shuffled(tmp_path / "rows.jsonl", seed=1, epoch=0, buffer_rows=4))


MEASURE = """
import json, resource, sys
import pyarrow.compute, pyarrow.parquet  # loaded before the baseline: their code is not the data's memory
from luodi.data.stream import fit_statistics, in_order, shuffled, split_codes, split_keep
path, buffer_rows = sys.argv[1], int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, after the imports
stats = fit_statistics(path, numeric=["a", "b", "c"], categories=[])
rows = sum(block.num_rows for block in shuffled(path, seed=1, epoch=0, buffer_rows=buffer_rows))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "grew_mib": (after - before) / 1024, "mean": stats["a"].mean}))
"""


def write_numbers(path: Path, rows: int, group: int = 100_000) -> Path:
    """A Parquet file of `rows` x 4 eight-byte columns, written one row group at a time."""
    schema = pa.schema([("id", pa.int64()), ("a", pa.float64()), ("b", pa.float64()), ("c", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            values = np.arange(start, start + group, dtype=np.float64)
            writer.write_table(pa.table({"id": np.arange(start, start + group), "a": values, "b": -values,
                                         "c": values / 7}, schema=schema))
    return path


def streamed(path: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), "50000"], capture_output=True, text=True,
                          timeout=300, check=True)
    measured: dict[str, float] = json.loads(done.stdout)
    return measured


@pytest.mark.slow
def test_memory_stays_bounded_while_the_file_is_several_times_the_budget(tmp_path: Path) -> None:
    """Peak RSS of a process that fits statistics and streams one shuffled epoch grows by a constant (Arrow's and
    Parquet's first use: about 60 MiB here) whatever the file's size: a file of 8M rows (244 MiB in memory, 7x the
    budget) peaks within the budget of a file of 200k rows."""
    budget_mib, rows = 32, 8_000_000
    assert rows * 4 * 8 / 2**20 > 5 * budget_mib
    small = streamed(write_numbers(tmp_path / "small.parquet", 200_000))
    big = streamed(write_numbers(tmp_path / "big.parquet", rows))
    assert big["rows"] == rows and big["mean"] == pytest.approx((rows - 1) / 2)
    assert big["grew_mib"] - small["grew_mib"] < budget_mib, (small, big)
    assert big["grew_mib"] < 4 * budget_mib, big


def test_the_hashed_split_depends_only_on_row_number_and_seed() -> None:
    """Any block of a file is split as the whole file is (so every pass sees the same rows in each split), the
    fractions hold to within a few rows per thousand, and another seed gives other rows."""
    whole = split_codes(0, 100_000, 42, 0.15, 0.2)
    assert np.array_equal(np.concatenate([split_codes(0, 33_333, 42, 0.15, 0.2),
                                          split_codes(33_333, 66_667, 42, 0.15, 0.2)]), whole)
    shares = np.bincount(whole, minlength=3) / len(whole)
    assert shares == pytest.approx([0.65, 0.15, 0.2], abs=0.006)
    assert (split_codes(0, 100_000, 43, 0.15, 0.2) != whole).mean() > 0.3


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_split_streams_its_rows_once_and_resumes_exactly(tmp_path: Path, kind: str) -> None:
    """`keep` selects one split's rows before each block is shuffled: the training split's ids, each once, and a
    pass resumed after any number of kept rows continues the same order."""
    path = write(tmp_path, 1000, kind)
    keep = split_keep("train", 5, 0.2, 0.2)
    expected = np.flatnonzero(split_codes(0, 1000, 5, 0.2, 0.2) == 0)

    def order(skip: int) -> list[int]:
        return [value for block in shuffled(path, seed=1, epoch=2, buffer_rows=64, skip_rows=skip, keep=keep)
                for value in block.column("id").to_pylist()]

    full = order(0)
    assert sorted(full) == expected.tolist() and full != expected.tolist()
    for skip in (0, 1, 37, 64, 300, len(full)):
        assert order(skip) == full[skip:]
    in_file_order = [value for block in in_order(path, buffer_rows=64, keep=keep)
                     for value in block.column("id").to_pylist()]
    assert in_file_order == expected.tolist()
