"""ServeConfig: every knob of `luodi serve` in one validated object, and the rules that refuse unsafe settings."""

from __future__ import annotations

import copy
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luodi.errors import InputError
from luodi.monitor.alerts import AlertSettings

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


ALERT_FIELDS = ("webhook", "command", "cooldown_s", "quality_rate", "rules")  # ServeConfig's alert_<name> options


def _alert(name: str) -> Any:
    """The field of an alert setting on ServeConfig: AlertSettings' own (default, limits), its description marked."""
    field = copy.copy(AlertSettings.model_fields[name])
    field.description = f"Alerts: {field.description}"
    return field


class ServeConfig(BaseModel):
    """What one server process (or each of `workers` processes) runs with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address to bind; anything but loopback needs API keys.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    workers: int = Field(1, ge=1, le=64, description="Server processes sharing the port (a supervisor restarts them).")
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="auto runs the variant an optimized version carries, else ONNX Runtime when the package "
        "has a verified model.onnx, else torch.")
    threads: int = Field(1, ge=1, le=256, description="Intra-op threads of the model per process.")
    max_batch_size: int = Field(64, ge=1, le=65536, description="Most rows the model runs at once.")
    max_wait_ms: float = Field(2.0, ge=0, le=1000, description="Longest a waiting row is held to grow a batch.")
    batching: bool = Field(True, description="Off: every request runs alone (for comparison).")
    max_queue_rows: int = Field(1024, ge=1, description="Rows waiting per model; more are refused with 429.")
    timeout_ms: float = Field(10_000, gt=0, description="Deadline per request, queue time included (504).")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body, enforced while reading (413).")
    max_rows: int = Field(1024, ge=1, description="Most rows in one request (422).")
    max_string_length: int = Field(10_000, ge=1, description="Longest string in any field (422).")
    api_keys: tuple[str, ...] = Field((), description="Inference keys (Authorization: Bearer KEY).")
    admin_keys: tuple[str, ...] = Field((), description="Admin keys; admin routes exist only when one is set.")
    reload_interval_s: float = Field(2.0, ge=0, description="How often the alias is checked (0: never).")
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, how long in-flight work may finish.")
    log_sample_rate: float = Field(1.0, ge=0, le=1, description="Fraction of requests kept in the prediction log.")
    log_max_bytes: int = Field(64 << 20, ge=0, description="Prediction log size per model before old files go.")
    log_flush_s: float = Field(2.0, gt=0, description="How often the prediction log is written.")
    header_timeout_s: float = Field(10.0, gt=0, le=3600, description="A connection's request line and headers must "
                                    "arrive within this many seconds of it opening (or of its next request), "
                                    "else it is closed.")
    keep_alive_timeout_s: float = Field(5.0, gt=0, le=3600, description="An idle keep-alive connection is closed "
                                        "after this many seconds.")
    max_connections: int = Field(1000, ge=16, le=1_000_000, description="Open connections per process (lowered to "
                                 "fit the open-file limit); past it a new one evicts the longest idle connection.")
    strict: bool = Field(False, description="Values never seen in training are refused (422 naming the column), "
                         "as luodi predict --strict does; off: answered as unknown, with a warning.")
    access_log: bool = Field(False, description="uvicorn's per-request access log (costs throughput).")
    drift_window: int = Field(1000, ge=0, le=1_000_000, description="Newest request rows per model tested live "
                              "against the reference profile (drift gauges on /metrics, data-quality counters, "
                              "alerts); 0: live monitoring off.")
    drift_interval_s: float = Field(10.0, gt=0, le=86_400, description="How often the live window is tested (off "
                                    "the event loop).")
    alert_webhook: str | None = _alert("webhook")
    alert_command: str | None = _alert("command")
    alert_cooldown_s: float = _alert("cooldown_s")
    alert_quality_rate: float = _alert("quality_rate")
    alert_rules: str = _alert("rules")

    @property
    def alerts(self) -> AlertSettings:
        """The alert settings (validated with the rest in make_config)."""
        return AlertSettings.model_validate({name: getattr(self, f"alert_{name}") for name in ALERT_FIELDS})


def read_keys(env: str, file: Path | None) -> tuple[str, ...]:
    """Keys from a file (one per line) and the environment variable `env` (comma separated), never argv."""
    keys: list[str] = [key.strip() for key in os.environ.get(env, "").split(",") if key.strip()]
    if file is not None:
        try:
            keys += [line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as error:
            raise InputError(f"{file}: cannot read keys: {error.strerror}") from None
    for key in keys:
        if len(key) < 16:
            raise InputError(f"an API key from {file or env} is shorter than 16 characters; use a random token")
    return tuple(dict.fromkeys(keys))


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_config(**values: object) -> ServeConfig:
    """Validate settings into a ServeConfig; errors name the setting; a public bind without keys is refused."""
    try:
        config = ServeConfig(**values)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise InputError(f"serve setting {key.replace('_', '-')}: {first['msg']}") from None
    try:
        config.alerts  # noqa: B018 - validates the webhook's scheme and the rules
    except ValidationError as error:
        first = error.errors()[0]
        raise InputError(f"serve setting alert-{first['loc'][0]}: {first['msg']}") from None
    if not is_loopback(config.host) and not config.api_keys:
        raise InputError(f"refusing to bind {config.host}: only loopback addresses are served without API keys; "
                         "set LUODI_API_KEYS or --api-keys-file")
    if config.max_queue_rows < config.max_rows:
        raise InputError(f"serve setting max-queue-rows ({config.max_queue_rows}) must be at least max-rows "
                         f"({config.max_rows}): a request larger than the queue could never run")
    overlap = set(config.api_keys) & set(config.admin_keys)
    if overlap:
        raise InputError("an admin key is also an inference key; admin and inference keys must differ")
    return config
