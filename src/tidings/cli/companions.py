"""The companion commands that talk to a running server: ``listen`` (the Python client,
printing what arrives), ``publish``, ``notify`` and ``stats`` (the HTTP API with a server
API key)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..auth import mint
from ..config import load
from .dev import DEV_FILE_ENV, DEV_STATE_FILE, _dev_value, _secret

DEFAULT_URL = "http://127.0.0.1:8000"


def _base_url(args: argparse.Namespace) -> str:
    url: str = args.url or os.environ.get("TIDINGS_URL") or DEFAULT_URL
    return url.rstrip("/")


def ws_url(base: str) -> str:
    """The WebSocket endpoint of a server URL: ``http://h:p`` -> ``ws://h:p/ws``."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urlunsplit(parts._replace(scheme=scheme, path=path))


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key:
        key: str = args.api_key
        return key
    keys: list[str] = load(config_file=args.config).api_keys
    return keys[0] if keys else _dev_value("api_key")


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> int:
    """Call the HTTP API and print its JSON answer; 1 for an error answer."""
    key = _api_key(args)
    if not key:
        print(
            "tidings: no API key: pass --api-key, set TIDINGS_API_KEYS, run "
            f"`tidings serve --dev` here first, or point {DEV_FILE_ENV} at its "
            f"{DEV_STATE_FILE}",
            file=sys.stderr,
        )
        return 2
    url = _base_url(args) + path
    if not url.startswith(("http://", "https://")):
        print(f"tidings: --url must be http:// or https://, got {url!r}", file=sys.stderr)
        return 2
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"tidings: cannot reach {url}: {reason}", file=sys.stderr)
        return 1
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    if status >= 400:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        message = error.get("message") if isinstance(error, dict) else None
        print(f"tidings: {method} {path}: {status} {message or raw[:200]!r}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2 if method == "GET" else None))
    return 0


def _publish(args: argparse.Namespace) -> int:
    body = {"channel": args.channel, "type": args.type, "data": args.data}
    return _call(args, "POST", "/api/publish", body)


def _notify(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"userId": args.user, "title": args.title}
    for field, value in (
        ("message", args.body),
        ("priority", args.priority),
        ("category", args.category),
        ("data", args.data),
    ):
        if value is not None:
            body[field] = value
    return _call(args, "POST", "/api/notifications", body)


def _listen(args: argparse.Namespace) -> int:
    token: str | Callable[[], str]
    if args.token:
        token = args.token
    elif args.user:
        secret = _secret(args)
        if not secret:
            return 2
        user, roles, ttl = args.user, args.role, args.ttl

        def token() -> str:
            # A fresh token for every connection, so a reconnect after 4005 works.
            return mint(secret, user, roles=roles, ttl=ttl, now=time.time())

    else:
        print("tidings: listen needs --token, or --user to mint one", file=sys.stderr)
        return 2
    return asyncio.run(_listen_loop(ws_url(_base_url(args)), token, args.channel, args.ack))


async def _listen_loop(
    url: str, token: str | Callable[[], str], channels: list[str], ack: bool
) -> int:
    import websockets

    from ..client import Client, ClientClosed, ClientError

    client = Client(url, token, ack=ack)
    try:
        await client.connect()
    except ClientClosed as exc:
        print(f"tidings: closed {exc.code}: {exc.reason}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        print(f"tidings: cannot connect to {url}: {exc}", file=sys.stderr)
        return 1
    try:
        for channel in channels:
            try:
                await client.subscribe(channel)
            except ClientError as exc:
                print(f"tidings: cannot subscribe to {channel!r}: {exc}", file=sys.stderr)
                return 1
        async for msg in client:
            kind = msg.get("type")
            if kind == "_connected":
                welcome = msg.get("welcome") or {}
                print(
                    f"tidings: connected to {url} as {welcome.get('userId')!r} "
                    f"({welcome.get('clientId')})",
                    file=sys.stderr,
                )
            elif kind == "_disconnected":
                then = "reconnecting" if msg.get("reconnect") else "giving up"
                print(
                    f"tidings: closed {msg.get('code')}: {msg.get('reason')}; {then}",
                    file=sys.stderr,
                )
            else:
                print(json.dumps(msg, ensure_ascii=False), flush=True)
    except ClientClosed:
        pass  # the iterator's last event said so already
    finally:
        await client.close()
    return 1
