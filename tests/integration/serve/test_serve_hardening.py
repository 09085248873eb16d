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
