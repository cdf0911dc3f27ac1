"""The RealtimeKit recordings REST client (``docs/providers/cloudflare.md`` §1.1-§1.2): one
connection pool, outcomes as values.

Calls: start, get one, list a meeting's, the active one, and stop / pause / resume (one
``PUT`` with an ``action``). Each returns a :class:`Reply` (status and the envelope's ``data``)
or an :mod:`~reconcilers.outcomes` failure; nothing raises for a provider or network error and
nothing is retried here (the workqueue owns backoff; ``before_request`` lets a token bucket
gate every call). The API token is a secret: it never appears in a ``repr`` or a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from reconcilers.outcomes import Outcome, Retryable
from reconcilers.providers.cloudflare.errors import Endpoint, classify
from reconcilers.providers.cloudflare.recordings import envelope_data
from reconcilers.providers.http import (
    connection_pool,
    decode_json,
    default_timeout,
    elapsed_ms,
    retry_after,
    segment,
)

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"

_log = logging.getLogger(__name__)

JSON = dict[str, Any]
BeforeRequest = Callable[[], Awaitable[None]]
Action = Literal["stop", "pause", "resume"]


@dataclass(frozen=True)
class Reply:
    """A success: its HTTP status, the whole body, and the envelope's ``data``."""

    status: int
    body: JSON
    data: Any


@dataclass(frozen=True)
class CloudflareConfig:
    """Account, app and token; the token stays out of ``repr`` (and so out of logs)."""

    account_id: str
    app_id: str
    api_token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0


class CloudflareClient:
    """Async client for ``/accounts/{account}/realtime/kit/{app}/recordings``.

    Pass ``http`` to share a client (then not closed here) or ``transport`` to mount the
    emulator (``httpx.ASGITransport``).
    """

    def __init__(
        self,
        config: CloudflareConfig,
        *,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        before_request: BeforeRequest | None = None,
    ) -> None:
        self._http, self._owns_http = connection_pool(
            http, transport, default_timeout(config.timeout)
        )
        self.config = config
        self._before_request = before_request
        base = config.base_url.rstrip("/")
        self._root = (
            f"{base}/accounts/{segment(config.account_id)}/realtime/kit/{segment(config.app_id)}"
        )

    async def start(self, body: JSON) -> Reply | Outcome:
        """``POST /recordings``: ``data`` is the new recording."""
        return await self._call("start", "POST", "/recordings", json=body)

    async def get(self, recording_id: str) -> Reply | Outcome:
        return await self._call("get", "GET", f"/recordings/{segment(recording_id)}")

    async def list(
        self, meeting_id: str, *, page_no: int = 1, per_page: int = 50, status: str | None = None
    ) -> Reply | Outcome:
        """``GET /recordings?meeting_id=``: ``data`` is a list (``paging`` in the body)."""
        params: dict[str, Any] = {"meeting_id": meeting_id, "page_no": page_no}
        params["per_page"] = per_page
        if status:
            params["status"] = status
        return await self._call("list", "GET", "/recordings", params=params)

    async def active(self, meeting_id: str) -> Reply | Outcome | None:
        """The meeting's active recording; ``None`` when it has none (a 404, §1.2)."""
        result = await self._call(
            "active", "GET", f"/recordings/active-recording/{segment(meeting_id)}"
        )
        if not isinstance(result, Reply) and result.http_status == 404:
            return None
        return result

    async def action(self, recording_id: str, action: Action) -> Reply | Outcome:
        """``PUT /recordings/{id}`` with ``{"action": "stop" | "pause" | "resume"}``."""
        path = f"/recordings/{segment(recording_id)}"
        return await self._call(action, "PUT", path, json={"action": action})

    async def stop(self, recording_id: str) -> Reply | Outcome:
        return await self.action(recording_id, "stop")

    async def pause(self, recording_id: str) -> Reply | Outcome:
        return await self.action(recording_id, "pause")

    async def resume(self, recording_id: str) -> Reply | Outcome:
        return await self.action(recording_id, "resume")

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- plumbing --------------------------------------------------------------------------

    async def _call(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        *,
        json: JSON | None = None,
        params: dict[str, Any] | None = None,
    ) -> Reply | Outcome:
        if self._before_request is not None:
            await self._before_request()
        started = time.monotonic()
        try:
            response = await self._http.request(
                method,
                self._root + path,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {self.config.api_token}"},
            )
        except httpx.HTTPError as exc:
            message = f"{endpoint}: {type(exc).__name__}"
            _log.warning(
                "cloudflare %s failed: %s (%.0f ms)", endpoint, message, elapsed_ms(started)
            )
            return Retryable(code="transport", message=message)
        body = decode_json(response)
        outcome = classify(endpoint, response.status_code, body, retry_after(response))
        _log.debug(
            "cloudflare %s -> %s %s (%.0f ms)",
            endpoint,
            response.status_code,
            "ok" if outcome is None else type(outcome).__name__,
            elapsed_ms(started),
        )
        if outcome is not None:
            return outcome
        return Reply(response.status_code, body, envelope_data(body))
