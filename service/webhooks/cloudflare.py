"""``POST /webhooks/cloudflare``: RealtimeKit webhooks in, durable events out.

verify (RSA-SHA256 of the raw body, ``rtk-signature``) -> parse -> append -> 200 once durable.
As for Agora, nothing here calls a provider: a new event is published to the app's hooks, which
enqueue the room whose channel is the meeting.

Deduplication, on two keys. The log's ``dedup_key`` is the webhook's ``content_key`` (recording
id + status, meeting session, peer...: see :mod:`reconcilers.providers.cloudflare.webhooks`),
because ``rtk-uuid`` is unique per *delivery* and a retry may carry a new one
(``docs/providers/cloudflare.md#23-signatures``, and its open questions). The delivery id is
also remembered (in memory, bounded): a retry with the same ``rtk-uuid`` whose bytes changed is
acknowledged as the duplicate it is.

Answers: RealtimeKit retries only 5xx and network errors (§2.4), so duplicates and unknown
events are 200, an unusable body 4xx (nothing stored), and only a log that cannot append 503.
RealtimeKit's sample answers 400 to a missing signature header; we answer 401 to a missing or
bad one alike (both mean "not proven to be RealtimeKit", and neither will ever succeed).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import replace

import structlog
from starlette.requests import Request
from starlette.responses import Response

from reconcilers.events import NewEvent, Source
from reconcilers.providers.cloudflare.signature import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    load_public_key,
    verify,
)
from reconcilers.providers.cloudflare.webhooks import Webhook, WebhookError, parse_webhook
from service.context import AppContext
from service.http import BodyTooLarge, error_response, read_body
from service.webhooks.intake import append_timed, from_ms, stored

log = structlog.get_logger("webhooks.cloudflare")

SOURCE: Source = "cloudflare"
#: Delivery ids remembered for the same-id check (the content key is the durable dedup).
RECENT_DELIVERIES = 10_000


def to_event(hook: Webhook, body: dict[str, object]) -> NewEvent:
    """The log's record: the JSON as received, indexed by meeting (room) and recording."""
    return NewEvent(
        source=SOURCE,
        dedup_key=hook.content_key,
        type=hook.type,
        payload=dict(body),
        room=hook.meeting_id,
        session=hook.recording.id if hook.recording else None,
        occurred_at=from_ms(hook.occurred_ms),
    )


class CloudflareWebhook:
    """The handler; the public keys are read once from settings."""

    def __init__(self, ctx: AppContext) -> None:
        settings = ctx.settings
        self._ctx = ctx
        # Bound once: the module's lazy proxy binds anew on every call (2.4 µs vs 0.14).
        self._log = log.bind()
        self._keys = [load_public_key(pem) for pem in settings.cloudflare_webhook_public_key]
        self._verify = settings.cloudflare_webhook_verify
        self._max_body = settings.max_body_bytes
        self._recent: OrderedDict[str, str] = OrderedDict()

    def log_startup(self) -> None:
        if not self._verify:
            self._log.warning("cloudflare webhook signatures are NOT verified")
        elif not self._keys and self._ctx.settings.cloudflare_configured:
            self._log.error(
                "CLOUDFLARE_WEBHOOK_PUBLIC_KEY is not set: every Cloudflare webhook will be 401",
                env="CLOUDFLARE_WEBHOOK_PUBLIC_KEY",
            )

    async def handle(self, request: Request) -> Response:
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge:
            return self._reject(413, "too_large", f"body is larger than {self._max_body} bytes")
        if self._verify:
            signature = request.headers.get(SIGNATURE_HEADER)
            if not signature:
                return self._reject(401, "unauthorized", "missing signature", SIGNATURE_HEADER)
            if not self._keys:
                message = "no webhook public key is configured"
                return self._reject(401, "unauthorized", message, SIGNATURE_HEADER)
            if not verify(body, signature, self._keys):
                message = "signature does not match"
                return self._reject(401, "unauthorized", message, SIGNATURE_HEADER)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return self._reject(400, "bad_json", "body is not valid JSON")
        try:
            hook = parse_webhook(document)
        except WebhookError as exc:
            return self._reject(422, "invalid", exc.message, exc.field)
        delivery = request.headers.get(DELIVERY_HEADER)
        event = to_event(hook, document)
        if delivery and self._recent.get(delivery, event.dedup_key) != event.dedup_key:
            event = replace(event, dedup_key=self._recent[delivery])
        try:
            appended = await append_timed(self._ctx, replace(event, received_at=self._ctx.clock()))
        except Exception as exc:
            self._log.error("append failed", dedup_key=event.dedup_key, error=repr(exc))
            return self._reject(503, "unavailable", "the event log is unavailable; retry")
        if delivery:
            self._remember(delivery, event.dedup_key)
        outcome = "duplicate" if appended.duplicate else "accepted"
        if not appended.duplicate:
            self._ctx.publish(appended.event)
        self._ctx.metrics.webhook(SOURCE, outcome)
        self._log.debug(
            "webhook stored",
            seq=appended.event.seq,
            delivery=delivery,
            dedup_key=event.dedup_key,
            type=event.type,
            outcome=outcome,
        )
        return stored(appended)

    def _remember(self, delivery: str, dedup_key: str) -> None:
        self._recent[delivery] = dedup_key
        self._recent.move_to_end(delivery)
        while len(self._recent) > RECENT_DELIVERIES:
            self._recent.popitem(last=False)

    def _reject(self, status: int, code: str, message: str, field: str | None = None) -> Response:
        self._ctx.metrics.webhook(SOURCE, code)
        self._log.warning("webhook rejected", status=status, code=code, reason=message, field=field)
        return error_response(status, code, message, field)
