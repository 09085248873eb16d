"""The prediction log: a sampled record of what the server was asked and answered, for monitoring to read.

Files: `LUODI_HOME/predictions/<model>/part-<unix ns>-<pid>.parquet`, one row per predicted row:

    timestamp     timestamp[ms, UTC]   when the response was ready
    model         string               served model name
    version       int64                the version that answered
    endpoint      string               v1_predict or v2_infer
    request_id    string               the id the answer carried (/v1 `request_id`, /v2 `id`, X-Request-Id)
    latency_ms    float64              the whole request, queue included
    inputs        struct               one field per input, stored as its field type says (serve/schema.py
                                       FIELD_TYPES: numbers as float64, everything else as text)
    <output>      one per task output  a label as its name (string), a number as float64, scores as a struct
                                       of float64 by part name: a classifier's `prediction` and
                                       `probabilities`, a regression's `prediction`

Requests are sampled (`log_sample_rate`) and buffered in memory (at most `max_buffer_rows` rows; beyond that
rows are dropped and counted, never blocking a request); a background thread writes a file every
`flush_s` seconds, atomically, and deletes the oldest files once a model's folder passes `max_bytes`.
With a `listener` (the server's live monitor, serve/live.py) every request is buffered, sampled or not, and each
flush hands the listener the whole table before the sampled rows are written: the live drift window reuses the
rows the log already collects, so it costs the request path nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from luodi.io import atomic_write
from luodi.serve.schema import ServingSchema
from luodi.store import path_inside
from luodi.tasks import Output, Predictions

log = logging.getLogger("luodi.serve")


class Pending:
    """Buffered rows of one model version, column by column: a request adds numbers and strings to a few lists
    rather than an object graph, so thousands of buffered requests give the garbage collector nothing to walk."""

    def __init__(self, model: str, version: int, schema: ServingSchema):
        self.model, self.version, self.schema = model, version, schema
        self.counts: list[int] = []
        self.at: list[float] = []
        self.endpoint: list[str] = []
        self.request_id: list[str | None] = []
        self.latency_ms: list[float] = []
        self.sampled: list[bool] = []  # per request: written to the log (all are, at log_sample_rate 1)
        self.inputs: dict[str, list[Any]] = {field.name: [] for field in schema.fields}
        self.outputs: dict[str, list[np.ndarray]] = {spec.name: [] for spec in schema.outputs}

    def add(self, at: float, endpoint: str, request_id: str | None, latency_ms: float, columns: dict[str, Any],
            predictions: Predictions, sampled: bool = True) -> None:
        self.counts.append(len(predictions))
        self.sampled.append(sampled)
        self.at.append(at)
        self.endpoint.append(endpoint)
        self.request_id.append(request_id)
        self.latency_ms.append(latency_ms)
        for name, values in self.inputs.items():
            values.extend(columns[name].tolist() if isinstance(columns[name], np.ndarray) else columns[name])
        for output in predictions.outputs:
            self.outputs[output.spec.name].append(output.data)

    def table(self) -> pa.Table:
        schema, counts = self.schema, np.asarray(self.counts)
        rows = int(counts.sum())
        inputs = [field.kind.to_log(self.inputs[field.name]) for field in schema.fields]
        columns: dict[str, Any] = {
            "timestamp": pa.array(np.repeat((np.asarray(self.at) * 1000).astype(np.int64), counts),
                                  pa.timestamp("ms", tz="UTC")),
            "model": pa.array([self.model] * rows, pa.string()),
            "version": pa.array(np.full(rows, self.version, np.int64)),
            "endpoint": pa.array(np.repeat(np.asarray(self.endpoint, dtype=object), counts), pa.string()),
            "request_id": pa.array(np.repeat(np.asarray(self.request_id, dtype=object), counts), pa.string()),
            "latency_ms": pa.array(np.repeat(np.asarray(self.latency_ms), counts), pa.float64()),
            "inputs": pa.StructArray.from_arrays(inputs, [field.name for field in schema.fields]),
        }
        for spec in schema.outputs:
            columns[spec.name] = logged(Output(spec, np.concatenate(self.outputs[spec.name])))
        return pa.table(columns)

    def sampled_rows(self, table: pa.Table) -> pa.Table:
        """The rows of `table` (this buffer's) that the log keeps."""
        if all(self.sampled):
            return table
        return table.filter(pa.array(np.repeat(np.asarray(self.sampled, bool), np.asarray(self.counts))))


def logged(output: Output) -> pa.Array:
    """An output's column in the log: a label's name, a number, or a struct of float64 scores by part name."""
    spec = output.spec
    if spec.kind == "label":
        return pa.array(output.text(), pa.string())
    if spec.kind == "number":
        return pa.array(output.data, pa.float64())
    return pa.StructArray.from_arrays([pa.array(output.data[:, index], pa.float64())
                                       for index in range(len(spec.parts))], list(spec.parts))


class PredictionLog:
    """Buffer sampled predictions in memory and write them as Parquet from a background thread."""

    def __init__(self, home: Path, *, sample_rate: float, max_bytes: int, flush_s: float,
                 max_buffer_rows: int = 50_000, listener: Callable[[str, int, pa.Table], None] | None = None):
        self.root = path_inside(home, "predictions")
        self.root.mkdir(exist_ok=True)
        self.sample_rate, self.max_bytes, self.flush_s = sample_rate, max_bytes, flush_s
        self.max_buffer_rows = max_buffer_rows
        self.listener = listener  # gets every buffered request's rows at each flush (model, version, table)
        self.pending: dict[int, Pending] = {}  # by id of the schema: one per model version
        self.buffered_rows = 0
        self.dropped_rows = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="luodi-prediction-log", daemon=True)
        self.thread.start()

    def add(self, model: str, version: int, schema: ServingSchema, endpoint: str, request_id: str | None,
            latency_ms: float, columns: dict[str, Any], predictions: Predictions) -> None:
        """Keep a request with probability `sample_rate` (every request when a listener takes them all); never blocks
        on I/O."""
        sampled = self.sample_rate >= 1.0 or random.random() < self.sample_rate
        if not sampled and self.listener is None:
            return
        rows = len(predictions)
        with self.lock:
            if self.buffered_rows + rows > self.max_buffer_rows:
                self.dropped_rows += rows
                return
            pending = self.pending.get(id(schema))
            if pending is None:
                pending = self.pending[id(schema)] = Pending(model, version, schema)
            pending.add(time.time(), endpoint, request_id, latency_ms, columns, predictions, sampled)
            self.buffered_rows += rows

    def _loop(self) -> None:
        while not self.stopping.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a full disk must not stop serving; the next flush tries again
                log.exception("writing the prediction log failed")

    def flush(self) -> None:
        import pyarrow.parquet as pq

        with self.lock:
            pending, self.pending, self.buffered_rows = self.pending, {}, 0
        for group in pending.values():  # one file per model version: a reload may change the input fields
            table = group.table()
            if self.listener is not None:
                try:
                    self.listener(group.model, group.version, table)
                except Exception:  # noqa: BLE001 - live monitoring never stops the log
                    log.exception("handing the prediction log's rows to live monitoring failed")
            table = group.sampled_rows(table)
            if not table.num_rows:
                continue
            folder = path_inside(self.root, group.model)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-{time.time_ns()}-{os.getpid()}.parquet"
            atomic_write(path, functools.partial(pq.write_table, table))
            self._rotate(folder)

    def _rotate(self, folder: Path) -> None:
        """Delete the oldest files past the limit (several workers may rotate one folder at once)."""
        files, sizes = [], []
        for path in sorted(folder.glob("part-*.parquet"), key=lambda path: path.name):
            try:
                sizes.append(path.stat().st_size)
                files.append(path)
            except FileNotFoundError:  # another worker deleted it
                continue
        total = sum(sizes)
        for path, size in zip(files, sizes, strict=True):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def close(self) -> None:
        """Stop the writer and write what is buffered."""
        self.stopping.set()
        self.thread.join(timeout=10)
        self.flush()
