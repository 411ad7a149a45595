"""POST /api/notifications/batch: many creates, one transaction, a result for each."""

from __future__ import annotations

from pathlib import Path

from tidings.store.sqlite import SQLiteStore

from ..conftest import ServerFactory, recv_type


async def test_batch_commits_together_and_answers_each(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """A batch is stored in one transaction; each item gets the status a single create
    would have (201, 422 for an invalid one, which fails alone), and is pushed."""
    h = await make_server(store_url=str(tmp_path / "b.db"))
    assert h.server.inbox is not None
    store = h.server.inbox.store
    assert isinstance(store, SQLiteStore)
    commits = store.create_commits
    async with h.client("ann") as ws:
        status, body = await h.api(
            "POST",
            "/api/notifications/batch",
            {
                "notifications": [
                    {"userId": "ann", "title": "one", "idempotencyKey": "k1"},
                    {"userId": "ann", "type": ""},
                    {"userIds": ["ann", "bob"], "title": "two"},
                ]
            },
        )
        assert status == 200
        results = body["results"]
        assert [r["status"] for r in results] == [201, 422, 201]
        assert results[1]["error"]["code"] == "VALIDATION_ERROR"
        assert [n["userId"] for n in results[2]["notifications"]] == ["ann", "bob"]
        assert store.create_commits == commits + 1  # one transaction for the batch
        seqs = [(await recv_type(ws, "notification"))["data"]["seq"] for _ in range(2)]
        assert seqs == [1, 2]


async def test_batch_keys_replay_and_conflict(make_server: ServerFactory) -> None:
    """Each item's idempotencyKey works as a single create's header: the same item again
    is replayed (200, same rows), another request under the key is 409."""
    h = await make_server()
    item = {"userId": "ann", "title": "once", "idempotencyKey": "order-1"}
    _, first = await h.api("POST", "/api/notifications/batch", {"notifications": [item]})
    again = {**item, "title": "other"}
    status, second = await h.api(
        "POST", "/api/notifications/batch", {"notifications": [item, again]}
    )
    assert status == 200
    replay, conflict = second["results"]
    assert (replay["status"], replay["replayed"]) == (200, True)
    assert replay["notifications"] == first["results"][0]["notifications"]
    assert (conflict["status"], conflict["error"]["code"]) == (409, "CONFLICT")
    # The same item alone, with its key as the header, is the same request.
    single = {k: v for k, v in item.items() if k != "idempotencyKey"}
    async with h.http.post(
        h.url + "/api/notifications",
        json=single,
        headers={"Authorization": "Bearer test-api-key-0123456789", "Idempotency-Key": "order-1"},
    ) as r:
        assert r.status == 200


async def test_batch_limits(make_server: ServerFactory) -> None:
    """An empty batch, more than 1,000 items, or more than 10,000 recipients in all is
    422 with nothing stored; an unknown field is 422 too."""
    h = await make_server()
    for notifications in (
        [],
        [{"userId": "u"}] * 1001,
        [{"userIds": [f"u{i}" for i in range(6000)]}] * 2,
        [{"userId": "u", "bogus": 1}],
    ):
        status, body = await h.api(
            "POST", "/api/notifications/batch", {"notifications": notifications}
        )
        assert status == 422, body
    status, body = await h.api("GET", "/api/users/u/notifications")
    assert (status, body["items"]) == (200, [])


async def test_batch_pushes_are_stamped_when_sent(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """The pushes of a batch share one envelope timestamp, formatted once for the round:
    the time they were sent (between the request and its answer), not another's."""
    import time
    from datetime import datetime

    h = await make_server(store_url=str(tmp_path / "b.db"))
    async with h.client("ann") as ws:
        before = time.time()
        status, _ = await h.api(
            "POST",
            "/api/notifications/batch",
            {"notifications": [{"userId": "ann", "title": f"n{i}"} for i in range(20)]},
        )
        assert status == 200
        frames = [await recv_type(ws, "notification") for _ in range(20)]
        after = time.time()
    stamps = {f["timestamp"] for f in frames}
    assert len(stamps) == 1
    sent = datetime.fromisoformat(stamps.pop().replace("Z", "+00:00")).timestamp()
    assert before - 0.001 <= sent <= after
    assert [f["data"]["title"] for f in frames] == [f"n{i}" for i in range(20)]
