"""Delayed labels end to end: every prediction answer carries a request id; `POST /v1/models/NAME/feedback` and
`luodi feedback` join ground truth to the logged predictions by it; `luodi monitor` reports live accuracy; bad
feedback is refused naming the entry (or file row) and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import luodi.api as api
from luodi.monitor.live import live_metrics

RECORDS = [{"size": 0.5, "age": 40, "income": 52.0, "color": "red"},
           {"size": -1.2, "age": 25, "income": None, "color": "blue"},
           {"size": 2.0, "age": 70, "income": 61.5, "color": "green"},
           {"size": 0.1, "age": 33, "income": 40.0, "color": "violet"}]


def flipped(label: str) -> str:
    return "no" if label == "yes" else "yes"


def luodi(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LUODI_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "luodi.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_feedback_joins_labels_by_request_id(serve: Callable[..., Any], store_home: Path, tmp_path: Path) -> None:
    with serve("tiny") as server:
        client = server.client
        answers = []
        for record in RECORDS[:2]:  # one record per request
            response = client.post("/v1/models/tiny/predict", json={"records": [record]})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["request_id"] == response.headers["x-request-id"] and len(body["request_id"]) == 32
            answers.append((body["request_id"], 0, body["predictions"][0]["prediction"]))
        batch = client.post("/v1/models/tiny/predict", json={"records": RECORDS[2:]}).json()
        answers += [(batch["request_id"], row, item["prediction"]) for row, item in enumerate(batch["predictions"])]
        assert len({answer[0] for answer in answers}) == 3  # a new id per request

        v2 = client.post("/v2/models/tiny/infer", json={"inputs": [
            {"name": "size", "shape": [1], "datatype": "FP64", "data": [0.3]},
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [30]},
            {"name": "income", "shape": [1], "datatype": "FP64", "data": [45.0]},
            {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]})
        assert v2.status_code == 200, v2.text
        assert v2.json()["id"] == v2.headers["x-request-id"]  # the v2 `id`, generated when the client sent none
        mine = client.post("/v2/models/tiny/infer", json={"id": "order-17", "inputs": [
            {"name": "size", "shape": [1], "datatype": "FP64", "data": [0.3]},
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [30]},
            {"name": "income", "shape": [1], "datatype": "FP64", "data": [45.0]},
            {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]})
        assert mine.json()["id"] == "order-17" and mine.headers["x-request-id"] == "order-17"

        # three right labels over HTTP, the batch's second row wrong
        sent = [{"request_id": rid, "row": row, "target": label if index != 3 else flipped(label)}
                for index, (rid, row, label) in enumerate(answers[:3])]
        accepted = client.post("/v1/models/tiny/feedback", json={"feedback": sent})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json() == {"model": "tiny", "version": 1, "accepted": 3}

        bad = client.post("/v1/models/tiny/feedback", json={"feedback": [
            {"request_id": answers[0][0], "target": "maybe"}, {"target": "yes"}, {"request_id": "x", "row": -1,
                                                                               "target": "no"}]})
        assert bad.status_code == 422
        detail = bad.json()["detail"]
        assert [item["loc"] for item in detail] == [["body", "feedback", 0, "target"],
                                                    ["body", "feedback", 1, "request_id"],
                                                    ["body", "feedback", 2, "row"]]
        assert "'maybe' is not one of the model's labels" in detail[0]["msg"]
        assert client.post("/v1/models/tiny/feedback", content=b"{nope").status_code == 422
        assert client.post("/v1/models/tiny/feedback", json={"feedback": []}).status_code == 422
        paths = client.get("/openapi.json").json()["paths"]
        assert "/v1/models/tiny/feedback" in paths
        assert "request_id" in json.dumps(paths["/v1/models/tiny/predict"]["post"]["responses"]["200"])

    # the fourth label by file, through the CLI: the batch's second row, wrong
    rid, row, label = answers[3]
    labels = tmp_path / "labels.csv"
    labels.write_text(f"request_id,row,label\n{rid},{row},{flipped(label)}\n", encoding="utf-8")
    done = luodi(store_home, "feedback", "tiny", "--data", str(labels), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 1

    result = api.monitor("tiny", home=store_home, out=tmp_path / "monitor.html").to_dict()
    live = result["live"]
    assert live["labelled_rows"] == 4 and live["metrics"] == {"accuracy": 0.75}, live
    assert sum(point["rows"] for point in live["points"]) == 4
    assert "Live accuracy" in (tmp_path / "monitor.html").read_text(encoding="utf-8")
    current = live_metrics(store_home, "tiny", since=None)
    assert current["accuracy"] == 0.75 and current["directions"] == {"accuracy": "max"}
    shown = luodi(store_home, "monitor", "tiny", "--no-report", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "live: accuracy 0.7500 on 4 labelled rows" in " ".join(shown.stdout.split())


def test_bad_feedback_files_exit_2_naming_file_and_row(store_home: Path, tmp_path: Path) -> None:
    cases = {
        "no-id.csv": ("target\nyes\n", "no request_id column"),
        "no-target.csv": ("request_id,guess\na,yes\n", "no target column"),
        "bad-label.csv": ("request_id,target\na,yes\nb,perhaps\n", "row 2, column target: 'perhaps' is not one"),
        "bad-row.jsonl": ('{"request_id": "a", "row": "x", "target": "no"}\n', "row 1, column row"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        done = luodi(store_home, "feedback", "tiny", "--data", str(path), cwd=tmp_path)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert expected in done.stderr and name in done.stderr, (name, done.stderr)
    missing = luodi(store_home, "feedback", "tiny", "--data", str(tmp_path / "absent.csv"), cwd=tmp_path)
    assert missing.returncode == 2 and "absent.csv" in missing.stderr
