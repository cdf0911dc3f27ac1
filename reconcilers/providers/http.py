"""HTTP plumbing the provider clients share: the connection pool, path segments, lenient JSON
decoding and ``Retry-After``.

Only mechanism lives here. What a status or body means (retryable, conflict, not found...), and
how a transport error is reported, is each provider's own rule (its ``errors`` and ``client``).
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

#: Provider calls are gated by a rate limit (Agora: 10/s per App ID), so few run at once.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16)


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
    pool = httpx.AsyncClient(transport=transport or network_transport(), timeout=timeout)
    return pool, True


def network_transport() -> httpx.AsyncBaseTransport:
    """httpx's API over aiohttp's connection pool, unless the environment names a proxy.

    httpx's own pool (httpcore over anyio) cost 0.65 ms of CPU a call alone and 1.4 ms with 16
    calls in flight on this 2-core machine; over aiohttp the same calls cost 0.27-0.39 ms, and
    during a ramp those calls shared the event loop with everything else the service does. A
    proxy named in ``HTTP(S)_PROXY`` / ``ALL_PROXY`` (with ``NO_PROXY``) is honoured by httpx's
    own transport, as before; an aiohttp session would have to re-read them on every request.
    """
    if urllib.request.getproxies():
        return httpx.AsyncHTTPTransport(limits=LIMITS)
    ssl_context = httpx.create_ssl_context()  # certifi's roots, as httpx verifies

    def session() -> aiohttp.ClientSession:  # made on first use, inside the running loop
        connector = aiohttp.TCPConnector(
            limit=LIMITS.max_connections or 0,
            keepalive_timeout=LIMITS.keepalive_expiry or 0,
            ssl=ssl_context,
        )
        return aiohttp.ClientSession(connector=connector)

    return _AiohttpTransport(client=session)


class _AiohttpTransport(AiohttpTransport):
    """httpx-aiohttp reports every aiohttp connection error as ``ConnectTimeout``; a refused
    connection or a server that hung up is not a timeout, and the logs should not say so."""

    _NOT_TIMEOUTS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
        (aiohttp.ClientConnectorError, httpx.ConnectError),
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
        (aiohttp.ClientOSError, httpx.NetworkError),
    )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            for aiohttp_error, httpx_error in self._NOT_TIMEOUTS:
                if isinstance(cause, aiohttp_error):
                    raise httpx_error(str(cause), request=request) from cause
            raise


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
