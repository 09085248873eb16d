"""The UI's pages over a real server: every route answers, 404s name the id, filters / sort / pages, compare,
live polling, the version page's prediction form, and escaping of what users wrote (names, configs, reasons)."""

from __future__ import annotations

import html
from pathlib import Path

from ui_helpers import add_run

from luodi.store import Store


def test_every_page_answers(ui_home: Path, ui_server) -> None:
    store = Store(ui_home)
    first = add_run(store, "alpha", metrics={"accuracy": 0.8})
    second = add_run(store, "alpha", metrics={"accuracy": 0.9})
    trained = next(run.id for run in store.list_runs("tiny"))
    with ui_server() as ui:
        root = ui.client.get("/")
        assert root.status_code in (302, 303, 307) and root.headers["location"] == "/runs"
        for path in ["/runs", f"/runs/{trained}", f"/runs/{trained}/report", "/api/runs", f"/api/runs/{first}",
                     f"/compare?runs={first},{second}", "/models", "/models/tiny", "/models/tiny/versions/1",
                     "/api/models", "/api/models/tiny",
                     "/static/ui.css", "/static/ui.js", "/login"]:
            response = ui.client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
        page = ui.client.get("/runs").text
        assert 'href="/runs"' in page and 'href="/models"' in page and 'href="/studies"' in page  # the nav bar
        assert "cdn" not in page.lower() and "https://" not in page  # every asset from this server
        assert ui.client.get("/api/models").json()["models"][0]["name"] == "tiny"
        assert ui.client.get("/api/models/tiny").json()["versions"][0]["version"] == 1
        report = ui.client.get(f"/runs/{trained}/report")
        assert "sandbox" in report.headers["content-security-policy"]
        assert f'src="/runs/{trained}/report"' in ui.client.get(f"/runs/{trained}").text


def test_bad_ids_get_a_404_naming_them(ui_server) -> None:
    with ui_server() as ui:
        for path, named in [("/runs/no-such-run", "no-such-run"), ("/api/runs/no-such-run", "no-such-run"),
                            ("/models/nomodel", "nomodel"), ("/api/models/nomodel", "nomodel"),
                            ("/models/tiny/versions/99", "99"),
                            ("/models/tiny/versions/x", "'x'"), ("/compare?runs=nothere,alsonot", "nothere"),
                            ("/nowhere", "/nowhere"), ("/runs/%2e%2e", "..")]:
            response = ui.client.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert named in html.unescape(response.text), (path, response.text[-600:])
        assert ui.client.get("/runs?sort=metric:a%20b").status_code == 400
        assert ui.client.get("/runs?since=yesterday").status_code == 400
        assert ui.client.get("/compare?runs=one").status_code == 400


def test_filters_sort_and_pages(ui_home: Path, ui_server) -> None:
    store = Store(ui_home)
    for index in range(12):
        add_run(store, "alpha" if index % 2 else "beta", metrics={"accuracy": index / 20, "rmse": 1 + index},
                tags=["nightly"] if index % 3 == 0 else [], day=f"2026-01-{index + 1:02d}", epochs=1)
    add_run(store, "beta", status="failed", day="2026-02-01")
    with ui_server() as ui:
        def ids(**params: str) -> list[str]:
            data = ui.client.get("/api/runs", params=params).json()
            return [run["id"] for run in data["runs"]]

        def runs(**params: str) -> list[dict]:
            return ui.client.get("/api/runs", params={"per_page": "100", **params}).json()["runs"]

        assert {run["name"] for run in runs(model="alpha")} == {"alpha"} and len(runs(model="alpha")) == 6
        assert len(runs(tag="nightly")) == 4
        assert [run["status"] for run in runs(status="failed")] == ["failed"]
        january = runs(since="2026-01-03", until="2026-01-05")
        assert len(january) == 3
        best = runs(sort="metric:accuracy", model="alpha")  # accuracy: higher is better, so best first
        assert [run["metrics"]["accuracy"] for run in best] == sorted((i / 20 for i in range(1, 12, 2)), reverse=True)
        lowest = runs(sort="metric:rmse", tag="nightly")  # rmse: lower is better
        assert [run["metrics"]["rmse"] for run in lowest] == [1, 4, 7, 10]
        ascending = runs(sort="metric:accuracy", order="asc", model="beta")
        assert ascending[-1]["status"] == "failed"  # runs without the metric come last either way
        newest = ids(per_page="5")
        second_page = ids(per_page="5", page="2")
        everything = ids(per_page="500")
        assert newest + second_page == everything[:10] and not set(newest) & set(second_page)
        listing = ui.client.get("/api/runs", params={"per_page": "5"}).json()
        assert listing["total"] == len(everything) and listing["pages"] == -(-len(everything) // 5)
        page = ui.client.get("/runs", params={"model": "alpha", "sort": "metric:accuracy", "per_page": "2"}).text
        assert "6 found" in page and 'rel="next"' in page and "page 1 of 3" in page
        assert "sorted-desc" in page  # the sorted column says so


def test_compare_shows_differences_metrics_and_overlaid_curves(ui_home: Path, ui_server) -> None:
    store = Store(ui_home)
    first = add_run(store, "alpha", metrics={"accuracy": 0.8, "loss": 0.5}, trainer={"epochs": 3})
    second = add_run(store, "alpha", metrics={"accuracy": 0.9, "loss": 0.4}, trainer={"epochs": 5})
    with ui_server() as ui:
        page = ui.client.get(f"/compare?run={first}&run={second}").text
        assert 'data-key="trainer.epochs"' in page and "1 keys differ" in page
        row = page.split('data-metric="accuracy"')[1].split("</tr>")[0]
        assert row.count("best") == 1 and "0.9" in row.split("best")[1]
        charts = page.split('id="compare-charts"')[1]
        assert charts.count("<svg") == 3  # train_loss, val_loss, val_accuracy: one chart per metric
        assert charts.count("<polyline") == 6  # the two runs overlaid on each


def test_running_runs_are_polled_with_their_curves(ui_home: Path, ui_server) -> None:
    store = Store(ui_home)
    running = add_run(store, "alpha", status="running", epochs=1)
    with ui_server() as ui:
        page = ui.client.get("/runs").text
        assert f'data-run="{running}" data-status="running"' in page and "/static/ui.js" in page
        before = ui.client.get(f"/api/runs/{running}").json()
        assert before["status"] == "running" and before["epochs"] == 1
        store.log_epoch(running, 2, {"epoch": 2, "train_loss": 0.4, "val_loss": 0.5})
        store.update_run(running, status="finished", metrics={"accuracy": 0.7})
        after = ui.client.get(f"/api/runs/{running}").json()
        assert after["status"] == "finished" and after["epochs"] == 2
        assert after["charts"][0].startswith("<svg") and after["charts"][0].count("<polyline") == 2
        watched = ui.client.get("/api/runs", params={"ids": running}).json()["runs"]
        assert watched[0]["status"] == "finished" and "<polyline" in watched[0]["sparkline"]


def test_version_page_and_its_prediction_form(ui_server) -> None:
    with ui_server() as ui:
        page = ui.client.get("/models/tiny/versions/1").text
        assert "weights.safetensors" in page and "package.json" not in page.split('id="files"')[0]
        for column in ("size", "age", "income", "color"):
            assert f'name="col.{column}"' in page
        assert '<option value="violet">' in page  # the category's known values are offered
        assert page.count('<svg class="chart"') >= 2 and 'src="/models/tiny/versions/1/report"' in page
        report = ui.client.get("/models/tiny/versions/1/report")
        assert report.status_code == 200 and "sandbox" in report.headers["content-security-policy"]
        csrf = ui.csrf("/models/tiny/versions/1")
        answer = ui.post("/models/tiny/versions/1/predict", {"csrf": csrf, "col.size": "0.5", "col.age": "40",
                                                              "col.income": "52", "col.color": "red"})
        assert answer.status_code == 200, answer.text[:500]
        result = answer.text.split('id="prediction"')[1].split("</table>")[0]
        assert "label_prediction" in result and ("yes" in result or "no" in result)
        bad = ui.post("/models/tiny/versions/1/predict", {"csrf": csrf, "col.size": "big"})
        assert bad.status_code == 422 and "&#39;size&#39;" in bad.text and "not a number" in bad.text


def test_what_users_wrote_renders_as_text(ui_home: Path, ui_server) -> None:
    store = Store(ui_home)
    evil = "<script>alert(1)</script>"
    run_id = add_run(store, "alpha", metrics={"accuracy": 0.5}, description=evil, tags=["x"], status="running")
    store.update_run(run_id, status="failed", error=f"boom {evil}")
    other = add_run(store, "alpha", description="plain")
    store.set_alias("tiny", "production", 1, reason=f"because {evil}")
    (store.run_dir(run_id) / "train.log").write_text(f"epoch 1 {evil}\n", encoding="utf-8")  # a log in the run folder
    with ui_server() as ui:
        for path in [f"/runs/{run_id}", f"/compare?runs={run_id},{other}", "/models/tiny", "/runs"]:
            text = ui.client.get(path).text
            assert "<script>alert" not in text, path
        run_page = ui.client.get(f"/runs/{run_id}").text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page and "epoch 1 &lt;script&gt;" in run_page
        assert "because &lt;script&gt;" in ui.client.get("/models/tiny").text
        missing = ui.client.get("/runs/%3Cscript%3E")
        assert missing.status_code == 404 and "<script>" not in missing.text and "&lt;script&gt;" in missing.text


def test_an_optimized_versions_table(ui_home: Path, trained_package: Path, ui_server) -> None:
    import shutil

    from luodi.package import add_file

    store = Store(ui_home)
    staging = store.staging_dir()
    shutil.copytree(trained_package, staging, dirs_exist_ok=True)
    row = {"status": "ok", "reason": "", "drop": 0.0, "size_bytes": 1000, "latency_ms": {"1": 0.3, "32": 2.0}}
    outcome = {"metric": "accuracy", "direction": "max", "max_drop": 0.01, "batch_sizes": [1, 32], "chosen": "onnx",
               "verdict": "onnx: faster within the budget", "latency_unit": "ms",
               "variants": [{**row, "name": "eager", "metric": 0.81, "speed": 1.0},
                            {**row, "name": "onnx", "metric": 0.81, "speed": 0.25},
                            {**row, "name": "pruned", "status": "skipped", "reason": "<not for this model>"}]}
    add_file(staging, None, ("optimize", outcome))  # as `luodi optimize` records its search in the manifest
    run_id = add_run(store, "tiny", status="running")
    store.register_model("tiny", staging, run_id=run_id, task="binary", metrics={"accuracy": 0.81}, parent_version=1)
    with ui_server() as ui:
        model = ui.client.get("/models/tiny").text
        link = model.split('id="compare-versions"')[0].rsplit('href="', 1)[1].split('"')[0]
        assert run_id in html.unescape(link) and ui.client.get(html.unescape(link)).status_code == 200
        page = ui.client.get("/models/tiny/versions/2").text
        table = page.split('id="optimize-table"')[1].split("</table>")[0]
        rows = table.split("<tr")[2:]
        assert [r.split("<td>")[1].split("</td>")[0] for r in rows] == ["eager", "onnx", "pruned"]
        assert 'class="best"' in rows[1] and "0.25" in rows[1]
        assert "skipped: &lt;not for this model&gt;" in rows[2]
        assert "onnx: faster within the budget" in page and "follows" in page
        assert ui.client.get("/models/tiny/versions/1").text.count('id="optimize-table"') == 0
