"""The catalog's projections: ``recordings`` (what users asked for) and ``recording_segments``
(what each provider session recorded and uploaded). :mod:`reconcilers.lifecycle` joins them.

Why two projections and a join at read time? A projection sees one event at a time, and only
the catalog's own API events know a recording's id. The reconciler's intents and results know
the room and the sid, notifications know only the sid, storage events only a bucket and a key.
So each fact is folded where one event can route it:

- ``recordings`` (key ``tenant/recording_id``, index: room key): from ``recording.*`` API
  events, which carry the id. A key that starts with the tenant makes every lookup
  tenant-scoped by construction.
- ``recording_segments`` (key ``provider:sid``, index: channel key ``provider/channel``): the
  files, upload state, start and end of each provider session, from the reconciler's results
  (provider-neutral: ``result.start``, ``result.stop``, ``observed.query``, ``session.adopted``)
  and from each provider's own upload and exit news (its bundle's ``fold_segment``).
- ``storage_objects`` (:mod:`reconcilers.objects`): what the buckets hold.

A recording's segments are the sessions the reconciler started for its room between its start
and its stop (or the sids it imported); :func:`reconcilers.lifecycle.derive` decides its status
from those rows. Everything is a pure fold with times from events, so ``replay`` equals live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconcilers.events import Event, Projection, Row
from reconcilers.folding import add_files
from reconcilers.objects import StorageObjects
from reconcilers.providers import registry

STARTED = "recording.started"
IMPORTED = "recording.imported"
STOPPED = "recording.stopped"
RECOVERY = "recording.recovery"
FAILED = "recording.failed"
ARCHIVED = "recording.archived"
DELETED = "recording.deleted"


def event_ms(event: Event) -> int:
    when = event.occurred_at or event.received_at
    return int(when.timestamp() * 1000)


def recording_key(tenant: str, recording_id: str) -> str:
    return f"{tenant}/{recording_id}"


class Recordings:
    """One row per recording: one continuous wish to record a room, from start to stop."""

    name = "recordings"

    def keys(self, event: Event) -> Sequence[str]:
        if event.source != "api" or not event.room:
            return []
        tenant = event.room.split("/", 1)[0]
        entry = _room_entry(event)
        if entry is not None:
            opened = entry.get("open")
            ids = [opened["recording_id"]] if opened else list(entry.get("close") or [])
            return [recording_key(tenant, str(rid)) for rid in ids]
        rid = event.payload.get("recording_id")
        if event.type.startswith("recording.") and rid:
            return [recording_key(tenant, str(rid))]
        return []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        type_, p = _as_catalog_event(event)
        at = event_ms(event)
        if row is None:
            if type_ not in (STARTED, IMPORTED):
                return None
            tenant, _, name = (event.room or "").partition("/")
            data: dict[str, Any] = {
                "id": p["recording_id"],
                "tenant": tenant,
                "room": event.room,
                "room_name": name,
                "channel_key": p.get("channel_key"),
                "provider": p.get("provider", registry.DEFAULT_PROVIDER),
                "storage": p.get("storage", "default"),
                "origin": "sync" if type_ == IMPORTED else "api",
                "sids": list(p.get("sids", [])),
                "created_ms": at,
                "created_seq": event.seq,
                "started_ms": p.get("started_ms") or at,
                "stopped_ms": p.get("stopped_ms"),
            }
        else:
            data = dict(row.data)
        if type_ == STOPPED:
            data["stopped_ms"] = data.get("stopped_ms") or at
        elif type_ == RECOVERY:
            data["recovered_ms"] = at
        elif type_ == FAILED and not data.get("archived_ms"):
            data["failed"] = {"reason": p.get("reason", "failed"), "at_ms": at}
        elif type_ == ARCHIVED:
            data.setdefault("archived_ms", at)
            data["archive"] = {
                "storage_class": p.get("storage_class"),
                "bucket": p.get("bucket"),
                "keys": list(p.get("keys", [])),
            }
        elif type_ == DELETED:
            data.setdefault("deleted_ms", at)
        key = recording_key(data["tenant"], data["id"])
        return Row(self.name, key, data["room"], data, event.seq)


def _room_entry(event: Event) -> dict[str, Any] | None:
    """The catalog part of a room write (``room.desired`` / ``room.deleted``): the recording it
    opens (``{"open": {...}}``) or the ones it closes (``{"close": [ids]}``). The wish and its
    recording are one event, so that one is never stored without the other."""
    if event.type not in ("room.desired", "room.deleted"):
        return None
    entry = event.payload.get("catalog")
    return entry if isinstance(entry, dict) and entry else None


def _as_catalog_event(event: Event) -> tuple[str, dict[str, Any]]:
    """An event as the catalog reads it: a room write that opens or closes a recording reads
    as ``recording.started`` / ``recording.stopped``."""
    entry = _room_entry(event)
    if entry is None:
        return event.type, event.payload
    if entry.get("open"):
        return STARTED, dict(entry["open"])
    return STOPPED, {}


_RECONCILER_TYPES = frozenset({"result.start", "session.adopted", "result.stop", "observed.query"})


class RecordingSegments:
    """What each provider session recorded: files, upload state, start and end."""

    name = "recording_segments"

    def keys(self, event: Event) -> Sequence[str]:
        p = event.payload
        if event.source == "reconciler" and event.type in _RECONCILER_TYPES and p.get("sid"):
            return [f"{p.get('provider', registry.DEFAULT_PROVIDER)}:{p['sid']}"]
        provider = registry.find(event.source)
        return provider.segment_keys(event) if provider is not None else []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        data: dict[str, Any] = dict(row.data) if row else {"files": {}}
        data["files"] = {k: dict(v) for k, v in data["files"].items()}
        at = event_ms(event)
        provider = registry.find(event.source)
        if provider is not None:
            provider.fold_segment(data, event, at)
        else:
            _reconciler(data, event, at)
        if not data.get("sid"):
            return row
        data.setdefault("started_ms", at)
        key = f"{data['provider']}:{data['sid']}"
        index = f"{data['provider']}/{data.get('channel') or ''}"
        return Row(self.name, key, index, data, event.seq)


def _reconciler(data: dict[str, Any], event: Event, at: int) -> None:
    p = event.payload
    data.setdefault("provider", p.get("provider", registry.DEFAULT_PROVIDER))
    data.setdefault("sid", p["sid"])
    if event.type in ("result.start", "session.adopted"):
        data["room"] = event.room
        data["channel"] = p.get("channel") or data.get("channel")
        data["started_ms"] = min(at, data.get("started_ms") or at)
    elif event.type == "result.stop":
        outcome = p.get("outcome")
        if outcome is None:
            add_files(data, list(p.get("files", [])))
            data["upload"] = p.get("upload_status") or data.get("upload") or "unknown"
            data.setdefault("ended_ms", at)
        elif outcome == "ended":
            if p.get("code") == 435:
                data["no_data"] = True  # Agora: "no recorded data", nobody published
            data.setdefault("ended_ms", at)
    elif event.type == "observed.query":
        add_files(data, list(p.get("files", [])))
        if p.get("not_found") or p.get("state") == "ended":
            data.setdefault("ended_ms", at)


CATALOG_PROJECTIONS: tuple[Projection, ...] = (Recordings(), RecordingSegments(), StorageObjects())
