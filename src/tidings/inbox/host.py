"""What the inbox needs of its node (``node.Node`` is one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .. import cluster
from ..broker import StreamPosition
from ..channels import NamespacePolicy
from ..config import Settings
from ..hub import Hub
from ..metrics import Metrics
from ..session import Session


class Host(Protocol):
    """What the inbox needs of its node (``node.Node`` is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...
    @property
    def clustered(self) -> bool: ...

    def new_id(self, kind: str = "msg") -> str: ...

    def now_iso(self) -> str: ...

    def envelope(
        self,
        msg_id: str,
        kind: str,
        data: Any,
        *,
        channel: str | None = None,
        reply_to: str | None = None,
    ) -> bytes: ...

    async def send(
        self, topic: str, message: cluster.NodeMessage, policy: NamespacePolicy | None = None
    ) -> tuple[int | None, StreamPosition | None]: ...

    def local_sessions(self, user_id: str, client_id: str | None = None) -> list[Session]: ...
