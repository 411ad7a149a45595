"""What a session asks the backend: the connect, subscribe and publish hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    # Only the type: hooks.py is an adapter (it speaks HTTP to the backend).
    from ..hooks import Decision


class Hooks(Protocol):
    """The backend's say on connect, subscribe and client publish (``hooks.BackendHooks``
    is one); a URL of None means no hook for that event."""

    @property
    def connect_url(self) -> str | None: ...
    @property
    def subscribe_url(self) -> str | None: ...
    @property
    def publish_url(self) -> str | None: ...

    def decides_subscribe(self, channel: str) -> bool: ...

    def decides_publish(self, channel: str) -> bool: ...

    async def connect(
        self, user: str, roles: tuple[str, ...], client: str, transport: str, claims: dict[str, Any]
    ) -> Decision: ...

    async def subscribe(
        self, user: str, roles: tuple[str, ...], client: str, channel: str
    ) -> Decision: ...

    async def publish(
        self, user: str, roles: tuple[str, ...], client: str, channel: str, kind: str, data: Any
    ) -> Decision: ...
