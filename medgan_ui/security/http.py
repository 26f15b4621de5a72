"""HTTP hardening in front of the whole app (Gradio and our /study routes): one ASGI middleware.

- Origin allow-list: a request that carries an Origin other than the page's own (or one added with
  --allowed-origin) is refused with 403 before anything runs. Gradio's own CORS layer echoes any
  Origin with credentials once the Host is not localhost; this sits outside it and replaces its
  Access-Control-* headers.
- Login cookies SameSite=Lax (Gradio sets SameSite=None), security headers on every response.
- Request body cap (413 naming the setting), login back-off on POST /login (429 + Retry-After).
- With a login configured: /study/* and the API schema only for signed-in users; /docs and
  /openapi.json never (the app does not need them).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from medgan_ui.errors import UserError
from medgan_ui.security.throttle import Throttle, login_throttle

log = logging.getLogger("medgan_ui.security")

ENV_MAX_REQUEST_MB = "MEDGAN_MAX_REQUEST_MB"
DEFAULT_MAX_REQUEST_MB = 16.0
# uploads stream to disk and Gradio checks each file against max_file_size; this is only a ceiling
UPLOAD_CEILING_BYTES = 8 * 2**30
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")
NEVER_SERVED = {"/docs", "/docs/", "/docs/oauth2-redirect", "/redoc", "/redoc/", "/openapi.json"}
SCHEMA_PATHS = {"/gradio_api/info", "/gradio_api/info/", "/gradio_api/openapi.json", "/info", "/info/",
                "/gradio_api/runs", "/gradio_api/runs/", "/gradio_api/deep_link"}
LOGIN_PATHS = {"/login", "/login/"}
STUDY_PREFIX = "/study/"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"content-security-policy", b"frame-ancestors 'self'"),
    (b"referrer-policy", b"same-origin"),
]
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def normalise_origin(origin: str) -> str | None:
    """'HTTPS://Portal.example:443/' -> 'https://portal.example'; None if it is not an origin."""
    try:
        u = urlsplit(origin.strip())
        port = u.port
    except ValueError:
        return None
    if u.scheme not in ("http", "https") or not u.hostname:
        return None
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{u.scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[u.scheme] else "")


def same_origin(origin: str, host_header: str) -> bool:
    """Does the Origin name the host:port the browser sent this request to (the Host header)?

    The scheme is not compared: behind a TLS proxy the page is https while this server sees http."""
    try:
        o = urlsplit(origin.strip())
        h = urlsplit("//" + host_header.strip())
        o_port, h_port = o.port, h.port
    except ValueError:
        return False
    if o.scheme not in DEFAULT_PORTS or not o.hostname or not h.hostname:
        return False
    o_port = o_port or DEFAULT_PORTS[o.scheme]
    h_port = h_port or DEFAULT_PORTS[o.scheme]
    return o.hostname.lower() == h.hostname.lower() and o_port == h_port


def max_request_bytes(mb: float | None = None) -> int:
    if mb is None:
        raw = os.environ.get(ENV_MAX_REQUEST_MB)
        try:
            mb = float(raw) if raw else DEFAULT_MAX_REQUEST_MB
        except ValueError:
            mb = DEFAULT_MAX_REQUEST_MB
    return int(mb * 2**20)


@dataclass
class HttpPolicy:
    """What the middleware enforces; `serve()` and the reader server build one from the CLI flags."""
    allowed_origins: list[str] = field(default_factory=list)   # besides the page's own origin
    max_body_bytes: int = field(default_factory=max_request_bytes)
    require_login: bool = False                                 # True when --auth is set
    login_throttle: Throttle = field(default_factory=lambda: login_throttle("Gradio login"))
    session_user: Callable[[Scope], str | None] = lambda scope: None

    def __post_init__(self) -> None:
        norm = []
        for o in self.allowed_origins:
            n = normalise_origin(o)
            if n is None:
                raise UserError(f"--allowed-origin {o!r}: write it as scheme://host[:port], e.g. https://portal.example.org")
            norm.append(n)
        self.allowed_origins = norm


def gradio_session_user(gradio_app: Any) -> Callable[[Scope], str | None]:
    """The signed-in Gradio user of a request, read from the app's login cookie (None = anonymous)."""
    from starlette.requests import cookie_parser

    def user(scope: Scope) -> str | None:
        raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
        cookies = cookie_parser(raw) if raw else {}
        cid = getattr(gradio_app, "cookie_id", None)
        tok = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        return getattr(gradio_app, "tokens", {}).get(tok) if tok else None

    return user


def _lax(cookie: bytes) -> bytes:
    parts = [p for p in cookie.split(b";") if p.strip().lower() != b"samesite=none"]
    if len(parts) != len(cookie.split(b";")):
        parts.append(b" SameSite=Lax")
    return b";".join(parts)


class SecurityMiddleware:
    def __init__(self, app: Any, policy: HttpPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, method = scope.get("path", ""), scope.get("method", "GET")
        origin = headers.get("origin")
        cross = False  # a listed cross-origin caller: answered with CORS headers
        if origin is not None and not same_origin(origin, headers.get("host", "")):
            if normalise_origin(origin) not in self.policy.allowed_origins:
                log.warning("refused cross-origin %s %s from origin %r (client %s)", method, path, origin, _client(scope))
                return await self._refuse(scope, send, 403, f"cross-origin request refused: origin {origin} is not "
                                          "allowed; start the server with --allowed-origin ORIGIN to allow it")
            cross = True
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if cross and method == "OPTIONS" and "access-control-request-method" in headers:
            return await self._preflight(send, origin or "", headers)
        if path in NEVER_SERVED:
            return await self._refuse(scope, send, 404, "not found")
        anonymous = self.policy.require_login and self.policy.session_user(scope) is None
        if anonymous and (path.startswith(STUDY_PREFIX) or path in SCHEMA_PATHS):
            return await self._refuse(scope, send, 401, "sign in first: open the app's start page and log in")
        upload = path in UPLOAD_PATHS or path.rstrip("/") in UPLOAD_PATHS
        limit = UPLOAD_CEILING_BYTES if upload else self.policy.max_body_bytes
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return await self._too_large(scope, send, limit, upload)
        login = method == "POST" and path in LOGIN_PATHS and self.policy.require_login
        client = _client(scope)
        if login:
            wait = self.policy.login_throttle.retry_after(client)
            if wait > 0:
                return await self._refuse(scope, send, 429, self.policy.login_throttle.refusal(client) or "try later",
                                          [(b"retry-after", str(math.ceil(wait)).encode())])
        await self._forward(scope, receive, send, origin if cross else None, limit, upload, client if login else None)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, cors_origin: str | None, limit: int,
                       upload: bool, login_client: str | None) -> None:
        state = {"received": 0, "too_big": False, "started": False}

        async def capped_receive() -> dict[str, Any]:
            msg = await receive()
            if msg["type"] == "http.request":
                state["received"] += len(msg.get("body", b""))
                if state["received"] > limit:  # a chunked body without Content-Length: cut it off here
                    state["too_big"] = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: dict[str, Any]) -> None:
            if state["too_big"] and not state["started"]:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if msg["type"] == "http.response.start":
                state["started"] = True
                if login_client is not None:
                    self._count_login(login_client, int(msg.get("status", 0)))
                msg["headers"] = _harden(list(msg.get("headers", [])), cors_origin)
            await send(msg)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not state["too_big"]:
                raise
        if state["too_big"] and not state["started"]:
            await self._too_large(scope, send, limit, upload)

    def _count_login(self, client: str, status: int) -> None:
        if status == 200:
            self.policy.login_throttle.success(client)
        elif status in (400, 401, 403):
            self.policy.login_throttle.failure(client)  # logs the client and the count

    async def _too_large(self, scope: Scope, send: Send, limit: int, upload: bool) -> None:
        what = (f"the upload ceiling of {limit / 2**30:.0f} GiB" if upload else
                f"the request size limit of {limit / 2**20:g} MB (setting: --max-request-mb or ${ENV_MAX_REQUEST_MB})")
        await self._refuse(scope, send, 413, f"request body too large: it exceeds {what}")

    async def _preflight(self, send: Send, origin: str, headers: dict[str, str]) -> None:
        extra = [(b"access-control-allow-methods", b"GET, POST, OPTIONS"), (b"access-control-max-age", b"600")]
        if "access-control-request-headers" in headers:
            extra.append((b"access-control-allow-headers", headers["access-control-request-headers"].encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": _harden(extra, origin)})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": message, "detail": message}).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + (extra or [])
        await send({"type": "http.response.start", "status": status, "headers": _harden(raw, None)})
        await send({"type": "http.response.body", "body": body})


def _harden(raw: list[tuple[bytes, bytes]], cors_origin: str | None) -> list[tuple[bytes, bytes]]:
    """Drop the inner app's CORS headers, set ours for a listed origin, Lax cookies, security headers."""
    out = [(k, _lax(v) if k.lower() == b"set-cookie" else v) for k, v in raw
           if not k.lower().startswith(b"access-control-allow-origin")
           and not k.lower().startswith(b"access-control-allow-credentials")]
    if cors_origin:
        out += [(b"access-control-allow-origin", cors_origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
    present = {k.lower() for k, _ in out}
    out += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
    return out


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, share: bool, has_login: bool, acknowledged: bool) -> None:
    """A server other machines can reach needs a login, or an explicit --i-know."""
    if has_login or (is_loopback(host) and not share):
        return
    where = "--share (a public gradio.live link)" if share else f"--host {host} (reachable from other machines)"
    if not acknowledged:
        raise UserError(f"{where} without a login would let anyone who can reach it read the data, train, and use "
                        "the study screens; add --auth-file FILE (USER:PASSWORD lines), or pass --i-know to run it "
                        "open anyway")
    print(f"warning: {where} without a login (--i-know given): anyone who can reach it can use it", file=sys.stderr,
          flush=True)


def install_on_gradio(policy: HttpPolicy) -> Callable[[Any], Any]:
    """A FastAPI lifespan for `Blocks.launch(app_kwargs={"lifespan": ...})` that puts the middleware
    outside Gradio's whole stack (its CORS layer included). The lifespan runs before the server
    accepts its first connection, so no request ever bypasses it."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any):
        if app.middleware_stack is None:
            app.middleware_stack = app.build_middleware_stack()
        if not isinstance(app.middleware_stack, SecurityMiddleware):
            policy.session_user = gradio_session_user(app)
            app.middleware_stack = SecurityMiddleware(app.middleware_stack, policy)
        yield

    return lifespan
