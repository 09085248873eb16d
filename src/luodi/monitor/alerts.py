"""Alerts: a webhook (HTTP POST of JSON) or a command when drift, data quality or a named metric (live accuracy)
crosses its threshold; off unless a webhook or a command is set (docs/monitoring.md, "Alerts").

    alerter = Alerter(settings, home, origin="serve")
    alerter.evaluate("churn", 3, drift_conditions(items) + metric_conditions({"accuracy": 0.71}, settings))

A condition (`drift:age`, `quality:color:unseen`, `metric:accuracy`) fires once when it becomes active, again after
`cooldown_s` while it stays active (a reminder), and once more when it resolves: an episode, not every evaluation.
Which conditions are active is kept in `LUODI_HOME/alerts/<model>.<origin>.json` under a file lock, so several server
workers on one window and `luodi monitor` run twice at once fire each transition once. Delivery runs on a background
thread with bounded retries and backoff; a failure is logged and counted, never raised into serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import queue
import re
import shlex
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger("luodi.monitor")
RULE = re.compile(r"^\s*([A-Za-z0-9_.:-]{1,128})\s*(<|>)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between delivery attempts (the last one repeats)
QUEUE_LIMIT = 256  # alerts waiting for delivery; past it new ones are dropped and logged


class AlertSettings(BaseModel):
    """Where alerts go and when they fire; alerts are off unless `webhook` or `command` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str | None = Field(None, description="URL (http or https) that gets each alert as a JSON POST.")
    command: str | None = Field(None, description="Command run for each alert (split like a shell, not run by one), "
                                "the alert's JSON on its standard input.")
    cooldown_s: float = Field(3600.0, ge=0, description="While a condition stays active it fires again after this "
                              "many seconds; it fires once when it resolves.")
    quality_rate: float = Field(0.05, gt=0, le=1, description="Share of a window's rows with missing, unseen or "
                                "out-of-range values of one feature at which a data-quality alert fires.")
    rules: str = Field("", description="Comma-separated rules over named metrics, NAME<VALUE or NAME>VALUE "
                       "(accuracy<0.8, drift_share>0.3): the alert fires while the rule holds.")
    timeout_s: float = Field(5.0, gt=0, le=300, description="Timeout of one webhook call or command run.")
    retries: int = Field(3, ge=0, le=10, description="Delivery retries after a failure, with backoff.")

    @field_validator("webhook")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: str) -> str:
        parse_rules(value)
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.webhook or self.command)


def alert_settings(**values: Any) -> AlertSettings:
    """Validated alert settings; an InputError names the option (`--alert-webhook`, ...)."""
    from pydantic import ValidationError

    from luodi.errors import InputError

    try:
        return AlertSettings.model_validate({key: value for key, value in values.items() if value is not None})
    except ValidationError as error:
        first = error.errors()[0]
        option = "--alert-" + str(first["loc"][0]).removesuffix("_s").replace("_", "-")
        raise InputError(f"{option}: {first['msg']}") from None


@dataclass(frozen=True)
class Rule:
    metric: str
    below: bool  # `<`: fires while the value is below the threshold
    threshold: float

    def holds(self, value: float) -> bool:
        return value < self.threshold if self.below else value > self.threshold


def parse_rules(text: str) -> list[Rule]:
    """`accuracy<0.8, drift_share>0.3` as rules; a ValueError names the part that is not one."""
    rules = []
    for part in (part for part in text.split(",") if part.strip()):
        match = RULE.match(part)
        if match is None:
            raise ValueError(f"alert rule {part.strip()!r}: write NAME<VALUE or NAME>VALUE, e.g. accuracy<0.8")
        rules.append(Rule(match.group(1), match.group(2) == "<", float(match.group(3))))
    return rules


@dataclass(frozen=True)
class Condition:
    """One thing that can be wrong, active or not in this evaluation."""

    key: str  # "drift:age", "quality:color:unseen", "metric:accuracy": what deduplication follows
    kind: Literal["drift", "quality", "metric"]
    subject: str  # the feature, output or metric
    active: bool
    value: float
    threshold: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def drift_conditions(items: Iterable[Any]) -> list[Condition]:
    """One per tested feature or output (`monitor.check.Checked`: name, results, drift): active when any of its
    tests drifted; value and threshold of the first test that did (else of its distribution test)."""
    conditions = []
    for item in items:
        main = next((result for result in item.results if result.drift), item.results[0])
        conditions.append(Condition(
            f"drift:{item.name}", "drift", item.name, bool(item.drift), float(main.score), float(main.threshold),
            f"{item.name}: {main.test} {main.aspect} score {main.score:.4g} (threshold {main.threshold:.4g}) on "
            f"{main.rows} rows", {"test": main.test, "aspect": main.aspect, "rows": main.rows}))
    return conditions


def quality_conditions(rates: dict[str, dict[str, float]], rows: int, settings: AlertSettings) -> list[Condition]:
    """One per feature and quality kind (missing, unseen, out_of_range): active at `quality_rate` of the rows."""
    return [Condition(f"quality:{name}:{kind}", "quality", name, rate >= settings.quality_rate, rate,
                      settings.quality_rate, f"{name}: {rate:.1%} of {rows} rows {kind.replace('_', ' ')}",
                      {"quality": kind, "rows": rows})
            for name, kinds in rates.items() for kind, rate in kinds.items()]


def metric_conditions(values: dict[str, float], settings: AlertSettings) -> list[Condition]:
    """The rules over the metrics given (`accuracy`, `drift_share`, ...); rules of metrics not given are left
    alone (their conditions keep their state)."""
    return [Condition(f"metric:{rule.metric}", "metric", rule.metric, rule.holds(values[rule.metric]),
                      float(values[rule.metric]), rule.threshold,
                      f"{rule.metric} = {values[rule.metric]:.4g} ({'<' if rule.below else '>'} {rule.threshold:g})")
            for rule in parse_rules(settings.rules) if rule.metric in values]


def monitor_conditions(result: Any, settings: AlertSettings, metrics: dict[str, float] | None = None
                       ) -> list[Condition]:
    """The conditions of a `luodi monitor` result (monitor.check.MonitorResult): drift per feature and output, data
    quality of its window, and the rules over `drift_share` and the `metrics` given (live accuracy)."""
    items = result.features + result.outputs
    share = sum(item.drift for item in items) / len(items) if items else 0.0
    from luodi.monitor.quality import quality_rates

    return drift_conditions(items) + quality_conditions(quality_rates(result.quality, result.rows), result.rows,
                                                        settings) + \
        metric_conditions({"drift_share": share, **(metrics or {})}, settings)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    """The state file's content under an exclusive lock, written back (atomically) at the end."""
    from luodi.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                state = {}
            if not isinstance(state, dict):
                state = {}
            yield state
            atomic_write_text(path, json.dumps(state, indent=1, sort_keys=True))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def transitions(state: dict[str, Any], conditions: list[Condition], now: float, cooldown_s: float
                ) -> list[tuple[Condition, str, dict[str, Any]]]:
    """What to send, updating `state` (key -> {since, fired}): (condition, firing or resolved, its record)."""
    sends = []
    for condition in conditions:
        record: dict[str, Any] | None = state.get(condition.key)
        if condition.active and record is None:
            record = state[condition.key] = {"since": now, "fired": now}
            sends.append((condition, "firing", record))
        elif condition.active and record is not None and now - record["fired"] >= cooldown_s:
            record["fired"] = now
            sends.append((condition, "firing", record))
        elif not condition.active and record is not None:
            del state[condition.key]
            sends.append((condition, "resolved", record))
    return sends


def webhook_origin(url: str) -> str:
    """scheme://host[:port] of a URL, without credentials, path or query (for logs)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


class Alerter:
    """Deduplicates conditions into alerts and delivers them off the caller's thread."""

    def __init__(self, settings: AlertSettings, home: Path, origin: Literal["serve", "monitor"],
                 on_outcome: Callable[[str, str], None] | None = None):
        self.settings, self.origin = settings, origin
        self.folder = Path(home) / "alerts"
        self.on_outcome = on_outcome or (lambda model, outcome: None)
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self.thread: threading.Thread | None = None
        self.starting = threading.Lock()
        self.stopping = threading.Event()

    def evaluate(self, model: str, version: int, conditions: list[Condition],
                 extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Record the conditions' states; queue and return the alerts (payloads) that this evaluation fires."""
        if not self.settings.enabled or not conditions:
            return []
        from luodi.store import path_inside

        now = time.time()
        with _locked(path_inside(self.folder, f"{model}.{self.origin}.json")) as state:
            sends = transitions(state, conditions, now, self.settings.cooldown_s)
        payloads = [{
            "source": "luodi", "origin": self.origin, "status": status, "kind": condition.kind,
            "key": condition.key, "model": model, "version": version, "subject": condition.subject,
            "value": condition.value, "threshold": condition.threshold, "message": condition.message,
            "since": _iso(record["since"]), "at": _iso(now), "host": socket.gethostname(),
            "details": {**condition.details, **(extra or {})},
        } for condition, status, record in sends]
        for payload in payloads:
            self.send(payload)
        return payloads

    def send(self, payload: dict[str, Any]) -> None:
        with self.starting:  # evaluations may come from several threads (the live pass, a metric reporter)
            if self.thread is None:
                self.thread = threading.Thread(target=self._deliver_all, name="luodi-alerts", daemon=True)
                self.thread.start()
        try:
            self.queue.put_nowait(payload)
        except queue.Full:
            log.warning("alert queue full (%d waiting): dropped alert %s of %s", QUEUE_LIMIT, payload["key"],
                        payload["model"])
            self.on_outcome(payload["model"], "dropped")

    def _deliver_all(self) -> None:
        while True:
            payload = self.queue.get()
            if payload is None:
                return
            try:
                self.deliver(payload)
            except Exception:  # noqa: BLE001 - an alert must never take the process down
                log.exception("alert delivery failed")
                self.on_outcome(payload["model"], "failed")

    def deliver(self, payload: dict[str, Any]) -> bool:
        """Send one alert to the webhook and the command, with bounded retries; False when any target failed."""
        body = json.dumps(payload).encode()
        targets: list[tuple[str, Callable[[], None]]] = []
        if self.settings.webhook:  # named by its origin only: a webhook's path often holds its secret
            targets.append((f"webhook {webhook_origin(self.settings.webhook)}", lambda: self._post(body)))
        if self.settings.command:
            targets.append((f"command {self.settings.command!r}", lambda: self._run(body)))
        delivered = True
        for name, attempt in targets:
            for tries in range(self.settings.retries + 1):
                try:
                    attempt()
                    self.on_outcome(payload["model"], "sent")
                    break
                except Exception as error:  # noqa: BLE001 - any failure to deliver is logged and retried
                    last = tries == self.settings.retries
                    log.warning("alert %s (%s) to %s failed (try %d of %d): %s", payload["key"], payload["status"],
                                name, tries + 1, self.settings.retries + 1, error)
                    if last:
                        self.on_outcome(payload["model"], "failed")
                        delivered = False
                    elif self.stopping.wait(BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]):
                        delivered = False
                        break
        return delivered

    def _post(self, body: bytes) -> None:
        assert self.settings.webhook is not None
        request = urllib.request.Request(self.settings.webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "luodi-alerts"})
        with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:  # noqa: S310 - http(s) only
            response.read(1 << 16)

    def _run(self, body: bytes) -> None:
        assert self.settings.command is not None
        done = subprocess.run(shlex.split(self.settings.command), input=body, capture_output=True,
                              timeout=self.settings.timeout_s, check=False)
        if done.returncode:
            raise RuntimeError(f"exit code {done.returncode}: {done.stderr.decode(errors='replace')[-300:].strip()}")

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued within `timeout_s` (retries end early once it passes), then stop."""
        if self.thread is None:
            return
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout_s)
        self.thread.join(timeout_s)
        self.stopping.set()
        self.thread.join(1.0)
