"""Settings: defaults, then a TOML file, then ``TIDINGS_*`` environment variables, then flags.

Each setting is declared once in ``SETTINGS`` with its type, default and help; the CLI
flags, the environment names and ``docs/configuration.md`` all follow that table. Every
effective value remembers where it came from (``Settings.sources``).
"""

from .loading import load, parse_escalation
from .settings import Settings
from .table import ENV_PREFIX, SETTINGS, ConfigError, Spec

__all__ = [
    "ENV_PREFIX",
    "SETTINGS",
    "ConfigError",
    "Settings",
    "Spec",
    "load",
    "parse_escalation",
]
