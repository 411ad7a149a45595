"""Validation of effective settings: each check names the setting that makes no sense."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .table import ConfigError


def validate(values: dict[str, Any], templates: dict[str, Any]) -> None:
    """Raise ConfigError naming the first setting that makes no sense.

    Args:
        values: every setting's effective value, by name.
        templates: the file's ``[templates]`` tables, as given.
    """
    v = values
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
    _validate_delivery(values, templates)
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


def _validate_delivery(values: dict[str, Any], templates: dict[str, Any]) -> None:
    v = values
    if templates:
        try:
            from ..delivery.templates import Templates
        except ImportError:
            raise ConfigError(
                "[templates] needs jinja2: install tidings with the templates extra"
            ) from None
        try:
            Templates(templates, v["default_locale"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for t in v["digest_times"]:
        if not re.match(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", str(t)):
            raise ConfigError(f"setting 'digest_times': {t!r} is not HH:MM")
    if v["smtp_connections"] < 1:
        raise ConfigError("setting 'smtp_connections' must be at least 1")
    if v["delivery_max_attempts"] < 1 or v["delivery_retry_base"] <= 0:
        raise ConfigError("settings 'delivery_max_attempts' (>= 1), 'delivery_retry_base' (> 0)")
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
