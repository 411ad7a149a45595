"""Delivery throughput (issue 17): emails and pushes per second through the escalation
worker to local peers, and the inbox create rate with escalation on versus off.

    .venv/bin/python bench/delivery.py            # 1,000 of each
    .venv/bin/python bench/delivery.py --count 300

The peers (an aiosmtpd SMTP server with STARTTLS and AUTH, and an RFC 8030 push service
that checks each VAPID JWT and decrypts each payload: tests/delivery/peers.py) run in a
process of their own, so the numbers are tidings' alone on its side. tidings runs
in-process on a SQLite file; the worker's rounds are driven back to back (no interval).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the peers live with the tests

from tidings.config import load  # noqa: E402
from tidings.delivery.push import WebPushSender, generate_vapid_key  # noqa: E402
from tidings.inbox import CreateRequest  # noqa: E402
from tidings.server import Server  # noqa: E402
from tidings.store.users import UserRecord  # noqa: E402


def peers_main(conn: Connection, public_key: str, users: int, tmp: str) -> None:
    """The peer process: serve until told to stop, then report what arrived."""

    async def run() -> None:
        from tests.delivery.peers import push_service, smtp_server

        async with smtp_server(Path(tmp)) as (port, mailbox, _), push_service(public_key) as ps:
            subs = [ps.subscribe(f"u{i}") for i in range(users)]
            conn.send((port, str(Path(tmp) / "cert.pem"), subs))
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send((len(mailbox.messages), len(ps.received)))

    asyncio.run(run())


async def creates(server: Server, count: int, escalation: list[dict[str, Any]] | None) -> float:
    """Creates per second: ``count`` single-recipient creates, 50 at a time."""
    inbox = server.inbox
    assert inbox is not None
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        async with sem:
            req = {"userId": f"u{i % 100}", "title": f"n{i}", "escalation": escalation}
            await inbox.create(msgspec.convert(req, CreateRequest))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - started)


async def drain(server: Server) -> int:
    handled = 0
    while True:
        n = await server.escalation.run_due()
        if n == 0:
            return handled
        handled += n


async def bench(count: int) -> None:
    vapid = generate_vapid_key()
    public = WebPushSender(None, vapid, "mailto:x@y.z").public_key  # type: ignore[arg-type]
    users = 100
    tmp = tempfile.mkdtemp(prefix="tidings-bench-delivery-")
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    peer = ctx.Process(target=peers_main, args=(theirs, public, users, tmp))
    peer.start()
    port, ca, subs = ours.recv()
    settings = load(
        env={},
        flags={
            "jwt_secret": "bench-secret-0123456789-abcdefghij",
            "api_keys": ["bench-key-0123456789"],
            "port": 0,
            "store_url": str(Path(tmp) / "tidings.db"),
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_ca_file": ca,
            "smtp_username": "mailer",
            "smtp_password": "s3cret",
            "email_from": "bench@tidings.test",
            "push_vapid_private_key": vapid,
            "push_vapid_subject": "mailto:ops@tidings.test",
            "delivery_interval": 3600,
            "dev": True,
        },
    )
    server = Server(settings)
    await server.start()
    try:
        store = server.escalation.store
        assert store is not None
        assert server.inbox is not None
        await server.inbox.store.put_users(
            [UserRecord(id=f"u{i}", email=f"u{i}@example.com") for i in range(users)], now=0
        )
        from tidings.store.deliveries import PushSubscription

        for i, sub in enumerate(subs):
            record = PushSubscription(endpoint=sub["endpoint"], **sub["keys"])
            await store.add_push_subscription(f"u{i}", record, now=0)
        await creates(server, count // 4, None)  # warm up
        # Alternated, best of two each: the first run of either is not favoured.
        off = on = 0.0
        for _ in range(2):
            off = max(off, await creates(server, count // 2, None))
            on = max(on, await creates(server, count // 2, [{"channel": "email"}]))
        started = time.perf_counter()
        emails = await drain(server)
        email_rate = emails / (time.perf_counter() - started)
        await creates(server, count, [{"channel": "push"}])
        started = time.perf_counter()
        pushes = await drain(server)
        push_rate = pushes / (time.perf_counter() - started)
    finally:
        await server.stop()
    ours.send("stop")
    mails, pushed = ours.recv()
    peer.join(10)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"creates/s, escalation off:  {off:8.0f}")
    print(f"creates/s, one email step:  {on:8.0f}")
    print(f"emails/s through the worker: {email_rate:7.0f}  ({emails} handled, {mails} received)")
    print(f"pushes/s through the worker: {push_rate:7.0f}  ({pushes} handled, {pushed} received)")
    print(f"outcomes: {dict(server.node.metrics.deliveries)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    asyncio.run(bench(parser.parse_args().count))


if __name__ == "__main__":
    main()
