"""Key material made in the tests (never committed): RSA and EC key pairs, a JWKS."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def _pem_pair(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """A private key and its public key, both as PEM text."""
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@cache
def rsa_pair() -> tuple[str, str]:
    return _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@cache
def ec_pair() -> tuple[str, str]:
    return _pem_pair(ec.generate_private_key(ec.SECP256R1()))


def jwks_for_ec(kid: str) -> dict[str, Any]:
    _, public = ec_pair()
    jwk = json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(
            jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).prepare_key(public)
        )
    )
    jwk.update({"kid": kid, "alg": "ES256", "use": "sig"})
    return {"keys": [jwk]}


def unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token."""
    return jwt.encode(claims, None, algorithm="none")
