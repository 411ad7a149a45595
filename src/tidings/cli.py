"""The ``tidings`` command: ``serve`` and ``token``.

Every setting in ``config.SETTINGS`` is also a ``serve`` flag (``max_connections`` is
``--max-connections``); flags beat ``TIDINGS_*`` variables, which beat the TOML file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import sys
import time
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
        flag = "--" + name.replace("_", "-")
        if spec.kind == "bool":
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=spec.help
            )
        else:
            metavar = {"list": "A,B", "int": "N", "float": "X"}.get(spec.kind, "VALUE")
            parser.add_argument(flag, dest=name, default=None, metavar=metavar, help=spec.help)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__.splitlines()[0])
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
    return parser


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
        state = _dev_state(Path(DEV_STATE_FILE))
        changes["jwt_secret"] = state["jwt_secret"]
        log.warning(
            "--dev: using a generated JWT secret kept in %s; `tidings token` signs "
            "with it. Never use --dev in production.",
            DEV_STATE_FILE,
        )
        if not settings.api_keys:
            changes["api_keys"] = [state["api_key"]]
            log.warning("--dev: the HTTP API key is the api_key in %s", DEV_STATE_FILE)
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
        elif name == "store_url" and isinstance(value, str):
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
    secret = args.secret
    if not secret:
        settings: Settings = load(config_file=args.config)
        secret = settings.jwt_secret
    if not secret:
        try:
            secret = json.loads(Path(DEV_STATE_FILE).read_text())["jwt_secret"]
        except (OSError, ValueError, KeyError):
            print(
                "tidings: no JWT secret: set TIDINGS_JWT_SECRET, pass --secret, or run "
                "`tidings serve --dev` here first",
                file=sys.stderr,
            )
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
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            return _check_config(args)
        return _token(args)
    except ConfigError as exc:
        print(f"tidings: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
