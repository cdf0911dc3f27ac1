"""RealtimeKit's HTTP answers as :mod:`reconcilers.outcomes`, per endpoint.

The error body is not specified in ``docs/providers/cloudflare.md``: Cloudflare's v4 API answers
``{"success": false, "errors": [{"code", "message"}]}`` and Dyte answered
``{"success": false, "error": {"code", "message"}}``; both are read. Which status a second start
in a meeting that already records gets is not documented either (**UNVERIFIED**): a 409, or a
4xx whose message says "already", is read as :class:`AlreadyRecording`, and the adapter then
looks at the active recording.
"""

from __future__ import annotations

from typing import Any, Literal

from reconcilers.outcomes import (
    AlreadyRecording,
    Ended,
    Outcome,
    RateLimited,
    Rejected,
    Retryable,
)

Endpoint = Literal["start", "get", "list", "active", "stop", "pause", "resume"]
SESSION_CALLS: frozenset[str] = frozenset({"get", "stop", "pause", "resume"})


def error_of(body: dict[str, Any]) -> tuple[int | str | None, str]:
    """``(code, message)`` from either error shape, or the ``text`` of a non-JSON body."""
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else body.get("error")
    if isinstance(first, dict):
        code = first.get("code")
        message = first.get("message")
        return (
            code if isinstance(code, int | str) and not isinstance(code, bool) else None,
            message if isinstance(message, str) else "",
        )
    if isinstance(first, str):
        return None, first
    message = body.get("message") or body.get("text") or ""
    return None, message if isinstance(message, str) else ""


def classify(
    endpoint: Endpoint, http_status: int, body: dict[str, Any], retry_after: float | None = None
) -> Outcome | None:
    """The outcome of one answer, or ``None`` when it is a success to read."""
    code, message = error_of(body)
    if http_status == 429:
        return RateLimited(code, message, http_status, body, retry_after=retry_after)
    if 200 <= http_status < 300:
        if body.get("success") is False:
            return Retryable(code, message or "success: false", http_status, body)
        return None
    if http_status >= 500 or http_status in (408, 425):
        return Retryable(code, message, http_status, body)
    if endpoint == "start" and (http_status == 409 or "already" in message.lower()):
        return AlreadyRecording(code, message, http_status, body)
    if endpoint in SESSION_CALLS and http_status == 404:
        return Ended(code, message, http_status, body)
    if endpoint in ("stop", "pause", "resume") and http_status == 409:
        return Ended(code, message, http_status, body)  # not recording any more
    return Rejected(code, message, http_status, body)  # 400, 401, 403, 404 meeting, 422...
