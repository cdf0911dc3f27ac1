"""NCS request signing: the two headers Agora puts on every notification
(``docs/providers/agora.md#9-signatures-retries-allowlist``).

Both digests are lowercase hex HMACs of the raw body bytes, keyed with the NCS secret (not the
REST customer secret), so a receiver can verify either header before parsing the JSON.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Agora-Signature"
SIGNATURE_V2_HEADER = "Agora-Signature-V2"


def sign_sha1(body: bytes, secret: str) -> str:
    """``Agora-Signature``: HMAC-SHA1 of the raw body, lowercase hex."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def sign_sha256(body: bytes, secret: str) -> str:
    """``Agora-Signature-V2``: HMAC-SHA256 of the raw body, lowercase hex."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_headers(body: bytes, secret: str) -> dict[str, str]:
    """Every header of a notification request that depends on the body."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign_sha1(body, secret),
        SIGNATURE_V2_HEADER: sign_sha256(body, secret),
    }
