"""The email channel: SMTP with STARTTLS or implicit TLS, auth, HTML and text bodies.

Connections are kept open and reused (a pool of ``connections``), since EHLO, STARTTLS
and AUTH cost more than the message. Each message carries a ``Message-ID`` made from its
delivery key, and ``List-Unsubscribe`` with ``List-Unsubscribe-Post`` (RFC 8058 one-click)
when an unsubscribe URL is configured.
"""

from __future__ import annotations

import asyncio
import html
import logging
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Final
from urllib.parse import quote

import aiosmtplib

from . import SENT, Channel, Contact, Message, Outcome, failed

log = logging.getLogger("tidings.delivery.email")

TLS_MODES: Final = ("starttls", "tls", "none")


def render_html(message: Message) -> str:
    """The HTML body when the notification brings none: its title, text and link."""
    parts = [f"<h1>{html.escape(message.title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in message.text.split("\n\n") if line]
    if message.url:
        parts.append(f'<p><a href="{html.escape(message.url, quote=True)}">Open</a></p>')
    return "<!doctype html><html><body>" + "".join(parts) + "</body></html>"


class SmtpSender:
    """Sends email through one SMTP server.

    Args:
        host, port: the server (port 0: 465 with ``tls="tls"``, else 587, or 25 with
            ``tls="none"``).
        sender: the From address (``"Tidings <no-reply@example.com>"``).
        tls: ``starttls`` (upgrade required), ``tls`` (implicit, port 465) or ``none``.
        username, password: AUTH credentials (None: no AUTH).
        unsubscribe_url: the List-Unsubscribe target; ``{userId}`` and ``{category}``
            are replaced (URL-quoted).
        tls_context: certificate checks for the server (None: the system's defaults).
        connections: SMTP connections kept open at once.
        timeout: seconds for one attempt.
    """

    channel = Channel.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        tls: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        unsubscribe_url: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        connections: int = 2,
        timeout: float = 30.0,
    ) -> None:
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {TLS_MODES}")
        self.host = host
        self.port = port or {"tls": 465, "none": 25}.get(tls, 587)
        self.sender = sender
        self._tls = tls
        self._username = username
        self._password = password
        self._unsubscribe = unsubscribe_url
        self._context = tls_context
        self._timeout = timeout
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "tidings.invalid"
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(max(1, connections)):
            self._idle.put_nowait(None)

    def build(self, message: Message, contact: Contact) -> EmailMessage:
        """The MIME message: text and HTML alternatives, with the headers above."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = contact.email or ""
        mail["Subject"] = message.title
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = f"<{message.key.replace(':', '.')}@{self._domain}>"
        if self._unsubscribe:
            url = self._unsubscribe.replace("{userId}", quote(message.user_id, safe="")).replace(
                "{category}", quote(message.category or "", safe="")
            )
            mail["List-Unsubscribe"] = f"<{url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(message.text)
        mail.add_alternative(message.html or render_html(message), subtype="html")
        return mail

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self._tls == "tls",
            start_tls=self._tls == "starttls",
            tls_context=self._context,
            timeout=self._timeout,
        )
        await client.connect()
        if self._username is not None:
            await client.login(self._username, self._password or "")
        return client

    async def send(self, message: Message, contact: Contact) -> Outcome:
        if not contact.email:
            return failed("no email address", retry=False)
        mail = self.build(message, contact)
        client = await self._idle.get()
        try:
            if client is None or not client.is_connected:
                client = await self._connect()
            await client.send_message(mail)
            return SENT
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return failed(f"recipient refused: {exc.recipients[0]}", retry=False)
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx is the server asking to come back later; 5xx will not change.
            if 400 <= exc.code < 500:
                await _quit(client)
                client = None
            return failed(f"SMTP {exc.code} {exc.message}", retry=exc.code < 500)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _quit(client)
            client = None
            return failed(f"SMTP: {exc.__class__.__name__}: {exc}", retry=True)
        finally:
            self._idle.put_nowait(client)

    async def close(self) -> None:
        while not self._idle.empty():
            await _quit(self._idle.get_nowait())


async def _quit(client: aiosmtplib.SMTP | None) -> None:
    if client is None or not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
