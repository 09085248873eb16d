"""Models at work: `serve`, `ui`, and the loop around them: `monitor` and `feedback`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from luodi.store import Store

if TYPE_CHECKING:
    from luodi.config import MonitorConfig
    from luodi.monitor.alerts import AlertSettings
    from luodi.monitor.check import MonitorResult


def serve(models: str | list[str], *, home: str | Path | None = None, api_keys_file: str | Path | None = None,
          admin_keys_file: str | Path | None = None, **settings: Any) -> int:
    """Serve registered models over HTTP until SIGTERM or Ctrl-C (which drain); returns the exit code.

    Args:
        models: references (`name@alias`, `name`, `name/3`) or package folders.
        home: the store folder (default `$LUODI_HOME` or `./.luodi`).
        api_keys_file, admin_keys_file: files with one key per line (also `LUODI_API_KEYS` / `LUODI_ADMIN_KEYS`).
        settings: any `luodi.serve.settings.ServeConfig` field: host, port, workers, max_batch_size, ...
    """
    from luodi.serve.server import run
    from luodi.serve.settings import make_config, read_keys

    config = make_config(api_keys=read_keys("LUODI_API_KEYS", Path(api_keys_file) if api_keys_file else None),
                         admin_keys=read_keys("LUODI_ADMIN_KEYS", Path(admin_keys_file) if admin_keys_file else None),
                         **settings)
    return run([models] if isinstance(models, str) else list(models), config, Path(home) if home else None)


def ui(*, home: str | Path | None = None, host: str = "127.0.0.1", port: int = 8080,
       api_keys_file: str | Path | None = None, admin_keys_file: str | Path | None = None) -> int:
    """The web UI over the store until SIGTERM or Ctrl-C: runs, models, reports (docs/ui.md); returns the exit code.

    Keys are `luodi serve`'s: read keys (`LUODI_API_KEYS`, `api_keys_file`) see, admin keys (`LUODI_ADMIN_KEYS`,
    `admin_keys_file`) also promote and roll back; a host other than loopback needs keys.
    """
    from luodi.serve.settings import make_config, read_keys
    from luodi.ui.server import run

    config = make_config(host=host, port=port,
                         api_keys=read_keys("LUODI_API_KEYS", Path(api_keys_file) if api_keys_file else None),
                         admin_keys=read_keys("LUODI_ADMIN_KEYS", Path(admin_keys_file) if admin_keys_file else None))
    return run(config, Path(home) if home else None)


def monitor(model: str, *, since: str | None = None, until: str | None = None, out: str | Path | None = None,
            home: str | Path | None = None, settings: MonitorConfig | None = None,
            alerts: AlertSettings | None = None) -> MonitorResult:
    """Drift of a model version's logged traffic against its training profile (docs/monitoring.md).

    Args:
        model: `name`, `name@alias` or `name/version`: whose profile, and whose rows of the prediction log.
        since, until: the window: ISO dates or times (UTC unless they say otherwise) or durations back from now
            ('30m', '2h', '7d'); open by default.
        out: where to write the monitoring page (none when None).
        home: the store folder (default `$LUODI_HOME` or `./.luodi`); the log is under its `predictions/`.
        settings: a `MonitorConfig` overriding the thresholds saved in the package's config.
        alerts: where alerts go (`monitor.alerts.alert_settings(webhook=...)`): drift, data quality and rules fire
            once per episode (state in the store's `alerts/`); delivered before this returns.

    Returns the tests per feature and output (`.to_dict()` is what `luodi monitor --json` prints).
    """
    from luodi.monitor.check import check

    store = Store(home)
    result = check(store, model, since=since, until=until, out=out, settings=settings)
    if alerts is not None and alerts.enabled:
        from luodi.monitor.alerts import Alerter, monitor_conditions

        alerter = Alerter(alerts, store.home, "monitor")
        conditions = monitor_conditions(result, alerts, result.live.get("metrics"))
        result.alerts = alerter.evaluate(result.model, result.version, conditions,
                                         {"window_rows": result.rows, "first": result.first, "last": result.last})
        alerter.close()
    return result


def feedback(model: str, data: str | Path, *, home: str | Path | None = None) -> dict[str, Any]:
    """Ground truth for served predictions: a CSV, JSONL or Parquet file of `request_id` (what the server answered
    with), `target` (or the model's target column) and optionally `row` (the record's position in its request).

    The labels are checked against the model version's outputs (an InputError names the file, row and column) and
    kept beside the prediction log, where `monitor` joins them by request id (docs/monitoring.md).
    """
    from luodi.monitor.feedback import labels_of, read_feedback_file, write_feedback
    from luodi.package import verify_package

    store = Store(home)
    version = store.resolve(model)
    table = read_feedback_file(data, labels_of(verify_package(version.path)))
    path = write_feedback(store.home, version.name, table)
    return {"model": version.name, "version": version.version, "accepted": table.num_rows, "file": str(path)}
