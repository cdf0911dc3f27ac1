"""``AgoraProvider``: the :class:`~reconcilers.providers.base.Provider` port over Agora Cloud
Recording.

It composes the pieces of this package: options checked by :mod:`.models`, bodies from
:mod:`.bodies` (which also says which options apply live, and how), ``storageConfig`` from
:mod:`.storage`, the recorder token from :mod:`.token`, the HTTP calls and error mapping of
:mod:`.client` and :mod:`.errors`, and replies read by :mod:`.responses`. A failure is returned,
never raised; a request that cannot be built is :class:`Rejected` before any call is spent.
A start answered without a sid, like codes 433, 1001 and 502, comes back as
:class:`~.errors.ResourceExpired`: a ``Retryable`` that needs a new ``reserve`` first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from reconcilers.outcomes import Outcome, Rejected, Retryable
from reconcilers.providers.agora._values import as_str
from reconcilers.providers.agora.bodies import acquire_request, start_request, update_requests
from reconcilers.providers.agora.client import AgoraClient, AgoraConfig, BeforeRequest, Reply
from reconcilers.providers.agora.errors import ResourceExpired, code_of, message_of
from reconcilers.providers.agora.models import validate_options
from reconcilers.providers.agora.responses import parse_channel_users, parse_query, parse_stop
from reconcilers.providers.agora.storage import storage_config
from reconcilers.providers.agora.token import recorder_token, token_lifetime
from reconcilers.providers.base import (
    ChannelUsers,
    Mode,
    Reservation,
    SessionHandle,
    SessionStatus,
    StartRequest,
    StopResult,
)

#: An acquired resource id is valid for five minutes (``docs/providers/agora.md#1-acquire``).
RESOURCE_TTL_MS = 5 * 60 * 1000


class AgoraProvider:
    """Agora Cloud Recording behind the provider port (``name = "agora"``)."""

    name = "agora"

    def __init__(
        self,
        config: AgoraConfig,
        *,
        client: AgoraClient | None = None,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        before_request: BeforeRequest | None = None,
        async_stop: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.client = client or AgoraClient(
            config, http=http, transport=transport, before_request=before_request
        )
        self.async_stop = async_stop
        self._clock = clock

    def validate_options(self, mode: Mode, options: dict[str, Any]) -> dict[str, Any]:
        return validate_options(mode, options)

    async def reserve(self, request: StartRequest) -> Reservation | Outcome:
        """Acquire a resource; the start body is checked first, so a bad spec costs no call."""
        try:
            self._client_request(request, token=None)
        except ValueError as exc:
            return _invalid(exc)
        result = await self.client.acquire(
            request.channel,
            request.recorder_uid,
            acquire_request(request.mode, request.max_seconds),
        )
        if not isinstance(result, Reply):
            return result
        resource_id = as_str(result.body.get("resourceId"))
        if resource_id is None:
            return Retryable(
                "no_resource_id",
                "acquire answered without a resourceId",
                result.status,
                result.body,
            )
        expires = int(self._clock() * 1000) + RESOURCE_TTL_MS
        return Reservation(resource_id=resource_id, expires_at_ms=expires)

    async def start(
        self, request: StartRequest, reservation: Reservation
    ) -> SessionHandle | Outcome:
        if not reservation.resource_id:
            return ResourceExpired("no_resource_id", "start needs a resource id: reserve first")
        try:
            client_request = self._client_request(request, token=self._token(request))
        except ValueError as exc:
            return _invalid(exc)
        result = await self.client.start(
            reservation.resource_id,
            request.mode,
            request.channel,
            request.recorder_uid,
            client_request,
        )
        if not isinstance(result, Reply):
            return result
        sid = as_str(result.body.get("sid"))
        if sid is None:  # seen with an undocumented code 15: the task did not start
            return ResourceExpired(
                code_of(result.body) or 15,
                message_of(result.body) or "start answered without a sid",
                result.status,
                result.body,
            )
        return SessionHandle(
            provider=self.name,
            channel=request.channel,
            recorder_uid=request.recorder_uid,
            mode=request.mode,
            sid=sid,
            resource_id=reservation.resource_id,
        )

    async def query(self, handle: SessionHandle) -> SessionStatus | Outcome:
        if not handle.resource_id:
            return _no_resource(handle)
        result = await self.client.query(handle.resource_id, handle.sid, handle.mode)
        return parse_query(result.body) if isinstance(result, Reply) else result

    async def update(self, handle: SessionHandle, options: dict[str, Any]) -> Outcome | None:
        """Apply live options (see :mod:`.bodies`), one call at a time as Agora asks; the first
        failure stops the rest and is returned."""
        calls = update_requests(handle.mode, options)
        if calls and not handle.resource_id:
            return _no_resource(handle)
        for verb, client_request in calls:
            resource_id, sid = handle.resource_id or "", handle.sid
            cname, uid = handle.channel, handle.recorder_uid
            if verb == "updateLayout":
                result = await self.client.update_layout(
                    resource_id, sid, cname, uid, client_request
                )
            else:
                result = await self.client.update(
                    resource_id, sid, handle.mode, cname, uid, client_request
                )
            if not isinstance(result, Reply):
                return result
        return None

    async def stop(self, handle: SessionHandle) -> StopResult | Outcome:
        if not handle.resource_id:
            return _no_resource(handle)
        result = await self.client.stop(
            handle.resource_id,
            handle.sid,
            handle.mode,
            handle.channel,
            handle.recorder_uid,
            async_stop=self.async_stop,
        )
        return parse_stop(result.body) if isinstance(result, Reply) else result

    async def channel_users(self, channel: str) -> ChannelUsers | Outcome:
        result = await self.client.channel_users(channel)
        return parse_channel_users(result.body) if isinstance(result, Reply) else result

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- helpers ---------------------------------------------------------------------------

    def _client_request(self, request: StartRequest, token: str | None) -> dict[str, Any]:
        storage = storage_config(request.storage, request.file_prefix)
        return start_request(request.mode, request.options, storage, token)

    def _token(self, request: StartRequest) -> str | None:
        """A token for the recorder uid when the app has a certificate (not in web mode)."""
        if not self.config.app_certificate or request.mode == "web":
            return None
        return recorder_token(
            self.config.app_id,
            self.config.app_certificate,
            request.channel,
            request.recorder_uid,
            token_lifetime(request.max_seconds),
        )


def _invalid(exc: ValueError) -> Rejected:
    return Rejected("invalid_request", str(exc))


def _no_resource(handle: SessionHandle) -> Rejected:
    """Every session call needs the resource id; a session adopted without one cannot be
    controlled through the API (only its own idle timeout ends it)."""
    return Rejected("no_resource_id", f"session {handle.sid} has no resource id")
