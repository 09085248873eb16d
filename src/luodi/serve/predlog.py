"""The prediction log: a sampled record of what the server was asked and answered, for monitoring to read.

Files: `LUODI_HOME/predictions/<model>/part-<unix ns>-<pid>.parquet`, one row per predicted row:

    timestamp     timestamp[ms, UTC]   when the response was ready
    model         string               served model name
    version       int64                the version that answered
    endpoint      string               v1_predict or v2_infer
    request_id    string (nullable)    the v2 request id when given
    latency_ms    float64              the whole request, queue included
    inputs        struct               one field per input: numeric as float64, everything else as text
    prediction    string / float64     class name (classifiers) or value (regression)
    probabilities struct (nullable)    one float64 per class name (classifiers)

Requests are sampled (`log_sample_rate`) and buffered in memory (at most `max_buffer_rows` rows; beyond that
rows are dropped and counted, never blocking a request); a background thread writes a file every
`flush_s` seconds, atomically, and deletes the oldest files once a model's folder passes `max_bytes`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from luodi.io import atomic_write
from luodi.serve.schema import ServingSchema, numbers_to_arrow, text_to_arrow
from luodi.store import path_inside

log = logging.getLogger("luodi.serve")


@dataclass
class Entry:
    at: float
    model: str
    version: int
    endpoint: str
    request_id: str | None
    latency_ms: float
    schema: ServingSchema
    columns: dict[str, Any]
    predictions: list[Any]
    probabilities: np.ndarray | None


class PredictionLog:
    """Buffer sampled predictions in memory and write them as Parquet from a background thread."""

    def __init__(self, home: Path, *, sample_rate: float, max_bytes: int, flush_s: float,
                 max_buffer_rows: int = 50_000):
        self.root = path_inside(home, "predictions")
        self.root.mkdir(exist_ok=True)
        self.sample_rate, self.max_bytes, self.flush_s = sample_rate, max_bytes, flush_s
        self.max_buffer_rows = max_buffer_rows
        self.entries: list[Entry] = []
        self.buffered_rows = 0
        self.dropped_rows = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="luodi-prediction-log", daemon=True)
        self.thread.start()

    def add(self, entry: Entry) -> None:
        """Keep a request with probability `sample_rate`; never blocks on I/O."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        rows = len(entry.predictions)
        with self.lock:
            if self.buffered_rows + rows > self.max_buffer_rows:
                self.dropped_rows += rows
                return
            self.entries.append(entry)
            self.buffered_rows += rows

    def _loop(self) -> None:
        while not self.stopping.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a full disk must not stop serving; the next flush tries again
                log.exception("writing the prediction log failed")

    def flush(self) -> None:
        with self.lock:
            entries, self.entries, self.buffered_rows = self.entries, [], 0
        by_model: dict[str, list[Entry]] = {}
        for entry in entries:
            by_model.setdefault(entry.model, []).append(entry)
        for model, items in by_model.items():
            folder = path_inside(self.root, model)
            folder.mkdir(parents=True, exist_ok=True)
            # One file per schema: a reload between flushes may change the input fields.
            for group in _by_schema(items):
                self._write(folder, group)
            self._rotate(folder)

    def _write(self, folder: Path, entries: list[Entry]) -> None:
        import pyarrow.parquet as pq

        schema = entries[0].schema
        counts = [len(entry.predictions) for entry in entries]
        inputs = {}
        for field in schema.fields:
            values = _concat([entry.columns[field.name] for entry in entries])
            inputs[field.name] = numbers_to_arrow(values) if field.type == "numeric" else text_to_arrow(values)
        predictions = [value for entry in entries for value in entry.predictions]
        columns: dict[str, Any] = {
            "timestamp": pa.array(np.repeat([int(entry.at * 1000) for entry in entries], counts),
                                  pa.timestamp("ms", tz="UTC")),
            "model": pa.array(np.repeat([entry.model for entry in entries], counts), pa.string()),
            "version": pa.array(np.repeat([entry.version for entry in entries], counts), pa.int64()),
            "endpoint": pa.array(np.repeat([entry.endpoint for entry in entries], counts), pa.string()),
            "request_id": pa.array([entry.request_id for entry in entries for _ in range(len(entry.predictions))],
                                   pa.string()),
            "latency_ms": pa.array(np.repeat([entry.latency_ms for entry in entries], counts), pa.float64()),
            "inputs": pa.StructArray.from_arrays(list(inputs.values()), list(inputs)),
        }
        if schema.classes:
            names = dict(zip(map(repr, schema.classes), schema.class_names, strict=True))
            columns["prediction"] = pa.array([names[repr(value)] for value in predictions], pa.string())
            matrix = np.concatenate([entry.probabilities for entry in entries if entry.probabilities is not None])
            columns["probabilities"] = pa.StructArray.from_arrays(
                [pa.array(matrix[:, index], pa.float64()) for index in range(matrix.shape[1])], schema.class_names)
        else:
            columns["prediction"] = pa.array(predictions, pa.float64())
        table = pa.table(columns)
        path = folder / f"part-{time.time_ns()}-{os.getpid()}.parquet"
        atomic_write(path, lambda handle: pq.write_table(table, handle))

    def _rotate(self, folder: Path) -> None:
        files = sorted(folder.glob("part-*.parquet"), key=lambda path: path.name)
        sizes = [path.stat().st_size for path in files]
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


def _by_schema(entries: list[Entry]) -> list[list[Entry]]:
    groups: dict[int, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(id(entry.schema), []).append(entry)
    return list(groups.values())


def _concat(parts: list[Any]) -> Any:
    if any(isinstance(part, np.ndarray) for part in parts):
        return np.concatenate([np.asarray(part, dtype=np.float64) for part in parts])
    return [value for part in parts for value in part]
