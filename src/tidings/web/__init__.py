"""The browser side of tidings: the JavaScript client and the web console, as static files.

``add_routes`` serves them from the server's root: the console at ``/`` and the client at
``/tidings.js`` (with ``/tidings.d.ts``, ``/react.js``, ``/react.d.ts``, and the inbox
components at ``/inbox.js``, ``/inbox.d.ts``), all built from the npm package in
``clients/js`` by its ``scripts/build.mjs``. In ``--dev`` mode
only, it also adds ``/dev/config`` (the development API key, for the console's operations
view) and ``/dev/token`` (mint a token for a user); without ``--dev`` these routes do not
exist. See ``docs/console.md``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final, Protocol

import msgspec
from aiohttp import web

from ..auth import mint
from ..config import Settings

__all__ = ["FILES", "add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Served path -> (file in this package, content type). JavaScript is text/javascript
# (RFC 9239); browsers refuse to run a module script served as anything else.
FILES: Final[dict[str, tuple[str, str]]] = {
    "/": ("index.html", "text/html"),
    "/console.js": ("console.js", "text/javascript"),
    "/console.css": ("console.css", "text/css"),
    "/ops.js": ("ops.js", "text/javascript"),
    "/tidings.js": ("tidings.js", "text/javascript"),
    "/tidings.d.ts": ("tidings.d.ts", "text/plain"),
    "/react.js": ("react.js", "text/javascript"),
    "/react.d.ts": ("react.d.ts", "text/plain"),
    "/inbox.js": ("inbox.js", "text/javascript"),
    "/inbox.d.ts": ("inbox.d.ts", "text/plain"),
    # Browsers ask for /favicon.ico on their own; a 404 there is a console error.
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

# The console loads nothing from elsewhere; connect-src allows its own WebSocket and API.
CONSOLE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DEV_TOKEN_MAX_TTL: Final = 7 * 86400.0
_LOOPBACK_HOSTS: Final = {"localhost", "127.0.0.1", "[::1]", "::1"}


class _TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    userId: str
    roles: list[str] = []
    ttl: float = 3600.0


class Host(Protocol):
    """What the console's routes read of their node (``node.Node`` is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Callable[[], float]: ...


def add_routes(app: web.Application, node: Host) -> None:
    """Serve the console and the JavaScript client (and, with ``--dev``, the dev routes).

    A path that is also one of the configured ``ws_paths`` stays the WebSocket's.
    """
    taken = set(node.settings.ws_paths)
    package = resources.files(__name__)
    for path, (name, content_type) in FILES.items():
        if path in taken:
            continue
        app.router.add_get(path, _static(package.joinpath(name).read_bytes(), content_type))
    if node.settings.dev:
        app.router.add_get("/dev/config", _dev_config(node))
        app.router.add_post("/dev/token", _dev_token(node))


def _static(body: bytes, content_type: str) -> Handler:
    headers = {
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if content_type != "text/html":
        # The client is public code: pages on other origins may load it as a module,
        # which needs CORS. No credentials are involved.
        headers["Access-Control-Allow-Origin"] = "*"
    if content_type == "text/html":
        headers["Content-Security-Policy"] = CONSOLE_CSP
        headers["Referrer-Policy"] = "no-referrer"

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return handler


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def _local(request: web.Request) -> bool:
    """From this machine, to a loopback host name (a rebound DNS name is refused)."""
    host = (request.host or "").lower()
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    if name not in _LOOPBACK_HOSTS:
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def _dev_config(node: Host) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if not _local(request):
            return _error(403, "FORBIDDEN", "the dev routes answer loopback requests only")
        s = node.settings
        body = {
            "dev": True,
            "apiKey": s.api_keys[0] if s.api_keys else None,
            "canMintTokens": bool(s.jwt_secret),
            "wsPath": s.ws_paths[0],
        }
        return web.Response(
            body=msgspec.json.encode(body),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return handler


def _dev_token(node: Host) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if not _local(request):
            return _error(403, "FORBIDDEN", "the dev routes answer loopback requests only")
        # JSON only: a cross-site form cannot send it without a CORS preflight.
        if request.content_type != "application/json":
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "send application/json")
        secret = node.settings.jwt_secret
        if not secret:
            return _error(501, "NOT_IMPLEMENTED", "no HMAC secret configured to sign with")
        try:
            body = msgspec.json.decode(await request.read(), type=_TokenRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(422, "VALIDATION_ERROR", str(exc))
        if not body.userId or len(body.userId) > 255:
            return _error(422, "VALIDATION_ERROR", "userId must be 1 to 255 characters")
        if not 0 < body.ttl <= DEV_TOKEN_MAX_TTL:
            return _error(422, "VALIDATION_ERROR", "ttl must be 0 to 604800 seconds")
        token = mint(secret, body.userId, roles=body.roles, ttl=body.ttl, now=node.clock())
        return web.Response(
            body=msgspec.json.encode({"token": token}),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return handler
