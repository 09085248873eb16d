"""The runs pages: the list (/runs), one run (/runs/{run_id}, its report), runs side by side (/compare), and the JSON
the pages poll for running runs (/api/runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from luodi.errors import InputError
from luodi.store import Run, observed
from luodi.ui import charts
from luodi.ui.queries import RunQuery, choices, run_page, runs_by_id
from luodi.ui.state import UI, NotFound

MAX_COMPARE = 20
MAX_LOG_BYTES = 64 * 1024
# The report is luodi's own page, but it holds the user's data (column values, class names): shown in a frame with
# no script, no plugin, no network, no form, and no access to the UI's origin.
REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
              "frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox")


def routes(ui: UI) -> list[BaseRoute]:
    def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=307)

    def runs(request: Request) -> Response:
        query = RunQuery.from_params(dict(request.query_params))
        page = run_page(ui.store, query)

        def link(**changes: Any) -> str:
            return "/runs?" + urlencode(query.params(**changes))

        def curve(run_id: str) -> Any:
            return charts.sparkline(loss_curve(page.histories.get(run_id, [])))

        return ui.page(request, "runs.html", page=page, query=query, choices=choices(ui.store), link=link,
                       curve=curve, title="Runs")

    def api_runs(request: Request) -> Response:
        """A page of runs as JSON (the /runs parameters), or `?ids=a,b` for the runs a page is watching."""
        ids = [part for part in request.query_params.get("ids", "").split(",") if part][:200]
        if ids:
            found, histories = runs_by_id(ui.store, ids)
            return JSONResponse({"runs": [summary(run, histories[run.id]) for run in found]})
        page = run_page(ui.store, RunQuery.from_params(dict(request.query_params)))
        return JSONResponse({"total": page.total, "page": page.query.page, "pages": page.pages,
                             "runs": [summary(run, page.histories.get(run.id, [])) for run in page.runs]})

    def run(request: Request) -> Response:
        found = get_run(ui, request.path_params["run_id"])
        history = ui.store.epoch_history(found.id)
        folder = ui.store.run_dir(found.id)
        version = None
        if found.model_name and found.model_version:
            try:
                version = ui.store.get_version(found.model_name, found.model_version)
            except InputError:
                version = None
        return ui.page(request, "run.html", run=found, history=history, charts=run_charts(history),
                       config=yaml.safe_dump(found.config, sort_keys=False, allow_unicode=True),
                       has_report=(folder / "report.html").is_file(), events=ui.store.events(found.id, 50),
                       logs=read_logs(folder), version=version, title=f"Run {found.id}")

    def api_run(request: Request) -> Response:
        found = get_run(ui, request.path_params["run_id"])
        history = ui.store.epoch_history(found.id)
        return JSONResponse({**summary(found, history), "history": history,
                             "charts": [str(chart) for chart in run_charts(history)]})

    def report(request: Request) -> Response:
        found = get_run(ui, request.path_params["run_id"])
        return report_file(ui.store.run_dir(found.id) / "report.html", f"run {found.id!r}")

    def compare(request: Request) -> Response:
        from luodi.evaluate.compare import compare_runs

        given = [*request.query_params.get("runs", "").split(","), *request.query_params.getlist("run")]
        ids = list(dict.fromkeys(part.strip() for part in given if part.strip()))
        if not 2 <= len(ids) <= MAX_COMPARE:
            raise InputError(f"compare {len(ids)} run(s): give 2 to {MAX_COMPARE} run ids, "
                             "as /compare?runs=ID1,ID2")
        found = [get_run(ui, run_id) for run_id in ids]
        histories = [(run.id, ui.store.epoch_history(run.id)) for run in found]
        comparison = compare_runs([run.to_dict() for run in found])
        overlaid = [charts.line_chart(series, name) for name, series in charts.curves(histories)]
        return ui.page(request, "compare.html", runs=found, comparison=comparison, charts=overlaid,
                       title="Compare runs")

    return [Route("/", home), Route("/runs", runs), Route("/api/runs", api_runs),
            Route("/runs/{run_id}", run), Route("/runs/{run_id}/report", report),
            Route("/api/runs/{run_id}", api_run), Route("/compare", compare)]


def get_run(ui: UI, run_id: str) -> Run:
    """The run `run_id` (or a unique prefix of it) with its observed status; NotFound names it."""
    try:
        return observed(ui.store.get_run(run_id))
    except InputError:
        raise NotFound(f"no run {run_id!r} in this store") from None


def report_file(path: Path, owner: str) -> Response:
    """A report page (of a run or a package) under the report's CSP; NotFound when `owner` has none."""
    if not path.is_file() or path.is_symlink():
        raise NotFound(f"{owner} has no report")
    return FileResponse(path, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": REPORT_CSP})


def summary(run: Run, history: list[dict[str, float]]) -> dict[str, Any]:
    """What the pages poll for a run: status, metrics, epochs and its validation-loss sparkline."""
    return {"id": run.id, "name": run.name, "status": run.status, "updated_at": run.updated_at,
            "metrics": run.metrics, "epochs": len(history), "sparkline": str(charts.sparkline(loss_curve(history)))}


def loss_curve(history: list[dict[str, float]]) -> list[float]:
    """The validation loss per epoch (else the training loss): the runs table's sparkline."""
    key = "val_loss" if any("val_loss" in epoch for epoch in history) else "train_loss"
    return [epoch[key] for epoch in history if key in epoch]


def run_charts(history: list[dict[str, float]]) -> list[Any]:
    """A run's curves: its losses in one chart, then one chart per other metric."""
    per_metric = charts.curves([("run", history)])
    losses = [(name, series[0][1]) for name, series in per_metric if "loss" in name]
    out = [charts.line_chart(losses, "loss")] if losses else []
    out += [charts.line_chart([(name, series[0][1])], name) for name, series in per_metric if "loss" not in name]
    return out


def read_logs(folder: Path) -> list[tuple[str, str]]:
    """The run folder's *.log files (the last 64 KiB of each), by name."""
    logs = []
    for path in sorted(folder.glob("*.log")):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as file:
            size = path.stat().st_size
            file.seek(max(0, size - MAX_LOG_BYTES))
            logs.append((path.name, file.read().decode("utf-8", "replace")))
    return logs

