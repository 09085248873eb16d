"""A time window of the prediction log (serve/predlog.py writes it; this module only reads it) for one model
version: `--since` / `--until` parsed, files read, rows of other versions and times left out; the one reader of
the Parquet parts that the log and the feedback labels (monitor/feedback.py) are kept in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from luodi.errors import InputError
from luodi.store import path_inside

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str | None, option: str, now: datetime | None = None) -> datetime | None:
    """An ISO 8601 date or time (UTC unless it says otherwise) or a duration back from now ('30m', '2h', '7d')."""
    if text is None or text == "":
        return None
    now = now or datetime.now(UTC)
    match = DURATION.match(text)
    if match:
        return now - timedelta(**{UNITS[match.group(2)]: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option} {text!r}: give an ISO date or time (2026-12-05, 2026-12-05T14:30, "
                         "2026-12-05T14:30+02:00) or a duration back from now (30m, 2h, 7d)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass
class Buckets:
    """Equal time buckets over a column of timestamps: each row's bucket `index`, the first `start` (unix s), `width`
    (s), `count` buckets, and the whole `span` (s, at least 1)."""

    index: np.ndarray
    start: float
    width: float
    count: int
    span: float


def time_buckets(stamps: pa.ChunkedArray | pa.Array, most: int) -> Buckets:
    """At most `most` buckets of at least a second each over the rows' timestamps."""
    seconds = pc.cast(stamps, pa.int64()).to_numpy().astype(np.float64) / 1000.0
    start, end = float(seconds.min()), float(seconds.max())
    span = max(end - start, 1.0)
    count = min(most, max(1, int(span)))
    width = span / count
    index = np.minimum(((seconds - start) / width).astype(np.int64), count - 1)
    return Buckets(index, start, width, count, span)


class NoRows(InputError):
    """The prediction log holds nothing to check for this version and window: never served, a version that has
    answered nothing yet (just promoted), or a window without traffic."""


@dataclass
class Window:
    """The logged rows of one model version between two times (either may be open)."""

    table: pa.Table
    since: datetime | None
    until: datetime | None
    files: int


def log_folder(home: Path, model: str) -> Path:
    return path_inside(path_inside(home, "predictions"), model)


def part_files(folder: Path) -> list[Path]:
    """A folder's Parquet parts (`part-<unix ns>-<pid>.parquet`), oldest first; none when there is no folder."""
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def log_files(home: Path, model: str) -> list[Path]:
    """The prediction log's files of model `model`, oldest first (none when it was never served)."""
    return part_files(log_folder(home, model))


def log_tables(files: list[Path], columns: list[str] | None = None, what: str = "prediction log"
               ) -> Iterator[pa.Table]:
    """Each file's rows (only `columns`, when given); a file rotated or compacted away since it was listed is
    skipped, an unreadable one is an InputError naming it (as a `what` file: the prediction log's, or feedback)."""
    import pyarrow.parquet as pq

    for path in files:
        try:
            yield pq.read_table(path, columns=columns)
        except FileNotFoundError:  # rotated away by the server (or compacted) while we listed
            continue
        except (OSError, pa.ArrowInvalid) as error:
            raise InputError(f"{path}: not a readable {what} file ({error})") from None


def read_window(home: Path, model: str, version: int, since: datetime | None, until: datetime | None) -> Window:
    """The rows model `model` version `version` answered in [since, until); a NoRows error names what is missing:
    no log for the model, no rows of that version, or none in the window."""
    if since is not None and until is not None and since >= until:
        raise InputError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    files = log_files(home, model)
    if not files:
        raise NoRows(f"no prediction log for model {model!r} (looked in {log_folder(home, model)}): serve it "
                         f"with `luodi serve {model}` (log_sample_rate > 0) and send it requests first")
    tables, versions = [], set()
    for table in log_tables(files):
        found = table.column("version")
        versions.update(pc.unique(found).to_pylist())
        table = table.filter(pc.equal(found, version))
        if table.num_rows:
            tables.append(table)
    if not tables:
        listed = ", ".join(str(item) for item in sorted(versions))
        raise NoRows(f"the prediction log of {model!r} holds no rows of version {version} (it holds versions "
                         f"{listed}): run `luodi monitor {model}/N` for one of those")
    table = pa.concat_tables(tables, promote_options="permissive")
    stamps = table.column("timestamp")
    keep = None
    if since is not None:
        keep = pc.greater_equal(stamps, pa.scalar(since, stamps.type))
    if until is not None:
        before = pc.less(stamps, pa.scalar(until, stamps.type))
        keep = before if keep is None else pc.and_(keep, before)
    if keep is not None:
        table = table.filter(keep)
    if not table.num_rows:
        first, last = pc.min(stamps).as_py(), pc.max(stamps).as_py()
        raise NoRows(f"no rows of {model}/{version} between {since.isoformat() if since else 'the start'} and "
                         f"{until.isoformat() if until else 'now'}: the log covers {first.isoformat()} to "
                         f"{last.isoformat()}")
    return Window(table, since, until, len(files))
