"""Templates per type and locale, in jinja2's sandbox: fallback, escaping, refusal."""

from __future__ import annotations

import pytest

from tidings.config import ConfigError, load
from tidings.delivery import Message
from tidings.delivery.templates import Templates
from tidings.store import NewNotification, Notification, Priority
from tidings.store.deliveries import Contact

RAW = {
    "invoice_paid": {
        "en": {
            "title": "Invoice {{ data.number }} paid",
            "text": "Hello {{ user.name }}, we got {{ data.amount }}.",
            "html": "<p>Hello {{ user.name }}</p>",
        },
        "fr": {"title": "Facture {{ data.number }} payée"},
        "pt-BR": {"title": "Fatura {{ data.number }} paga"},
    },
    "broken": {"en": {"title": "{{ missing.field }}"}},
    "escape": {"en": {"title": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}},
}


def note(kind: str = "invoice_paid") -> Notification:
    return Notification(
        id="ntf_1",
        user_id="u1",
        seq=1,
        type=kind,
        title="Own title",
        message="Own text",
        priority=Priority.MEDIUM,
        category=None,
        data={"number": 42, "amount": "10 €"},
        actions=(),
        expires_at=None,
        created_at=0.0,
    )


BASE = Message(key="k", notification_id="ntf_1", user_id="u1", title="Own title", text="Own text")


@pytest.mark.parametrize(
    ("locale", "title"),
    [
        (None, "Invoice 42 paid"),
        ("en", "Invoice 42 paid"),
        ("fr", "Facture 42 payée"),
        ("fr-CA", "Facture 42 payée"),  # the language when the region has none
        ("pt-BR", "Fatura 42 paga"),
        ("pt_br", "Fatura 42 paga"),
        ("de", "Invoice 42 paid"),  # the default locale when the language has none
    ],
)
def test_locale_fallback(locale: str | None, title: str) -> None:
    """The user's locale, then its language, then the default locale."""
    t = Templates(RAW, "en")
    got = t.apply(BASE, note(), Contact(name="Ana", locale=locale), "email")
    assert got.title == title


def test_fields_the_locale_lacks_keep_the_notifications_own() -> None:
    """A French template with a title only keeps the notification's text; HTML is
    autoescaped; plain text is not."""
    t = Templates(RAW, "en")
    fr = t.apply(BASE, note(), Contact(name="<Ana>", locale="fr"), "email")
    assert (fr.text, fr.html) == ("Own text", None)
    en = t.apply(BASE, note(), Contact(name="<Ana>"), "email")
    assert en.text == "Hello <Ana>, we got 10 €."
    assert en.html == "<p>Hello &lt;Ana&gt;</p>"


def test_a_type_without_templates_and_a_failing_one_keep_the_notification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No template for the type: unchanged. A template naming what is not there, or
    reaching for Python internals (the sandbox refuses), falls back and is logged."""
    t = Templates(RAW, "en")
    assert t.apply(BASE, note("other"), Contact(), "push") == BASE
    assert t.apply(BASE, note("broken"), Contact(), "push") == BASE
    assert t.apply(BASE, note("escape"), Contact(), "push") == BASE
    assert len([r for r in caplog.records if "template for" in r.getMessage()]) == 2


def test_bad_templates_are_config_errors(tmp_path: object) -> None:
    """A template that does not compile, or an unknown key, stops the server at load."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    for body, match in (
        ('[templates.x.en]\ntitle = "{{ unclosed"\n', r"\[templates\.x\.en\]"),
        ('[templates.x.en]\nsubject = "hi"\n', "unknown keys"),
    ):
        path = tmp_path / "t.toml"
        path.write_text(body)
        with pytest.raises(ConfigError, match=match):
            load(config_file=path, env={})
    path.write_text('default_locale = "fr"\n[templates.x.fr]\ntitle = "Salut"\n')
    assert load(config_file=path, env={}).templates == {"x": {"fr": {"title": "Salut"}}}


def content(kind: str = "invoice_paid", **kw: object) -> NewNotification:
    fields: dict[str, object] = {
        "type": kind,
        "title": "Own title",
        "message": "Own text",
        "data": {"number": 42, "amount": "10 €"},
    }
    fields.update(kw)
    return NewNotification(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("locale", "want"),
    [
        (None, ("Invoice 42 paid", "Hello Ana, we got 10 €.")),
        ("fr-CA", ("Facture 42 payée", "Own text")),  # French has a title only
        ("pt_BR", ("Fatura 42 paga", "Own text")),
        ("de", ("Invoice 42 paid", "Hello Ana, we got 10 €.")),  # the default locale
    ],
)
def test_in_app_title_and_message_per_locale(locale: str | None, want: tuple[str, str]) -> None:
    """The stored title and message come from the type's template in the recipient's
    locale (else its language, else the default), with the directory's fields and data."""
    t = Templates(RAW, "en")
    assert t.covers("invoice_paid")
    assert not t.covers("other")
    assert t.in_app(content(), "u1", Contact(name="Ana", locale=locale)) == want


def test_in_app_sees_the_channel_and_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    """An in-app render has channel "in_app" and the user's id; a type without templates,
    or with no title or text for the app, a failing or escaping template give None."""
    raw = {
        "hello": {"en": {"title": "{{ channel }} for {{ user.id }} ({{ user.email }})"}},
        "html_only": {"en": {"html": "<p>x</p>"}},
        **RAW,
    }
    t = Templates(raw, "en")
    got = t.in_app(content("hello"), "u9", Contact(email="a@b.c"))
    assert got == ("in_app for u9 (a@b.c)", "Own text")
    assert t.in_app(content("other"), "u1", Contact()) is None
    assert t.in_app(content("html_only"), "u1", Contact()) is None
    assert t.in_app(content("broken"), "u1", Contact()) is None
    assert t.in_app(content("escape"), "u1", Contact()) is None
    assert len([r for r in caplog.records if "in-app template" in r.getMessage()]) == 2
