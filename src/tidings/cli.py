"""The ``tidings`` command: ``serve``, ``token``, and the companions that talk to a server.

Every setting in ``config.SETTINGS`` is also a ``serve`` flag (``max_connections`` is
``--max-connections``); flags beat ``TIDINGS_*`` variables, which beat the TOML file.
``listen`` connects as a user with the Python client and prints what arrives;
``publish``, ``notify`` and ``stats`` call the HTTP API with a server API key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import __version__
from .auth import mint
from .config import SETTINGS, ConfigError, Settings, load
from .store import StoreError

log = logging.getLogger("tidings.cli")

DEV_STATE_FILE = ".tidings-dev.json"
# Where `serve --dev` keeps, and the other commands look for, the development secrets.
DEV_FILE_ENV = "TIDINGS_DEV_FILE"
_DESCRIPTION = (
    "tidings: a real-time notification and messaging server. `serve` runs it; `token` "
    "mints development JWTs; `listen`, `publish`, `notify` and `stats` talk to a server."
)
DEFAULT_URL = "http://127.0.0.1:8000"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d`` as seconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 1h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for name, spec in SETTINGS.items():
        flags = (*spec.flag_aliases, "--" + name.replace("_", "-"))
        if spec.kind == "bool":
            parser.add_argument(
                *flags,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=spec.help,
            )
        else:
            metavar = {"list": "A,B", "int": "N", "float": "X"}.get(spec.kind, "VALUE")
            parser.add_argument(*flags, dest=name, default=None, metavar=metavar, help=spec.help)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"tidings {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML settings file (or TIDINGS_CONFIG)")
    _add_setting_flags(serve)

    check = sub.add_parser(
        "check-config",
        help="validate the settings (file, environment, flags) and print each with its source",
    )
    check.add_argument("--config", help="TOML settings file (or TIDINGS_CONFIG)")
    _add_setting_flags(check)

    token = sub.add_parser("token", help="print a signed JWT for development and tests")
    token.add_argument("--user", required=True, help="user id (sub and userId claims)")
    token.add_argument("--role", action="append", default=[], help="a role; repeatable")
    token.add_argument(
        "--ttl",
        type=parse_duration,
        default=3600.0,
        help="lifetime, e.g. 30s, 15m, 1h (default 1h)",
    )
    token.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra claim (VALUE parsed as JSON if it can be)",
    )
    token.add_argument("--config", help="TOML settings file (for jwt_secret)")
    token.add_argument("--secret", help="HMAC secret (default: the configured one)")
    _companion_parsers(sub)
    return parser


def _remote_flags(parser: argparse.ArgumentParser, *, api_key: bool) -> None:
    parser.add_argument("--url", help=f"the server (default: $TIDINGS_URL, else {DEFAULT_URL})")
    parser.add_argument("--config", help="TOML settings file (for the secret or API key)")
    if api_key:
        parser.add_argument(
            "--api-key",
            help="a server API key (default: the configured api_keys, else the api_key "
            f"in {DEV_STATE_FILE})",
        )


def _companion_parsers(sub: Any) -> None:
    listen = sub.add_parser(
        "listen", help="connect as a user and print every message as a JSON line"
    )
    _remote_flags(listen, api_key=False)
    listen.add_argument("--token", help="a JWT to connect with")
    listen.add_argument("--user", help="mint a token for this user (with the secret)")
    listen.add_argument("--role", action="append", default=[], help="a role; repeatable")
    listen.add_argument(
        "--ttl", type=parse_duration, default=3600.0, help="minted tokens' lifetime (1h)"
    )
    listen.add_argument("--secret", help="HMAC secret (default: the configured or dev one)")
    listen.add_argument(
        "--channel", action="append", default=[], help="subscribe to a channel; repeatable"
    )
    listen.add_argument("--ack", action="store_true", help="acknowledge notifications")

    publish = sub.add_parser("publish", help="publish to a channel (POST /api/publish)")
    publish.add_argument("channel")
    publish.add_argument("--type", default="message", help="the message type (message)")
    publish.add_argument("--data", type=_json_arg, default=None, help="the data, as JSON")
    _remote_flags(publish, api_key=True)

    notify = sub.add_parser("notify", help="create a notification (POST /api/notifications)")
    notify.add_argument("user", help="the user id")
    notify.add_argument("--title", required=True)
    notify.add_argument("--body", help="the text (the notification's message)")
    notify.add_argument("--priority", type=str.upper, choices=["LOW", "MEDIUM", "HIGH", "CRITICAL"])
    notify.add_argument("--category")
    notify.add_argument("--data", type=_json_arg, default=None, help="extra data, as JSON")
    _remote_flags(notify, api_key=True)

    stats = sub.add_parser("stats", help="print the server's stats (GET /api/stats)")
    _remote_flags(stats, api_key=True)


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def dev_file(*, for_writing: bool = False) -> Path:
    """The development secrets file.

    ``$TIDINGS_DEV_FILE`` when set; else, for ``serve --dev``, ``.tidings-dev.json`` in the
    current folder; else, for the commands that read it, the nearest one in the current
    folder or a parent (so ``tidings token`` works from a subfolder of the checkout).
    """
    named = os.environ.get(DEV_FILE_ENV)
    if named:
        return Path(named)
    here = Path.cwd()
    if not for_writing:
        for folder in (here, *here.parents):
            if (folder / DEV_STATE_FILE).is_file():
                return folder / DEV_STATE_FILE
    return here / DEV_STATE_FILE


def _dev_state(path: Path) -> dict[str, str]:
    """Development secrets, generated once and kept beside the working directory."""
    try:
        data = json.loads(path.read_text())
        if (
            isinstance(data, dict)
            and isinstance(data.get("jwt_secret"), str)
            and isinstance(data.get("api_key"), str)
        ):
            return {"jwt_secret": data["jwt_secret"], "api_key": data["api_key"]}
    except (OSError, ValueError):
        pass
    state = {"jwt_secret": secrets.token_urlsafe(32), "api_key": secrets.token_urlsafe(24)}
    path.write_text(json.dumps(state, indent=2) + "\n")
    path.chmod(0o600)
    return state


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when asked for or (``auto``) when installed; else asyncio's own loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("setting 'event_loop': uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def _serve(args: argparse.Namespace) -> int:
    flags = {name: getattr(args, name) for name in SETTINGS}
    settings = load(config_file=args.config, flags=flags)
    from .server import configure_logging, run

    configure_logging(settings)
    changes: dict[str, Any] = {}
    hmac = any(alg.startswith("HS") for alg in settings.jwt_algorithms)
    if hmac and not settings.jwt_secret:
        if not settings.dev:
            print(
                "tidings: no JWT secret. Set TIDINGS_JWT_SECRET (or JWT_SECRET), "
                "or run with --dev for a generated development secret.",
                file=sys.stderr,
            )
            return 2
        path = dev_file(for_writing=True)
        state = _dev_state(path)
        changes["jwt_secret"] = state["jwt_secret"]
        log.warning(
            "--dev: using a generated JWT secret kept in %s; `tidings token` signs "
            "with it. Never use --dev in production.",
            path,
        )
        if not settings.api_keys:
            changes["api_keys"] = [state["api_key"]]
            log.warning("--dev: the HTTP API key is the api_key in %s", path)
    if changes:
        settings = settings.replace(**changes)
    if not settings.api_keys:
        log.warning("no API keys configured (TIDINGS_API_KEYS): the HTTP API refuses every call")
    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            runner.run(run(settings))
    except StoreError as exc:
        print(f"tidings: {exc} (setting 'store_url')", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"tidings: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


def _without_password(url: str) -> str:
    """A database URL fit to print: its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _check_config(args: argparse.Namespace) -> int:
    """Load and validate like serve does, then print every effective setting."""
    from .node import build_verifier

    flags = {name: getattr(args, name) for name in SETTINGS}
    settings = load(config_file=args.config, flags=flags)
    hmac_algs = any(alg.startswith("HS") for alg in settings.jwt_algorithms)
    if not (hmac_algs and not settings.jwt_secret and settings.dev):
        build_verifier(settings, time.time)  # key files and algorithm rules
    width = max(map(len, SETTINGS))
    for name, spec in SETTINGS.items():
        value = settings.values[name]
        if spec.secret and value:
            shown = "(set, hidden)"
        elif name in ("store_url", "broker_url") and isinstance(value, str):
            shown = json.dumps(_without_password(value))
        else:
            shown = json.dumps(value)
        print(f"{name:<{width}}  {shown:<40}  {settings.sources[name]}")
    for ns, policy in sorted(settings.namespaces.items()):
        roles = sorted(policy.allowed_roles)
        print(
            f"namespace {ns}: subscribe={policy.subscribe} publish={policy.publish} "
            f"private={policy.private} allowed_roles={roles}"
        )
    if hmac_algs and not settings.jwt_secret and not settings.dev:
        print(
            "tidings: no JWT secret: serve would refuse to start (set TIDINGS_JWT_SECRET)",
            file=sys.stderr,
        )
        return 2
    print("configuration OK", file=sys.stderr)
    return 0


def _secret(args: argparse.Namespace) -> str | None:
    """``--secret``, else the configured ``jwt_secret``, else the development one."""
    secret: str | None = args.secret
    if not secret:
        settings: Settings = load(config_file=args.config)
        secret = settings.jwt_secret
    if not secret:
        secret = _dev_value("jwt_secret")
    if not secret:
        print(
            "tidings: no JWT secret: set TIDINGS_JWT_SECRET, pass --secret, run "
            f"`tidings serve --dev` here first, or point {DEV_FILE_ENV} at its "
            f"{DEV_STATE_FILE} (none found in {Path.cwd()} or its parents)",
            file=sys.stderr,
        )
    return secret


def _dev_value(name: str) -> str | None:
    try:
        value = json.loads(dev_file().read_text())[name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _token(args: argparse.Namespace) -> int:
    secret = _secret(args)
    if not secret:
        return 2
    extra: dict[str, Any] = {}
    for item in args.claim:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"tidings: --claim wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        try:
            extra[name] = json.loads(value)
        except ValueError:
            extra[name] = value
    print(mint(secret, args.user, roles=args.role, ttl=args.ttl, now=time.time(), extra=extra))
    return 0


# --- companions: listen, publish, notify, stats ---------------------------------------


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

    from .client import Client, ClientClosed, ClientError

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": _serve,
        "check-config": _check_config,
        "token": _token,
        "listen": _listen,
        "publish": _publish,
        "notify": _notify,
        "stats": lambda a: _call(a, "GET", "/api/stats"),
    }
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"tidings: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
