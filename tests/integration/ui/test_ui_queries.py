"""The runs query on both engines (SQLite and PostgreSQL): filters, metric sort in the metric's direction, pages, the
filter choices, and a metric that is not a number sorting last."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_helpers import add_run

from luodi.errors import InputError
from luodi.store import Store
from luodi.ui.queries import RunQuery, choices, run_page


def test_runs_query_on_both_engines(store_backend: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    for index in range(9):
        add_run(store, f"m{index % 3}", metrics={"accuracy": index / 10, "mae": 9 - index},
                tags=["a", "b"] if index < 3 else ["b"], day=f"2026-05-{index + 1:02d}", epochs=2)
    add_run(store, "m0", metrics={"accuracy": "n/a"}, status="failed", day="2026-06-01")  # not a number

    def page(**params: str) -> list:
        return run_page(store, RunQuery.from_params(params)).runs

    assert [run.created_at[:10] for run in page(per_page="3")] == ["2026-06-01", "2026-05-09", "2026-05-08"]
    assert [run.metrics["accuracy"] for run in page(sort="metric:accuracy")][:3] == [0.8, 0.7, 0.6]
    assert page(sort="metric:accuracy")[-1].status == "failed"  # no number: last
    assert [run.metrics["mae"] for run in page(sort="metric:mae", model="m1")] == [2, 5, 8]  # lower is better
    assert [run.metrics["mae"] for run in page(sort="metric:mae", model="m1", order="desc")] == [8, 5, 2]
    assert len(page(tag="a")) == 3 and len(page(tag="b")) == 9 and page(tag="c") == []
    assert len(page(since="2026-05-03", until="2026-05-04")) == 2
    assert [run.status for run in page(status="failed")] == ["failed"]
    second = run_page(store, RunQuery.from_params({"per_page": "4", "page": "2", "sort": "name", "order": "asc"}))
    assert second.total == 10 and second.pages == 3 and len(second.runs) == 4
    assert [len(history) for history in second.histories.values()] == [2, 2, 2, 2]
    assert choices(store) == {"model": ["m0", "m1", "m2"], "status": ["failed", "finished"], "tag": ["a", "b"]}


@pytest.mark.parametrize("params, named", [({"sort": "metric:x'; DROP TABLE runs"}, "sort"),
                                           ({"order": "sideways"}, "order"), ({"page": "0"}, "page"),
                                           ({"per_page": "100000"}, "per_page"), ({"until": "2026-13-01"}, "until")])
def test_bad_parameters_are_named(params: dict[str, str], named: str) -> None:
    with pytest.raises(InputError, match=named):
        RunQuery.from_params(params)


def test_pages_of_runs_are_index_lookups_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUODI_STORE", raising=False)
    store = Store(tmp_path / "home")
    plans = {}
    with store.database.connect() as connection:
        for label, sql, args in [
                ("newest", "SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT 50", ()),
                ("model", "SELECT * FROM runs WHERE name = ? ORDER BY created_at DESC, id DESC LIMIT 50", ("m",)),
                ("tag", "SELECT run_id FROM run_tags WHERE tag = ?", ("t",))]:
            rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            plans[label] = " ".join(row["detail"] for row in rows)
    assert "runs_created" in plans["newest"] and "TEMP B-TREE" not in plans["newest"]
    assert "runs_name_created" in plans["model"]
    assert "run_tags_tag" in plans["tag"] or "COVERING INDEX" in plans["tag"]


def test_the_pages_over_http_on_both_engines(store_backend: str, tmp_path: Path) -> None:
    import httpx

    from luodi.serve.settings import make_config
    from luodi.ui.server import background

    home = tmp_path / "home"
    store = Store(home)
    first = add_run(store, "m0", metrics={"accuracy": 0.5}, tags=["a"])
    second = add_run(store, "m1", metrics={"accuracy": 0.7})
    live = add_run(store, "m1", status="running")
    with background(make_config(port=0), home) as running, httpx.Client(base_url=running.url, timeout=60) as client:
        listed = client.get("/api/runs", params={"sort": "metric:accuracy"}).json()
        assert [run["id"] for run in listed["runs"]] == [second, first, live]
        assert client.get("/runs", params={"tag": "a"}).text.count('data-run="') == 1
        assert client.get(f"/runs/{second}").status_code == 200
        assert client.get("/api/runs", params={"ids": live}).json()["runs"][0]["status"] == "running"
        assert 'data-metric="accuracy"' in client.get(f"/compare?runs={first},{second}").text
        assert client.get("/runs/nope").status_code == 404
