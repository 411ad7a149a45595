"""Server SDK for tidings: what a Python backend calls to reach its users.

``Client`` (synchronous: Flask, Django, scripts) and ``AsyncClient`` (asyncio: FastAPI,
aiohttp) have the same methods for every route of the server's HTTP API. Errors are typed
by status (``tidings_sdk.errors``); retries never perform a call twice
(``tidings_sdk.retry``). Docs: docs/sdk-python.md in the tidings repository.
"""

from .aio import AsyncClient, AsyncUserClient
from .errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TidingsError,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from .payload import notification_body
from .retry import Retry
from .sync import Client, UserClient

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncUserClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Retry",
    "ServerError",
    "TidingsError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UserClient",
    "ValidationError",
    "notification_body",
]
