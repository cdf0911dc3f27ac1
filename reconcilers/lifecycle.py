"""A recording's status, duration and size, decided from catalog rows (pure, no I/O, no clock).

``recording → processing → ready → archived``, or ``failed``:

- ``recording`` until it is stopped: by the catalog's stop, or by the room's desired state no
  longer asking for a recording (the rooms API can stop a room too).
- ``processing`` once stopped, while a segment is still live or a file is not yet confirmed.
- ``ready`` when every segment has ended and every file it reported is present in storage. The
  provider's upload events (Agora 31/32, the stop's ``uploadingStatus``) name the files to wait
  for; storage events (or the service's own HEADs) confirm each one. A ``backuped`` upload
  just means some confirmations come late.
- ``failed`` when nothing was recorded (Agora stop ``435``, or every segment ended without a
  file), when the provider says files are lost (Agora event 90), or when a recovery found
  files missing with nobody left to upload them.
- ``archived`` once the archive copy has been confirmed.

Duration is the sum over segments of (end - first slice start); size is the sum of the stored
objects that belong to the files (the files and their companions, e.g. ``.ts`` slices next to
an ``.m3u8``: same directory, name starting with the file's stem).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["recording", "processing", "ready", "archived", "failed"]


@dataclass(frozen=True)
class FileView:
    name: str
    present: bool
    size: int
    sid: str


@dataclass(frozen=True)
class RecordingView:
    id: str
    tenant: str
    room: str
    room_name: str
    status: Status
    started_ms: int
    stopped_ms: int | None
    duration_seconds: int
    size_bytes: int
    files: tuple[FileView, ...]
    objects: tuple[str, ...]  # every stored object of the recording: files and companions
    sids: tuple[str, ...]
    reason: str | None
    deleted_ms: int | None
    archived_ms: int | None
    created_ms: int
    backuped: bool


def stem(name: str) -> str:
    base = name.rpartition("/")[2]
    return base.rpartition(".")[0] or base


def directory(name: str) -> str:
    return name.rpartition("/")[0]


def stop_ms(rec: Mapping[str, Any], room: Mapping[str, Any] | None) -> int | None:
    """When the recording stopped: its own stop, else the room's (stopped or deleted) change."""
    if rec.get("stopped_ms"):
        return int(rec["stopped_ms"])
    if rec.get("origin") == "sync" or room is None:
        return None
    stopped = room.get("deleted") or (room.get("spec") or {}).get("state") != "recording"
    updated = room.get("updated_ms") or 0
    return int(updated) if stopped and updated >= rec["started_ms"] else None


def members(
    rec: Mapping[str, Any], stopped: int | None, segments: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The segments of a recording: its imported sids, or the sessions the reconciler started
    for its room between its start and its stop."""
    sids = set(rec.get("sids") or ())
    found = []
    for seg in segments:
        if sids:
            if seg.get("sid") in sids:
                found.append(seg)
            continue
        started = seg.get("started_ms") or 0
        if (
            seg.get("room") == rec["room"]
            and started >= rec["started_ms"]
            and (stopped is None or started <= stopped)
        ):
            found.append(seg)
    return sorted(found, key=lambda s: (s.get("started_ms") or 0, str(s.get("sid"))))


def derive(
    rec: Mapping[str, Any],
    room: Mapping[str, Any] | None,
    segments: Iterable[Mapping[str, Any]],
    objects: Mapping[str, Mapping[str, Any]],
) -> RecordingView:
    """``objects`` maps an object key (relative to the recording's bucket) to its row data."""
    stopped = stop_ms(rec, room)
    segs = members(rec, stopped, segments)
    if stopped is None and rec.get("origin") == "sync" and segs:
        ends = [s.get("ended_ms") for s in segs]
        stopped = max(int(e) for e in ends if e) if all(ends) else None
    files: list[FileView] = []
    counted: dict[str, None] = {}
    size = 0
    duration_ms = 0
    for seg in segs:
        seg_files: Mapping[str, Any] = seg.get("files") or {}
        for name in sorted(seg_files):
            obj = objects.get(name) or {}
            present = bool(obj.get("present"))
            files.append(FileView(name, present, int(obj.get("size") or 0), str(seg.get("sid"))))
            for key, other in objects.items():
                same_dir = directory(key) == directory(name)
                if key in counted or not other.get("present"):
                    continue
                if same_dir and stem(key).startswith(stem(name)):
                    counted[key] = None
                    size += int(other.get("size") or 0)
        if seg.get("ended_ms"):
            starts = [f.get("slice_start_ms") for f in seg_files.values()]
            first = min([s for s in starts if s], default=seg.get("started_ms") or 0)
            duration_ms += max(0, int(seg["ended_ms"]) - int(first))
    status, reason = _status(rec, stopped, segs, files)
    return RecordingView(
        id=rec["id"],
        tenant=rec["tenant"],
        room=rec["room"],
        room_name=rec["room_name"],
        status=status,
        started_ms=rec["started_ms"],
        stopped_ms=stopped,
        duration_seconds=duration_ms // 1000,
        size_bytes=size,
        files=tuple(files),
        objects=tuple(counted),
        sids=tuple(str(s.get("sid")) for s in segs),
        reason=reason,
        deleted_ms=rec.get("deleted_ms"),
        archived_ms=rec.get("archived_ms"),
        created_ms=rec.get("created_ms") or rec["started_ms"],
        backuped=any(s.get("upload") == "backuped" for s in segs),
    )


def _status(
    rec: Mapping[str, Any],
    stopped: int | None,
    segs: list[Mapping[str, Any]],
    files: list[FileView],
) -> tuple[Status, str | None]:
    if rec.get("archived_ms"):
        return "archived", None
    if rec.get("failed"):
        return "failed", str(rec["failed"].get("reason"))
    if stopped is None:
        return "recording", None
    if any(s.get("lost") for s in segs):
        return "failed", "files_lost"
    if any(not s.get("ended_ms") for s in segs):
        return "processing", None
    if not files:
        empty = all(s.get("no_data") or s.get("upload") or s.get("abnormal_exit") for s in segs)
        return ("failed", "nothing_recorded") if empty else ("processing", None)
    if all(f.present for f in files):
        return "ready", None
    return "processing", None
