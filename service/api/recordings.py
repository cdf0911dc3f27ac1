"""The recordings API (``docs/providers/recordings-api.md``): a catalog of a room's recordings, on
top of the reconciler.

``start``/``stop`` set the room's desired state through :meth:`RoomsApi.declare`, the same write
path as ``PUT /v1/rooms/{room}/recording``, whose event carries what :class:`CatalogLedger`
makes of the change (the recording it opens or closes); the reconciler does the work. A
question for the provider (``sync``, ``recover``) is asked of the controller, which runs it in
the room's worker like any pass (:class:`KeyRunner`). Reads come from the read model,
:class:`service.api.read_models.RecordingViews`. Storage is reached only through
:class:`reconcilers.storage.ObjectStorage`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconcilers import catalog, idempotency
from reconcilers.engine import CHANNEL_PREFIX, QueryRequest
from reconcilers.events import NewEvent, Row, Store
from reconcilers.identity import UidRange
from reconcilers.lifecycle import RecordingView
from reconcilers.objects import CHECKED
from reconcilers.projections import channel_key, closed_index
from reconcilers.providers.registry import DEFAULT_PROVIDER
from reconcilers.storage import ObjectStorage, StorageError, StoredObject
from reconcilers.workqueue import Result
from service.api.auth import room_of, tenant_of
from service.api.bodies import json_body
from service.api.errors import ApiError
from service.api.read_models import RecordingViews
from service.api.rooms import KeyedLocks, RoomsApi

PROCESSING_MESSAGE = "Recording is still being processed. Please try again later."
RECOVER_MESSAGE = "Recovery initiated. Recording will be reprocessed."


def recover_message(view: RecordingView) -> str:
    """What a recovery came to, in words that agree with the status beside them."""
    if view.status == "processing":
        return RECOVER_MESSAGE
    if view.status == "failed":
        reason = view.reason or "failed"
        return f"Recovery found nothing more to process: the recording failed ({reason})."
    if view.status == "ready":
        return "Recovery complete: every file is in storage."
    return f"Recovery changed nothing: the recording is {view.status}."


def iso(ms: int | None) -> str | None:
    """ISO 8601 UTC with seconds, as the API documents (``2026-01-06T10:30:00Z``)."""
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def data(payload: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"data": payload}, status_code=status)


class KeyRunner(Protocol):
    """What the API needs of the controller: run a pass of a key in its worker, after asking
    the provider about some sessions, and await the pass's result."""

    def run_key(self, key: str, query: QueryRequest | None = None) -> Awaitable[Result]: ...


@dataclass(frozen=True)
class CatalogLedger:
    """The :class:`service.api.rooms.Ledger` the rooms API asks, inside the room's write lock,
    what a change of the room's wish to record does to the catalog."""

    views: RecordingViews

    async def opening(self, tenant: str, key: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A room begins to want a recording: the one its event opens."""
        return {
            "open": {
                "recording_id": "rec_" + secrets.token_hex(10),
                "channel_key": channel_key(spec["provider"], spec["channel"]),
                "provider": spec["provider"],
                "storage": spec["storage"],
            }
        }

    async def closing(self, tenant: str, key: str) -> dict[str, Any]:
        """A room stops wanting a recording: the open ones its event closes."""
        ids = [v.id for v in await self.views.room_views(tenant, key) if v.status == "recording"]
        return {"close": ids} if ids else {}


@dataclass
class RecordingsApi:
    store: Store
    rooms: RoomsApi
    views: RecordingViews
    ledger: CatalogLedger
    runner: KeyRunner
    #: The reconciler's recorder uids: a session on one is some room's, never imported.
    recorder_uids: UidRange
    storages: Mapping[str, ObjectStorage]
    tokens: Mapping[str, str]
    url_expiry_seconds: int = 3600
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: A start or stop holds its room: those of different rooms run at once.
    _locks: KeyedLocks = field(default_factory=lambda: KeyedLocks())

    # -- per room ----------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        tenant, name, key = room_of(request, self.tokens)
        body = await _optional_json(request)
        idem = request.headers.get("idempotency-key")
        scoped = f"start|{idem}" if idem else None
        print_ = idempotency.fingerprint(body)
        async with self._locks.hold(key):
            first = await self.rooms.first_answer(key, scoped, print_) if scoped else None
            if first is None:
                room = await self.store.get_row("rooms", key)
                current = room.data if room and not room.data.get("deleted") else None
                if current and current.get("spec", {}).get("state") == "recording":
                    raise ApiError(409, "conflict", "room already being recorded", "id")
                base = dict(current["spec"]) if current else {}
                spec = self.rooms.spec_from({**base, **body, "state": "recording"}, name)
                # The one write path: the room's event opens the recording (``opening``).
                await self.rooms.declare(tenant, name, spec, scoped, fingerprint=print_)
                first = await self.rooms.first_answer(key, scoped, print_) if scoped else None
            views = await self.views.room_views(tenant, key)
            opened = [v for v in views if v.status == "recording"]
            if first is not None and first.get("recording_id"):
                # The answer this key was given the first time (a retry of the same request).
                _, replayed = await self.views.view(tenant, str(first["recording_id"]))
                opened = [replayed]
        if not opened:
            raise ApiError(409, "conflict", "the recording this start opened has ended", "id")
        view = opened[-1]
        started = {"started_at": iso(view.started_ms)}
        return data({"id": view.id, "room_id": name, "status": view.status, **started}, 201)

    async def stop(self, request: Request) -> Response:
        tenant, name, key = room_of(request, self.tokens)
        async with self._locks.hold(key):
            open_ = [v for v in await self.views.room_views(tenant, key) if v.status == "recording"]
            if not open_:  # decided before any write: a 404 changes nothing
                raise ApiError(404, "not_found", "no active recording for this room", "id")
            room = await self.store.get_row("rooms", key)
            if room and not room.data.get("deleted"):
                spec = {**room.data["spec"], "state": "stopped"}
                await self.rooms.declare(tenant, name, spec, f"stop|{open_[-1].id}")
            else:
                await self.closed(tenant, key)
        _, view = await self.views.view(tenant, open_[-1].id)
        status = "processing" if view.status == "recording" else view.status
        return data(
            {"id": view.id, "room_id": name, "status": status, "stopped_at": iso(view.stopped_ms)}
        )

    async def closed(self, tenant: str, key: str) -> None:
        """Close what a room that no longer exists has open (its own event is long written)."""
        for rid in (await self.ledger.closing(tenant, key)).get("close", []):
            await self._append(catalog.STOPPED, key, f"{rid}|stop", {"recording_id": rid})

    async def sync(self, request: Request) -> Response:
        """Import the sessions on the room's channel that nobody of ours started.

        Only what the caller's tenant owns (issue 20): the room must be the caller's (its
        channel is then claimed by that room alone), and a session with one of the
        reconciler's recorder uids is never imported: it is some room's segment, adopted by
        that room's reconciler when its start's answer was lost, whoever's room it is.
        """
        tenant, _, key = room_of(request, self.tokens)
        room = await self.store.get_row("rooms", key)
        if room is None or room.data.get("deleted") or not room.data.get("channel_key"):
            raise ApiError(404, "not_found", "no such room", "room")
        ckey = str(room.data["channel_key"])
        sessions = [  # the channel's live sessions, then its ended ones
            *await self.store.rows("sessions", room=ckey),
            *await self.store.rows("sessions", room=closed_index(ckey)),
        ]
        ours = self.recorder_uids.contains
        foreign = [
            s.data
            for s in sessions
            if not s.data.get("room")
            and s.data.get("sid")
            and not ours(s.data.get("recorder_uid") or s.data.get("uid"))
        ]  # not the reconciler's: in a recording already, or about to be adopted
        by_provider: dict[str, list[str]] = {}
        for d in foreign:
            by_provider.setdefault(d.get("provider", DEFAULT_PROVIDER), []).append(str(d["sid"]))
        for provider, sids in sorted(by_provider.items()):
            reason = "sync: re-query the provider"
            await self._run(key, QueryRequest(key, provider, sids, reason))
        imported: list[dict[str, str]] = []
        for d in foreign:
            provider, sid = d.get("provider", DEFAULT_PROVIDER), str(d["sid"])
            digest = hashlib.sha256(f"{tenant}|{provider}:{sid}".encode()).hexdigest()[:20]
            rid = f"rec_{digest}"
            appended = await self.store.append(
                NewEvent(
                    source="api",
                    dedup_key=f"catalog|{key}|import|{provider}:{sid}",
                    type=catalog.IMPORTED,
                    room=key,
                    payload={
                        "recording_id": rid,
                        "channel_key": ckey,
                        "provider": provider,
                        "storage": room.data.get("spec", {}).get("storage", "default"),
                        "sids": [sid],
                        "started_ms": d.get("started_ms") or d.get("last_seen_ms"),
                    },
                    occurred_at=self.clock(),
                )
            )
            if not appended.duplicate:
                _, view = await self.views.view(tenant, rid)
                imported.append({"id": rid, "status": view.status})
        return data({"synced_count": len(imported), "recordings": imported})

    # -- per recording -----------------------------------------------------------------------

    async def list_recordings(self, request: Request) -> Response:
        tenant = tenant_of(request, self.tokens)
        limit = _int_param(request, "limit", 20, 1, 100)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        rows = [r for r in await self.views.tenant_rows(tenant) if not r.data.get("deleted_ms")]
        rows.sort(key=lambda r: (r.data.get("created_ms") or 0, r.data.get("created_seq", 0)))
        rows.reverse()  # newest first
        items = []
        for row in rows[offset : offset + limit]:
            view = await self.views.derive(row)
            items.append(
                {
                    "id": view.id,
                    "room_id": view.room_name,
                    "status": view.status,
                    "duration_seconds": view.duration_seconds,
                    "size_bytes": view.size_bytes,
                    "created_at": iso(view.created_ms),
                }
            )
        return JSONResponse(
            {"data": items, "meta": {"total": len(rows), "limit": limit, "offset": offset}}
        )

    async def get(self, request: Request) -> Response:
        _, view = await self.views.view(*self._ids(request))
        return data(
            {
                "id": view.id,
                "room_id": view.room_name,
                "room": {"id": view.room_name, "name": view.room_name},
                "status": view.status,
                "duration_seconds": view.duration_seconds,
                "size_bytes": view.size_bytes,
                "started_at": iso(view.started_ms),
                "stopped_at": iso(view.stopped_ms),
            }
        )

    async def download(self, request: Request) -> Response:
        row, view = await self.views.view(*self._ids(request))
        if view.status in ("recording", "processing"):
            return JSONResponse(
                {"recording_id": view.id, "status": "processing", "message": PROCESSING_MESSAGE}
            )
        if view.status != "ready":
            message = f"recording is {view.status}: nothing to download"
            raise ApiError(400, "not_ready", message, "id")
        storage = self._storage(row)
        files = []
        for f in view.files:
            url = await _storage_call(storage.presign_get(f.name, self.url_expiry_seconds))
            files.append({"name": f.name, "download_url": url, "size_bytes": f.size})
        return JSONResponse(
            {
                "recording_id": view.id,
                "download_url": files[0]["download_url"],
                "status": "ready",
                "duration": view.duration_seconds,
                "file_size": view.size_bytes,
                "provider": storage.kind,
                "files": files,
            }
        )

    async def archive(self, request: Request) -> Response:
        tenant, rid = self._ids(request)
        row, view = await self.views.view(tenant, rid)
        if view.status != "ready":
            reason = "already archived" if view.status == "archived" else f"is {view.status}"
            raise ApiError(400, "not_ready", f"recording {reason}: not ready in primary storage")
        storage = self._storage(row)
        copies: list[StoredObject] = []
        for key in view.objects:
            copies.append(await _storage_call(storage.archive(key)))
        for copy in copies:  # confirmed by a HEAD of each copy: now say so in the log
            await self._checked(storage.bucket, copy, True, f"{rid}|archive")
        appended = await self._append(
            catalog.ARCHIVED,
            view.room,
            f"{rid}|archive",
            {
                "recording_id": rid,
                "storage_class": copies[0].storage_class if copies else None,
                "bucket": storage.bucket,
                "keys": [c.key for c in copies],
            },
        )
        at = int(appended.occurred_at.timestamp() * 1000) if appended.occurred_at else None
        return data({"id": rid, "status": "archived", "archived_at": iso(at)})

    async def recover(self, request: Request) -> Response:
        """Re-query the provider and re-check storage; finish or fail the recording."""
        tenant, rid = self._ids(request)
        row, view = await self.views.view(tenant, rid)
        if view.status != "processing" or not view.sids:
            raise ApiError(
                400, "not_recoverable", "recording is not processing or has no provider id", "id"
            )
        attempt = self.clock().strftime("%Y%m%dT%H%M%S.%f")
        await self._append(
            catalog.RECOVERY, view.room, f"{rid}|recover|{attempt}", {"recording_id": rid}
        )
        segments = await self.store.rows("recording_segments", room=row.data.get("channel_key"))
        live = {s.data["sid"] for s in segments if s.data["sid"] in view.sids}
        live = {sid for sid in live if not _ended(segments, sid)}
        if live:
            channel = CHANNEL_PREFIX + str(row.data.get("channel_key"))
            provider = str(row.data.get("provider", DEFAULT_PROVIDER))
            reason = "recover: re-query the provider"
            await self._run(view.room, QueryRequest(view.room, provider, live, reason, channel))
        storage = self._storage(row)
        for f in view.files:
            prefix = f.name.rpartition(".")[0] or f.name
            found = await _storage_call(storage.list(prefix))
            for obj in found:
                await self._checked(storage.bucket, obj, True, f"{rid}|recover|{attempt}")
            if not any(o.key == f.name for o in found):
                gone = StoredObject(f.name, 0)
                await self._checked(storage.bucket, gone, False, f"{rid}|recover|{attempt}")
        _, after = await self.views.view(tenant, rid)
        segments = await self.store.rows("recording_segments", room=row.data.get("channel_key"))
        all_ended = all(_ended(segments, sid) for sid in after.sids)
        if after.status == "processing" and all_ended and not after.backuped:
            reason = "files_lost" if after.files else "nothing_recorded"
            await self._append(
                catalog.FAILED, view.room, f"{rid}|failed", {"recording_id": rid, "reason": reason}
            )
            _, after = await self.views.view(tenant, rid)
        return data({"id": rid, "status": after.status, "message": recover_message(after)})

    async def delete(self, request: Request) -> Response:
        """Soft delete. A recording still recording is refused (409): the client stops it
        first, so that a deleted recording never records on unseen, and stop stays the one
        way to end a recording."""
        tenant, rid = self._ids(request)
        _, view = await self.views.view(tenant, rid)
        if view.status == "recording":
            raise ApiError(
                409, "conflict", "recording is recording: stop it first, then delete it", "id"
            )
        appended = await self._append(
            catalog.DELETED, view.room, f"{rid}|delete", {"recording_id": rid}
        )
        at = int(appended.occurred_at.timestamp() * 1000) if appended.occurred_at else None
        return data({"id": rid, "deleted": True, "deleted_at": iso(at)})

    # -- helpers -----------------------------------------------------------------------------

    def _ids(self, request: Request) -> tuple[str, str]:
        return tenant_of(request, self.tokens), str(request.path_params["id"])

    async def _run(self, key: str, query: QueryRequest) -> Result:
        """Ask the controller to query, in ``key``'s worker, and wait for that pass."""
        try:
            return await self.runner.run_key(key, query)
        except Exception as exc:  # the controller stopped (a drain) before the pass ran
            raise ApiError(503, "unavailable", f"the provider was not asked: {exc}") from None

    def _storage(self, row: Row) -> ObjectStorage:
        storage = self.storages.get(str(row.data.get("storage", "default")))
        if storage is None:
            raise ApiError(
                400, "no_storage", "the recording's storage profile is not S3-compatible"
            )
        return storage

    async def _append(self, type_: str, room: str, dedup: str, payload: dict[str, Any]) -> Any:
        appended = await self.store.append(
            NewEvent(
                source="api",
                dedup_key=f"catalog|{dedup}",
                type=type_,
                room=room,
                payload=payload,
                occurred_at=self.clock(),
            )
        )
        return appended.event

    async def _checked(self, bucket: str, obj: StoredObject, present: bool, why: str) -> None:
        await self.store.append(
            NewEvent(
                source="storage",
                dedup_key=f"check|{why}|{bucket}/{obj.key}|{obj.storage_class}|{present}",
                type=CHECKED,
                payload={
                    "bucket": bucket,
                    "key": obj.key,
                    "present": present,
                    "size": obj.size,
                    "etag": obj.etag,
                    "storage_class": obj.storage_class if present else None,
                },
                occurred_at=self.clock(),
            )
        )


def _ended(segments: list[Row], sid: str) -> bool:
    return any(s.data.get("sid") == sid and s.data.get("ended_ms") for s in segments)


async def _storage_call(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except StorageError as exc:
        raise ApiError(502, "storage_unavailable", str(exc)) from None


async def _optional_json(request: Request) -> dict[str, Any]:
    body = await json_body(request, optional=True)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid", "body: expected an object", "body")
    return body


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid", f"{name}: not an integer", name) from None
    if not low <= value <= high:
        raise ApiError(422, "invalid", f"{name}: must be {low}-{high}", name)
    return value


def routes(api: Callable[[], RecordingsApi | None]) -> list[BaseRoute]:
    """The API's routes; ``api`` gives the instance once the app's lifespan has built it."""

    def delegate(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            target = api()
            if target is None:
                raise ApiError(503, "starting", "the service is starting")
            method: Callable[[Request], Awaitable[Response]] = getattr(target, name)
            return await method(request)

        return handler

    base = "/api/v1"
    return [
        Route(f"{base}/rooms/{{room}}/recordings/start", delegate("start"), methods=["POST"]),
        Route(f"{base}/rooms/{{room}}/recordings/stop", delegate("stop"), methods=["POST"]),
        Route(f"{base}/rooms/{{room}}/recordings/sync", delegate("sync"), methods=["POST"]),
        Route(f"{base}/recordings", delegate("list_recordings"), methods=["GET"]),
        Route(f"{base}/recordings/{{id}}", delegate("get"), methods=["GET"]),
        Route(f"{base}/recordings/{{id}}", delegate("delete"), methods=["DELETE"]),
        Route(f"{base}/recordings/{{id}}/download", delegate("download"), methods=["GET"]),
        Route(f"{base}/recordings/{{id}}/archive", delegate("archive"), methods=["POST"]),
        Route(f"{base}/recordings/{{id}}/recover", delegate("recover"), methods=["POST"]),
    ]
