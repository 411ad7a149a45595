"""What both clients do around one HTTP exchange: build httpx's arguments from a
:class:`~tidings_sdk.calls.Call`, decode the answer, and decide what a failure means.
The clients add only the sending and the waiting (blocking or awaited)."""

from __future__ import annotations

from typing import Any, Final

import httpx

from .calls import Call
from .errors import APIError, TidingsError, TransportError, error_for
from .retry import Retry, status_outcome

# The request never left: no connection was made, or none was free in the pool.
NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

USER_AGENT: Final = "tidings-sdk-python/0.1"


def request_kwargs(call: Call, api_key: str | None) -> dict[str, Any]:
    """The arguments of ``httpx.Client.request`` for ``call``."""
    headers = dict(call.headers)
    bearer = call.token if call.token is not None else api_key
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    kwargs: dict[str, Any] = {"headers": headers}
    if call.params:
        kwargs["params"] = dict(call.params)
    if call.body is not None:
        kwargs["json"] = call.body
    return kwargs


def decode(call: Call, response: httpx.Response) -> Any:
    """The answer of a successful exchange, unwrapped as the call asks."""
    body = response.json()
    if call.unwrap is not None and isinstance(body, dict):
        return body[call.unwrap]
    return body


def on_status(call: Call, response: httpx.Response, retry: Retry, attempt: int) -> APIError | float:
    """For an error answer: the error to raise, or the seconds to wait before retrying."""
    error = error_for(response.status_code, response.content, response.headers.get("Retry-After"))
    maybe_sent = status_outcome(response.status_code)
    if maybe_sent is None:
        return error
    delay = retry.delay(
        attempt, repeatable=call.repeatable, maybe_sent=maybe_sent, retry_after=error.retry_after
    )
    return error if delay is None else delay


def on_transport_error(
    call: Call, exc: httpx.TransportError, retry: Retry, attempt: int
) -> TidingsError | float:
    """For a failed exchange: the error to raise, or the seconds to wait before retrying."""
    maybe_sent = not isinstance(exc, NOT_SENT)
    delay = retry.delay(attempt, repeatable=call.repeatable, maybe_sent=maybe_sent)
    if delay is not None:
        return delay
    what = "may have been sent" if maybe_sent else "was not sent"
    return TransportError(
        f"{call.method} {call.path} {what}: {type(exc).__name__}: {exc}", maybe_sent=maybe_sent
    )
