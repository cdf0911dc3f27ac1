"""HTTP plumbing the provider clients share: the connection pool, path segments, lenient JSON
decoding and ``Retry-After``.

Only mechanism lives here. What a status or body means (retryable, conflict, not found...), and
how a transport error is reported, is each provider's own rule (its ``errors`` and ``client``).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx


def default_timeout(seconds: float) -> httpx.Timeout:
    """``seconds`` per request, connecting within at most 5 s."""
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def connection_pool(
    http: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
    timeout: httpx.Timeout,
) -> tuple[httpx.AsyncClient, bool]:
    """The client to use and whether it is ours to close: ``http`` when shared, else a new pool
    (over ``transport`` when given: an emulator's ``ASGITransport`` or a ``MockTransport``)."""
    if http is not None and transport is not None:
        raise ValueError("pass either http or transport, not both")
    if http is not None:
        return http, False
    pool = httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
    )
    return pool, True


def segment(value: str) -> str:
    """``value`` quoted as one URL path segment (a ``/`` in an id cannot change the route)."""
    return quote(value, safe="-_.~")


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.monotonic()`` reading), for log lines."""
    return (time.monotonic() - started) * 1000


def decode_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object, or the start of the text under ``text`` (gateways answer in plain text);
    any other JSON value under ``value``."""
    try:
        data = response.json()
    except ValueError:
        return {"text": response.text[:500]} if response.text else {}
    return data if isinstance(data, dict) else {"value": data}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (never negative), ``None`` when absent or not a number."""
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
