"""Keys on every route (luodi serve's roles: read keys see, admin keys act), sign-in, and the checks every POST passes:
same origin, CSRF token, admin role; a promotion lands in the event log as `luodi models promote` records it."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Mount, Route
from ui_helpers import ADMIN_KEY, READ_KEY, add_run

from luodi.errors import InputError
from luodi.serve.settings import make_config
from luodi.store import Store
from luodi.ui.auth import key_id

READ = {"Authorization": f"Bearer {READ_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
OPEN = ("/login", "/static")


def concrete(path: str, run_id: str) -> str:
    return path.replace("{run_id}", run_id).replace("{name}", "tiny").replace("{version}", "1")


def test_every_route_needs_a_key(ui_home: Path, ui_server) -> None:
    store = Store(ui_home)
    run_id = store.list_runs("tiny")[0].id  # the trained run: it has a report
    other = add_run(store, "alpha")
    with ui_server(api_keys=(READ_KEY,), admin_keys=(ADMIN_KEY,)) as ui:
        routes = ui.app.app.routes
        checked = 0
        for route in routes:
            if isinstance(route, Mount) or not isinstance(route, Route) or route.path.startswith(OPEN):
                continue
            query = f"?runs={run_id},{other}" if route.path == "/compare" else ""
            path = concrete(route.path, run_id) + query
            for method in sorted(route.methods or {"GET"}):
                if method == "HEAD":
                    continue
                for headers in ({}, {"Authorization": "Bearer wrong-key-0123"}, {"Cookie": "luodi_ui=forged"}):
                    response = ui.client.request(method, path, headers={"Origin": ui.url, **headers})
                    assert response.status_code == 401, (method, path, headers, response.status_code)
                    assert response.headers["www-authenticate"] == "Bearer"
                checked += 1
            if "GET" in (route.methods or ()):  # this store holds no study: its page is the 404 naming it
                expected = (404,) if route.path == "/studies/{name}" else (200, 307)
                assert ui.client.get(path, headers=READ).status_code in expected, path
        assert checked >= 10
        assert ui.client.get("/static/ui.css").status_code == 200  # assets and the sign-in page stay open
        assert ui.client.get("/login").status_code == 200


def test_read_keys_see_and_admin_keys_act(ui_home: Path, ui_server) -> None:
    store = Store(ui_home)
    with ui_server(api_keys=(READ_KEY,), admin_keys=(ADMIN_KEY,)) as ui:
        token = ui.csrf("/models/tiny", **READ)
        assert 'id="promote-form"' not in ui.client.get("/models/tiny", headers=READ).text
        refused = ui.post("/models/tiny/promote", {"csrf": token, "version": "1", "alias": "production",
                                                   "reason": "looks good"}, **READ)
        assert refused.status_code == 403 and "admin key" in refused.text
        assert store.list_models()[0]["aliases"] == {}

        token = ui.csrf("/models/tiny", **ADMIN)
        assert 'id="promote-form"' in ui.client.get("/models/tiny", headers=ADMIN).text
        for form, headers in [({"version": "1", "alias": "production", "reason": "x"}, {}),  # no CSRF token
                              ({"csrf": "0" * 64, "version": "1", "alias": "production", "reason": "x"}, {}),
                              ({"csrf": token, "version": "1", "alias": "production", "reason": "x"},
                               {"Origin": "http://evil.example"})]:
            answer = ui.client.post("/models/tiny/promote", data=form, headers={"Origin": ui.url, **ADMIN, **headers})
            assert answer.status_code == 403, (form, headers)
        no_origin = ui.client.post("/models/tiny/promote", data={"csrf": token, "version": "1", "alias": "p",
                                                                 "reason": "x"}, headers=ADMIN)
        assert no_origin.status_code == 403 and "this site" in no_origin.text
        assert store.list_models()[0]["aliases"] == {}
        assert ui.post("/models/tiny/promote", {"csrf": token, "version": "1", "alias": "production",
                                                "reason": " "}, **ADMIN).status_code == 422  # a reason is required

        moved = ui.post("/models/tiny/promote", {"csrf": token, "version": "1", "alias": "production",
                                                 "reason": "first model"}, **ADMIN)
        assert moved.status_code == 303 and moved.headers["location"].startswith("/models/tiny?moved=")
        assert store.resolve("tiny@production").version == 1
        event = store.model_events("tiny")[0]
        assert event["kind"] == "alias.move" and event["subject"] == "tiny@production"
        assert event["detail"] == {"alias": "production", "from": None, "to": 1, "reason": "first model"}
        assert event["actor"] == "ui:" + key_id(ADMIN_KEY.encode())  # the key that promoted, never the key itself
        shown = ui.client.get(moved.headers["location"], headers=ADMIN).text
        assert "first model" in shown and "tiny@production → version 1" in shown


def test_rollback_moves_the_alias_back(ui_home: Path, trained_package: Path, ui_server) -> None:
    import shutil

    store = Store(ui_home)
    staging = store.staging_dir()
    shutil.copytree(trained_package, staging, dirs_exist_ok=True)
    store.register_model("tiny", staging, run_id=None, task="binary", metrics={"accuracy": 0.5})
    store.set_alias("tiny", "production", 1, "first")
    store.set_alias("tiny", "production", 2, "second")
    with ui_server(admin_keys=(ADMIN_KEY,), api_keys=(READ_KEY,)) as ui:
        token = ui.csrf("/models/tiny", **ADMIN)
        back = ui.post("/models/tiny/rollback", {"csrf": token, "alias": "production", "reason": "v2 is slow"}, **ADMIN)
        assert back.status_code == 303
        assert store.resolve("tiny@production").version == 1
        assert store.model_events("tiny")[0]["detail"] == {"alias": "production", "from": 2, "to": 1,
                                                          "reason": "v2 is slow", "rollback": True}
        assert store.model_events("tiny")[0]["actor"] == "ui:" + key_id(ADMIN_KEY.encode())
        nothing = ui.post("/models/tiny/rollback", {"csrf": token, "alias": "staging", "reason": "x"}, **ADMIN)
        assert nothing.status_code == 422 and "no earlier version" in nothing.text


def test_a_browser_signs_in_with_a_cookie(ui_home: Path, ui_server) -> None:
    with ui_server(api_keys=(READ_KEY,), admin_keys=(ADMIN_KEY,)) as ui:
        assert ui.client.get("/runs").status_code == 401
        assert ui.post("/login?next=/models", {"key": "not-a-key-0123456789"}).status_code == 401
        cross = ui.client.post("/login", data={"key": ADMIN_KEY}, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and "luodi_ui" not in cross.headers.get("set-cookie", "")
        signed = ui.post("/login?next=//evil.example", {"key": ADMIN_KEY})
        assert signed.status_code == 303 and signed.headers["location"] == "/runs"  # never off this site
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert ui.client.get("/models/tiny").status_code == 200  # the client keeps the cookie
        token = ui.csrf("/models/tiny")
        assert ui.post("/models/tiny/promote", {"csrf": token, "version": "1", "alias": "prod",
                                                "reason": "by cookie"}).status_code == 303
        assert Store(ui_home).model_events("tiny")[0]["actor"] == "ui:" + key_id(ADMIN_KEY.encode())
        ui.post("/logout", {"csrf": token})
        assert ui.client.get("/runs").status_code == 401


def test_without_keys_everyone_reads_and_nobody_acts(ui_home: Path, ui_server) -> None:
    with ui_server() as ui:
        token = ui.csrf("/models/tiny/versions/1")
        refused = ui.post("/models/tiny/promote", {"csrf": token, "version": "1", "alias": "production",
                                                   "reason": "x"})
        assert refused.status_code == 403 and "LUODI_ADMIN_KEYS" in refused.text
        assert Store(ui_home).list_models()[0]["aliases"] == {}
        rebound = ui.client.get("/runs", headers={"Host": "evil.example:8080"})  # DNS rebinding names another host
        assert rebound.status_code == 400


def test_a_public_bind_needs_keys() -> None:
    with pytest.raises(InputError, match="API keys"):
        make_config(host="0.0.0.0", port=0)
