"""Settings sources, types and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.config import ConfigError, load


def test_defaults_and_sources() -> None:
    """With nothing set, defaults apply and say so."""
    s = load(env={})
    assert (s.port, s.max_connections_per_user, s.max_message_bytes) == (8000, 5, 65536)
    assert s.sources["port"] == "default"


def test_guide_env_names() -> None:
    """JWT_SECRET and WS_MAX_CONNECTIONS (the guides' names) work; TIDINGS_* wins over them."""
    s = load(env={"JWT_SECRET": "a", "WS_MAX_CONNECTIONS": "1000"})
    assert (s.jwt_secret, s.max_connections) == ("a", 1000)
    s = load(env={"JWT_SECRET": "a", "TIDINGS_JWT_SECRET": "b"})
    assert s.jwt_secret == "b"
    assert s.sources["jwt_secret"] == "env TIDINGS_JWT_SECRET"


def test_file_with_namespaces(tmp_path: Path) -> None:
    """The TOML file sets values and namespace policies."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        'api_keys = ["k1", "k2"]\n[namespaces.activities]\n'
        'allowed_roles = ["LIBRARIAN"]\n[namespaces.room]\npublish = true\n'
    )
    s = load(config_file=cfg, env={})
    assert s.api_keys == ["k1", "k2"]
    assert s.namespaces["activities"].allowed_roles == frozenset({"LIBRARIAN"})
    assert s.namespaces["room"].publish is True


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nonsense = 1\n", "nonsense"),
        ("port = 70000\n", "port"),
        ("rate_limit_enabled = 'maybe'\n", "rate_limit_enabled"),
        ("[namespaces.room]\npublish = 'yes'\n", "publish"),
        ("[namespaces.room]\ncolour = 'red'\n", "colour"),
        ("[namespaces.'a:b']\n", "':'"),
        ("ws_paths = ['/api/ws']\n", "ws_paths"),
        ("port = \n", "t.toml"),
    ],
)
def test_invalid_file_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    """Unknown keys, bad types and bad values raise ConfigError naming the setting."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load(config_file=cfg, env={})


def test_env_types() -> None:
    """Environment strings become booleans, numbers and lists."""
    s = load(
        env={
            "TIDINGS_RATE_LIMIT_ENABLED": "off",
            "TIDINGS_JWT_LEEWAY": "2.5",
            "TIDINGS_ALLOWED_ORIGINS": "https://a, https://b",
        }
    )
    assert s.rate_limit_enabled is False
    assert s.jwt_leeway == 2.5
    assert s.allowed_origins == ["https://a", "https://b"]
    with pytest.raises(ConfigError, match="max_connections"):
        load(env={"TIDINGS_MAX_CONNECTIONS": "many"})


def test_configuring_user_namespace_keeps_it_private(tmp_path: Path) -> None:
    """A [namespaces.user] table stays private unless private = false is written."""
    cfg = tmp_path / "t.toml"
    cfg.write_text('[namespaces.user]\nallowed_roles = ["MEMBER"]\n')
    assert load(config_file=cfg, env={}).namespaces["user"].private is True


def test_float_for_int_setting_refused() -> None:
    """A fractional value for an integer setting is an error, not silently truncated."""
    with pytest.raises(ConfigError, match="max_connections"):
        load(env={}, flags={"max_connections": 10.5})


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"jwt_algorithms": ["HS256", "RS256"], "jwt_secret": "s" * 32}, "mix"),
        ({"jwt_algorithms": ["RS256"]}, "public key"),
        (
            {"jwt_algorithms": ["RS256"], "jwt_public_key_file": "/nonexistent.pem"},
            "jwt_public_key_file",
        ),
        ({"jwt_algorithms": ["ES256"], "jwt_jwks_file": "/nonexistent.json"}, "jwt_jwks_file"),
    ],
)
def test_bad_jwt_settings_are_config_errors(flags: dict, needle: str) -> None:
    """Key and algorithm mistakes are ConfigErrors that name what to fix."""
    from tidings.node import Node

    with pytest.raises(ConfigError, match=needle):
        Node(load(env={}, flags=flags))


def test_settings_are_attributes_and_no_name_is_a_field() -> None:
    """Settings copies each value onto the instance (one dict hit per read on hot paths):
    a setting named like one of its fields would silently shadow it."""
    import dataclasses

    from tidings.config.settings import Settings
    from tidings.config.table import SETTINGS

    fields = {f.name for f in dataclasses.fields(Settings)} | {"replace", "validate"}
    assert not fields & set(SETTINGS)
    s = load(env={}).replace(heartbeat_interval=7.0)
    assert s.heartbeat_interval == 7.0
    assert s.__dict__["heartbeat_interval"] == 7.0
    with pytest.raises(AttributeError):
        _ = s.no_such_setting
