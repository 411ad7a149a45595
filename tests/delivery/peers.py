"""Real local peers for the delivery channels: an SMTP server (aiosmtpd) and an HTTP
receiver, both on 127.0.0.1 port 0 in the test's own event loop."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import os
import ssl
import time
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


class Browser:
    """A browser's side of Web Push: the subscription keys it would hand the page."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(ec.SECP256R1())
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.auth = os.urandom(16)
        self.p256dh = b64(raw)

    def keys(self) -> dict[str, str]:
        return {"p256dh": self.p256dh, "auth": b64(self.auth)}

    def decrypt(self, body: bytes) -> Any:
        import http_ece

        return json.loads(
            http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm")
        )


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class PushService:
    """A local RFC 8030 push service: checks the VAPID JWT (ES256, signed by the key in
    ``k``, which must be the application server key the browser subscribed with; ``aud``
    this origin; ``exp`` within 24 h) and decrypts the payload with the browser's keys.

    ``answers[path]`` lists statuses to give at that path (201 when empty).
    """

    def __init__(self, server_key: str) -> None:
        self.server_key = server_key
        self.browsers: dict[str, Browser] = {}
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.answers: dict[str, list[int]] = {}
        self.base = ""

    def subscribe(self, name: str) -> dict[str, Any]:
        """A new browser's ``PushSubscription.toJSON()`` at /push/<name>."""
        browser = self.browsers[name] = Browser()
        return {"endpoint": f"{self.base}/push/{name}", "keys": browser.keys()}

    async def handle(self, request: web.Request) -> web.Response:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec

        name = request.match_info["name"]
        scheme, _, params = request.headers["Authorization"].partition(" ")
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        assert scheme == "vapid"
        assert fields["k"] == self.server_key  # the key the browser subscribed with
        raw = base64.urlsafe_b64decode(fields["k"] + "=" * (-len(fields["k"]) % 4))
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        claims = jwt.decode(fields["t"], public, algorithms=["ES256"], audience=self.base)
        assert claims["exp"] <= time.time() + 86400
        assert claims["sub"].startswith(("mailto:", "https:"))
        assert request.headers["Content-Encoding"] == "aes128gcm"
        assert int(request.headers["TTL"]) > 0
        body = await request.read()
        answers = self.answers.get(name)
        status = answers.pop(0) if answers else 201
        if status == 201:
            data = self.browsers[name].decrypt(body)
            self.received.append((name, dict(request.headers), data))
        return web.Response(status=status, headers={"Location": f"{self.base}/msg/1"})


@asynccontextmanager
async def push_service(server_key: str) -> AsyncIterator[PushService]:
    """A running ``PushService`` on 127.0.0.1."""
    service = PushService(server_key)
    async with http_peer({"/push/{name}": service.handle}) as base:
        service.base = base
        yield service
