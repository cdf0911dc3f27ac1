"""``POST /webhooks/storage``: S3, MinIO and R2 object notifications in, durable events out.

authenticate (shared secret) -> read JSON -> normalise every record -> append each -> 200.

- Auth: ``Authorization: Bearer <secret>`` (what MinIO sends for a one-word token), or the
  header verbatim for a two-word token (``Basic abc``), against ``STORAGE_WEBHOOK_SECRET``
  (comma-separated for rotation), in constant time. S3 itself delivers through SNS/SQS/
  EventBridge, so a small forwarder (or R2's consumer Worker) posts here with the secret.
  ``HEAD`` answers MinIO's liveness check with the same auth.
- Shapes (``docs/providers/storage.md`` §1, §2): ``{"Records": [...]}`` from S3 and MinIO (MinIO
  adds ``s3:`` to ``eventName`` and a top-level ``EventName``/``Key``; keys are form-encoded in
  both, so ``unquote_plus``); S3's ``s3:TestEvent`` is acknowledged and not stored; R2 bodies
  (``{"account", "action", "bucket", "object": {...}, "eventTime"}``) alone, as a list, or as
  a Queues batch ``{"messages": [{"body": ...}]}``.
- Every record is validated before any is stored, so a bad request stores nothing (4xx naming
  the field). Dedup keys: S3/MinIO ``bucket + key + sequencer + eventName``; R2 has no
  sequencer, so ``bucket + key + eTag + action + eventTime``. A resend is a 200, stored once.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconcilers.events import NewEvent, Source
from reconcilers.objects import CREATED, REMOVED
from service.context import AppContext
from service.http import BodyTooLarge, error_response, read_body

log = structlog.get_logger("webhooks.storage")

SOURCE: Source = "storage"
OTHER = "storage.object_event"
_R2_CREATED = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})
_R2_REMOVED = frozenset({"DeleteObject", "LifecycleDeletion"})


class StorageEventError(ValueError):
    """A notification we cannot read; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"{field}: {message}"


def _get(obj: Any, path: str, where: str, kind: type = str) -> Any:
    value = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, kind) or (kind is str and not value):
        raise StorageEventError(f"{where}.{path}", f"expected a non-empty {kind.__name__}")
    return value


def _size(obj: dict[str, Any], where: str) -> int | None:
    size = obj.get("size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise StorageEventError(f"{where}.size", "expected a non-negative integer")
    return size


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def s3_record(record: Any, where: str) -> NewEvent:
    """One S3 or MinIO record (``docs/providers/storage.md#2-s3-event-notifications``)."""
    if not isinstance(record, dict):
        raise StorageEventError(where, "expected an object")
    name = _get(record, "eventName", where).removeprefix("s3:")
    bucket = _get(record, "s3.bucket.name", where)
    raw_key = _get(record, "s3.object.key", where)
    obj = record["s3"]["object"]
    key = unquote_plus(raw_key)
    size = _size(obj, f"{where}.s3.object")
    sequencer = obj.get("sequencer") if isinstance(obj.get("sequencer"), str) else None
    event_time = record.get("eventTime")
    if name.startswith("ObjectCreated:"):
        type_ = CREATED
    elif name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        type_ = REMOVED
    else:
        type_ = OTHER
    fmt = "minio" if record.get("eventSource") == "minio:s3" else "s3"
    marker = sequencer or f"{event_time}|{obj.get('versionId') or ''}"
    return NewEvent(
        source=SOURCE,
        dedup_key=f"s3|{bucket}|{key}|{marker}|{name}",
        type=type_,
        payload={
            "format": fmt,
            "bucket": bucket,
            "key": key,
            "size": size,
            "etag": obj.get("eTag"),
            "sequencer": sequencer,
            "event_name": name,
            "event_time": event_time,
            "record": record,
        },
        occurred_at=_time(event_time),
    )


def r2_body(body: Any, where: str) -> NewEvent:
    """One R2 event notification message body
    (``docs/providers/storage.md#1-r2-event-notifications``)."""
    if not isinstance(body, dict):
        raise StorageEventError(where, "expected an object")
    action = _get(body, "action", where)
    bucket = _get(body, "bucket", where)
    key = _get(body, "object.key", where)  # R2 does not URL-encode keys
    obj = body["object"]
    size = _size(obj, f"{where}.object")
    event_time = _get(body, "eventTime", where)
    type_ = CREATED if action in _R2_CREATED else REMOVED if action in _R2_REMOVED else OTHER
    etag = obj.get("eTag") if isinstance(obj.get("eTag"), str) else ""
    return NewEvent(
        source=SOURCE,
        dedup_key=f"r2|{bucket}|{key}|{etag}|{action}|{event_time}",
        type=type_,
        payload={
            "format": "r2",
            "bucket": bucket,
            "key": key,
            "size": size,
            "etag": etag or None,
            "sequencer": None,
            "event_name": action,
            "event_time": event_time,
            "record": body,
        },
        occurred_at=_time(event_time),
    )


def parse(document: Any) -> list[NewEvent]:
    """Every event in a notification body; ``[]`` for S3's test message."""
    if isinstance(document, dict) and "Records" in document:
        records = document["Records"]
        if not isinstance(records, list):
            raise StorageEventError("Records", "expected a list")
        return [s3_record(r, f"Records[{i}]") for i, r in enumerate(records)]
    if isinstance(document, dict) and document.get("Event") == "s3:TestEvent":
        return []
    if isinstance(document, dict) and "messages" in document:
        messages = document["messages"]
        if not isinstance(messages, list):
            raise StorageEventError("messages", "expected a list")
        return [
            r2_body(m.get("body") if isinstance(m, dict) else None, f"messages[{i}].body")
            for i, m in enumerate(messages)
        ]
    if isinstance(document, list):
        return [r2_body(b, f"[{i}]") for i, b in enumerate(document)]
    if isinstance(document, dict) and "action" in document:
        return [r2_body(document, "body")]
    raise StorageEventError("body", "not an S3, MinIO or R2 event notification")


def authorized(header: str, secrets: list[bytes]) -> bool:
    """Bearer token or verbatim header against every secret, with no early exit."""
    scheme, _, token = header.partition(" ")
    candidates = [header.strip().encode()]
    if scheme.lower() == "bearer":
        candidates.append(token.strip().encode())
    ok = False
    for secret in secrets:
        for given in candidates:
            ok |= hmac.compare_digest(secret, given)
    return ok and bool(header)


class StorageWebhook:
    """The handler; secrets come from settings, the store from the context."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._secrets = [s.get_secret_value().encode() for s in ctx.settings.storage_webhook_secret]
        self._max_body = ctx.settings.max_body_bytes

    async def handle(self, request: Request) -> Response:
        if not authorized(request.headers.get("authorization", ""), self._secrets):
            reason = "missing or invalid secret" if self._secrets else "no secret is configured"
            return self._reject(401, "unauthorized", reason, "Authorization")
        if request.method == "HEAD":
            return Response(status_code=200)
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge:
            return self._reject(413, "too_large", f"body is larger than {self._max_body} bytes")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return self._reject(400, "bad_json", "body is not valid JSON", "body")
        try:
            events = parse(document)
        except StorageEventError as exc:
            return self._reject(422, "invalid", exc.message, exc.field)
        stored = duplicates = 0
        for event in events:
            try:
                appended = await self._ctx.store.append(
                    replace(event, received_at=self._ctx.clock())
                )
            except Exception as exc:
                log.error("append failed", dedup_key=event.dedup_key, error=repr(exc))
                return self._reject(503, "unavailable", "the event log is unavailable; retry")
            if appended.duplicate:
                duplicates += 1
            else:
                stored += 1
                self._ctx.publish(appended.event)
        self._ctx.metrics.webhook(SOURCE, "accepted" if events else "test")
        log.debug("storage events stored", stored=stored, duplicates=duplicates)
        return JSONResponse({"ok": True, "stored": stored, "duplicates": duplicates})

    def _reject(self, status: int, code: str, message: str, field: str | None = None) -> Response:
        self._ctx.metrics.webhook(SOURCE, code)
        log.warning("storage notification rejected", status=status, code=code, field=field)
        return error_response(status, code, message, field)
