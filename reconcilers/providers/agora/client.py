"""The Agora Cloud Recording REST client: six calls, one connection pool, outcomes as values.

Each call returns a :class:`Reply` (status and decoded body) or an :mod:`~reconcilers.outcomes`
failure; nothing raises for a provider or network error. The client never retries: the engine's
workqueue owns backoff, and ``before_request`` lets its global token bucket gate every HTTP call
(Agora allows 10 QPS per App ID across the whole API). Bodies hold storage keys and tokens, so
neither bodies nor headers are ever logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconcilers.outcomes import Outcome, Retryable
from reconcilers.providers.agora.errors import Endpoint, classify
from reconcilers.providers.http import (
    connection_pool,
    decode_json,
    default_timeout,
    elapsed_ms,
    retry_after,
    segment,
)

DEFAULT_BASE_URL = "https://api.sd-rtn.com"
#: A synchronous stop waits for uploads, which Agora expects within 20 s.
STOP_TIMEOUT_FLOOR = 30.0
#: Older docs require exactly this content type (a wrong one was error 8); current ones accept it.
CONTENT_TYPE = "application/json;charset=utf-8"

_log = logging.getLogger(__name__)

JSON = dict[str, Any]
BeforeRequest = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Reply:
    """A successful response: its HTTP status (Agora uses 200, 201 and 206) and JSON body."""

    status: int
    body: JSON


@dataclass(frozen=True)
class AgoraConfig:
    """Credentials and endpoint. The secrets stay out of ``repr`` (and so out of logs)."""

    app_id: str
    customer_key: str = field(repr=False)
    customer_secret: str = field(repr=False)
    app_certificate: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0


class AgoraClient:
    """Async client for ``acquire``, ``start``, ``query``, ``update``, ``updateLayout``, ``stop``.

    Pass ``http`` to share a client (it is then not closed here) or ``transport`` to mount an
    emulator (``httpx.ASGITransport``) or a fake (``httpx.MockTransport``).
    """

    def __init__(
        self,
        config: AgoraConfig,
        *,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        before_request: BeforeRequest | None = None,
    ) -> None:
        self._timeout = default_timeout(config.timeout)
        self._http, self._owns_http = connection_pool(http, transport, self._timeout)
        self.config = config
        self._before_request = before_request
        self._auth = httpx.BasicAuth(config.customer_key, config.customer_secret)
        base = config.base_url.rstrip("/")
        self._root = f"{base}/v1/apps/{segment(config.app_id)}/cloud_recording"
        self._channel_users = f"{base}/dev/v1/channel/user/{segment(config.app_id)}/"

    async def acquire(self, cname: str, uid: str, client_request: JSON) -> Reply | Outcome:
        return await self._call("acquire", "POST", "/acquire", _body(cname, uid, client_request))

    async def start(
        self, resource_id: str, mode: str, cname: str, uid: str, client_request: JSON
    ) -> Reply | Outcome:
        path = f"/resourceid/{segment(resource_id)}/mode/{segment(mode)}/start"
        return await self._call("start", "POST", path, _body(cname, uid, client_request))

    async def query(self, resource_id: str, sid: str, mode: str) -> Reply | Outcome:
        return await self._call("query", "GET", self._session(resource_id, sid, mode, "query"))

    async def update(
        self, resource_id: str, sid: str, mode: str, cname: str, uid: str, client_request: JSON
    ) -> Reply | Outcome:
        path = self._session(resource_id, sid, mode, "update")
        return await self._call("update", "POST", path, _body(cname, uid, client_request))

    async def update_layout(
        self, resource_id: str, sid: str, cname: str, uid: str, client_request: JSON
    ) -> Reply | Outcome:
        """Mix mode only; each call replaces the whole layout."""
        path = self._session(resource_id, sid, "mix", "updateLayout")
        return await self._call("updateLayout", "POST", path, _body(cname, uid, client_request))

    async def stop(
        self,
        resource_id: str,
        sid: str,
        mode: str,
        cname: str,
        uid: str,
        async_stop: bool = False,
    ) -> Reply | Outcome:
        """``async_stop`` False waits for the uploads and lists the files (a longer timeout)."""
        path = self._session(resource_id, sid, mode, "stop")
        body = _body(cname, uid, {"async_stop": async_stop})
        wait = None if async_stop else self._stop_timeout()
        return await self._call("stop", "POST", path, body, wait)

    async def channel_users(self, cname: str) -> Reply | Outcome:
        """RTC Channel Management's user list (``GET /dev/v1/channel/user/{appid}/{cname}``):
        Agora's advice for confirming an empty channel, since NCS may lose a join."""
        return await self._call("channelUsers", "GET", segment(cname), url=self._channel_users)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- plumbing --------------------------------------------------------------------------

    def _session(self, resource_id: str, sid: str, mode: str, verb: str) -> str:
        return f"/resourceid/{segment(resource_id)}/sid/{segment(sid)}/mode/{segment(mode)}/{verb}"

    def _stop_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(max(self.config.timeout, STOP_TIMEOUT_FLOOR), connect=5.0)

    async def _call(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        http_timeout: httpx.Timeout | None = None,
        url: str | None = None,
    ) -> Reply | Outcome:
        if self._before_request is not None:
            await self._before_request()
        started = time.monotonic()
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = CONTENT_TYPE
        try:
            response = await self._http.request(
                method,
                (url or self._root) + path,
                content=content,
                headers=headers,
                auth=self._auth,
                timeout=http_timeout or self._timeout,
            )
        except httpx.TimeoutException as exc:
            return self._transport_failure(endpoint, "timeout", exc, started)
        except httpx.HTTPError as exc:
            return self._transport_failure(endpoint, "transport", exc, started)
        data = decode_json(response)
        outcome = classify(endpoint, response.status_code, data, retry_after(response))
        _log.log(
            logging.DEBUG if outcome is None else logging.INFO,
            "agora %s -> %s%s (%.0f ms)",
            endpoint,
            response.status_code,
            "" if outcome is None else f" {type(outcome).__name__} code={outcome.code}",
            elapsed_ms(started),
        )
        return Reply(response.status_code, data) if outcome is None else outcome

    @staticmethod
    def _transport_failure(
        endpoint: str, code: str, exc: httpx.HTTPError, started: float
    ) -> Retryable:
        """The request may or may not have reached Agora: safe to repeat (start then answers
        7 or 53, and the task is adopted)."""
        message = f"{endpoint}: {type(exc).__name__}"
        _log.warning("agora %s failed: %s (%.0f ms)", endpoint, message, elapsed_ms(started))
        return Retryable(code=code, message=message)


def _body(cname: str, uid: str, client_request: JSON) -> JSON:
    return {"cname": cname, "uid": uid, "clientRequest": client_request}
