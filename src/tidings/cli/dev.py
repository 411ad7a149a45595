"""The development secrets file ``serve --dev`` writes and the other commands read, and
where a command finds its JWT secret."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from ..config import Settings, load

DEV_STATE_FILE = ".tidings-dev.json"
# Where `serve --dev` keeps, and the other commands look for, the development secrets.
DEV_FILE_ENV = "TIDINGS_DEV_FILE"


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
