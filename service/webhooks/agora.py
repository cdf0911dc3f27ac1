"""``POST /webhooks/agora``: Agora notifications (NCS) in, durable events out.

verify (HMAC of the raw body) -> parse the envelope -> append -> 200 once the append is durable.
Nothing here calls a provider: a new event is only *published* to the app's hooks (the
reconciler enqueues the room), which never delays the answer. Agora resends anything not
answered 200 within 10 s, and a resend carries the same ``noticeId``, the dedup key, so it is
acknowledged again without being stored twice. Unknown event types are stored as received:
rejecting them would only make Agora retry them.

Console health checks (channel ``test_webhook``, uid ``12121212``,
``docs/providers/agora.md#9-signatures-retries-allowlist``) are answered 200 and stored as type
``agora.healthcheck`` with no room and no session, so that no projection turns them into a room or a
session while the log still shows the check arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from reconcilers.events import NewEvent, Source
from reconcilers.providers.agora.notifications import (
    Notification,
    NotificationError,
    parse_notification,
)
from service.context import AppContext
from service.http import BodyTooLarge, error_response, read_body
from service.webhooks.intake import append_timed, from_ms, stored

log = structlog.get_logger("webhooks.agora")

SOURCE: Source = "agora"
HEADER_SHA256 = "agora-signature-v2"
HEADER_SHA1 = "agora-signature"
HEALTHCHECK_CHANNEL = "test_webhook"
HEALTHCHECK_UID = "12121212"
HEALTHCHECK_TYPE = "agora.healthcheck"


def sign(body: bytes, secret: bytes, algorithm: str = "sha256") -> str:
    """Lowercase hex HMAC of the raw body, as Agora computes it."""
    return hmac.new(secret, body, algorithm).hexdigest()


def signature_problem(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[bytes]
) -> tuple[str, str] | None:
    """``None`` when the body is signed by any secret, else ``(header, reason)``.

    ``Agora-Signature-V2`` (SHA-256) decides when present; ``Agora-Signature`` (SHA-1) only when
    it is absent. Every secret is tried (rotation, one per product) in constant time.
    """
    if HEADER_SHA256 in headers:
        header, algorithm = HEADER_SHA256, "sha256"
    elif HEADER_SHA1 in headers:
        header, algorithm = HEADER_SHA1, "sha1"
    else:
        return "Agora-Signature-V2", "missing signature header"
    if not secrets:
        return header, "no notification secret is configured"
    given = headers[header].strip().lower().encode("latin-1")
    ok = False
    for secret in secrets:  # no early exit: the time taken does not tell which secret matched
        ok |= hmac.compare_digest(sign(body, secret, algorithm).encode("ascii"), given)
    return None if ok else (header, "signature does not match")


def is_healthcheck(n: Notification) -> bool:
    return n.channel == HEALTHCHECK_CHANNEL and n.uid in (None, HEALTHCHECK_UID)


def to_event(
    n: Notification,
    body: dict[str, Any],
    received_at: datetime | None = None,
    raw: str | None = None,
) -> NewEvent:
    """The log's record of a notification: the raw JSON object (``raw``: its text as received),
    indexed by channel and sid."""
    if is_healthcheck(n):
        return NewEvent(
            SOURCE, n.notice_id, HEALTHCHECK_TYPE, body, received_at=received_at, raw=raw
        )
    return NewEvent(
        source=SOURCE,
        dedup_key=n.notice_id,
        type=n.type,
        payload=body,
        room=n.channel,
        session=n.sid,
        occurred_at=from_ms(n.occurred_ms),
        received_at=received_at,
        raw=raw,
    )


QUARANTINED_TYPE = "agora.quarantined"
_SUSPECT = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")


def unstorable(value: Any, where: str = "") -> str | None:
    """The first place in a decoded JSON document holding what cannot be stored or used as a
    key: a lone surrogate (``"\\ud800"`` decodes to one; UTF-8 cannot encode it) or NUL.
    ``None`` when there is none."""
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
            return where or "body"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unstorable(key, where) or unstorable(item, f"{where}.{key}" if where else key)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if found := unstorable(item, f"{where}[{i}]"):
                return found
    return None


def quarantined(body: bytes, field: str, received_at: datetime | None) -> NewEvent:
    """A notification that cannot be stored as itself, kept as its raw text (JSON escapes
    intact, so it is ASCII) under a key of its bytes: a resend finds it. No room, no session:
    no projection folds it; people read it in the log."""
    digest = hashlib.sha256(body).hexdigest()
    text = body.decode("utf-8", "backslashreplace").replace("\x00", "\\u0000")
    return NewEvent(
        source=SOURCE,
        dedup_key=f"quarantine|{digest}",
        type=QUARANTINED_TYPE,
        payload={"field": field, "raw": text},
        received_at=received_at,
    )


def _text(body: bytes) -> str | None:
    """The body as text to store verbatim, when it is UTF-8 (JSON may also come as UTF-16/32;
    a UTF-8 byte-order mark, which ``json.loads`` of text refuses, is dropped)."""
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None


class AgoraWebhook:
    """The handler. Secrets are read once from settings; the store comes from the context."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        # Bound once: the module's lazy proxy binds anew on every call (2.4 µs vs 0.14).
        self._log = log.bind()
        self._secrets = [s.get_secret_value().encode() for s in ctx.settings.agora_ncs_secret]
        self._verify = ctx.settings.agora_ncs_verify
        self._max_body = ctx.settings.max_body_bytes

    def log_startup(self) -> None:
        """Say loudly, once, when callbacks are unverified or cannot be verified."""
        if not self._verify:
            self._log.warning(
                "agora notification signatures are NOT verified (AGORA_NCS_VERIFY=false)"
            )
        elif not self._secrets:
            self._log.error(
                "AGORA_NCS_SECRET is not set: every Agora notification will be answered 401",
                env="AGORA_NCS_SECRET",
            )

    async def handle(self, request: Request) -> Response:
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge:
            message = f"body is larger than {self._max_body} bytes"
            return self._reject(413, "too_large", message)
        if self._verify:
            problem = signature_problem(body, request.headers, self._secrets)
            if problem is not None:
                return self._reject(401, "unauthorized", problem[1], problem[0])
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return self._reject(400, "bad_json", "body is not valid JSON")
        # Only a JSON escape can carry a surrogate or a NUL: a byte search first, cheap.
        if _SUSPECT.search(body) and (field := unstorable(document)) is not None:
            return await self._quarantine(body, field)
        try:
            notification = parse_notification(document)
        except NotificationError as exc:
            return self._reject(422, "invalid", exc.message, exc.field)
        event = to_event(notification, document, self._ctx.clock(), _text(body))
        try:
            appended = await append_timed(self._ctx, event)
        except Exception as exc:
            self._log.error("append failed", notice_id=event.dedup_key, error=repr(exc))
            return self._unavailable()
        if appended.duplicate:
            outcome = "duplicate"
        else:
            outcome = "healthcheck" if event.type == HEALTHCHECK_TYPE else "accepted"
            self._ctx.publish(appended.event)
        self._ctx.metrics.webhook(SOURCE, outcome)
        self._log.debug(
            "notification stored",
            seq=appended.event.seq,
            notice_id=event.dedup_key,
            type=event.type,
            outcome=outcome,
        )
        return stored(appended)

    async def _quarantine(self, body: bytes, field: str) -> Response:
        """A signed notification with a lone surrogate or a NUL (issue 20: it failed at bind,
        was answered 503, and Agora resent it for ever): kept as raw text, answered 200 so
        that Agora stops resending it, counted as ``quarantined``."""
        try:
            appended = await append_timed(self._ctx, quarantined(body, field, self._ctx.clock()))
        except Exception as exc:
            self._log.error("append failed", error=repr(exc))
            return self._unavailable()
        self._ctx.metrics.webhook(SOURCE, "quarantined")
        self._log.warning("notification quarantined: it cannot be stored", field=field)
        return stored(appended)

    def _unavailable(self) -> Response:
        response = self._reject(503, "unavailable", "the event log is unavailable; retry")
        response.headers["Retry-After"] = "1"
        return response

    def _reject(self, status: int, code: str, message: str, field: str | None = None) -> Response:
        self._ctx.metrics.webhook(SOURCE, code)
        self._log.warning(
            "notification rejected", status=status, code=code, reason=message, field=field
        )
        return error_response(status, code, message, field)
