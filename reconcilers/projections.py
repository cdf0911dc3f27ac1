"""The projections: pure folds of the log into the rows the reconciler and the API read.

- ``rooms`` (key: room key ``tenant/room``): the desired spec, its generation, and the
  reconciler's own record of each segment (uid, resource, sid) from its intents and results.
- ``sessions`` (key: ``provider:sid``, indexed by channel key ``provider/channel`` while it
  lives, by ``provider/channel#closed`` once it ended): what the provider told us about a
  session, by notification or by query.
- ``presence`` (key and index: channel key): who is in the channel, from each provider's channel
  events (folded by its bundle, :mod:`reconcilers.providers.registry`).

Times come from the events (``occurred_at``, else ``received_at``), never from a clock, so a
replay of the log gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconcilers.catalog import CATALOG_PROJECTIONS
from reconcilers.conditions import CONDITION_PROJECTIONS, RECORDED
from reconcilers.events import Event, Projection, Row
from reconcilers.folding import PRESENCE, event_ms, forget_left
from reconcilers.folding import channel_key as channel_key  # where the service reads it
from reconcilers.idempotency import IdempotencyKeys
from reconcilers.providers import registry

KEEP_SEGMENTS = 6
#: What a room keeps of a segment that started and is not its newest: which session it is.
#: The plan reads the newest segment's bookkeeping (and that of any start still in doubt);
#: of the others only whose session is whose. Every pass decodes the room's row, and each
#: full entry costs ~330 bytes of JSON: a room that rolled over six times carried 2.3 KB.
SEGMENT_SUMMARY = ("uid", "sid", "started_ms")
CLOSED = "#closed"


def closed_index(index: str) -> str:
    """Where an ended session is filed: beside its channel's live sessions, not among them.

    A channel's live sessions are what every reconcile pass reads (by the channel's index);
    ended is final, and a channel that records day after day gathers thousands of ended
    sessions, which a pass would read and decode only to drop them. The one a pass may need
    (its current segment's) is read by key."""
    return index + CLOSED


class Rooms:
    """Desired state and the reconciler's segment bookkeeping, per room."""

    name = "rooms"

    def keys(self, event: Event) -> Sequence[str]:
        if event.source in ("api", "reconciler") and event.room and "/" in event.room:
            return (
                [event.room]
                if event.type.startswith(("room.", "intent.", "result.", "session."))
                else []
            )
        return []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        data: dict[str, Any] = dict(row.data) if row else {"generation": 0, "segments": {}}
        p = event.payload
        if event.type == "room.desired":
            data.update(
                tenant=p.get("tenant"),
                name=p.get("name"),
                spec=p["spec"],
                deleted=False,
                generation=data["generation"] + 1,
                channel_key=p.get("channel_key"),
                updated_ms=event_ms(event),
            )
        elif event.type == "room.deleted":
            if row is None:
                return None
            data.update(deleted=True, generation=data["generation"] + 1, updated_ms=event_ms(event))
        elif event.type == RECORDED and row is not None:
            data["holding"] = list(event.payload.get("holding", []))
        elif event.source == "reconciler" and row is not None:
            self._segment_event(data, event)
        else:
            return row
        index = data.get("channel_key")
        return Row(self.name, event.room or "", index, data, event.seq)

    @staticmethod
    def _segment_event(data: dict[str, Any], event: Event) -> None:
        p = event.payload
        if p.get("segment") is None:  # a stop of a recorder that is no segment of ours
            return
        segments: dict[str, Any] = {k: dict(v) for k, v in data.get("segments", {}).items()}
        seg = segments.setdefault(str(p["segment"]), {"uid": p.get("uid")})
        at = event_ms(event)
        failed = p.get("outcome")
        if event.type == "intent.reserve":
            attempts = int(seg.get("attempts") or 0) + 1
            seg.update(uid=p.get("uid"), reserve_intent_ms=at, attempts=attempts)
        elif event.type == "result.reserve":
            seg.update(resource_id=p.get("resource_id"), reserved_ms=at, start_failed=failed)
        elif event.type == "intent.start":
            seg.update(start_intent_ms=at, resource_id=p.get("resource_id"), start_failed=None)
            # From here this start may land unseen (a crash, a lost answer, a 65 that was in
            # fact carried out): its resource may be the one a stop of the session needs. Every
            # such resource is kept until an answer proves that start did not land.
            seg["doubt_resource_ids"] = _in_doubt(seg, p.get("resource_id"))
        elif event.type == "result.start":
            seg.update(start_failed=failed)
            if p.get("sid"):
                seg.update(sid=p["sid"], started_ms=at)
            elif failed != "retryable":  # it did not start (53: an earlier start did)
                doubts = _in_doubt(seg, None)
                seg["doubt_resource_ids"] = [r for r in doubts if r != p.get("resource_id")]
        elif event.type == "session.adopted":
            seg.update(sid=p.get("sid"), started_ms=at, start_failed=None)
        if failed == "rejected":
            data["rejected_generation"] = p.get("generation")
            data["rejected_reason"] = p.get("message", "")
        if len(segments) > KEEP_SEGMENTS:
            for old in sorted(segments, key=int)[: len(segments) - KEEP_SEGMENTS]:
                del segments[old]
        newest = max(segments, key=int)
        for number, entry in segments.items():
            if number != newest and entry.get("sid") and len(entry) > len(SEGMENT_SUMMARY):
                segments[number] = {k: entry[k] for k in SEGMENT_SUMMARY if k in entry}
        data["segments"] = segments
        data["segment"] = max(int(k) for k in segments)


#: The most resources kept in doubt per segment. Only one start of a segment's uid can land
#: (Agora refuses a second task with the same channel and uid), so these are candidates for
#: one session; a fault that lasts longer than 64 starts loses the oldest.
MAX_DOUBTS = 64


def _in_doubt(seg: dict[str, Any], resource: str | None) -> list[str]:
    """The segment's resources in doubt, with ``resource`` added. Rows folded before the list
    existed kept one (``doubt_resource_id``): it starts the list."""
    doubts = list(seg.get("doubt_resource_ids") or [])
    if not doubts and seg.get("doubt_resource_id"):
        doubts = [seg["doubt_resource_id"]]
    seg.pop("doubt_resource_id", None)
    seg.pop("doubt_before", None)
    if resource and resource not in doubts:
        doubts.append(resource)
    return doubts[-MAX_DOUBTS:]


class Sessions:
    """Provider sessions by sid, folded from notifications and from the reconciler's results."""

    name = "sessions"

    def keys(self, event: Event) -> Sequence[str]:
        provider = registry.find(event.source)
        if provider is not None:
            return provider.session_keys(event)
        if event.source == "reconciler" and event.payload.get("sid"):
            default = registry.DEFAULT_PROVIDER
            return [f"{event.payload.get('provider', default)}:{event.payload['sid']}"]
        return []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        data: dict[str, Any] = dict(row.data) if row else {"state": "unknown", "files": []}
        at = event_ms(event)
        provider = registry.find(event.source)
        if provider is not None:
            provider.fold_session(data, event, at)
            if "sid" not in data:
                return row
        else:
            self._reconciler(data, event, at)
        data["last_seen_ms"] = max(at, data.get("last_seen_ms") or 0)
        if data.get("state") != (row.data.get("state") if row else None):
            data["state_since_ms"] = at  # a condition's last_transition_time
        if data.get("exit_reason") == "no_users" and data.get("idle_exit_ms") is None:
            data["idle_exit_ms"] = at  # compared with presence: see ``plan`` on empty channels
        name = data.get("provider", registry.DEFAULT_PROVIDER)
        index = channel_key(name, data.get("channel") or "")
        if data.get("state") == "ended":
            index = closed_index(index)
        return Row(self.name, f"{name}:{data['sid']}", index, data, event.seq)

    @staticmethod
    def _reconciler(data: dict[str, Any], event: Event, at: int) -> None:
        p = event.payload
        ended = data.get("state") == "ended"
        if event.type in ("result.start", "session.adopted"):
            data.update(
                provider=p.get("provider", registry.DEFAULT_PROVIDER),
                sid=p["sid"],
                room=event.room,
                channel=p.get("channel") or data.get("channel"),
                mode=p.get("mode"),
                resource_id=p.get("resource_id"),
                segment=p.get("segment"),
                recorder_uid=p.get("uid"),
                uid=data.get("uid") or p.get("uid"),
            )
            data.setdefault("started_ms", at)
            if p.get("live_hash"):
                data["applied_live"] = p["live_hash"]
            if p.get("generation") is not None:  # what it runs: see ``plan.spec_drift``
                data.update(
                    generation=p["generation"],
                    applied_mode=p.get("mode"),
                    applied_storage=p.get("storage"),
                    applied_restart=p.get("restart_hash"),
                )
            if data.get("state") == "unknown":
                data["state"] = "starting"
        elif event.type == "observed.query":
            data.setdefault("sid", p["sid"])
            data["last_query_ms"] = at
            if ended:
                return
            if p.get("not_found"):
                data["state"] = "missing"
                data.setdefault("not_found_since_ms", at)
                if data.get("not_found_since_ms") is None:
                    data["not_found_since_ms"] = at
                return
            data["not_found_since_ms"] = None
            data["state"] = p.get("state", data["state"])
            data["raw_status"] = p.get("raw_status")
            if p.get("exit_reason") == "no_users" or (
                p.get("exit_reason") and not data.get("exit_reason")
            ):
                data["exit_reason"] = p["exit_reason"]  # a query can tell why it ended
            if p.get("state") == "recording":
                data["last_progress_ms"] = at
            if p.get("files"):
                data["files"] = sorted(set(data.get("files", [])) | set(p["files"]))
        elif event.type == "intent.stop":
            data.setdefault("sid", p["sid"])
            data["stop_intent_ms"] = at
            data["stop_attempts"] = int(data.get("stop_attempts") or 0) + 1
        elif event.type == "result.stop":
            data.setdefault("sid", p["sid"])
            data["stop_intent_ms"] = None
            # A stop the provider took counts; a transient failure is tried again, and so is a
            # refused one, later and less often (``plan``): a live recorder of ours that
            # nobody wants is stopped whatever answers came before (issue 20).
            data["stop_requested"] = p.get("outcome") in (None, "ended") or bool(
                data.get("stop_requested")
            )
            if p.get("outcome") == "rejected":
                data["stop_rejected"] = p.get("message") or True
                data["stop_refused_ms"] = at
                data["stop_refusals"] = int(data.get("stop_refusals") or 0) + 1
            if p.get("outcome") == "ended" and p.get("http_status") == 404 and not ended:
                # 404 is also what a task failing over answers (docs/providers/agora.md#3-query):
                # not proof that
                # it is gone. Missing, not ended: queried, and stopped again if it comes back.
                data.update(state="missing", stop_requested=False)
                if data.get("not_found_since_ms") is None:
                    data["not_found_since_ms"] = at
            elif p.get("outcome") in (None, "ended"):
                data["state"] = "ended"
                data.setdefault("exit_reason", "stopped")
            if p.get("files"):
                data["files"] = sorted(set(data.get("files", [])) | set(p["files"]))
        elif event.type == "observed.wrong_resource":
            # The provider said this resource is not the session's (Agora 1003).
            wrong = set(data.get("wrong_resources") or []) | {p.get("resource_id")}
            data["wrong_resources"] = sorted(r for r in wrong if r)
            if data.get("resource_id") == p.get("resource_id"):
                data["resource_id"] = None
        elif event.type == "observed.resource":
            # A call with this resource reached the session: it is the session's.
            data["resource_id"] = p.get("resource_id")
            data["wrong_resources"] = [
                r for r in data.get("wrong_resources") or [] if r != p.get("resource_id")
            ]
        elif event.type == "result.update" and p.get("outcome") is None:
            data["applied_live"] = p.get("live_hash")
            if p.get("generation") is not None:
                data["generation"] = p["generation"]


class Presence:
    """Who is in each channel: each provider folds its own channel events (its bundle's
    ``fold_presence``); the reconciler's snapshots of who is there fold here."""

    name = PRESENCE

    def keys(self, event: Event) -> Sequence[str]:
        provider = registry.find(event.source)
        if provider is not None:
            return provider.presence_keys(event)
        if event.type == PRESENCE_CHECKED and isinstance(event.payload.get("channel_key"), str):
            return [event.payload["channel_key"]]
        return []

    def apply(self, row: Row | None, event: Event) -> Row | None:
        data: dict[str, Any] = dict(row.data) if row else {"users": {}}
        if event.type == PRESENCE_CHECKED:
            return self._checked(row, data, event)
        provider = registry.find(event.source)
        return provider.fold_presence(row, event) if provider is not None else row

    def _checked(self, row: Row | None, data: dict[str, Any], event: Event) -> Row | None:
        """The provider's own list of who is in the channel (our recorders left out): a
        snapshot as of when it was taken. Users on it are present, everyone else is not; a
        later join or leave (a higher ``clientSeq``) still updates a user as usual."""
        listed = {str(uid) for uid in event.payload.get("users") or []}
        users: dict[str, Any] = {k: dict(v) for k, v in data.get("users", {}).items()}
        at = event_ms(event)
        ts = at // 1000  # RTC events' own ``ts`` is in seconds: a late 102 from before this
        for uid in listed - users.keys():  # snapshot must not empty it
            users[uid] = {"seq": -1}
        for uid, user in users.items():
            if user.get("present") != (uid in listed) or "at" not in user:
                user["at"] = at
            user["present"] = uid in listed
            if uid in listed:
                user["ts"] = max(user.get("ts") or 0, ts)
        forget_left(data, users, at)
        # Its users stand for the channel's existence; with none listed it is gone.
        data.update(users=users, open=False, open_ts=ts, known=True, seen_ms=at)
        key = str(event.payload["channel_key"])
        return Row(self.name, key, key, data, event.seq)


#: The reconciler's record of a provider's answer to "who is in this channel?".
PRESENCE_CHECKED = "observed.presence"

PROJECTIONS: tuple[Projection, ...] = (
    Rooms(),
    Sessions(),
    Presence(),
    *CATALOG_PROJECTIONS,
    IdempotencyKeys(),
    *CONDITION_PROJECTIONS,
)
