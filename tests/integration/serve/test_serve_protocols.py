"""The endpoints answer what the package predicts: /v1 records, Open Inference Protocol v2 (tritonclient, JSON and
binary), each caller its own result under concurrency, bad rows isolated, the ONNX Runtime backend."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import RECORD, concurrently, slow_loader

from luodi.package import load_package

KEY = "inference-key-0123456789"


def records(count: int, seed: int = 0) -> list[dict]:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    colors = ["red", "green", "blue", "violet", "never-seen"]
    return [{"size": round(float(rng.normal()), 4), "age": int(rng.integers(18, 80)),
             "income": None if index % 7 == 0 else round(float(rng.normal(50, 15)), 2),
             "color": colors[index % len(colors)]} for index in range(count)]


def test_v1_predict_matches_the_package(serve, store_home: Path) -> None:
    rows = records(25)
    expected = load_package(store_home / "models" / "tiny" / "v1").predict(rows)
    with serve() as server:
        response = server.client.post("/v1/models/tiny/predict", json={"records": rows})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["version"]) == ("tiny", 1)
        assert [row["prediction"] for row in body["predictions"]] == expected.predictions
        probabilities = np.array([[row["probabilities"]["no"], row["probabilities"]["yes"]]
                                  for row in body["predictions"]])
        np.testing.assert_allclose(probabilities, expected.probabilities, atol=1e-6)
        described = server.client.get("/v1/models/tiny").json()
        assert described["version"] == 1 and described["backend"] == "torch"
        assert [item["name"] for item in described["input_schema"]] == ["size", "age", "income", "color"]


def test_each_concurrent_caller_gets_its_own_result(serve, store_home: Path) -> None:
    rows = records(48, seed=3)
    package = load_package(store_home / "models" / "tiny" / "v1")
    expected = [package.predict([row]).probabilities[0].tolist() for row in rows]
    with serve(max_batch_size=16, max_wait_ms=20) as server:
        def call(row: dict) -> list[float]:  # type: ignore[type-arg]
            response = server.client.post("/v1/models/tiny/predict", json={"records": [row]})
            assert response.status_code == 200, response.text
            result = response.json()["predictions"][0]["probabilities"]
            return [result["no"], result["yes"]]

        answers = concurrently([lambda row=row: call(row) for row in rows])
        metrics = server.client.get("/metrics").text
    for answer, want in zip(answers, expected, strict=True):
        np.testing.assert_allclose(answer, want, atol=1e-6)
    batches = next(line for line in metrics.splitlines() if line.startswith("luodi_batch_rows_count"))
    assert float(batches.split()[-1]) < len(rows)  # some requests really shared a batch


def test_a_bad_row_fails_alone_and_its_batch_mates_succeed(serve) -> None:
    seen: list[int] = []
    with serve(loader=slow_loader(1.0, seen), max_batch_size=64, strict=True) as server:
        def call(body: bytes) -> int:
            return server.client.post("/v1/models/tiny/predict", content=body,
                                       headers={"content-type": "application/json"}).status_code

        good = json.dumps({"records": [RECORD]}).encode()
        bad = good.replace(b'"color": "red"', b'"color": "castle"')  # valid to the schema, refused by the pipeline
        assert bad != good
        blocker: list[int] = []
        first = threading.Thread(target=lambda: blocker.append(call(good)))
        first.start()  # occupies the model for a second, so the next calls queue and run as one batch
        time.sleep(0.3)
        statuses = concurrently([lambda: call(good)] * 5 + [lambda: call(bad)])
        first.join()
        metrics = server.client.get("/metrics").text
    assert blocker + statuses == [200] * 6 + [422]
    assert sum(seen) == 6  # the bad row never reached the model
    assert 'luodi_batch_rows_sum{model="tiny"} 7.0' in metrics and 'luodi_batch_rows_count{model="tiny"} 2.0' in metrics


def test_v1_errors_name_the_field(serve) -> None:
    with serve(max_rows=4, max_queue_rows=8) as server:
        response = server.client.post("/v1/models/tiny/predict", json={"records": [{**RECORD, "age": "old"}]})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["records", 0, "age"]
        missing = server.client.post("/v1/models/tiny/predict", json={"records": [{"size": 1}]})
        assert missing.status_code == 422 and {"age", "income", "color"} <= {
            item["loc"][-1] for item in missing.json()["detail"]}
        too_many = server.client.post("/v1/models/tiny/predict", json={"records": [RECORD] * 5})
        assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["records"]
        long_text = server.client.post("/v1/models/tiny/predict",
                                       json={"records": [{**RECORD, "color": "x" * 20_000}]})
        assert long_text.status_code == 422 and "color" in long_text.json()["detail"][0]["loc"]
        assert server.client.post("/v1/models/nope/predict", json={"records": [RECORD]}).status_code == 404
        assert server.client.get("/v1/models/tiny/predict").status_code == 405


def test_tritonclient_calls_the_v2_endpoints_unchanged(serve, store_home: Path) -> None:
    import tritonclient.http as triton
    import tritonclient.utils as triton_utils

    rows = records(6, seed=5)
    expected = load_package(store_home / "models" / "tiny" / "v1").predict(rows)
    numeric = np.array([[row["size"], row["age"], np.nan if row["income"] is None else row["income"]]
                        for row in rows], dtype=np.float32)
    colors = np.array([row["color"].encode() for row in rows], dtype=np.object_)
    with serve() as server:
        client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
        metadata = client.get_model_metadata("tiny")
        assert [item["name"] for item in metadata["inputs"]] == ["numeric", "color"]
        assert metadata["inputs"][0]["parameters"]["columns"] == ["size", "age", "income"]
        assert client.is_model_ready("tiny", "1") and not client.is_model_ready("tiny", "2")
        assert client.get_model_metadata("tiny", "1") == metadata and metadata["versions"] == ["1"]
        for version, binary in itertools.product(("", "1"), (False, True)):  # "": the unversioned route
            inputs = [triton.InferInput("numeric", list(numeric.shape), "FP32"),
                      triton.InferInput("color", [len(rows)], "BYTES")]
            inputs[0].set_data_from_numpy(numeric, binary_data=binary)
            inputs[1].set_data_from_numpy(colors, binary_data=binary)
            outputs = [triton.InferRequestedOutput("prediction", binary_data=binary),
                       triton.InferRequestedOutput("probabilities", binary_data=binary)]
            result = client.infer("tiny", inputs, model_version=version, outputs=outputs, request_id="r-1")
            predictions = [value.decode() if isinstance(value, bytes) else value
                           for value in result.as_numpy("prediction").tolist()]
            assert predictions == expected.predictions
            np.testing.assert_allclose(result.as_numpy("probabilities"), expected.probabilities, atol=1e-5)
            assert result.get_response()["id"] == "r-1" and result.get_response()["model_version"] == "1"
        default = client.infer("tiny", inputs)  # no outputs named: all of them, binary
        assert default.as_numpy("probabilities").shape == (len(rows), 2)
        for call in (lambda: client.infer("tiny", inputs, model_version="2"),
                     lambda: client.get_model_metadata("tiny", "2")):
            with pytest.raises(triton_utils.InferenceServerException) as refused:
                call()
            assert refused.value.status() == "404" and "version '2' is not served" in refused.value.message()
        client.close()


def test_v2_versioned_routes_answer_for_the_served_version_only(serve) -> None:
    body = {"inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP32", "data": [0.3, 40, 55.0]},
                       {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}
    with serve(api_keys=(KEY,), max_body_bytes=4096) as server:
        keyed = {"Authorization": f"Bearer {KEY}"}
        served = server.client.post("/v2/models/tiny/versions/1/infer", json=body, headers=keyed)
        assert served.status_code == 200 and served.json()["model_version"] == "1"
        assert server.client.post("/v2/models/tiny/versions/1/infer", json=body).status_code == 401
        too_big = server.client.post("/v2/models/tiny/versions/1/infer", content=b" " * 5000, headers=keyed)
        assert too_big.status_code == 413
        for path in ("/v2/models/tiny/versions/2/infer", "/v2/models/tiny/versions/x/infer",
                     "/v2/models/tiny/versions/2", "/v2/models/tiny/versions/2/ready"):
            method = "POST" if path.endswith("infer") else "GET"
            missing = server.client.request(method, path, json=body if method == "POST" else None, headers=keyed)
            assert missing.status_code == 404, path
            assert "is not served here; this server serves version 1" in missing.json()["error"]
        for path in ("/v2/models/nope/infer", "/v2/models/nope/versions/1/infer"):
            unknown = server.client.post(path, json=body, headers=keyed)
            assert unknown.status_code == 404 and unknown.json() == {"error": "no model named 'nope'"}
        assert server.client.get("/v2/models/tiny/versions/1/ready", headers=keyed).json() == {"name": "tiny",
                                                                                            "ready": True}
        metrics = server.client.get("/metrics", headers=keyed).text
    for code, count in (("200", 1), ("401", 1), ("413", 1), ("404", 2)):
        assert f'luodi_requests_total{{code="{code}",endpoint="v2_infer",model="tiny"}} {count}.0' in metrics


def test_v2_errors_are_422_with_a_message(serve) -> None:
    cases = [
        {"inputs": []},
        {"inputs": [{"name": "numeric", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
        {"inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, "x"]},
                    {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]},
        {"inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
        {"inputs": [{"name": "numeric", "shape": [1, 3], "datatype": "FP32", "data": [1, [2], 3]},
                    {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]},
        {"inputs": [{"name": "ghost", "shape": [1], "datatype": "FP32", "data": [1]}]},
    ]
    with serve() as server:
        for case in cases:
            response = server.client.post("/v2/models/tiny/infer", json=case)
            assert response.status_code == 422, (case, response.text)
            assert response.json()["error"]
        truncated = server.client.post("/v2/models/tiny/infer", content=b'{"inputs": []}abc',
                                       headers={"Inference-Header-Content-Length": "999"})
        assert truncated.status_code == 422


@pytest.mark.slow
def test_onnx_backend_serves_a_verified_export(serve, store_home: Path, tmp_path: Path) -> None:
    from luodi.optimize.export import export_onnx
    from luodi.package import verify_package

    folder = tmp_path / "tiny-onnx"
    shutil.copytree(store_home / "models" / "tiny" / "v1", folder)
    rows = records(20, seed=9)
    entry = export_onnx(folder, sample=rows)
    assert entry["parity_max_abs_diff"] <= 1e-4
    assert "model.onnx" in verify_package(folder)["files"]
    expected = load_package(folder).predict(rows)
    with serve(str(folder)) as server:
        assert server.client.get("/v2/models/tiny").json()["platform"] == "onnxruntime"
        response = server.client.post("/v1/models/tiny/predict", json={"records": rows}).json()
    np.testing.assert_allclose([[row["probabilities"]["no"], row["probabilities"]["yes"]]
                                for row in response["predictions"]], expected.probabilities, atol=1e-5)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(Exception, match="sha256"):
        load_package(folder)
