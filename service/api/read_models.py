"""The recordings catalog's read model: the views the API serves, derived from projections.

A recording's view joins its catalog row with its room, its segments and the storage objects
under its files' folders (:func:`reconcilers.lifecycle.derive`). Every lookup is by the key
``tenant/recording_id``, so another tenant's recording is "not found", never a leak. Reads only:
what changes the catalog is in :mod:`service.api.recordings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconcilers import catalog
from reconcilers.events import Row, Store
from reconcilers.lifecycle import RecordingView, derive, directory
from reconcilers.objects import directory_index
from service.api.auth import owns
from service.api.errors import ApiError


def not_found() -> ApiError:
    return ApiError(404, "not_found", "recording not found", "id")


@dataclass(frozen=True)
class RecordingViews:
    store: Store
    #: Storage profile name -> its bucket (where a recording's objects are indexed).
    buckets: Mapping[str, str]

    async def tenant_rows(self, tenant: str) -> list[Row]:
        """Every catalog row of ``tenant`` (deleted ones too), in key order."""
        after, found = f"{tenant}/", []
        while True:
            rows = await self.store.rows("recordings", after_key=after, limit=500)
            mine = [r for r in rows if owns(tenant, r.key)]
            found += mine
            if len(mine) < len(rows) or len(rows) < 500:
                return found
            after = rows[-1].key

    async def room_views(self, tenant: str, room: str) -> list[RecordingView]:
        """The room's recordings that are not deleted, oldest first."""
        rows = await self.store.rows("recordings", room=room)
        mine = [r for r in rows if owns(tenant, r.key) and not r.data.get("deleted_ms")]
        views = [await self.derive(r) for r in mine]
        return sorted(views, key=lambda v: v.created_ms)

    async def view(self, tenant: str, rid: str) -> tuple[Row, RecordingView]:
        """The recording ``rid`` of ``tenant``, or a 404 (deleted, or another tenant's)."""
        row = await self.store.get_row("recordings", catalog.recording_key(tenant, rid))
        if row is None or row.data.get("deleted_ms"):
            raise not_found()
        return row, await self.derive(row)

    async def derive(self, row: Row) -> RecordingView:
        rec = row.data
        room = await self.store.get_row("rooms", rec["room"])
        room_data = room.data if room else None
        segs = [
            s.data for s in await self.store.rows("recording_segments", room=rec["channel_key"])
        ]
        first = derive(rec, room_data, segs, {})
        bucket = self.buckets.get(rec.get("storage", "default"), "")
        objects: dict[str, dict[str, Any]] = {}
        for folder in sorted({directory(f.name) for f in first.files}):
            index = directory_index(bucket, f"{folder}/x" if folder else "x")
            for obj in await self.store.rows("storage_objects", room=index):
                objects[obj.data["key"]] = obj.data
        return derive(rec, room_data, segs, objects)
