"""Channel names and namespace rules.

A channel name is one or more segments joined by ``:``; the namespace is the first
segment (``room`` for ``room:abc:typing``, ``notifications`` for ``notifications``).
Each namespace has a policy; names with no configured namespace follow the ``*`` policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

MAX_CHANNEL_LENGTH: Final = 255
DEFAULT_NAMESPACE: Final = "*"
# Segments: letters, digits and - _ . @ = ; no empty segments, no spaces.
_CHANNEL_RE: Final = re.compile(r"[A-Za-z0-9_\-.@=]+(?::[A-Za-z0-9_\-.@=]+)*")


@dataclass(frozen=True, slots=True)
class NamespacePolicy:
    """What a namespace allows.

    Attributes:
        subscribe: clients may subscribe at all.
        publish: clients may publish into it over the WebSocket (the server API always may).
        allowed_roles: if not empty, only users holding one of these roles may subscribe
            (and publish).
        private: ``ns:{userId}`` and ``ns:{userId}:...`` are only for that user.
        history_size: publications kept per channel for recovery (0: none).
        history_ttl: seconds a channel's history is kept after its last publication.
    """

    subscribe: bool = True
    publish: bool = False
    allowed_roles: frozenset[str] = field(default_factory=frozenset)
    private: bool = False
    history_size: int = 0
    history_ttl: float = 0.0


BUILTIN_NAMESPACES: Final[Mapping[str, NamespacePolicy]] = {
    DEFAULT_NAMESPACE: NamespacePolicy(),
    "user": NamespacePolicy(private=True),
}


def is_valid_channel(name: str) -> bool:
    """True if ``name`` follows the channel grammar."""
    return len(name) <= MAX_CHANNEL_LENGTH and _CHANNEL_RE.fullmatch(name) is not None


def namespace_of(channel: str) -> str:
    """The namespace of a channel: the part before the first ``:``."""
    return channel.partition(":")[0]


class Access:
    """Decides who may subscribe or publish where, from the namespace table."""

    def __init__(self, namespaces: Mapping[str, NamespacePolicy]) -> None:
        merged = dict(BUILTIN_NAMESPACES)
        merged.update(namespaces)
        self._namespaces = merged
        self._default = merged[DEFAULT_NAMESPACE]

    @property
    def namespaces(self) -> frozenset[str]:
        """Names of the configured (and built-in) namespaces."""
        return frozenset(self._namespaces)

    def policy(self, channel: str) -> NamespacePolicy:
        """The policy governing ``channel``."""
        return self._namespaces.get(namespace_of(channel), self._default)

    def _permitted(
        self, policy: NamespacePolicy, channel: str, user_id: str, roles: Iterable[str]
    ) -> str | None:
        if policy.allowed_roles and policy.allowed_roles.isdisjoint(roles):
            return "your roles do not allow this namespace"
        if policy.private:
            parts = channel.split(":")
            if len(parts) < 2 or parts[1] != user_id:
                return "this channel belongs to another user"
        return None

    def can_subscribe(self, channel: str, user_id: str, roles: Iterable[str]) -> str | None:
        """None if allowed, else the reason it is not."""
        policy = self.policy(channel)
        if not policy.subscribe:
            return "subscriptions to this namespace are not allowed"
        return self._permitted(policy, channel, user_id, roles)

    def can_publish(self, channel: str, user_id: str, roles: Iterable[str]) -> str | None:
        """None if a client may publish into ``channel``, else the reason it may not."""
        policy = self.policy(channel)
        if not policy.publish:
            return "clients may not publish into this namespace"
        return self._permitted(policy, channel, user_id, roles)

    def available(self, user_id: str, roles: Iterable[str]) -> list[str]:
        """Configured namespaces this user may subscribe to (for the welcome message)."""
        roles = frozenset(roles)
        out = []
        for name, policy in self._namespaces.items():
            if name == DEFAULT_NAMESPACE or not policy.subscribe:
                continue
            if policy.allowed_roles and policy.allowed_roles.isdisjoint(roles):
                continue
            out.append(f"{name}:{user_id}" if policy.private else name)
        return sorted(out)
