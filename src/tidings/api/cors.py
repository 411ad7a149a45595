"""CORS for the API routes a browser calls with the user's own JWT: ``/api/me/*`` and the
room routes a member calls (marked ``user_token``, api.rooms.member_route).

The origins come from ``allowed_origins``, the setting that also guards WebSocket and SSE
connections (empty: any origin). The JWT travels in the ``Authorization`` header, never in
a cookie, so credentials are not allowed and a preflight precedes every call. Routes that
take the server API key get no CORS headers at all: a key never belongs in a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import web

ALLOW_HEADERS: Final = "Authorization, Content-Type, Idempotency-Key"
# The only header of ours a page may need to read: how long to wait after a 429 or 503.
EXPOSE_HEADERS: Final = "Retry-After"
MAX_AGE: Final = "600"


def is_browser_route(request: web.Request) -> bool:
    """Whether the request is for a route a user calls with their JWT."""
    return request.path.startswith("/api/me/") or getattr(
        request.match_info.handler, "user_token", False
    )


def allow(request: web.Request, response: web.StreamResponse, origins: Sequence[str]) -> None:
    """Let the page's origin read ``response``, if that origin is allowed."""
    response.headers["Vary"] = "Origin"
    origin = request.headers.get("Origin")
    if origin and (not origins or origin in origins):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def preflight(request: web.Request, origins: Sequence[str]) -> web.Response:
    """Answer ``OPTIONS`` on a browser route: its methods and the headers a call may send.
    No token is needed (browsers send none with a preflight)."""
    response = web.Response(status=204)
    allow(request, response, origins)
    resource = request.match_info.route.resource
    methods = sorted({route.method for route in resource} if resource is not None else ())
    response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response


async def _preflight_route(request: web.Request) -> web.Response:
    # Routing only: the API middleware answers every preflight itself, before any check.
    return web.Response(status=204)


setattr(_preflight_route, "user_token", True)  # noqa: B010 (a Callable declares no attributes)


def add_preflights(app: web.Application) -> None:
    """Add ``OPTIONS`` to every browser route of the /api sub-application (``/me/...``
    and the member routes), so a preflight is routed rather than answered 405."""
    for resource in list(app.router.resources()):
        if not isinstance(resource, web.Resource):  # static files: never a user route
            continue
        routes = list(resource)
        if any(route.method == "OPTIONS" for route in routes):
            continue
        if resource.canonical.startswith("/me/") or any(
            getattr(route.handler, "user_token", False) for route in routes
        ):
            resource.add_route("OPTIONS", _preflight_route)
