"""TLS: https and wss served directly with --certfile/--keyfile."""

from __future__ import annotations

import datetime
import json
import ssl
from pathlib import Path

import aiohttp
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import API_KEY, TIMEOUT, ServerFactory, recv, token


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made for this test, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_wss_and_https(make_server: ServerFactory, tmp_path: Path) -> None:
    """A client trusting the test certificate connects with wss://; the API answers https."""
    cert, key = self_signed(tmp_path)
    h = await make_server(certfile=str(cert), keyfile=str(key))
    assert h.server.url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    url = f"wss://127.0.0.1:{h.server.port}/ws?token={token('tess')}"
    async with websockets.connect(url, ssl=trust, open_timeout=TIMEOUT) as ws:
        assert (await recv(ws))["data"]["userId"] == "tess"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"https://127.0.0.1:{h.server.port}/api/users/tess/send",
                ssl=trust,
                headers={"Authorization": f"Bearer {API_KEY}"},
                data=json.dumps({"type": "secure", "data": {}}),
            ) as r,
        ):
            assert r.status == 200
        assert (await recv(ws))["type"] == "secure"
    # A client that does not trust the certificate is refused by TLS itself.
    try:
        async with websockets.connect(url, ssl=ssl.create_default_context(), open_timeout=TIMEOUT):
            raise AssertionError("connected without trusting the certificate")
    except ssl.SSLCertVerificationError:
        pass
