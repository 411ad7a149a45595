"""Real local peers for the delivery channels: an SMTP server (aiosmtpd) and an HTTP
receiver, both on 127.0.0.1 port 0 in the test's own event loop."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ..test_tls import self_signed


class Mailbox:
    """What the SMTP server accepted: parsed messages with their envelopes."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.arrived = asyncio.Event()
        # RCPT TO addresses answered 550, and the next DATA answers to give (e.g. "451 ...").
        self.refuse: set[str] = set()
        self.data_answers: list[str] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answers:
            return self.data_answers.pop(0)
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        self.arrived.set()
        return "250 OK queued"


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate made for the test, and a client that trusts it."""
    cert, key = self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


@asynccontextmanager
async def smtp_server(
    tmp_path: Path,
    *,
    implicit_tls: bool = False,
    credentials: tuple[str, str] = ("mailer", "s3cret"),
) -> AsyncIterator[tuple[int, Mailbox, ssl.SSLContext]]:
    """An SMTP server requiring TLS (STARTTLS, or implicit) and AUTH before mail."""
    mailbox = Mailbox()
    server_ctx, client_ctx = tls_contexts(tmp_path)
    user, password = credentials

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        # handled=False: aiosmtpd answers 535 itself (True means we already answered).
        return AuthResult(success=ok, handled=False)

    def protocol() -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns that AUTH without its own STARTTLS is unsafe; here the whole
            # connection is TLS (implicit), which it cannot see.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return _smtp()

    def _smtp() -> SMTP:
        return SMTP(
            mailbox,
            hostname="mail.test",
            require_starttls=not implicit_tls,
            tls_context=None if implicit_tls else server_ctx,
            authenticator=authenticate,
            auth_required=True,
            # aiosmtpd cannot see a TLS socket it did not upgrade: implicit TLS is TLS too.
            auth_require_tls=not implicit_tls,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        protocol, "127.0.0.1", 0, ssl=server_ctx if implicit_tls else None
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, mailbox, client_ctx
    finally:
        server.close()
        await server.wait_closed()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def http_peer(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """An HTTP server answering POSTs at the given paths; yields its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
