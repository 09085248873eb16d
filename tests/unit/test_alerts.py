"""Alerts and data quality without a server: rules, settings errors, episodes (fire, cooldown, resolve), delivery to
a real command, failures logged, deduplication across alerters at once; quality counts against a profile."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from luodi.errors import InputError
from luodi.monitor.alerts import (
    Alerter,
    AlertSettings,
    Condition,
    alert_settings,
    metric_conditions,
    parse_rules,
    transitions,
)
from luodi.monitor.quality import quality_counts


def condition(active: bool, key: str = "drift:age") -> Condition:
    return Condition(key, "drift", key.split(":")[-1], active, 0.001, 0.01, "age drifted")


def test_rules_parse_and_bad_ones_name_the_part() -> None:
    rules = parse_rules("accuracy<0.8, drift_share > 0.3")
    assert [(rule.metric, rule.below, rule.threshold) for rule in rules] == [("accuracy", True, 0.8),
                                                                            ("drift_share", False, 0.3)]
    with pytest.raises(ValueError, match="'accuracy=0.8'"):
        parse_rules("accuracy=0.8")
    settings = AlertSettings(webhook="http://127.0.0.1:9/hook", rules="accuracy<0.8")
    active = metric_conditions({"accuracy": 0.7, "unrelated": 1.0}, settings)
    assert [(item.key, item.active) for item in active] == [("metric:accuracy", True)]
    assert metric_conditions({}, settings) == []  # a metric not reported leaves its condition alone


def test_settings_errors_name_the_option() -> None:
    with pytest.raises(InputError, match="--alert-webhook: .*http"):
        alert_settings(webhook="file:///etc/passwd")
    with pytest.raises(InputError, match="--alert-rules: .*'accuracy'"):
        alert_settings(rules="accuracy")
    with pytest.raises(InputError, match="--alert-cooldown: "):
        alert_settings(cooldown_s=-1)
    assert not alert_settings().enabled and alert_settings(command="true").enabled


def test_an_episode_fires_once_reminds_after_the_cooldown_and_resolves() -> None:
    state: dict[str, dict[str, float]] = {}
    statuses = [[status for _, status, _ in transitions(state, [condition(active)], now, cooldown_s=100)]
                for active, now in [(False, 0), (True, 1), (True, 50), (True, 101), (True, 150), (False, 160),
                                    (False, 170), (True, 180)]]
    assert statuses == [[], ["firing"], [], ["firing"], [], ["resolved"], [], ["firing"]]


def test_a_command_gets_the_payload_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    command = f"{sys.executable} -c \"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())\""
    outcomes: list[str] = []
    alerter = Alerter(AlertSettings(command=command), tmp_path, "monitor",
                      lambda model, outcome: outcomes.append(outcome))
    fired = alerter.evaluate("churn", 3, [condition(True)], {"window_rows": 10})
    alerter.close()
    assert [alert["status"] for alert in fired] == ["firing"]
    received = json.loads(out.read_text())
    assert received == fired[0]
    assert received["model"] == "churn" and received["key"] == "drift:age" and received["details"]["window_rows"] == 10
    assert outcomes == ["sent"]
    assert alerter.evaluate("churn", 3, [condition(True)]) == []  # still the same episode (state in the home)


def test_a_failing_command_is_retried_logged_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[str] = []
    settings = AlertSettings(command=f"{sys.executable} -c 'raise SystemExit(3)'", retries=1)
    alerter = Alerter(settings, tmp_path, "serve", lambda model, outcome: outcomes.append(outcome))
    with caplog.at_level(logging.WARNING, "luodi.monitor"):
        alerter.evaluate("churn", 1, [condition(True)])
        alerter.close()
    failures = [record.getMessage() for record in caplog.records if "failed" in record.getMessage()]
    assert len(failures) == 2 and "exit code 3" in failures[0] and "try 1 of 2" in failures[0]
    assert outcomes == ["failed"]


def test_alerters_evaluating_at_once_fire_each_transition_once(tmp_path: Path) -> None:
    """As several server workers, or two `luodi monitor` runs, do: the state file's lock lets one of them fire."""
    settings = AlertSettings(webhook="http://127.0.0.1:9/unused")
    alerters = [Alerter(settings, tmp_path, "serve") for _ in range(8)]
    for alerter in alerters:
        alerter.send = lambda payload: None  # type: ignore[method-assign]  # count decisions, deliver nothing
    fired: list[int] = []
    barrier = threading.Barrier(len(alerters))

    def evaluate(alerter: Alerter) -> None:
        barrier.wait()
        fired.append(len(alerter.evaluate("churn", 1, [condition(True)])))

    threads = [threading.Thread(target=evaluate, args=(alerter,)) for alerter in alerters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(fired) == [0] * 7 + [1]


def test_quality_counts_missing_unseen_and_out_of_range() -> None:
    features = {
        "age": {"type": "numeric", "aspects": {"value": {"kind": "numbers", "count": 5, "quantiles": [18.0, 80.0]}}},
        "color": {"type": "category", "aspects": {"value": {"kind": "categories", "count": 5,
                                                            "values": ["red", "blue"], "other": 0.0}}},
        "city": {"type": "category", "aspects": {"value": {"kind": "categories", "count": 5, "values": ["a"],
                                                           "other": 0.2}}},  # truncated: unseen is unknown
        "note": {"type": "text", "aspects": {}},
    }
    inputs = pa.StructArray.from_arrays(
        [pa.array([18.0, 80.0, 81.0, None, 17.5]), pa.array(["red", "teal", None, "blue", "teal"]),
         pa.array(["a", "b", "c", None, "a"]), pa.array(["hi", "", None, "x", "y"])],
        ["age", "color", "city", "note"])
    counts = quality_counts(features, pa.table({"inputs": inputs}))
    assert counts == {"age": {"missing": 1, "out_of_range": 2}, "color": {"missing": 1, "unseen": 2},
                      "city": {"missing": 1}, "note": {"missing": 2}}
