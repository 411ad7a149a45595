"""The requests the front serves itself: each decides from the head and the whole body,
with no side effect, whether it is the common success shape (``take``), then acts by the
same function its aiohttp route calls (``act``).

Anything ``take`` does not take (``None``) goes to aiohttp with its bytes, so its error
answer, log line and metric are aiohttp's. What ``act`` raises happens after the request
was counted (its key's rate limit), so the front answers it itself, through the mapping
the API's middleware uses (``api.http.failure``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ..api.http import ApiError, Host, decode_body
from ..api.notifications import create_batch_in, create_in, idempotency_key
from ..api.publish import PublishRequest, publish_to
from ..inbox import BatchRequest, CreateRequest
from .request import Head

# Headers that make a request something other than the plain API call: a page's
# (CORS, answered by the middleware) or a protocol switch.
_NOT_PLAIN: Final = (b"origin", b"upgrade")


T = TypeVar("T")

Act = Callable[[], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True, slots=True)
class Route:
    """One route the front serves: its method and path, and ``take``: the action for a
    request of the success shape (head, whole body), or None to hand it to aiohttp."""

    method: bytes
    path: bytes
    template: str  # the route as the API's request metric names it
    take: Callable[[Head, bytes], Act | None]


def routes(node: Host) -> dict[tuple[bytes, bytes], Route]:
    """The routes the front serves for ``node``, by method and path."""

    def publish(head: Head, body: bytes) -> Act | None:
        request = _decoded(body, PublishRequest)
        if request is None:
            return None

        async def act() -> tuple[int, Any]:
            return 200, await publish_to(node, request)

        return act

    def create(head: Head, body: bytes) -> Act | None:
        request = _decoded(body, CreateRequest)
        inbox = node.inbox
        if request is None or inbox is None:
            return None
        raw_key = head.headers.get(b"idempotency-key")
        if raw_key is not None and not raw_key.isascii():
            return None  # how aiohttp decodes it is aiohttp's business
        try:
            key = idempotency_key(None if raw_key is None else raw_key.decode())
        except ApiError:
            return None

        async def act() -> tuple[int, Any]:
            return await create_in(inbox, request, key)

        return act

    def create_batch(head: Head, body: bytes) -> Act | None:
        request = _decoded(body, BatchRequest)
        inbox = node.inbox
        if request is None or inbox is None:
            return None

        async def act() -> tuple[int, Any]:
            return 200, await create_batch_in(inbox, request)

        return act

    table = [
        Route(b"POST", b"/api/publish", "/api/publish", publish),
        Route(b"POST", b"/api/notifications", "/api/notifications", create),
        Route(b"POST", b"/api/notifications/batch", "/api/notifications/batch", create_batch),
    ]
    return {(r.method, r.path): r for r in table}


def plain(head: Head) -> bool:
    """Whether a head is a plain server-to-server API call (no CORS, no upgrade)."""
    return not head.upgrade and not any(name in head.headers for name in _NOT_PLAIN)


def _decoded(body: bytes, cls: type[T]) -> T | None:
    try:
        return decode_body(body, cls)
    except ApiError:
        return None
