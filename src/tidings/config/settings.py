"""The effective settings: every value with where it came from, and the file's tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..channels import NamespacePolicy
from ..delivery.rules import Rule
from .table import SETTINGS, ConfigError, _coerce
from .validation import validate as _validate


@dataclass
class Settings:
    """Effective settings; ``sources[name]`` says where each value came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    namespaces: dict[str, NamespacePolicy] = field(default_factory=dict)
    # Escalation rules by category ('*': the default), from the file's [escalation] tables.
    escalation: dict[str, Rule] = field(default_factory=dict)
    # The file's [templates.<type>.<locale>] tables, as given (compiled by the server).
    templates: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Each value is also an instance attribute, so ``settings.heartbeat_interval`` is
        # one dict hit: through ``__getattr__`` every read first failed the normal lookup
        # (about 0.45 µs, a dozen times per connect on the hot paths). ``values`` is never
        # changed after construction (``replace`` makes a new one); no setting is named
        # like a field (tests/test_config.py checks).
        self.__dict__.update(self.values)

    def __getattr__(self, name: str) -> Any:
        # Only for names that are not settings (the values are instance attributes).
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
        _validate(self.values, self.templates)
