"""What the client remembers to resume after a reconnection, without any I/O.

Two streams are resumed: the user's notifications, by the highest ``seq`` seen (sent as
``?lastSeq=``), and each channel with history, by the ``(offset, epoch)`` of the last
publication seen (sent as ``since`` in the resubscription). Both are deduplicated: a
notification by its ``id``, a publication by its offset within its epoch.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final, TypeAlias

Message: TypeAlias = dict[str, Any]
Position: TypeAlias = tuple[int, str]  # (offset, epoch)

DEDUP_SIZE: Final = 10_000


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Recovery:
    """Resume points and duplicate detection for one client.

    Args:
        last_seq: a notification resume point saved from an earlier run.
        positions: channel positions saved from an earlier run.
    """

    def __init__(
        self, last_seq: int | None = None, positions: dict[str, Position] | None = None
    ) -> None:
        self.last_seq = last_seq
        self.positions: dict[str, Position] = dict(positions or {})
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    def notification(self, msg: Message) -> bool:
        """Note a ``notification``; False if its ``id`` was already delivered."""
        data = msg.get("data")
        seq = _int(data.get("seq")) if isinstance(data, dict) else None
        if seq is not None:
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        nid = msg.get("id")
        if not isinstance(nid, str):
            return True
        if nid in self._seen:
            self._seen.move_to_end(nid)
            self.duplicates += 1
            return False
        self._seen[nid] = None
        if len(self._seen) > DEDUP_SIZE:
            self._seen.popitem(last=False)
        return True

    def publication(self, msg: Message) -> bool:
        """Note a channel publication; False if its offset was already seen.

        Only publications that carry a position (channels with history) are tracked.
        """
        channel = msg.get("channel")
        offset = _int(msg.get("offset"))
        epoch = msg.get("epoch")
        if not isinstance(channel, str) or offset is None or not isinstance(epoch, str):
            return True
        known = self.positions.get(channel)
        if known is not None and known[1] == epoch and offset <= known[0]:
            self.duplicates += 1
            return False
        self.positions[channel] = (offset, epoch)
        return True

    def subscribed(self, channel: str, data: Message) -> None:
        """Note a ``subscribed`` reply: with history it names the stream's current top.

        After a successful recovery the replayed publications move the position on; after
        a failed one (or a first subscription) the top is where the client now stands.
        """
        offset = _int(data.get("offset"))
        epoch = data.get("epoch")
        if offset is None or not isinstance(epoch, str):
            return
        known = self.positions.get(channel)
        if (
            known is not None
            and known[1] == epoch
            and (data.get("recovered") is True or known[0] >= offset)
        ):
            return  # the replayed publications move it on; never move it back
        self.positions[channel] = (offset, epoch)

    def since(self, channel: str) -> dict[str, Any] | None:
        """The ``since`` to resubscribe ``channel`` with, if a position is known."""
        known = self.positions.get(channel)
        return None if known is None else {"offset": known[0], "epoch": known[1]}

    def forget(self, channel: str) -> None:
        self.positions.pop(channel, None)
