"""The operator's view of connections: each one's transport, and the instance's event log
of connects and disconnects (a page, and live over Server-Sent Events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from ..conftest import API_KEY, TIMEOUT, Harness, ServerFactory, closed_with, request, token
from ..gateway.test_sse import stream

NO_TIMEOUT = aiohttp.ClientTimeout(total=None)


class OperatorStream:
    """Reads ``GET /api/events/stream``: (event name, id, data) per event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def next(self) -> tuple[str, str | None, dict[str, Any]]:
        name, event_id, data = "message", None, ""
        async with asyncio.timeout(TIMEOUT):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        return name, event_id, json.loads(data)
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(": ")
                if field == "event":
                    name = value
                elif field == "id":
                    event_id = value
                elif field == "data":
                    data = value

    async def until(self, name: str, client: str) -> dict[str, Any]:
        """Skip events until ``name`` for connection ``client`` (its id kept in ``last_id``)."""
        while True:
            kind, event_id, data = await self.next()
            self.last_id = event_id
            if kind == name and data.get("clientId") == client:
                return data


@asynccontextmanager
async def operator_stream(
    h: Harness, query: str = "", last_event_id: str | None = None
) -> AsyncIterator[OperatorStream]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with h.http.get(
        f"{h.url}/api/events/stream{query}", headers=headers, timeout=NO_TIMEOUT
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream"
        yield OperatorStream(response)


async def test_connections_name_their_transport(harness: Harness) -> None:
    """A user's WebSocket and SSE connections are listed with their transport."""
    async with harness.client("tess") as ws, stream(harness, f"?token={token('tess')}") as sse:
        await sse.until("welcome")
        mine = (await request(ws, {"type": "get_status"}))["data"]["clientId"]
        status, body = await harness.api("GET", "/api/users/tess/connections")
        assert status == 200, body
        by_id = {c["clientId"]: c for c in body["connections"]}
        assert len(by_id) == 2
        assert by_id.pop(mine)["transport"] == "websocket"
        (other,) = by_id.values()
        assert other["transport"] == "sse"
        assert other["remoteAddress"] == "127.0.0.1"
        assert other["instance"] == harness.server.node.instance_id


async def test_the_live_log_shows_connects_and_disconnects_with_close_codes(
    harness: Harness,
) -> None:
    """The stream carries each connect and each disconnect with its code and transport,
    on both transports; the page shows the same events."""
    async with operator_stream(harness) as log:
        async with harness.client("uma") as ws:
            client = (await request(ws, {"type": "get_status"}))["data"]["clientId"]
            opened = await log.until("connect", client)
            assert log.last_id == str(opened["seq"])
            assert (opened["userId"], opened["transport"], opened["code"]) == (
                "uma",
                "websocket",
                None,
            )
            assert opened["remoteAddress"] == "127.0.0.1"
            status, _ = await harness.api(
                "POST", "/api/users/uma/disconnect", {"clientId": client, "code": 4010}
            )
            assert status == 200
            assert (await closed_with(ws))[0] == 4010
            closed = await log.until("disconnect", client)
            assert (closed["code"], closed["seq"]) == (4010, opened["seq"] + 1)
        async with stream(harness, f"?token={token('vic')}") as sse:
            welcome = await sse.until("welcome")
            sse_client = welcome["data"]["clientId"]
            assert (await log.until("connect", sse_client))["transport"] == "sse"
            await harness.api("POST", "/api/users/vic/disconnect", {"code": 1000})
        assert (await log.until("disconnect", sse_client))["code"] == 1000

    status, page = await harness.api("GET", "/api/events?limit=10")
    assert status == 200, page
    assert page["instance"] == harness.server.node.instance_id
    assert page["gap"] is False
    assert [(e["event"], e["code"]) for e in page["events"]] == [
        ("connect", None),
        ("disconnect", 4010),
        ("connect", None),
        ("disconnect", 1000),
    ]
    status, tail = await harness.api("GET", f"/api/events?after={page['lastSeq'] - 1}")
    assert [e["seq"] for e in tail["events"]] == [page["lastSeq"]]


async def test_a_stream_resumes_after_its_last_event_id(harness: Harness) -> None:
    """A stream opened with Last-Event-ID starts with the events after it."""
    async with harness.client("wil"):
        pass
    async with harness.client("wil"):
        pass
    _, page = await harness.api("GET", "/api/events")
    first_close = page["events"][1]
    headers = {"Authorization": f"Bearer {API_KEY}", "Last-Event-ID": str(first_close["seq"])}
    async with harness.http.get(
        f"{harness.url}/api/events/stream", headers=headers, timeout=NO_TIMEOUT
    ) as response:
        events = OperatorStream(response)
        kind, event_id, data = await events.next()
        assert (kind, event_id) == ("connect", str(first_close["seq"] + 1))
        assert data["clientId"] != first_close["clientId"]


async def test_the_event_log_needs_an_api_key_and_checks_its_input(harness: Harness) -> None:
    """No key 401, a user's token 403, a bad position or limit 400."""
    for path in ("/api/events", "/api/events/stream"):
        assert (await harness.api("GET", path, key=None))[0] == 401
        assert (await harness.api("GET", path, key=token("eve")))[0] == 403
    for query in (
        "after=-1",
        "after=x",
        "limit=0",
        "limit=1001",
        "scope=all",
        "scope=cluster&after=5",
        "scope=cluster&after=a:b",
    ):
        status, body = await harness.api("GET", f"/api/events?{query}")
        assert (status, body["error"]["code"]) == (400, "BAD_REQUEST"), query


async def test_open_streams_end_when_the_server_stops(make_server: ServerFactory) -> None:
    """Shutdown ends an operator's stream instead of waiting on it."""
    h = await make_server()
    async with operator_stream(h) as log:
        await h.server.stop()
        async with asyncio.timeout(TIMEOUT):
            while await log.response.content.readline():
                pass


async def test_the_cluster_scope_on_a_single_instance(harness: Harness) -> None:
    """scope=cluster answers the one instance's events with its position; its stream's
    event ids are positions, and a stream resumed from one starts right after it."""
    me = harness.server.node.instance_id
    async with operator_stream(harness, "?scope=cluster") as log:
        async with harness.client("xia") as ws:
            client = (await request(ws, {"type": "get_status"}))["data"]["clientId"]
            opened = await log.until("connect", client)
            assert log.last_id == f"{me}:{opened['seq']}"
        closed = await log.until("disconnect", client)
        assert closed["code"] == 1000
        resume_from = log.last_id
    status, page = await harness.api("GET", "/api/events?scope=cluster")
    assert status == 200, page
    assert page["positions"] == {me: closed["seq"]}
    assert [e["event"] for e in page["events"]] == ["connect", "disconnect"]
    status, page = await harness.api("GET", f"/api/events?scope=cluster&after={me}:1")
    assert [e["seq"] for e in page["events"]] == [2]
    async with harness.client("yan"):
        pass
    async with operator_stream(harness, "?scope=cluster", last_event_id=resume_from) as log:
        kind, event_id, data = await log.next()
        assert (kind, data["userId"], data["seq"]) == ("connect", "yan", closed["seq"] + 1)
        assert event_id == f"{me}:{closed['seq'] + 1}"
