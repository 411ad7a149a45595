"""What the rooms need of their node (``node.Node`` is one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .. import cluster
from ..config import Settings
from ..hub import Hub
from ..publication import Sent
from ..session import Session


class Host(Protocol):
    """What the rooms need of their node (``node.Node`` is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...

    def local_sessions(self, user_id: str, client_id: str | None = None) -> list[Session]: ...

    async def control(self, op: cluster.Operation, *, wait: float = 2.0) -> list[Any]: ...

    async def publish(self, channel: str, kind: str, data: Any) -> Sent: ...

    async def send_to_user(self, user_id: str, kind: str, data: Any) -> Sent: ...
