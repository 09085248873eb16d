"""Who is asking, and may they act: API keys as `luodi serve` defines them (read keys see, admin keys act), a
sign-in cookie for browsers, and the same-origin and CSRF checks every POST passes.

Keys come from ServeConfig (`api_keys` are read keys, `admin_keys` act and read), compared with
`hmac.compare_digest` as the serving Gate does. A browser cannot send `Authorization: Bearer`, so /login takes a
key once and sets an HttpOnly, SameSite=Strict cookie holding a session signed with a secret of this process (a
restart signs everyone out). The CSRF token of a form is an HMAC of the caller's session (or key), so a page of
another origin can neither read nor forge it. With no keys configured (loopback only) everyone may read and nobody
may act: promoting needs an admin key, as `luodi serve`'s admin routes do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from luodi.serve.middleware import key_matches
from luodi.serve.settings import LOOPBACK_NAMES, is_loopback

COOKIE = "luodi_ui"
SESSION_S = 12 * 3600
READ, ADMIN = "read", "admin"


@dataclass(frozen=True)
class Caller:
    """A request's role (None: not signed in, 'read' or 'admin') and the credential its CSRF token is bound to."""

    role: str | None
    credential: str
    who: str = ""  # the key's name in the audit trail (`key_id`), empty when no keys are set

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


class Auth:
    """The keys of one UI server and the secret its sessions and CSRF tokens are signed with."""

    def __init__(self, api_keys: tuple[str, ...], admin_keys: tuple[str, ...], host: str):
        self.read_keys = tuple(key.encode() for key in (*api_keys, *admin_keys))  # admin keys read too
        self.admin_keys = tuple(key.encode() for key in admin_keys)
        self.required = bool(self.read_keys)
        self.loopback = is_loopback(host)
        self.secret = secrets.token_bytes(32)

    def role_of(self, key: bytes) -> str | None:
        if key and key_matches(key, self.admin_keys):
            return ADMIN
        if key and key_matches(key, self.read_keys):
            return READ
        return None

    def caller(self, request: Request) -> Caller:
        """The caller of a request: a Bearer key, else the session cookie; everyone reads when no key is set."""
        if not self.required:
            return Caller(READ, "anonymous")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            key = token.strip().encode()
            return Caller(self.role_of(key), "key:" + hashlib.sha256(key).hexdigest(), key_id(key))
        return self.session_caller(request.cookies.get(COOKIE, ""))

    def sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def session(self, role: str, who: str) -> str:
        """A cookie value: role, the signed-in key's id (`key_id`), a random id and an expiry, signed."""
        body = f"{role}.{who}.{secrets.token_hex(16)}.{int(time.time()) + SESSION_S}"
        return f"{body}.{self.sign('session|' + body)}"

    def session_caller(self, cookie: str) -> Caller:
        body, _, signature = cookie.rpartition(".")
        parts = body.split(".")
        if len(parts) != 4 or not hmac.compare_digest(signature, self.sign("session|" + body)):
            return Caller(None, "")
        role, who, nonce, expires = parts
        if not expires.isdigit() or int(expires) < time.time() or role not in (READ, ADMIN):
            return Caller(None, "")
        return Caller(role, "session:" + nonce, who)

    def csrf_token(self, caller: Caller) -> str:
        return self.sign("csrf|" + caller.credential)

    def post_refusal(self, request: Request, caller: Caller, token: str, admin: bool) -> str | None:
        """Why a POST is refused (None: allowed): another origin, a wrong CSRF token, or no admin key."""
        if not same_origin(request):
            return "refused: the request did not come from this site (Origin or Referer must match the Host)"
        if not hmac.compare_digest(token.encode(), self.csrf_token(caller).encode()):
            return "refused: the form's CSRF token is missing or wrong; reload the page and try again"
        if admin and not caller.admin:
            return ("this needs an admin key: sign in with one" if self.admin_keys else
                    "this needs an admin key: start `luodi ui` with LUODI_ADMIN_KEYS or --admin-keys-file")
        return None

    def host_allowed(self, host: str) -> bool:
        """On a loopback bind only loopback Host headers are answered (a DNS-rebinding page names its own host)."""
        if not self.loopback:
            return True
        name = urlsplit("//" + host).hostname or ""
        return name.lower() in LOOPBACK_NAMES or is_loopback(name)


def key_id(key: bytes) -> str:
    """A key's name in the audit trail: `key-` and the first 8 hex digits of its sha256, never the key itself
    (`printf %s "$KEY" | sha256sum | cut -c1-8` tells which key it was)."""
    return "key-" + hashlib.sha256(key).hexdigest()[:8]


def same_origin(request: Request) -> bool:
    """The Origin (else the Referer) names this server's Host. Host and port are compared, not the scheme, so a TLS
    proxy in front (https outside, http here) still works; a page of another site names its own host."""
    origin = request.headers.get("origin")
    if origin == "null":  # a sandboxed frame or a data: page
        return False
    if origin is None:
        origin = request.headers.get("referer")
        if not origin:
            return False
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()
