"""Loading settings: defaults, then a TOML file, then ``TIDINGS_*`` environment
variables, then flags; and the file's ``[namespaces]`` and ``[escalation]`` tables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from ..channels import DEFAULT_NAMESPACE, NamespacePolicy
from ..delivery.rules import Rule, check_steps
from .settings import Settings
from .table import ENV_PREFIX, SETTINGS, ConfigError, _coerce


def parse_escalation(raw: Any) -> dict[str, Rule]:
    """``[escalation.<category>]`` tables (``[escalation."*"]``: the default rule).

    Raises:
        ConfigError: naming the table at fault.
    """
    if not isinstance(raw, dict):
        raise ConfigError("[escalation] must be a table of tables")
    out: dict[str, Rule] = {}
    for name, table in raw.items():
        where = f"escalation.{name}"
        try:
            rule = msgspec.convert(table, Rule)
            check_steps(rule.steps, f"[{where}]")
        except (msgspec.ValidationError, ValueError) as exc:
            raise ConfigError(f"[{where}]: {exc}") from None
        out[name] = rule
    return out


def _parse_namespaces(raw: Any) -> dict[str, NamespacePolicy]:
    if not isinstance(raw, dict):
        raise ConfigError("[namespaces] must be a table of tables")
    out: dict[str, NamespacePolicy] = {}
    allowed = {"subscribe", "publish", "allowed_roles", "private", "history_size", "history_ttl"}
    for name, table in raw.items():
        where = f"namespaces.{name}"
        if not isinstance(table, dict):
            raise ConfigError(f"[{where}] must be a table")
        unknown = set(table) - allowed
        if unknown:
            raise ConfigError(f"[{where}]: unknown keys {sorted(unknown)}")
        roles = table.get("allowed_roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"[{where}] allowed_roles must be a list of strings")
        flags = {}
        for key in ("subscribe", "publish", "private"):
            if key in table:
                if not isinstance(table[key], bool):
                    raise ConfigError(f"[{where}] {key} must be true or false")
                flags[key] = table[key]
        history: dict[str, Any] = {}
        size = table.get("history_size", 0)
        ttl = table.get("history_ttl", 300.0 if size else 0.0)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 100_000:
            raise ConfigError(f"[{where}] history_size must be an integer from 0 to 100000")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0:
            raise ConfigError(f"[{where}] history_ttl must be a number of seconds >= 0")
        if size and not ttl:
            raise ConfigError(f"[{where}] history_size needs a positive history_ttl")
        history = {"history_size": size, "history_ttl": float(ttl)}
        if name != DEFAULT_NAMESPACE and ":" in name:
            raise ConfigError(f"[{where}]: a namespace name cannot contain ':'")
        if name == "user":
            # Configuring the built-in user namespace (say, to add roles) must not make
            # everyone's private channels public unless that is said outright.
            flags.setdefault("private", True)
        out[name] = NamespacePolicy(allowed_roles=frozenset(roles), **flags, **history)
    return out


def load(
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Build effective settings from the four sources, lowest precedence first.

    Raises:
        ConfigError: an unknown or mistyped setting, naming it.
    """
    env = os.environ if env is None else env
    values = {name: spec.default for name, spec in SETTINGS.items()}
    sources = dict.fromkeys(SETTINGS, "default")
    namespaces: dict[str, NamespacePolicy] = {}
    escalation: dict[str, Rule] = {}
    templates: dict[str, Any] = {}

    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        namespaces = _parse_namespaces(data.pop("namespaces", {}))
        escalation = parse_escalation(data.pop("escalation", {}))
        templates = data.pop("templates", {})
        if not isinstance(templates, dict):
            raise ConfigError("[templates] must be a table of tables")
        for name, value in data.items():
            if name not in SETTINGS:
                raise ConfigError(f"config file {path}: unknown setting {name!r}")
            values[name] = _coerce(name, SETTINGS[name].kind, value)
            sources[name] = f"file {path}"

    for name, spec in SETTINGS.items():
        # The TIDINGS_ name wins over a guide's plain name (JWT_SECRET, WS_MAX_CONNECTIONS).
        for env_name in (*reversed(spec.env_aliases), ENV_PREFIX + name.upper()):
            if env_name in env:
                values[name] = _coerce(name, spec.kind, env[env_name])
                sources[name] = f"env {env_name}"

    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in SETTINGS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, SETTINGS[name].kind, value)
        sources[name] = "flag"

    settings = Settings(values, sources, namespaces, escalation, templates)
    settings.validate()
    return settings
