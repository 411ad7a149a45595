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
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import __version__
from ..auth import mint
from ..config import SETTINGS, ConfigError, load
from ..store import StoreError
from .companions import DEFAULT_URL, _call, _listen, _notify, _publish, ws_url
from .dev import DEV_FILE_ENV, DEV_STATE_FILE, _dev_state, _secret, dev_file

__all__ = [
    "DEFAULT_URL",
    "DEV_FILE_ENV",
    "DEV_STATE_FILE",
    "dev_file",
    "main",
    "parse_duration",
    "ws_url",
]

log = logging.getLogger("tidings.cli")

_DESCRIPTION = (
    "tidings: a real-time notification and messaging server. `serve` runs it; `token` "
    "mints development JWTs; `listen`, `publish`, `notify` and `stats` talk to a server."
)
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
    from ..server import configure_logging, run

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
    from ..verifier import build_verifier

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
