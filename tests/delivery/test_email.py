"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from tidings.delivery import Channel, Contact, Message
from tidings.delivery.email import SmtpSender

from .peers import smtp_server

ALICE = Contact(email="alice@example.com")


def message(n: int = 1, **kw: object) -> Message:
    fields: dict[str, object] = {
        "key": f"ntf_{n}:email",
        "notification_id": f"ntf_{n}",
        "user_id": "alice",
        "title": "Invoice <paid>",
        "text": "Your invoice 42 was paid.\n\nThank you.",
        "url": "https://app.example/invoices/42",
        "category": "billing",
    }
    fields.update(kw)
    return Message(**fields)  # type: ignore[arg-type]


async def test_starttls_auth_html_text_and_unsubscribe(tmp_path: Path) -> None:
    """Over STARTTLS with AUTH the server receives one mail with text and HTML parts, the
    Message-ID made from the delivery key, and RFC 8058 one-click List-Unsubscribe."""
    async with smtp_server(tmp_path) as (port, mailbox, trust):
        sender = SmtpSender(
            "127.0.0.1",
            port,
            "Tidings <no-reply@tidings.test>",
            tls="starttls",
            username="mailer",
            password="s3cret",
            unsubscribe_url="https://app.example/unsub?u={userId}&c={category}",
            tls_context=trust,
        )
        try:
            assert sender.channel is Channel.EMAIL
            outcome = await sender.send(message(), ALICE)
            assert outcome.sent, outcome
            assert (await sender.send(message(2), ALICE)).sent  # the connection is reused
        finally:
            await sender.close()
    assert len(mailbox.messages) == 2
    envelope, mail = mailbox.messages[0]
    assert envelope.rcpt_tos == ["alice@example.com"]
    assert envelope.mail_from == "no-reply@tidings.test"
    assert mail["Subject"] == "Invoice <paid>"
    assert mail["Message-ID"] == "<ntf_1.email@tidings.test>"
    assert mail["List-Unsubscribe"] == "<https://app.example/unsub?u=alice&c=billing>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    assert (
        text.get_content().replace("\r\n", "\n").strip()
        == "Your invoice 42 was paid.\n\nThank you."
    )
    body = html.get_content()
    assert "<h1>Invoice &lt;paid&gt;</h1>" in body  # escaped, never markup from the title
    assert 'href="https://app.example/invoices/42"' in body


async def test_implicit_tls(tmp_path: Path) -> None:
    """With tls="tls" the sender speaks TLS from the first byte (port 465 style)."""
    async with smtp_server(tmp_path, implicit_tls=True) as (port, mailbox, trust):
        sender = SmtpSender(
            "127.0.0.1",
            port,
            "no-reply@tidings.test",
            tls="tls",
            username="mailer",
            password="s3cret",
            tls_context=trust,
        )
        try:
            assert (await sender.send(message(html="<p>custom</p>"), ALICE)).sent
        finally:
            await sender.close()
    html = mailbox.messages[0][1].get_body(("html",))
    assert html is not None
    assert html.get_content().strip() == "<p>custom</p>"


async def test_failures_say_whether_to_retry(tmp_path: Path) -> None:
    """A refused recipient or bad password is final; a 451 or a server that is gone is
    retried; nothing is sent without an address."""
    async with smtp_server(tmp_path) as (port, mailbox, trust):
        kw = {"tls": "starttls", "tls_context": trust, "username": "mailer"}
        sender = SmtpSender("127.0.0.1", port, "no-reply@tidings.test", password="s3cret", **kw)  # type: ignore[arg-type]
        wrong = SmtpSender("127.0.0.1", port, "no-reply@tidings.test", password="nope", **kw)  # type: ignore[arg-type]
        try:
            assert (await sender.send(message(), Contact())).retry is False
            mailbox.refuse.add("bob@example.com")
            refused = await sender.send(message(), Contact(email="bob@example.com"))
            assert (refused.sent, refused.retry) == (False, False)
            assert "bob@example.com" in (refused.reason or "")
            mailbox.data_answers.append("451 4.3.0 try later")
            later = await sender.send(message(), ALICE)
            assert (later.sent, later.retry) == (False, True)
            assert (await sender.send(message(), ALICE)).sent  # reconnects after the 451
            denied = await wrong.send(message(), ALICE)
            assert (denied.sent, denied.retry) == (False, False), denied
        finally:
            await sender.close()
            await wrong.close()
    gone = SmtpSender("127.0.0.1", port, "no-reply@tidings.test", tls="none")
    outcome = await gone.send(message(), ALICE)
    assert (outcome.sent, outcome.retry) == (False, True)
    await gone.close()
    assert len(mailbox.messages) == 1
