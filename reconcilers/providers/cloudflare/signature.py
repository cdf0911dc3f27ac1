"""RealtimeKit webhook signatures (``docs/providers/cloudflare.md#23-signatures``): RSA-SHA256 over
the raw body.

The ``rtk-signature`` header carries a base64 RSASSA-PKCS1-v1_5 / SHA-256 signature of the
request body bytes exactly as received (never re-serialised JSON), checked against the public
key RealtimeKit publishes at ``/.well-known/webhooks.json``; here it comes from configuration,
as a PEM. There is no timestamp, so replays are stopped by deduplication, not here.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNATURE_HEADER = "rtk-signature"
DELIVERY_HEADER = "rtk-uuid"
WEBHOOK_ID_HEADER = "rtk-webhook-id"


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """Parse a PEM public key; ``ValueError`` if it is not an RSA public key."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data.strip() + b"\n")
    except Exception:  # ValueError, UnsupportedAlgorithm...: all mean "not a usable key"
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def sign(body: bytes, private_key: rsa.RSAPrivateKey) -> str:
    """The header value RealtimeKit would send (used by the emulator and tests)."""
    raw = private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def verify(body: bytes, signature: str, keys: list[rsa.RSAPublicKey]) -> bool:
    """Whether ``signature`` (base64) signs ``body`` under any of ``keys`` (rotation)."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    for key in keys:
        try:
            key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return True
    return False
