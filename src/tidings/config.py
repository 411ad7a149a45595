"""Settings: defaults, then a TOML file, then ``TIDINGS_*`` environment variables, then flags.

Each setting is declared once in ``SETTINGS`` with its type, default and help; the CLI
flags, the environment names and ``docs/configuration.md`` all follow that table. Every
effective value remembers where it came from (``Settings.sources``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from .channels import DEFAULT_NAMESPACE, NamespacePolicy
from .delivery.rules import Rule, check_steps


class ConfigError(ValueError):
    """An invalid setting; the message names it."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its kind (``str``, ``int``, ``float``, ``bool``, ``list``), default, help."""

    kind: str
    default: Any
    help: str
    env_aliases: tuple[str, ...] = ()
    secret: bool = False
    # Extra command-line names: the first is the documented one (``--broker``).
    flag_aliases: tuple[str, ...] = ()


SETTINGS: Final[dict[str, Spec]] = {
    "host": Spec("str", "127.0.0.1", "address to listen on (0.0.0.0 for every interface)"),
    "port": Spec("int", 8000, "port for the WebSocket endpoint and the HTTP API (0: any free)"),
    "certfile": Spec("str", None, "PEM certificate (chain) file: serve https and wss"),
    "keyfile": Spec("str", None, "PEM private key file for certfile", secret=False),
    "ws_paths": Spec("list", ["/ws"], "WebSocket endpoint paths"),
    "dev": Spec("bool", False, "development mode: generate a JWT secret if none is set"),
    "jwt_secret": Spec(
        "str", None, "HMAC secret for HS256 tokens", env_aliases=("JWT_SECRET",), secret=True
    ),
    "jwt_algorithms": Spec("list", ["HS256"], "accepted JWT algorithms (never taken from a token)"),
    "jwt_public_key_file": Spec("str", None, "PEM public key file for RS*/ES* tokens"),
    "jwt_jwks_file": Spec("str", None, "JWKS file for RS*/ES* tokens (kid selects the key)"),
    "jwt_jwks_url": Spec(
        "str", None, "an identity provider's JWKS URL for RS*/ES* tokens (fetched and cached)"
    ),
    "jwt_jwks_refresh_seconds": Spec("float", 300.0, "seconds between scheduled JWKS fetches"),
    "jwt_jwks_min_refresh_seconds": Spec(
        "float", 30.0, "at least this long between JWKS fetches caused by an unknown kid"
    ),
    "jwt_jwks_timeout": Spec("float", 5.0, "seconds for one JWKS fetch"),
    "jwt_issuer": Spec("str", None, "required iss claim"),
    "jwt_audience": Spec("str", None, "required aud claim"),
    "jwt_leeway": Spec("float", 10.0, "seconds of clock skew tolerated on exp/nbf"),
    "api_keys": Spec("list", [], "server API keys (Authorization: Bearer <key>)", secret=True),
    "store_url": Spec(
        "str",
        "tidings.db",
        "notification store: a SQLite file path (or :memory:) or a postgresql:// URL",
    ),
    "store_timeout": Spec(
        "float",
        5.0,
        "seconds a store operation may take (a lock held elsewhere, a stalled disk or "
        "database) before it fails: the API answers 503 with Retry-After",
    ),
    "broker_url": Spec(
        "str",
        "memory",
        "memory (one instance) or a redis:// URL: instances on one Redis act as one cluster",
        env_aliases=("TIDINGS_BROKER",),
        flag_aliases=("--broker",),
    ),
    "broker_prefix": Spec("str", "tidings:", "prefix of every Redis key and channel tidings uses"),
    "cluster_heartbeat": Spec(
        "float",
        5.0,
        "seconds between an instance's heartbeats in Redis; it counts as dead after three missed",
    ),
    "redis_command_timeout": Spec(
        "float",
        1.0,
        "seconds a Redis command may wait for its answer before it fails (then 503)",
    ),
    "presence_grace": Spec(
        "float",
        5.0,
        "seconds a user stays online in a room after their last connection to it closed "
        "(a page reload does not flap USER_LEFT/USER_JOINED)",
    ),
    "typing_timeout": Spec(
        "float", 5.0, "seconds after a client's last TYPING before it counts as stopped"
    ),
    "ack_timeout": Spec(
        "float",
        30.0,
        "seconds an acknowledging client has to ack a notification before it is sent again "
        "(doubling each time)",
    ),
    "max_delivery_attempts": Spec(
        "int", 5, "pushes of one notification to one acknowledging connection, at most"
    ),
    "retention_days": Spec("float", 90.0, "notifications older than this are deleted"),
    "purge_interval": Spec("float", 3600.0, "seconds between retention sweeps (0: never)"),
    "webhook_url": Spec(
        "str", None, "POST here (HMAC-signed) for notifications not acked within webhook_delay"
    ),
    "webhook_secret": Spec("str", None, "HMAC-SHA256 key for webhook signatures", secret=True),
    "hook_connect_url": Spec("str", None, "backend URL asked whether a connection may open"),
    "hook_subscribe_url": Spec("str", None, "backend URL asked whether a client may subscribe"),
    "hook_publish_url": Spec("str", None, "backend URL asked whether a client may publish"),
    "hook_subscribe_namespaces": Spec(
        "list", [], "namespaces whose subscriptions the subscribe hook decides (empty: all)"
    ),
    "hook_publish_namespaces": Spec(
        "list", [], "namespaces whose client publications the publish hook decides (empty: all)"
    ),
    "hook_secret": Spec("str", None, "HMAC-SHA256 key signing hook requests", secret=True),
    "hook_timeout": Spec("float", 2.0, "seconds for one hook call"),
    "hook_failure": Spec("str", "deny", "what an unanswered hook decides: deny or allow"),
    "hook_cache_seconds": Spec(
        "float", 0.0, "seconds a connect/subscribe decision is reused unless it says (0: never)"
    ),
    "webhook_delay": Spec("float", 300.0, "seconds a notification may stay unacked"),
    "webhook_max_attempts": Spec("int", 8, "webhook tries per notification before giving up"),
    "delivery_max_attempts": Spec(
        "int", 5, "tries of one email, push or SMS before it is given up (docs/delivery.md)"
    ),
    "delivery_retry_base": Spec(
        "float", 30.0, "seconds before a failed email, push or SMS is retried (doubling, <= 1 h)"
    ),
    "delivery_interval": Spec("float", 5.0, "seconds between claims of due deliveries"),
    "digest_times": Spec(
        "list", ["09:00"], "daily times (HH:MM, the user's zone) digest steps are emailed"
    ),
    "default_locale": Spec("str", "en", "the locale of last resort for [templates]"),
    "app_url": Spec("str", None, "your app's URL: action paths in email, push and SMS join it"),
    "smtp_host": Spec("str", None, "SMTP server for the email channel (unset: no email)"),
    "smtp_port": Spec("int", 0, "SMTP port (0: 587 for starttls, 465 for tls, 25 for none)"),
    "smtp_tls": Spec("str", "starttls", "starttls (required upgrade), tls (implicit) or none"),
    "smtp_ca_file": Spec("str", None, "PEM CA bundle the SMTP server's certificate must chain to"),
    "smtp_connections": Spec("int", 4, "SMTP connections kept open to send email in parallel"),
    "smtp_username": Spec("str", None, "SMTP AUTH user (unset: no AUTH)"),
    "smtp_password": Spec("str", None, "SMTP AUTH password", secret=True),
    "email_from": Spec("str", None, 'the From of notification email ("Name <addr>")'),
    "email_unsubscribe_url": Spec(
        "str", None, "List-Unsubscribe target; {userId} and {category} are filled in"
    ),
    "push_vapid_private_key": Spec(
        "str", None, "VAPID private key, base64url raw or PEM (unset: no Web Push)", secret=True
    ),
    "push_vapid_subject": Spec("str", None, "VAPID contact: mailto:you@example.com or https URL"),
    "push_service_hosts": Spec(
        "list",
        [
            "fcm.googleapis.com",
            ".push.services.mozilla.com",
            ".notify.windows.com",
            ".push.apple.com",
        ],
        "hosts a push subscription's endpoint may name (.suffix for subdomains; empty: any)",
    ),
    "push_ttl": Spec("int", 86400, "seconds a push service keeps a push for an offline browser"),
    "sms_webhook_url": Spec("str", None, "SMS through a signed webhook POST to this URL"),
    "sms_webhook_secret": Spec(
        "str", None, "Standard Webhooks secret for sms_webhook_url", secret=True
    ),
    "twilio_account_sid": Spec("str", None, "SMS through Twilio: the account SID"),
    "twilio_auth_token": Spec("str", None, "Twilio auth token", secret=True),
    "twilio_from": Spec("str", None, "Twilio sender: a number or a Messaging Service SID (MG...)"),
    "twilio_base_url": Spec("str", "https://api.twilio.com", "Twilio API origin"),
    "max_connections": Spec(
        "int", 10000, "connections per instance", env_aliases=("WS_MAX_CONNECTIONS",)
    ),
    "max_connections_per_user": Spec("int", 5, "connections one user may hold"),
    "max_pending_connections": Spec(
        "int", 1000, "connections still authenticating (opened without a token); past it 503"
    ),
    "max_pending_per_address": Spec(
        "int", 20, "connections still authenticating from one client address; past it 429"
    ),
    "connection_rate_per_address": Spec(
        "float", 10.0, "new connections per second from one client address (0: no limit)"
    ),
    "connection_burst_per_address": Spec(
        "int", 50, "new connections one client address may open at once"
    ),
    "auth_failure_rate_per_address": Spec(
        "float",
        1.0,
        "failed authentications per second one address may keep making; then 429 (0: off)",
    ),
    "auth_failure_burst_per_address": Spec(
        "int", 20, "failed authentications one address may make at once"
    ),
    "max_subscriptions": Spec("int", 100, "subscriptions per connection"),
    "max_message_bytes": Spec("int", 65536, "largest client message (decompressed)"),
    "max_api_body_bytes": Spec("int", 1048576, "largest HTTP API request body"),
    "outbox_max_bytes": Spec(
        "int", 1048576, "bytes queued to one connection before it is closed as a slow consumer"
    ),
    "heartbeat_interval": Spec("float", 30.0, "seconds between protocol pings (0: off)"),
    "sse_resume_seconds": Spec(
        "float",
        30.0,
        "seconds an SSE session outlives its dropped stream, for a Last-Event-ID resume (0: none)",
    ),
    "auth_timeout": Spec("float", 10.0, "seconds a client has to send auth after open"),
    "handshake_timeout": Spec(
        "float", 10.0, "seconds a new TCP connection has to send its request"
    ),
    "body_timeout": Spec(
        "float", 10.0, "seconds a client has to send a whole HTTP request body (then 408)"
    ),
    "rate_limit_enabled": Spec("bool", True, "limit client message rates"),
    "rate_limit_per_second": Spec("float", 20.0, "client messages per second, sustained"),
    "rate_limit_burst": Spec("int", 50, "client messages allowed in a burst"),
    "rate_limit_close_after": Spec(
        "int", 50, "rejected messages (refilled at the same rate) before closing with 4029"
    ),
    "api_rate_limit_per_second": Spec("float", 0.0, "API requests per second per key (0: off)"),
    "trusted_proxies": Spec(
        "list",
        [],
        "proxy addresses or networks (CIDR) whose X-Forwarded-For is believed",
    ),
    "allowed_origins": Spec(
        "list",
        [],
        "allowed Origin values for WebSocket connections and browser (CORS) calls (empty: any)",
    ),
    "compression": Spec("bool", False, "accept permessage-deflate from clients"),
    "ws_engine": Spec(
        "str",
        "lean",
        "WebSocket engine: lean (the socket leaves aiohttp after the upgrade) or aiohttp",
    ),
    "shutdown_timeout": Spec("float", 10.0, "seconds to finish in-flight API calls on shutdown"),
    "event_loop": Spec("str", "auto", "auto (uvloop when installed), uvloop or asyncio"),
    "metrics": Spec("str", "key", "GET /metrics: key (needs a server API key), open, or off"),
    "log_level": Spec("str", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    "log_format": Spec("str", "text", "text or json"),
}

ENV_PREFIX: Final = "TIDINGS_"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _coerce(name: str, kind: str, value: Any) -> Any:
    """Turn a TOML, environment or flag value into the setting's type."""
    if value is None:
        return None
    try:
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise TypeError
        if kind == "int":
            if isinstance(value, bool | float):
                raise TypeError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind == "list":
            if isinstance(value, str):
                return [item.strip() for item in value.split(",") if item.strip()]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
            raise TypeError
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: expected {kind}, got {value!r}") from None
    raise AssertionError(kind)


@dataclass(slots=True)
class Settings:
    """Effective settings; ``sources[name]`` says where each value came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    namespaces: dict[str, NamespacePolicy] = field(default_factory=dict)
    # Escalation rules by category ('*': the default), from the file's [escalation] tables.
    escalation: dict[str, Rule] = field(default_factory=dict)
    # The file's [templates.<type>.<locale>] tables, as given (compiled by the server).
    templates: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (for embedding and tests)."""
        values = dict(self.values)
        sources = dict(self.sources)
        for name, value in changes.items():
            if name not in SETTINGS:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = _coerce(name, SETTINGS[name].kind, value)
            sources[name] = "code"
        out = Settings(
            values, sources, dict(self.namespaces), dict(self.escalation), dict(self.templates)
        )
        out.validate()
        return out

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that makes no sense."""
        v = self.values
        positive = (
            "max_connections",
            "max_delivery_attempts",
            "webhook_max_attempts",
            "max_connections_per_user",
            "max_subscriptions",
            "max_message_bytes",
            "max_api_body_bytes",
            "outbox_max_bytes",
            "rate_limit_burst",
            "rate_limit_close_after",
            "max_pending_connections",
            "max_pending_per_address",
            "connection_burst_per_address",
            "auth_failure_burst_per_address",
        )
        for name in positive:
            if v[name] < 1:
                raise ConfigError(f"setting {name!r} must be at least 1, got {v[name]}")
        timed = [
            "auth_timeout",
            "handshake_timeout",
            "body_timeout",
            "redis_command_timeout",
            "store_timeout",
            "ack_timeout",
            "retention_days",
            "jwt_jwks_refresh_seconds",
            "jwt_jwks_timeout",
            "hook_timeout",
        ]
        if v["rate_limit_enabled"]:
            timed.append("rate_limit_per_second")
        for name in timed:
            if v[name] <= 0:
                raise ConfigError(f"setting {name!r} must be positive, got {v[name]}")
        for name in ("connection_rate_per_address", "auth_failure_rate_per_address"):
            if v[name] < 0:
                raise ConfigError(f"setting {name!r} must not be negative, got {v[name]}")
        if v["sse_resume_seconds"] < 0:
            raise ConfigError("setting 'sse_resume_seconds' must not be negative")
        if v["jwt_jwks_min_refresh_seconds"] < 0:
            raise ConfigError("setting 'jwt_jwks_min_refresh_seconds' must not be negative")
        jwks_url = v["jwt_jwks_url"]
        if jwks_url and not jwks_url.startswith(("http://", "https://")):
            raise ConfigError("setting 'jwt_jwks_url' must be an http:// or https:// URL")
        if jwks_url and (v["jwt_jwks_file"] or v["jwt_public_key_file"]):
            raise ConfigError(
                "setting 'jwt_jwks_url' replaces 'jwt_jwks_file' and 'jwt_public_key_file'"
            )
        if not 0 <= v["port"] <= 65535:
            raise ConfigError(f"setting 'port' must be 0..65535, got {v['port']}")
        for proxy in v["trusted_proxies"]:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(
                    f"setting 'trusted_proxies': {proxy!r} is not an address or network"
                ) from None
        if bool(v["certfile"]) != bool(v["keyfile"]):
            raise ConfigError("settings 'certfile' and 'keyfile' go together")
        for hook in ("hook_connect_url", "hook_subscribe_url", "hook_publish_url"):
            if v[hook] and not v[hook].startswith(("http://", "https://")):
                raise ConfigError(f"setting {hook!r} must be an http:// or https:// URL")
        if v["hook_failure"] not in ("deny", "allow"):
            raise ConfigError("setting 'hook_failure' must be deny or allow")
        if v["hook_cache_seconds"] < 0:
            raise ConfigError("setting 'hook_cache_seconds' must not be negative")
        if v["webhook_url"] and not v["webhook_secret"]:
            raise ConfigError("setting 'webhook_secret' is required with 'webhook_url'")
        if v["webhook_url"] and not v["webhook_url"].startswith(("http://", "https://")):
            raise ConfigError("setting 'webhook_url' must be an http:// or https:// URL")
        self._validate_delivery()
        if v["metrics"] not in ("key", "open", "off"):
            raise ConfigError("setting 'metrics' must be key, open or off")
        if v["event_loop"] not in ("auto", "uvloop", "asyncio"):
            raise ConfigError("setting 'event_loop' must be auto, uvloop or asyncio")
        if v["ws_engine"] not in ("aiohttp", "lean"):
            raise ConfigError("setting 'ws_engine' must be 'aiohttp' or 'lean'")
        if v["log_format"] not in ("text", "json"):
            raise ConfigError("setting 'log_format' must be 'text' or 'json'")
        url = v["broker_url"]
        if url != "memory" and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("setting 'broker_url' must be 'memory' or a redis:// URL")
        if v["cluster_heartbeat"] <= 0:
            raise ConfigError("setting 'cluster_heartbeat' must be positive")
        if v["presence_grace"] < 0 or v["typing_timeout"] <= 0:
            raise ConfigError("settings 'presence_grace' (>= 0), 'typing_timeout' (> 0)")
        if v["log_level"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("setting 'log_level' must be DEBUG, INFO, WARNING or ERROR")
        for path in v["ws_paths"]:
            if not path.startswith("/") or path.startswith("/api"):
                raise ConfigError(f"setting 'ws_paths': {path!r} must start with / and not /api")

    def _validate_delivery(self) -> None:
        v = self.values
        if self.templates:
            try:
                from .delivery.templates import Templates
            except ImportError:
                raise ConfigError(
                    "[templates] needs jinja2: install tidings with the templates extra"
                ) from None
            try:
                Templates(self.templates, v["default_locale"])
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        for t in v["digest_times"]:
            if not re.match(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", str(t)):
                raise ConfigError(f"setting 'digest_times': {t!r} is not HH:MM")
        if v["smtp_connections"] < 1:
            raise ConfigError("setting 'smtp_connections' must be at least 1")
        if v["delivery_max_attempts"] < 1 or v["delivery_retry_base"] <= 0:
            raise ConfigError(
                "settings 'delivery_max_attempts' (>= 1), 'delivery_retry_base' (> 0)"
            )
        if v["delivery_interval"] <= 0 or v["push_ttl"] < 0:
            raise ConfigError("settings 'delivery_interval' (> 0), 'push_ttl' (>= 0)")
        if v["smtp_tls"] not in ("starttls", "tls", "none"):
            raise ConfigError("setting 'smtp_tls' must be starttls, tls or none")
        if v["smtp_host"] and not v["email_from"]:
            raise ConfigError("setting 'email_from' is required with 'smtp_host'")
        if v["push_vapid_private_key"] and not (v["push_vapid_subject"] or "").startswith(
            ("mailto:", "https://")
        ):
            raise ConfigError("setting 'push_vapid_subject' (mailto: or https://) is required")
        if v["sms_webhook_url"] and not v["sms_webhook_secret"]:
            raise ConfigError("setting 'sms_webhook_secret' is required with 'sms_webhook_url'")
        twilio = [v["twilio_account_sid"], v["twilio_auth_token"], v["twilio_from"]]
        if any(twilio) and not all(twilio):
            raise ConfigError(
                "settings 'twilio_account_sid', 'twilio_auth_token', 'twilio_from' go together"
            )
        if v["sms_webhook_url"] and v["twilio_account_sid"]:
            raise ConfigError("choose one SMS provider: 'sms_webhook_url' or 'twilio_account_sid'")


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
