"""tidings: a self-hosted real-time notification and messaging server.

Embedding::

    from tidings import Server, load_settings

    async with Server(load_settings(flags={"jwt_secret": "..."})) as server:
        await server.node.send_to_user("alice", "notification", {"title": "Hi"})
"""

from .blocking import BlockingPublisher
from .config import ConfigError, Settings
from .config import load as load_settings
from .node import Node
from .protocol import CLOSE_CODES, CloseCode, ErrorCode, should_reconnect
from .publication import PublishError
from .server import Server

__all__ = [
    "CLOSE_CODES",
    "BlockingPublisher",
    "CloseCode",
    "ConfigError",
    "ErrorCode",
    "Node",
    "PublishError",
    "Server",
    "Settings",
    "load_settings",
    "should_reconnect",
]
__version__ = "0.1.0"
