"""Templates per notification type and locale for the stored in-app title and message
and for email, push and SMS, rendered in jinja2's sandbox.

From the config file::

    [templates.invoice_paid.en]
    title = "Invoice {{ data.number }} paid"
    text = "Hello {{ user.name or 'there' }}, we received {{ data.amount }}."
    html = "<p>Hello {{ user.name }}, we received <b>{{ data.amount }}</b>.</p>"

A template sees ``notification`` (its fields as clients see them), ``data`` (the
notification's data), ``user`` (the directory's ``name``, ``email``, ``phone``,
``locale``, ``timeZone``) and ``channel`` (``in_app`` when the notification is created:
``title`` and ``text`` become the stored title and message, in the recipient's locale).
The locale is the user's directory locale (``fr-CA``), else its language (``fr``), else
``default_locale``; a type without a template for any of them keeps the notification's
own title and message. ``html`` is autoescaped; ``title`` and ``text`` are plain text.
The sandbox refuses attribute access to anything unsafe, so a template cannot reach
Python internals; a template that fails at render falls back to the notification's own
text (and is logged).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from ..store import NewNotification, Notification
from ..store.deliveries import Contact
from . import Message

log = logging.getLogger("tidings.delivery.templates")

FIELDS: Final = ("title", "text", "html")


class Compiled:
    """One type's templates in one locale."""

    def __init__(
        self, text_env: SandboxedEnvironment, html_env: SandboxedEnvironment, raw: Mapping[str, str]
    ):
        unknown = set(raw) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} (title, text, html)")
        self.title = text_env.from_string(raw["title"]) if "title" in raw else None
        self.text = text_env.from_string(raw["text"]) if "text" in raw else None
        self.html = html_env.from_string(raw["html"]) if "html" in raw else None


class Templates:
    """Every configured template, compiled once.

    Args:
        raw: ``{type: {locale: {"title"|"text"|"html": source}}}``.
        default_locale: the locale of last resort.

    Raises:
        ValueError: a template that does not compile, or an unknown key (naming it).
    """

    def __init__(
        self, raw: Mapping[str, Mapping[str, Mapping[str, str]]], default_locale: str = "en"
    ):
        # Undefined names are errors, not silent blanks: a typo shows at the first render.
        text_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
        html_env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
        self.default_locale = default_locale
        self._by_type: dict[str, dict[str, Compiled]] = {}
        for kind, locales in raw.items():
            for locale, fields in locales.items():
                where = f"[templates.{kind}.{locale}]"
                if not isinstance(fields, Mapping) or not all(
                    isinstance(v, str) for v in fields.values()
                ):
                    raise ValueError(f"{where}: title, text and html are strings")
                try:
                    compiled = Compiled(text_env, html_env, fields)
                except (TemplateError, ValueError) as exc:
                    raise ValueError(f"{where}: {exc}") from None
                tag = locale.lower().replace("_", "-")
                self._by_type.setdefault(kind, {})[tag] = compiled

    def choose(self, kind: str, locale: str | None) -> Compiled | None:
        """The template of ``kind`` for ``locale``, its language, or the default locale."""
        found = self._by_type.get(kind)
        if not found:
            return None
        candidates = []
        if locale:
            tag = locale.lower().replace("_", "-")
            candidates += [tag, tag.split("-")[0]]
        candidates.append(self.default_locale.lower())
        for candidate in candidates:
            if candidate in found:
                return found[candidate]
        return None

    def covers(self, kind: str) -> bool:
        """Whether notifications of type ``kind`` have a template in any locale."""
        return kind in self._by_type

    def in_app(
        self, content: NewNotification, user_id: str, contact: Contact
    ) -> tuple[str | None, str | None] | None:
        """The title and message to store for one recipient (``channel`` is ``in_app``):
        the template's ``title`` and ``text`` in their locale, a missing one keeping the
        notification's own; None when no template applies or one fails (logged)."""
        chosen = self.choose(content.type, contact.locale)
        if chosen is None or (chosen.title is None and chosen.text is None):
            return None
        url = next((a.url for a in content.actions if a.url), None)
        context: dict[str, Any] = {
            "notification": {
                "id": None,  # not given yet: the row is written after rendering
                "type": content.type,
                "title": content.title,
                "message": content.message,
                "priority": content.priority.value,
                "category": content.category,
                "createdAt": None,
            },
            "data": content.data if content.data is not None else {},
            "user": msgspec.structs.asdict(contact) | {"id": user_id},
            "channel": "in_app",
            "url": url,
        }
        try:
            title = content.title if chosen.title is None else chosen.title.render(context)
            text = content.message if chosen.text is None else chosen.text.render(context)
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            log.warning(
                "in-app template for %s failed (%s); the notification's own text is stored",
                content.type,
                exc,
            )
            return None
        return title, text

    def apply(self, message: Message, n: Notification, contact: Contact, channel: str) -> Message:
        """``message`` with what the templates of its type and the user's locale say."""
        chosen = self.choose(n.type, contact.locale)
        if chosen is None:
            return message
        context: dict[str, Any] = {
            "notification": {
                "id": n.id,
                "type": n.type,
                "title": n.title,
                "message": n.message,
                "priority": n.priority.value,
                "category": n.category,
                "createdAt": n.created_at,
            },
            "data": n.data if n.data is not None else {},
            "user": msgspec.structs.asdict(contact) | {"id": n.user_id},
            "channel": channel,
            "url": message.url,
        }
        try:
            changes: dict[str, Any] = {}
            if chosen.title is not None:
                changes["title"] = chosen.title.render(context)
            if chosen.text is not None:
                changes["text"] = chosen.text.render(context)
            if chosen.html is not None:
                changes["html"] = chosen.html.render(context)
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            log.warning(
                "template for %s failed (%s); the notification's own text is used", n.type, exc
            )
            return message
        return msgspec.structs.replace(message, **changes)
