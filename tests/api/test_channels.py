"""``GET /api/channels/{channel}/history``: an operator reads a channel's kept
publications with the API key, exactly as subscribers received them."""

from __future__ import annotations

from tidings.channels import NamespacePolicy

from ..conftest import ServerFactory, recv_type, request, token

KEEPS = {"feed": NamespacePolicy(history_size=5, history_ttl=300.0)}


async def test_history_is_the_newest_kept_publications_as_subscribers_got_them(
    make_server: ServerFactory,
) -> None:
    """Without a position: the newest ``limit``, oldest first, each the very envelope a
    subscriber received; the stream's top is given; at most history_size are kept."""
    h = await make_server(namespaces=KEEPS)
    async with h.client("ann") as ws:
        assert (await request(ws, {"type": "subscribe", "channel": "feed:a"}))["type"] == (
            "subscribed"
        )
        for i in range(7):
            status, _ = await h.api("POST", "/api/publish", {"channel": "feed:a", "data": i})
            assert status == 200
            received = await recv_type(ws, "message")
        status, body = await h.api("GET", "/api/channels/feed:a/history?limit=3")
        assert status == 200, body
        assert [p["data"] for p in body["publications"]] == [4, 5, 6]
        assert body["publications"][-1] == received
        assert (body["channel"], body["offset"], body["recoverable"]) == ("feed:a", 7, True)
        epoch = body["epoch"]
        _, everything = await h.api("GET", "/api/channels/feed:a/history?limit=5")
        assert [p["offset"] for p in everything["publications"]] == [3, 4, 5, 6, 7]
        _, since = await h.api(
            "GET", f"/api/channels/feed:a/history?sinceOffset=5&sinceEpoch={epoch}"
        )
        assert [p["offset"] for p in since["publications"]] == [6, 7]
        _, old = await h.api("GET", "/api/channels/feed:a/history?sinceOffset=1&sinceEpoch=x")
        assert (old["recoverable"], old["publications"]) == (False, [])


async def test_history_errors(make_server: ServerFactory) -> None:
    """404 where the namespace keeps none, 422 for a bad name, 400 for a bad query, and
    the API key is required."""
    h = await make_server(namespaces=KEEPS)
    status, body = await h.api("GET", "/api/channels/news/history")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    status, _ = await h.api("GET", "/api/channels/bad%20name/history")
    assert status == 422
    for query in ("limit=0", "limit=6", "limit=x", "sinceOffset=1", "sinceEpoch=e"):
        status, _ = await h.api("GET", f"/api/channels/feed:a/history?{query}")
        assert status == 400, query
    assert (await h.api("GET", "/api/channels/feed:a/history", key=None))[0] == 401
    assert (await h.api("GET", "/api/channels/feed:a/history", key=token("ann")))[0] == 403
