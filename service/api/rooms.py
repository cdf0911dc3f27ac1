"""The desired-state API: ``/v1/rooms/{room}/recording`` and ``/v1/rooms``.

A write is an event (``room.desired`` / ``room.deleted``) appended to the log; the ``rooms``
projection folds it, and the room is enqueued for the reconciler. Nothing here calls a provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconcilers import idempotency
from reconcilers.conditions import CONDITIONS, index_of, key_of
from reconcilers.engine import Reconciler
from reconcilers.events import Event, NewEvent, Store
from reconcilers.projections import channel_key
from reconcilers.providers.base import InvalidOptions, Provider
from service.api.auth import owns, room_of, tenant_of
from service.api.bodies import json_body
from service.api.errors import ApiError, from_validation
from service.api.schemas import RecordingSpecIn, RoomView
from service.api.views import room_view


class Ledger(Protocol):
    """Asked, inside the room's write lock, what the recordings catalog makes of a change of
    the room's wish to record: the recording it opens, or the ones it closes. The answer rides
    in the room's own event (``payload["catalog"]``): the wish and its recording are one write,
    under one dedup key, whichever API changed the room."""

    async def opening(self, tenant: str, key: str, spec: dict[str, Any]) -> dict[str, Any]: ...

    async def closing(self, tenant: str, key: str) -> dict[str, Any]: ...


class Scheduler(Protocol):
    """What the API needs of the controller: hear of a room's change (which wakes the room
    and keeps the controller's channel index), and tell its reconcile times."""

    def notify(self, event: Event) -> None: ...

    def timing(self, key: str) -> tuple[datetime | None, datetime | None]: ...


class KeyedLocks:
    """An :class:`asyncio.Lock` per key, made on demand and dropped when nobody holds or awaits
    it; several keys are taken in sorted order, so two holders never wait on each other."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self._one(key))
            yield

    @contextlib.asynccontextmanager
    async def _one(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class RoomsApi:
    store: Store
    reconciler: Reconciler
    providers: Mapping[str, Provider]
    tokens: Mapping[str, str]
    storage_profiles: Collection[str]
    scheduler: Scheduler
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    ledger: Ledger | None = None
    #: A change holds its room and the channel it claims: changes of different rooms on
    #: different channels run at once (one lock for all serialised two group commits per PUT,
    #: which capped declarations near 60 a second in the 10,000-room benchmark).
    _locks: KeyedLocks = field(default_factory=lambda: KeyedLocks())

    # -- handlers ----------------------------------------------------------------------------

    async def put(self, request: Request) -> Response:
        tenant, name, _ = self._room(request)
        spec = self.spec_from(await json_body(request), name)
        view, status = await self.declare(
            tenant, name, spec, request.headers.get("idempotency-key"), request
        )
        return self._respond(view, status)

    def spec_from(self, body: Any, name: str) -> dict[str, Any]:
        """Validate a spec body (422 naming the field); fill in the channel and options."""
        try:
            spec_in = RecordingSpecIn.model_validate(body)
        except ValidationError as exc:
            raise from_validation(exc) from None
        if spec_in.storage not in self.storage_profiles:
            known = ", ".join(sorted(self.storage_profiles)) or "none configured"
            raise ApiError(422, "invalid", f"storage: unknown profile (known: {known})", "storage")
        provider = self.providers.get(spec_in.provider)
        if provider is None:
            raise ApiError(422, "invalid", "provider: not configured", "provider")
        try:
            options = provider.validate_options(spec_in.mode, spec_in.options)
        except InvalidOptions as exc:
            raise ApiError(422, "invalid", f"options.{exc}", f"options.{exc.field}") from None
        spec = spec_in.model_dump()
        spec["channel"] = spec_in.channel or name
        spec["options"] = options
        return spec

    async def declare(
        self,
        tenant: str,
        name: str,
        spec: dict[str, Any],
        idem: str | None = None,
        request: Request | None = None,
        fingerprint: str | None = None,
    ) -> tuple[RoomView, int]:
        """Append ``room.desired`` (unless unchanged) and enqueue: the one write path.

        With an idempotency key ``idem``, a request seen before is answered as the first time
        (same fingerprint) or refused with 422 (another body); either way nothing is written.
        ``fingerprint`` defaults to the spec's.
        """
        key = f"{tenant}/{name}"
        ckey = channel_key(spec["provider"], spec["channel"])
        print_ = fingerprint or idempotency.fingerprint(spec)
        async with self._locks.hold(key, ckey):
            if idem is not None:
                first = await self.first_answer(key, idem, print_)
                if first is not None:
                    return await self._view(key), int(first["status"])
            row = await self.store.get_row("rooms", key)
            current = row.data if row and not row.data.get("deleted") else None
            if request is not None:
                self._check_if_match(request, current)
            for other in await self.store.rows("rooms", room=ckey):
                if other.key != key and not other.data.get("deleted"):
                    raise _channel_taken(tenant, other.key)
            if current is not None and current.get("spec") == spec:
                if idem is not None:
                    await self._record(key, idem, print_, 200)
                return await self._view(key), 200
            status = 201 if current is None else 200
            was = current is not None and current["spec"].get("state") == "recording"
            wants = spec.get("state") == "recording"
            entry: dict[str, Any] = {}
            if self.ledger is not None and wants and not was:
                entry = await self.ledger.opening(tenant, key, spec)
            elif self.ledger is not None and was and not wants:
                entry = await self.ledger.closing(tenant, key)
            payload: dict[str, Any] = {
                "tenant": tenant,
                "name": name,
                "spec": spec,
                "channel_key": ckey,
            }
            if entry:
                payload["catalog"] = entry
            if idem is not None:
                payload["idempotency"] = _record_of(idem, print_, status, entry)
            appended = await self.store.append(
                NewEvent(
                    source="api",
                    dedup_key=f"{key}|{idem}" if idem else f"{key}|{uuid.uuid4()}",
                    type="room.desired",
                    room=key,
                    payload=payload,
                    occurred_at=self.clock(),
                )
            )
        self.scheduler.notify(appended.event)
        return await self._view(key), 201 if status == 201 and not appended.duplicate else 200

    async def first_answer(self, key: str, idem: str, print_: str) -> dict[str, Any] | None:
        """The first request's record under this key, if any; 422 if it had another body."""
        row = await self.store.get_row("idempotency", idempotency.idempotency_key(key, idem))
        if row is None:
            return None
        if row.data.get("fingerprint") != print_:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "Idempotency-Key: already used for a different request body",
                "Idempotency-Key",
            )
        return row.data

    async def _record(self, key: str, idem: str, print_: str, status: int) -> None:
        """Record a request that wrote nothing else, so that its key stays spent."""
        await self.store.append(
            NewEvent(
                source="api",
                dedup_key=f"{key}|{idem}",
                type=idempotency.REQUEST_RECORDED,
                room=key,
                payload={"idempotency": _record_of(idem, print_, status, {})},
                occurred_at=self.clock(),
            )
        )

    async def get(self, request: Request) -> Response:
        _, _, key = self._room(request)
        return self._respond(await self._view(key), 200)

    async def delete(self, request: Request) -> Response:
        _, _, key = self._room(request)
        async with self._locks.hold(key):
            row = await self.store.get_row("rooms", key)
            if row is None or row.data.get("deleted"):
                raise ApiError(404, "not_found", "no such room", "room")
            self._check_if_match(request, row.data)
            entry: dict[str, Any] = {}
            if self.ledger is not None and row.data["spec"].get("state") == "recording":
                entry = await self.ledger.closing(key.split("/", 1)[0], key)
            deleted = await self.store.append(
                NewEvent(
                    source="api",
                    dedup_key=f"{key}|delete|g{row.data['generation']}",
                    type="room.deleted",
                    room=key,
                    payload={"catalog": entry} if entry else {},
                    occurred_at=self.clock(),
                )
            )
        self.scheduler.notify(deleted.event)
        return Response(status_code=204)

    async def list_rooms(self, request: Request) -> Response:
        tenant = tenant_of(request, self.tokens)
        q = request.query_params
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise ApiError(422, "invalid", "limit: not an integer", "limit") from None
        if not 1 <= limit <= 500:
            raise ApiError(422, "invalid", "limit: must be 1-500", "limit")
        want_state, want_condition = q.get("state"), q.get("condition")
        if want_condition:
            return await self._list_by_condition(tenant, want_condition, want_state, limit, q)
        prefix = f"{tenant}/"
        after = prefix + q.get("cursor", "")
        items: list[dict[str, Any]] = []
        next_cursor: str | None = None
        while len(items) < limit:
            rows = await self.store.rows("rooms", after_key=after, limit=limit * 2)
            mine = [r for r in rows if owns(tenant, r.key)]
            for row in mine:
                after = row.key
                if row.data.get("deleted"):
                    continue
                if want_state and row.data.get("spec", {}).get("state") != want_state:
                    continue
                view = await self._view(row.key)
                if want_condition and not any(
                    c.type == want_condition and c.status == "True" for c in view.conditions
                ):
                    continue
                items.append(view.model_dump())
                if len(items) == limit:
                    next_cursor = row.key.removeprefix(prefix)
                    break
            if len(mine) < len(rows) or len(rows) < limit * 2:
                break
        return JSONResponse({"items": items, "next_cursor": next_cursor})

    async def _list_by_condition(
        self, tenant: str, condition: str, want_state: str | None, limit: int, q: Any
    ) -> Response:
        """The rooms where ``condition`` holds, from the ``room_conditions`` index (each
        room's conditions as of its last pass), each checked against its live view: a page
        reads the rooms that match, not every room (:mod:`reconcilers.conditions`)."""
        if condition not in CONDITIONS:
            raise ApiError(
                422, "invalid", f"condition: one of {', '.join(CONDITIONS)}", "condition"
            )
        index = index_of(condition, tenant)
        after = key_of(condition, f"{tenant}/{q.get('cursor', '')}")
        items: list[dict[str, Any]] = []
        next_cursor: str | None = None
        while len(items) < limit:
            rows = await self.store.rows(
                "room_conditions", room=index, after_key=after, limit=limit
            )
            for row in rows:
                after = row.key
                room = str(row.data["room"])
                if not owns(tenant, room):
                    continue
                try:
                    view = await self._view(room)
                except ApiError:
                    continue  # deleted since
                if want_state and view.spec.get("state") != want_state:
                    continue
                if not any(c.type == condition and c.status == "True" for c in view.conditions):
                    continue  # no longer, since its last pass
                items.append(view.model_dump())
                if len(items) == limit:
                    next_cursor = room.removeprefix(f"{tenant}/")
                    break
            if len(rows) < limit:
                break
        return JSONResponse({"items": items, "next_cursor": next_cursor})

    # -- helpers -----------------------------------------------------------------------------

    def _room(self, request: Request) -> tuple[str, str, str]:
        return room_of(request, self.tokens)

    @staticmethod
    def _check_if_match(request: Request, current: dict[str, Any] | None) -> None:
        expected = request.headers.get("if-match")
        if expected is None:
            return
        actual = f'"{current["generation"]}"' if current else None
        if (expected != "*" and expected != actual) or (expected == "*" and current is None):
            raise ApiError(412, "precondition_failed", "If-Match: generation changed", "If-Match")

    async def _view(self, key: str) -> RoomView:
        state = await self.reconciler.state(key)
        row = state.room_row
        if row is None or row.data.get("deleted"):
            raise ApiError(404, "not_found", "no such room", "room")
        return room_view(state, *self.scheduler.timing(key))

    @staticmethod
    def _respond(view: RoomView, status: int) -> Response:
        return JSONResponse(
            view.model_dump(), status_code=status, headers={"ETag": f'"{view.generation}"'}
        )


def _record_of(idem: str, print_: str, status: int, entry: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"key": idem, "fingerprint": print_, "status": status}
    opened = entry.get("open")
    if opened:
        record["recording_id"] = opened["recording_id"]
    return record


def _channel_taken(tenant: str, holder: str) -> ApiError:
    """The 409 for a channel another room holds. A provider account has one namespace of
    channels, so a channel is one room's across tenants (``docs/security.md``); the answer
    names the holder only to its own tenant (issue 20: it told tenant B that A used it)."""
    if owns(tenant, holder):
        name = holder.partition("/")[2]
        return ApiError(409, "conflict", f"channel: used by your room {name}", "channel")
    return ApiError(409, "conflict", "channel: not available", "channel")
