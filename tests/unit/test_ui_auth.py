"""The UI's sessions and checks without a server: signed cookies that expire, CSRF tokens bound to a credential, the
Host rule of a loopback bind."""

from __future__ import annotations

import hashlib

import pytest

from luodi.ui import auth as ui_auth
from luodi.ui.auth import Auth


def test_sessions_are_signed_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = Auth(("read-0123456789abcdef",), ("admin-0123456789abcdef",), "127.0.0.1")
    cookie = keys.session("admin", ui_auth.key_id(b"admin-0123456789abcdef"))
    assert keys.session_caller(cookie).role == "admin"
    assert keys.session_caller(cookie).who == "key-" + hashlib.sha256(b"admin-0123456789abcdef").hexdigest()[:8]
    assert keys.session_caller(cookie.replace("key-", "key-0", 1)).role is None  # the key's id is signed too
    assert keys.session_caller(cookie.replace("admin", "read", 1)).role is None  # the role is signed
    assert Auth((), ("admin-0123456789abcdef",), "127.0.0.1").session_caller(cookie).role is None  # another server
    assert keys.session_caller("").role is None and keys.session_caller("a.b.c.d.e").role is None
    later = ui_auth.time.time() + ui_auth.SESSION_S + 1
    monkeypatch.setattr(ui_auth.time, "time", lambda: later)
    assert keys.session_caller(cookie).role is None


def test_roles_tokens_and_hosts() -> None:
    keys = Auth(("read-0123456789abcdef",), ("admin-0123456789abcdef",), "127.0.0.1")
    assert keys.role_of(b"admin-0123456789abcdef") == "admin" and keys.role_of(b"read-0123456789abcdef") == "read"
    assert keys.role_of(b"") is None and keys.role_of(b"read-0123456789abcdeX") is None
    first, second = (keys.session_caller(keys.session("read", "key-00000000")) for _ in range(2))
    assert keys.csrf_token(first) != keys.csrf_token(second)  # a token is good for its own session only
    assert all(keys.host_allowed(host) for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "localhost"))
    assert not keys.host_allowed("evil.example:8080") and not keys.host_allowed("127.0.0.1.evil.example")
    assert Auth(("k" * 16,), (), "0.0.0.0").host_allowed("ui.example.com")  # keys guard a public bind


@pytest.mark.parametrize("headers, same", [
    ({"origin": "http://127.0.0.1:8080"}, True),
    ({"origin": "https://127.0.0.1:8080"}, True),  # a TLS proxy in front: the host is what counts
    ({"referer": "http://127.0.0.1:8080/models/tiny?x=1"}, True),
    ({"origin": "http://evil.example"}, False),
    ({"origin": "http://127.0.0.1:8081"}, False),
    ({"origin": "null", "referer": "http://127.0.0.1:8080/"}, False),
    ({"referer": "javascript://127.0.0.1:8080/"}, False),
    ({}, False),
])
def test_same_origin(headers: dict[str, str], same: bool) -> None:
    from starlette.requests import Request

    scope = {"type": "http", "method": "POST", "path": "/", "scheme": "http", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8080"), *((k.encode(), v.encode()) for k, v in headers.items())]}
    assert ui_auth.same_origin(Request(scope)) is same
