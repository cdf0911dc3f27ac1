"""Agora's HTTP statuses and error codes (``docs/providers/agora.md`` §1-§6) as
:mod:`reconcilers.outcomes`.

The same code means different things on different endpoints (a 404 on query is a finished task,
on acquire it is not; 433 on start wants a new resource, on stop it means the REST window is
over), so :func:`classify` decides per endpoint. Codes decide before HTTP statuses: Agora pairs
them loosely (7 comes with 201, 65 and 435 with 206, 62 with 500 or 504).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from reconcilers.outcomes import (
    AlreadyRecording,
    Ended,
    Failure,
    Outcome,
    RateLimited,
    Rejected,
    Retryable,
    WrongResource,
)

Endpoint = Literal["acquire", "start", "query", "update", "updateLayout", "stop", "channelUsers"]
SESSION_CALLS: frozenset[str] = frozenset({"query", "update", "updateLayout", "stop"})


@dataclass(frozen=True)
class ResourceExpired(Retryable):
    """Start cannot succeed with this resource id: expired (433), unreadable (1001), no worker
    allocated (502), or a start answered without a sid (15). Acquire a new one, then start."""


def needs_reacquire(outcome: Failure) -> bool:
    """Whether retrying needs a new ``acquire`` first (the caller's only question)."""
    return isinstance(outcome, ResourceExpired)


_Kind = (
    type[Retryable] | type[RateLimited] | type[AlreadyRecording] | type[Ended] | type[Rejected]
)

#: What a code means wherever it appears (``docs/providers/agora.md#6-error-codes``).
_BY_CODE: dict[int, _Kind] = {
    2: Rejected,  # invalid parameter
    7: AlreadyRecording,  # start repeated with the same resource: the task exists
    8: Rejected,  # header, URL, method or JSON error
    15: ResourceExpired,  # undocumented; start with an empty sid
    49: Ended,  # task already exiting (repeated stop, idle, kicked)
    50: Retryable,  # upload timed out (only a success on stop: see classify)
    52: ResourceExpired,  # the service did not start in time: restart with a new acquire
    53: AlreadyRecording,  # task conflict: same cname + uid already running
    62: Retryable,  # request timeout
    65: Retryable,  # request not completed (network jitter)
    109: Rejected,  # token expired
    110: Rejected,  # token invalid
    400: Rejected,  # invalid_appid
    401: Rejected,  # invalid_channel_name
    404: Ended,  # failed to find worker
    405: Rejected,  # no_active_status: the account is disabled
    406: RateLimited,  # vendor_over_load: concurrency quota
    432: Rejected,  # appid / cname / uid do not match the resource
    433: Ended,  # resource expired: after resourceExpiredHour no session call works
    435: Ended,  # stop: no recorded data
    500: Retryable,  # internal_error
    501: Retryable,  # no_worker_manager_available / service exiting
    502: Retryable,  # failed to allocate worker
    504: Retryable,  # allocate_timeout
    1001: Rejected,  # resource id unreadable
    1003: WrongResource,  # the sid does not match the resource: try the session's others
    1013: Rejected,  # invalid channel name
    1028: Rejected,  # invalid updateLayout body
}

#: Where an endpoint reads a code differently.
_BY_ENDPOINT: dict[str, dict[int, _Kind]] = {
    "acquire": {404: Retryable, 433: Retryable},
    "start": dict.fromkeys((404, 433, 502, 1001), ResourceExpired),
    "stop": {501: Ended},  # "recording service is exiting": what stop wanted
}

_NOT_FOUND = "failed to find worker"


def code_of(body: dict[str, Any]) -> int | str | None:
    """The body's ``code`` as an int when it is one (Agora sometimes sends it as a string)."""
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        return int(code)
    return code if isinstance(code, int | str) else None


def message_of(body: dict[str, Any]) -> str:
    """``reason``, ``message``, the older ``serverResponse.payload.message`` (404s), or the
    ``text`` of a body that was not JSON."""
    for key in ("reason", "message", "text"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    server = body.get("serverResponse")
    payload = server.get("payload") if isinstance(server, dict) else None
    message = payload.get("message") if isinstance(payload, dict) else None
    return message if isinstance(message, str) else ""


def classify(
    endpoint: Endpoint,
    http_status: int,
    body: dict[str, Any],
    retry_after: float | None = None,
) -> Outcome | None:
    """The outcome of one response, or ``None`` when it is a success to parse."""
    code = code_of(body)
    message = message_of(body)

    def make(kind: _Kind, failure_code: int | str | None = code) -> Outcome:
        if kind is RateLimited:
            return RateLimited(failure_code, message, http_status, body, retry_after=retry_after)
        return kind(failure_code, message, http_status, body)

    if http_status == 429:
        return make(RateLimited)
    if code in (None, 0) and 200 <= http_status < 300:
        return None
    if isinstance(code, int) and code != 0:
        if endpoint == "stop" and code == 50:
            return None  # stopped; the upload outlived the synchronous wait (files come later)
        kind = _BY_ENDPOINT.get(endpoint, {}).get(code) or _BY_CODE.get(code)
        if kind is not None:
            return make(kind)
    return make(_by_status(endpoint, http_status, message), code)


def _by_status(endpoint: str, http_status: int, message: str) -> _Kind:
    """No known code: decide by the HTTP status (``docs/providers/agora.md#6-error-codes``
    "HTTP-level")."""
    if http_status == 404:
        # "failed to find worker" is a finished task; "no Route matched" is our URL: a bug.
        if endpoint in SESSION_CALLS and _NOT_FOUND in message.lower():
            return Ended
        return Rejected
    if http_status >= 500 or http_status in (408, 425) or 200 <= http_status < 300:
        return Retryable
    return Rejected  # 400 appid invalid, 401 credentials, 403, 405 method, ...
