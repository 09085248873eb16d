"""What an attacker and a new user found from outside (issue 12): shapes that raised 500, NaN literals, unseen
values, one error shape, slow connections. Every test runs a real server on 127.0.0.1."""

from __future__ import annotations

import pytest
from serving_helpers import RECORD

ADMIN = "admin-key-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
V2 = "/v2/models/tiny/infer"


def v2_body(**extra: object) -> dict[str, object]:
    return {"inputs": [{"name": "numeric", "datatype": "FP32", "shape": [1, 3], "data": [0.3, 41, 52.5]},
                       {"name": "color", "datatype": "BYTES", "shape": [1], "data": ["red"]}], **extra}


@pytest.mark.parametrize("body", [
    {"inputs": [{"name": "color", "datatype": {}, "shape": [1], "data": ["red"]}]},
    {"inputs": [{"name": "color", "datatype": ["BYTES"], "shape": [1], "data": ["red"]}]},
    v2_body(outputs=[{"name": "prediction", "parameters": True}]),
    v2_body(outputs=[{"name": "prediction", "parameters": 3}]),
    v2_body(outputs=[{"name": "prediction", "parameters": ["binary_data"]}]),
    v2_body(outputs=[{"name": {}}]),
    v2_body(parameters={"timeout": 10**400}),
], ids=["datatype-object", "datatype-list", "params-true", "params-number", "params-list", "name-object",
        "timeout-huge"])
def test_malformed_v2_shapes_get_422_not_500(serve, body: dict[str, object]) -> None:
    import json

    with serve() as server:
        response = server.client.post(V2, content=json.dumps(body))
        assert response.status_code == 422, response.text
        assert response.json()["error"]


def test_huge_integers_get_a_clear_4xx(serve) -> None:
    with serve("tiny", admin_keys=(ADMIN,), headers=ADMIN_HEADERS) as server:
        moved = server.client.post("/admin/models/tiny/alias",
                                   json={"alias": "production", "version": 1 << 63, "reason": "overflow"})
        assert moved.status_code == 422, moved.text
        assert moved.json()["detail"][0]["loc"] == ["version"]
        huge = server.client.post("/v1/models/tiny/predict", json={"records": [{**RECORD, "color": 10**30}]})
        assert huge.status_code == 200, huge.text  # a number as a category is text; this one is never seen
        all_huge = server.client.post("/v1/models/tiny/predict",
                                      json={"records": [{**RECORD, "color": -(10**30)}] * 2})
        assert all_huge.status_code == 200, all_huge.text


def test_every_error_has_one_shape_per_protocol(serve) -> None:
    key = "inference-key-0123456789"
    with serve(api_keys=(key,), max_body_bytes=4096, headers={"Authorization": f"Bearer {key}"}) as server:
        client = server.client
        v1 = [client.post("/v1/models/tiny/predict", headers={"Authorization": "Bearer wrong-key-0123456789"},
                          json={"records": [RECORD]}),
              client.post("/v1/models/tiny/predict", content=b"x", headers={"Content-Type": "text/plain"}),
              client.get("/v1/models/tiny/predict"),
              client.post("/v1/models/tiny/predict", content=b"x" * 5000, headers={"Content-Type": "application/json"}),
              client.post("/v1/models/nope/predict", json={"records": [RECORD]}),
              client.get("/v1/models/nope"), client.get("/no/such/path"),
              client.get("/metrics", headers={"Authorization": ""})]
        assert [r.status_code for r in v1] == [401, 415, 405, 413, 404, 404, 404, 401]
        for response in v1:
            assert list(response.json()) == ["detail"] and isinstance(response.json()["detail"], str), response.text
        assert v1[4].json() == {"detail": "no model named 'nope'"}
        assert v1[0].headers["www-authenticate"] == "Bearer" and v1[2].headers["allow"] == "POST"
        v2 = [client.post(V2, content=b"x", headers={"Content-Type": "text/plain"}), client.get(V2),
              client.get("/v2/health/live", headers={"Authorization": ""}), client.get("/v2/no/such/path")]
        assert [r.status_code for r in v2] == [415, 405, 401, 404]
        for response in v2:
            assert list(response.json()) == ["error"] and isinstance(response.json()["error"], str), response.text
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_is_refused_like_infinity_naming_the_field(serve, literal: str) -> None:
    body = f'{{"records": [{{"size": 0.3, "age": {literal}, "income": 52.5, "color": "red"}}]}}'
    tensor = ('{"inputs": [{"name": "numeric", "datatype": "FP64", "shape": [1, 3], '
              f'"data": [0.3, {literal}, 52.5]}}, {{"name": "color", "datatype": "BYTES", "shape": [1], '
              '"data": ["red"]}]}')
    with serve() as server:
        v1 = server.client.post("/v1/models/tiny/predict", headers={"Content-Type": "application/json"}, content=body)
        assert v1.status_code == 422, v1.text
        assert v1.json()["detail"][0]["loc"] == ["records", 0, "age"]
        v2 = server.client.post(V2, content=tensor)
        if literal == "NaN":  # a tensor has no null: NaN is its missing value, as a NaN cell is in a CSV file
            assert v2.status_code == 200, v2.text
        else:
            assert v2.status_code == 422, v2.text
            assert "'age'" in v2.json()["error"]


def test_unseen_values_warn_and_count_by_default_and_are_refused_when_strict(serve) -> None:
    castle = {**RECORD, "color": "castle"}
    with serve(max_batch_size=8) as server:
        seen = server.client.post("/v1/models/tiny/predict", json={"records": [RECORD]})
        assert seen.status_code == 200 and "warnings" not in seen.json()
        unseen = server.client.post("/v1/models/tiny/predict", json={"records": [RECORD, castle]})
        assert unseen.status_code == 200, unseen.text
        assert len(unseen.json()["warnings"]) == 1 and "'color'" in unseen.json()["warnings"][0]
        assert "castle" in unseen.json()["warnings"][0]
        tensor = server.client.post(V2, json={"inputs": [
            {"name": "numeric", "datatype": "FP32", "shape": [1, 3], "data": [0.3, 41, 52.5]},
            {"name": "color", "datatype": "BYTES", "shape": [1], "data": ["castle"]}]})
        assert tensor.status_code == 200 and "'color'" in tensor.json()["parameters"]["warnings"][0]
        metrics = server.client.get("/metrics").text
        assert 'luodi_unseen_values_total{column="color",model="tiny"} 2.0' in metrics
    with serve(strict=True) as server:
        refused = server.client.post("/v1/models/tiny/predict", json={"records": [RECORD, castle]})
        assert refused.status_code == 422 and "'color'" in refused.json()["detail"], refused.text
        assert server.client.post("/v1/models/tiny/predict", json={"records": [RECORD]}).status_code == 200


def test_unseen_warnings_go_to_their_own_request_in_a_batch(serve) -> None:
    from serving_helpers import concurrently, slow_loader

    seen: list[int] = []
    castle = {**RECORD, "color": "castle"}
    with serve(loader=slow_loader(0.5, seen), max_batch_size=64) as server:
        def call(record: dict[str, object]) -> dict[str, object]:
            return server.client.post("/v1/models/tiny/predict", json={"records": [record]}).json()

        replies = concurrently([lambda: call(RECORD)] * 4 + [lambda: call(castle)] + [lambda: call(RECORD)] * 2)
    assert ["warnings" in reply for reply in replies] == [False] * 4 + [True] + [False] * 2
