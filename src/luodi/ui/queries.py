"""The runs list as SQL: filtered by model, status, tag and date, sorted by a column or a metric, one page at a time.

Each page is two queries (the page's rows and the count) that the store's indexes answer (migration 3 of
store/schema.py: runs by created_at, by name and by status, tags in `run_tags`); sorting by a metric reads the metrics
JSON through the engine's own JSON functions (`Database.json_number`), so one SQL text serves SQLite and
PostgreSQL. The curves of the page's runs come from `epoch_metrics` in one more query.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any

from luodi.errors import InputError
from luodi.store import Run, Store, observed, run_from_row
from luodi.tasks import direction

COLUMNS = {"created": "created_at", "name": "name", "status": "status", "updated": "updated_at"}
METRIC_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_METRIC_COLUMNS = 8  # more make the table wider than a screen; any metric can still be sorted by (sort=metric:X)


@dataclass
class RunQuery:
    """What the runs page asks for; `from_params` reads and checks the query string."""

    model: str = ""
    status: str = ""
    tag: str = ""
    since: str = ""  # YYYY-MM-DD, inclusive
    until: str = ""  # YYYY-MM-DD, inclusive
    sort: str = "created"  # a column of COLUMNS, or metric:NAME
    order: str = ""  # asc or desc; '' is the column's natural order (newest first, a metric's best first)
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_params(cls, params: dict[str, str]) -> RunQuery:
        def day(name: str) -> str:
            value = params.get(name, "").strip()
            if value:
                try:
                    datetime.date.fromisoformat(value)
                except ValueError:
                    raise InputError(f"{name}={value[:40]!r}: give a date as YYYY-MM-DD") from None
            return value

        def whole(name: str, default: int, high: int) -> int:
            value = params.get(name, "").strip()
            if not value:
                return default
            if not value.isdigit() or not 1 <= int(value) <= high:
                raise InputError(f"{name}={value[:40]!r}: give a whole number from 1 to {high}")
            return int(value)

        sort = params.get("sort", "").strip() or "created"
        if sort not in COLUMNS and not (sort.startswith("metric:") and METRIC_KEY.match(sort[7:])):
            raise InputError(f"sort={sort[:80]!r}: sort by {', '.join(COLUMNS)} or metric:NAME")
        order = params.get("order", "").strip()
        if order not in ("", "asc", "desc"):
            raise InputError(f"order={order[:40]!r}: give asc or desc")
        return cls(model=params.get("model", "").strip()[:128], status=params.get("status", "").strip()[:32],
                   tag=params.get("tag", "").strip()[:128], since=day("since"), until=day("until"), sort=sort,
                   order=order, page=whole("page", 1, 10**9), per_page=whole("per_page", PER_PAGE, MAX_PER_PAGE))

    @property
    def metric(self) -> str | None:
        return self.sort[7:] if self.sort.startswith("metric:") else None

    @property
    def descending(self) -> bool:
        if self.order:
            return self.order == "desc"
        if self.metric is not None:
            return direction(self.metric) == "max"  # best first
        return self.sort in ("created", "updated")  # newest first

    def params(self, **changes: Any) -> dict[str, str]:
        """This query as URL parameters (defaults left out), with `changes` applied."""
        values = {"model": self.model, "status": self.status, "tag": self.tag, "since": self.since,
                  "until": self.until, "sort": self.sort if self.sort != "created" else "", "order": self.order,
                  "page": str(self.page) if self.page != 1 else "",
                  "per_page": str(self.per_page) if self.per_page != PER_PAGE else ""}
        values.update({key: str(value) for key, value in changes.items()})
        return {key: value for key, value in values.items() if value}


@dataclass
class RunPage:
    runs: list[Run]
    total: int
    query: RunQuery
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))

    @property
    def metric_names(self) -> list[str]:
        """The metric columns: the sorted metric first, then the page's runs' metrics, at most MAX_METRIC_COLUMNS."""
        names = [self.query.metric] if self.query.metric else []
        for run in self.runs:
            names += [name for name, value in run.metrics.items() if name not in names
                      and isinstance(value, int | float) and not isinstance(value, bool)]
        return names[:MAX_METRIC_COLUMNS]


def run_page(store: Store, query: RunQuery) -> RunPage:
    """One page of runs with the total count and each run's per-epoch history."""
    until = (datetime.date.fromisoformat(query.until) + datetime.timedelta(days=1)).isoformat() if query.until else ""
    filters = [(query.model, "name = ?"), (query.status, "status = ?"),
               (query.tag, "id IN (SELECT run_id FROM run_tags WHERE tag = ?)"),
               (query.since, "created_at >= ?"),
               (until, "created_at < ?")]  # created_at reads 2026-12-06T10:00:00+0000: a day ends before the next
    where = [sql for value, sql in filters if value]
    args: list[Any] = [value for value, _ in filters if value]
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    way = "DESC" if query.descending else "ASC"
    order_args: list[Any] = []
    if query.metric is not None:
        value, order_args = store.database.json_number("metrics", query.metric)
        order = f"{value} IS NULL, {value} {way}, created_at DESC, id DESC"
        order_args = order_args * 2
    else:
        order = f"{COLUMNS[query.sort]} {way}, id {way}"
    offset = (query.page - 1) * query.per_page
    with store.database.connect() as connection:
        total = connection.execute(f"SELECT COUNT(*) AS n FROM runs{clause}", args).fetchone()["n"]
        rows = connection.execute(
            f"SELECT * FROM runs{clause} ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, *order_args, query.per_page, offset]).fetchall()
        runs = [observed(run_from_row(row)) for row in rows]
        histories = histories_of(connection, [run.id for run in runs])
    return RunPage(runs, int(total), query, histories)


def runs_by_id(store: Store, run_ids: list[str]) -> tuple[list[Run], dict[str, list[dict[str, float]]]]:
    """The runs with these ids (those the store holds) and their per-epoch histories, in two queries."""
    if not run_ids:
        return [], {}
    marks = ", ".join("?" for _ in run_ids)
    with store.database.connect() as connection:
        rows = connection.execute(f"SELECT * FROM runs WHERE id IN ({marks})", run_ids).fetchall()
        runs = [observed(run_from_row(row)) for row in rows]
        return runs, histories_of(connection, [run.id for run in runs])


def histories_of(connection: Any, run_ids: list[str]) -> dict[str, list[dict[str, float]]]:
    """Per-epoch metrics of several runs in one query."""
    histories: dict[str, list[dict[str, float]]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        marks = ", ".join("?" for _ in run_ids)
        for row in connection.execute(f"SELECT run_id, metrics FROM epoch_metrics WHERE run_id IN ({marks}) "
                                      "ORDER BY run_id, epoch", run_ids):
            histories[row["run_id"]].append(json.loads(row["metrics"]))
    return histories


def choices(store: Store) -> dict[str, list[str]]:
    """The values the filters offer: model names, statuses and tags in the store (index-only scans)."""
    with store.database.connect() as connection:
        return {"model": [r["name"] for r in connection.execute("SELECT DISTINCT name FROM runs ORDER BY name")],
                "status": [r["status"] for r in connection.execute("SELECT DISTINCT status FROM runs ORDER BY status")],
                "tag": [r["tag"] for r in connection.execute("SELECT DISTINCT tag FROM run_tags ORDER BY tag")]}
