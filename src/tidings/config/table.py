"""The settings table: every setting declared once with its kind, default and help, and
how a raw value (TOML, environment, flag) becomes its kind.

The CLI flags, the environment names and ``docs/configuration.md`` all follow ``SETTINGS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


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
    "http_fast_path": Spec(
        "bool",
        True,
        "serve publish and notification creates on the lean HTTP front (off: aiohttp only)",
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
