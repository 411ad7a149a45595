"""docs/sdk-python.md runs as written: its examples, a Flask view through Flask's test
client and a FastAPI app served by uvicorn, all against a real tidings server."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tidings_sdk.signatures import sign

from .conftest import API_KEY, SECRET, TIMEOUT, Harness, recv, recv_type, request, token, wait_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "sdk-python.md"


def doc_examples() -> list[str]:
    """The page's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def run_examples(namespace: dict[str, Any]) -> None:
    for block in doc_examples():
        exec(compile(block, str(DOC), "exec"), namespace)


@pytest.fixture
def doc_env(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """The environment the page's examples read."""
    monkeypatch.setenv("TIDINGS_URL", harness.url)
    monkeypatch.setenv("TIDINGS_API_KEY", API_KEY)
    monkeypatch.setenv("LAWYER_TOKEN", token("lawyer-7"))
    monkeypatch.setenv("TIDINGS_JWT_SECRET", SECRET)
    monkeypatch.setenv("TIDINGS_HOOK_SECRET", "hook-secret")
    return harness


@asynccontextmanager
async def uvicorn_serving(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn on 127.0.0.1:0 in this loop, lifespan included."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="on", ws="none", http="h11", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: server.started)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT):
            await task
        sock.close()


async def test_doc_examples_run_and_notify(doc_env: Harness) -> None:
    """Every example of the page runs in order; user-123 receives guide 003's notifications
    with their extra keys in data, then the Flask view's, each exactly once."""
    h = doc_env
    namespace: dict[str, Any] = {"__name__": "sdk_doc"}
    async with h.client("user-123") as ws:
        await asyncio.to_thread(run_examples, namespace)
        got = [(await recv_type(ws, "notification"))["data"] for _ in range(4)]
        namespace["tidings"].close()
    assert [(n["type"], n["priority"], n["message"]) for n in got[:2]] == [
        ("success", "MEDIUM", "Your immigration form has been submitted successfully"),
        ("info", "HIGH", "Your case status has been updated"),
    ]
    assert got[1]["category"] == "immigration"
    assert got[1]["data"] == {"case_id": "12345", "status": "in_review"}
    assert got[2]["title"] == "Booking confirmed"  # the retry section's, stored once
    assert (got[3]["message"], got[3]["data"]["status"]) == (
        "Your case has been approved",
        "approved",
    )
    _, page = await h.api("GET", "/api/users/user-123/notifications")
    assert len(page["items"]) == 4
    _, history = await h.api("GET", "/api/rooms/case-12345/messages", key=token("user-123"))
    assert [m["authorId"] for m in history["messages"]] == ["lawyer-7"]
    # The minted tokens: one connects as user-123, the other opens case:12345 to them.
    async with h.connect(f"?token={namespace['token']}") as ws:
        assert (await recv(ws))["data"]["roles"] == ["CLIENT"]
        cmd = {"type": "subscribe", "channel": "case:12345", "token": namespace["case_token"]}
        assert (await request(ws, cmd))["type"] == "subscribed"
    # The hook route refuses an unsigned call, accepts a signed one.
    with namespace["hooks_app"].test_client() as http:
        body = b'{"event": "connect", "userId": "mallory"}'
        assert http.post("/tidings/hooks/connect", data=body).status_code == 401
        stamp = str(int(time.time()))
        signature = sign("hook-secret", stamp, body)
        headers = {
            "Content-Type": "application/json",
            "X-Tidings-Timestamp": stamp,
            "X-Tidings-Signature": signature,
        }
        answer = http.post("/tidings/hooks/connect", data=body, headers=headers)
        assert answer.get_json() == {"allow": False, "reason": "account suspended"}


async def test_fastapi_app_from_the_doc_under_uvicorn(doc_env: Harness) -> None:
    """The page's FastAPI app, served by uvicorn, notifies through its lifespan's
    AsyncClient; concurrent requests share it and each creates one notification."""
    h = doc_env
    namespace: dict[str, Any] = {"__name__": "sdk_doc"}
    await asyncio.to_thread(run_examples, namespace)
    namespace["tidings"].close()
    async with h.client("user-9") as ws, uvicorn_serving(namespace["api"]) as url:

        async def update(n: int) -> str:
            params = {"user_id": "user-9", "status": f"s{n}"}
            async with h.http.post(f"{url}/cases/c{n}/status", params=params) as r:
                assert r.status == 200, await r.text()
                return str((await r.json())["notificationId"])

        ids = await asyncio.gather(*(update(n) for n in range(5)))
        pushed = [(await recv_type(ws, "notification"))["data"] for _ in range(5)]
    assert sorted(n["id"] for n in pushed) == sorted(ids)
    assert {n["data"]["case_id"] for n in pushed} == {f"c{n}" for n in range(5)}
    assert {n["priority"] for n in pushed} == {"MEDIUM"}
    _, page = await h.api("GET", "/api/users/user-9/notifications")
    assert len(page["items"]) == 5
