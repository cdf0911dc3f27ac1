"""The ``storage_objects`` projection: which objects a bucket holds, folded from storage events.

Keyed ``bucket/key`` and indexed by ``bucket/<directory of key>`` so that the catalog can read a
segment's files and their companions (Agora's ``.ts`` slices next to the ``.m3u8``) in one
lookup. Sources, all ``source="storage"``:

- ``storage.object_created`` / ``storage.object_removed``: S3, MinIO and R2 notifications, as
  normalised by the storage webhook (``bucket``, ``key``, ``size``, ``etag``, ``sequencer``).
  Notifications come at least once and out of order: for one key, S3's ``sequencer`` (hex,
  right-padded before comparing) says which is later; R2 has none, so its ``event_time`` does.
- ``storage.checked``: what the service itself saw in a HEAD or a listing (recover, archive).
  It is fresher than any notification, so it always applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconcilers.events import Event, Row

CREATED = "storage.object_created"
REMOVED = "storage.object_removed"
CHECKED = "storage.checked"
_TYPES = frozenset({CREATED, REMOVED, CHECKED})


def object_key(bucket: str, key: str) -> str:
    return f"{bucket}/{key}"


def directory_index(bucket: str, key: str) -> str:
    """The index of every object in ``key``'s directory (``bucket/dir``, ``bucket/`` at root)."""
    directory = key.rpartition("/")[0]
    return f"{bucket}/{directory}"


def _later(new: str | None, old: str | None) -> bool:
    """S3's rule: right-pad the shorter sequencer with zeros, then compare as strings."""
    if not new or not old:
        return True
    width = max(len(new), len(old))
    return new.upper().ljust(width, "0") >= old.upper().ljust(width, "0")


class StorageObjects:
    """Objects present in (or removed from) the buckets the service was told about."""

    name = "storage_objects"

    def keys(self, event: Event) -> Sequence[str]:
        p = event.payload
        if event.source == "storage" and event.type in _TYPES and p.get("bucket") and p.get("key"):
            return [object_key(str(p["bucket"]), str(p["key"]))]
        return []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        p = event.payload
        data: dict[str, Any] = dict(row.data) if row else {"bucket": p["bucket"], "key": p["key"]}
        if event.type != CHECKED:
            if not self._is_later(data, p):
                return row  # an older notification for this key: the row already knows better
            data["sequencer"] = p.get("sequencer") or data.get("sequencer")
            data["event_time"] = p.get("event_time") or data.get("event_time")
        if event.type == REMOVED or (event.type == CHECKED and not p.get("present")):
            data.update(present=False, size=0)
        else:
            data.update(
                present=True,
                size=int(p.get("size") or data.get("size") or 0),
                etag=p.get("etag") or data.get("etag"),
            )
            if p.get("storage_class"):
                data["storage_class"] = p["storage_class"]
            elif event.type == CREATED:
                data["storage_class"] = data.get("storage_class") or "STANDARD"
        index = directory_index(data["bucket"], data["key"])
        return Row(self.name, object_key(data["bucket"], data["key"]), index, data, event.seq)

    @staticmethod
    def _is_later(data: dict[str, Any], p: dict[str, Any]) -> bool:
        if p.get("sequencer") and data.get("sequencer"):
            return _later(str(p["sequencer"]), str(data["sequencer"]))
        if p.get("event_time") and data.get("event_time"):
            return str(p["event_time"]) >= str(data["event_time"])
        return True
