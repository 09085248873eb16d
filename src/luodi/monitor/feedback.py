"""Delayed labels: ground truth sent after the fact (`POST /v1/models/NAME/feedback`, `luodi feedback`), kept beside
the prediction log and joined to it by request id.

Files: `LUODI_HOME/feedback/<model>/part-<unix ns>-<pid>.parquet`, one row per label:

    request_id    string               the id the server returned with the prediction (`request_id` / `X-Request-Id`)
    row           int64                the record's position in that request (0 for a one-record request)
    target        string or float64    a label's name (as the log spells predictions) or a number
    received_at   timestamp[ms, UTC]   when the label arrived; a later label of the same row replaces an earlier one

Validation names the row and field of every bad entry: the server answers them as a /v1 422 list, the CLI as
one line naming the file and row (exit 2).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from luodi.errors import InputError
from luodi.io import atomic_write
from luodi.monitor.log import log_tables, part_files
from luodi.store import path_inside
from luodi.tasks import OutputSpec

MAX_ID = 256  # characters of a request id (what /v2 allows for its `id`)
MAX_ROW = 1_000_000
COMPACT_FILES = 64  # feedback files of a model before they are merged into one
TARGET_KEYS = ("target", "label")  # the label field's names; the model's target column name is accepted too


@dataclass
class Problem:
    """One bad entry: where (entry index, field) and what."""

    index: int
    field: str
    message: str

    def detail(self) -> dict[str, Any]:
        """The /v1 validation-error item (pydantic's shape: loc, msg, type)."""
        return {"loc": ["body", "feedback", self.index, self.field], "msg": self.message, "type": "value_error"}


class Labels:
    """What a model's feedback must hold: its prediction output (a label with named parts, or a number)."""

    def __init__(self, spec: OutputSpec, target_name: str):
        self.spec, self.target_name = spec, target_name
        self.names = {str(label): part for label, part in zip(spec.labels, spec.parts, strict=False)}
        self.names.update({part: part for part in spec.parts})

    @property
    def numeric(self) -> bool:
        return self.spec.kind == "number"

    def target_of(self, entry: dict[str, Any]) -> tuple[str | None, Any]:
        for key in (*TARGET_KEYS, self.target_name):
            if key in entry:
                return key, entry[key]
        return None, None

    def check(self, entries: list[Any]) -> tuple[pa.Table, list[Problem]]:
        """The valid entries as a feedback table, and a Problem per bad field."""
        ids: list[str] = []
        rows: list[int] = []
        targets: list[Any] = []
        problems: list[Problem] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                problems.append(Problem(index, "entry", "must be an object with request_id and target"))
                continue
            found = len(problems)
            request_id = entry.get("request_id")
            if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID:
                problems.append(Problem(index, "request_id", f"must be the request id the server returned (a "
                                                             f"string of 1 to {MAX_ID} characters)"))
            row = entry.get("row", 0)
            if isinstance(row, float) and row.is_integer():
                row = int(row)
            if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < MAX_ROW:
                problems.append(Problem(index, "row", f"must be the record's position in its request, 0 to "
                                                      f"{MAX_ROW - 1}"))
            key, value = self.target_of(entry)
            target = self._target(value)
            if key is None:
                problems.append(Problem(index, "target", "is missing (give `target`: the true "
                                                         f"{'value' if self.numeric else 'label'})"))
            elif target is None:
                problems.append(Problem(index, key, self._expected(value)))
            if len(problems) == found and isinstance(request_id, str):
                ids.append(request_id)
                rows.append(row)
                targets.append(target)
        return self.table(ids, rows, targets), problems

    def _target(self, value: Any) -> Any:
        if self.numeric:
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    return None
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return None
            return float(value)
        if value is None or isinstance(value, dict | list):
            return None
        return self.names.get(str(value)) or self.names.get(str(value).lower())

    def _expected(self, value: Any) -> str:
        if self.numeric:
            return f"{_shown(value)} is not a finite number"
        return f"{_shown(value)} is not one of the model's labels {list(self.spec.parts)}"

    def table(self, ids: list[str], rows: list[int], targets: list[Any]) -> pa.Table:
        return pa.table({
            "request_id": pa.array(ids, pa.string()), "row": pa.array(rows, pa.int64()),
            "target": pa.array(targets, pa.float64() if self.numeric else pa.string()),
            "received_at": pa.array(np.full(len(ids), int(time.time() * 1000), np.int64), pa.timestamp("ms", "UTC")),
        })


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def labels_of(manifest: dict[str, Any]) -> Labels:
    """The feedback a package's model takes: its prediction output (the first output of its task)."""
    from luodi.package import output_specs

    return Labels(output_specs(manifest)[0], manifest["config"]["target"]["name"])


def feedback_folder(home: Path, model: str) -> Path:
    return path_inside(path_inside(home, "feedback"), model)


def write_feedback(home: Path, model: str, table: pa.Table) -> Path:
    """One Parquet file of labels, written atomically (readers never see half of it); past `COMPACT_FILES` files
    the folder is compacted into one."""
    import pyarrow.parquet as pq

    folder = feedback_folder(home, model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{time.time_ns()}-{os.getpid()}.parquet"
    atomic_write(path, functools.partial(pq.write_table, table))
    if len(part_files(folder)) > COMPACT_FILES:
        compact(folder)
    return path


def compact(folder: Path) -> None:
    """Many small files (a feedback request each) into one, a label per (request_id, row): the new file is written
    before the ones it replaces are deleted, so a reader or a second compaction at the same time loses nothing
    (at worst two copies of the same labels, which reading removes)."""
    import pyarrow.parquet as pq

    files = part_files(folder)
    try:
        merged = latest_labels([pq.read_table(path) for path in files])
    except FileNotFoundError:  # another process is compacting the same files
        return
    if merged is None:
        return
    atomic_write(folder / f"part-{time.time_ns()}-{os.getpid()}.parquet", functools.partial(pq.write_table, merged))
    for path in files:
        path.unlink(missing_ok=True)


def latest_labels(tables: list[pa.Table]) -> pa.Table | None:
    """The tables' labels, the latest per (request_id, row)."""
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="permissive")
    frame = table.to_pandas().sort_values("received_at", kind="stable")
    frame = frame.drop_duplicates(["request_id", "row"], keep="last")
    return pa.Table.from_pandas(frame, preserve_index=False, schema=table.schema)


def read_feedback_file(path: str | Path, labels: Labels) -> pa.Table:
    """A CSV, JSONL or Parquet file of request_id, target (and optional row) columns; an InputError names the file
    and the first bad row (1-based, as a spreadsheet numbers data rows)."""
    from luodi.data.sources import read_table

    table = read_table(path)
    if "request_id" not in table.column_names:
        raise InputError(f"{path}: no request_id column (columns: {', '.join(table.column_names)})")
    if not any(name in table.column_names for name in (*TARGET_KEYS, labels.target_name)):
        raise InputError(f"{path}: no target column: name it `target` (or {labels.target_name!r}); columns: "
                         f"{', '.join(table.column_names)}")
    records = table.to_pylist()
    for record in records:  # CSV readers type ids as numbers when they look like numbers
        if record.get("request_id") is not None and not isinstance(record["request_id"], str):
            record["request_id"] = str(record["request_id"])
    checked, problems = labels.check(records)
    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise InputError(f"{path}: row {first.index + 1}, column {first.field}: {first.message}{more}")
    if not checked.num_rows:
        raise InputError(f"{path}: no rows")
    return checked


def read_feedback(home: Path, model: str) -> pa.Table | None:
    """Every label of a model, the latest per (request_id, row); None when there is none."""
    return latest_labels(list(log_tables(part_files(feedback_folder(home, model)), what="feedback")))


def with_positions(log: pa.Table) -> pa.Table:
    """The log with each row's position in its request (`row`): rows of one request are logged together, in order."""
    import pandas as pd

    ids = pd.Series(log.column("request_id").to_numpy(zero_copy_only=False))
    return log.append_column("row", pa.array(ids.groupby(ids, dropna=False).cumcount().to_numpy(), pa.int64()))


def join_labels(log: pa.Table, feedback: pa.Table | None) -> pa.Table:
    """The logged rows that have a label, with the label as `target` (and when it arrived as `labelled_at`)."""
    import pandas as pd

    positioned = with_positions(log)
    if feedback is None or not feedback.num_rows or not log.num_rows:
        return positioned.slice(0, 0).append_column("target", pa.nulls(0)).append_column(
            "labelled_at", pa.nulls(0, pa.timestamp("ms", "UTC")))
    keys = pd.DataFrame({"request_id": positioned.column("request_id").to_numpy(zero_copy_only=False),
                         "row": positioned.column("row").to_numpy(), "position": np.arange(log.num_rows)})
    labels = feedback.select(["request_id", "row", "target", "received_at"]).to_pandas()
    matched = keys.merge(labels, on=["request_id", "row"], how="inner").sort_values("position", kind="stable")
    joined = positioned.take(pa.array(matched["position"].to_numpy(), pa.int64()))
    target = pa.array(matched["target"].to_numpy(), feedback.schema.field("target").type)
    received = pa.array(matched["received_at"].astype("datetime64[ms, UTC]").astype("int64").to_numpy(),
                        pa.int64()).cast(pa.timestamp("ms", "UTC"))
    return joined.append_column("target", target).append_column("labelled_at", received)


def unmatched_count(feedback: pa.Table | None, joined: pa.Table) -> int:
    """Labels that met no logged prediction of the window (sampled out, another version or time, an unknown id)."""
    return 0 if feedback is None else max(0, feedback.num_rows - joined.num_rows)
