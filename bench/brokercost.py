"""CPU cost of one publication through RedisBroker, on each side, without tidings.

    .venv/bin/python bench/brokercost.py [--count 20000] [--redis redis://127.0.0.1:6379/0]

Starts two processes with `taskset`: a receiver (core 0), a RedisBroker subscribed to one
topic whose handler only counts, and a sender (core 1), a RedisBroker publishing
`--count` publications of a typical envelope, 8 in flight. Each prints its CPU time per
publication: the sender from its first publish to its last answer, the receiver from
the first message to the last. Messages arrive back to back here, so the receiver reads
several per wake-up; in a server, where publications arrive one at a time, each also
pays for its own wake-up. A fresh key prefix per run; nothing is kept in Redis (no
history), and the run stops after `--count` messages or 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time

PAYLOAD = (
    b'M{"id":"msg_0a1b2c3d-1f","type":"benchmsg","channel":"bench:7",'
    b'"timestamp":"2026-11-22T18:40:00.123Z","data":{"seq":123,"msg":"benchmark notification"}}'
)
IN_FLIGHT = 8
LIMIT_S = 120.0


async def receive(url: str, prefix: str, count: int) -> None:
    from tidings.broker.redis import RedisBroker

    got = 0
    first = 0.0
    done = asyncio.Event()

    def handler(topic: str, payload: bytes, position: object) -> None:
        nonlocal got, first
        got += 1
        if got == 1:
            first = time.process_time()
        if got == count:
            done.set()

    broker = RedisBroker(url, prefix=prefix)
    await broker.start(handler)
    await broker.subscribe("ch:x")
    print("ready", flush=True)
    try:
        async with asyncio.timeout(LIMIT_S):
            await done.wait()
        cpu = time.process_time() - first
        print(f"receive: {cpu / max(1, count - 1) * 1e6:.1f} µs CPU per message", flush=True)
    finally:
        await broker.close()


async def send(url: str, prefix: str, count: int) -> None:
    from tidings.broker.redis import RedisBroker

    broker = RedisBroker(url, prefix=prefix)
    await broker.start(lambda *_: None)
    sent = 0
    deadline = time.monotonic() + LIMIT_S

    async def worker() -> None:
        nonlocal sent
        while sent < count and time.monotonic() < deadline:
            sent += 1
            await broker.publish("ch:x", PAYLOAD)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(
            f"publish: {cpu / sent * 1e6:.1f} µs CPU per publish ({sent / wall:,.0f}/s)",
            flush=True,
        )
    finally:
        await broker.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--role", choices=["receive", "send"], help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    if args.role == "receive":
        run(receive(args.redis, args.prefix, args.count))
        return 0
    if args.role == "send":
        run(send(args.redis, args.prefix, args.count))
        return 0
    prefix = f"tidings-brokercost-{os.getpid()}-{secrets.token_hex(4)}:"
    me = [sys.executable, os.path.abspath(__file__), "--count", str(args.count)]
    me += ["--redis", args.redis, "--prefix", prefix]
    rx = subprocess.Popen(
        ["taskset", "-c", "0", *me, "--role", "receive"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert rx.stdout is not None
        line = rx.stdout.readline().strip()
        if line != "ready":
            print(f"brokercost: receiver did not start ({line!r})", file=sys.stderr)
            return 1
        subprocess.run(
            ["taskset", "-c", "1", *me, "--role", "send"], check=True, timeout=LIMIT_S + 30
        )
        out, _ = rx.communicate(timeout=LIMIT_S + 30)
        print(out.strip())
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return rx.returncode


if __name__ == "__main__":
    sys.exit(main())
