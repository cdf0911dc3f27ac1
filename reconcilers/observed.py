"""What the reconciler knows about a room, as plain values: the input of :func:`plan`.

Built from projection rows by :func:`observe` (pure), so the same log always gives the same
observation. Times are milliseconds since the epoch, taken from events, never from a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from reconcilers.identity import UidRange
from reconcilers.spec import RecordingSpec

LiveState = Literal["starting", "recording", "stopping", "ended", "missing", "unknown"]
ALIVE: frozenset[str] = frozenset({"starting", "recording", "stopping", "missing", "unknown"})


@dataclass(frozen=True)
class SessionObs:
    """One provider session seen in the room's channel (ours or not)."""

    sid: str
    uid: str
    state: LiveState
    ours: bool
    segment: int | None = None
    started_ms: int | None = None
    last_progress_ms: int | None = None
    last_query_ms: int | None = None
    not_found_since_ms: int | None = None
    stop_requested: bool = False  # a stop succeeded (the provider took it)
    exit_reason: str | None = None
    applied_live: str | None = None
    stop_intent_ms: int | None = None  # a stop was begun and its result is not in yet
    stop_attempts: int = 0
    stop_refused_ms: int | None = None  # when a stop was last refused (rejected)
    stop_refusals: int = 0
    idle_exit_ms: int | None = None  # when we learned it left an empty channel
    state_since_ms: int | None = None  # when ``state`` last changed
    #: What it was started (or last updated) with: the spec's generation, mode, storage
    #: profile and restart options' fingerprint (``None``: not known, e.g. a foreign one).
    generation: int | None = None
    applied_mode: str | None = None
    applied_storage: str | None = None
    applied_restart: str | None = None

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


@dataclass(frozen=True)
class SegmentObs:
    """The reconciler's own record of one segment: what it intended and what came back."""

    segment: int
    uid: str
    resource_id: str | None = None
    reserved_ms: int | None = None
    start_intent_ms: int | None = None
    start_failed: str | None = None  # outcome kind of a failed start
    sid: str | None = None
    started_ms: int | None = None
    attempts: int = 0  # reservations made for this segment so far
    #: Every resource a start of this segment was sent on whose answer does not say it failed
    #: (no answer, a timeout, 65, 62), oldest first: the session may run under any of them.
    doubt_resource_ids: tuple[str, ...] = ()

    @property
    def session_resource_id(self) -> str | None:
        """The likeliest resource id of a session this segment's uid runs though no start's
        answer named it: the oldest in doubt (the first start that landed makes the later
        ones fail). The others stay candidates (``reconcilers.engine``)."""
        return self.doubt_resource_ids[0] if self.doubt_resource_ids else self.resource_id


@dataclass(frozen=True)
class Desired:
    """A room's declared spec; ``room`` (``tenant/room``) seeds its recorder uids."""

    spec: RecordingSpec
    generation: int
    room: str = ""

    @property
    def uid_seed(self) -> str:
        return self.room or self.spec.channel


@dataclass(frozen=True)
class Observed:
    """Everything ``plan`` may look at for one room."""

    segments: tuple[SegmentObs, ...] = ()
    sessions: tuple[SessionObs, ...] = ()
    channel_empty: bool | None = None
    rejected_generation: int | None = None
    #: When we last learned who is in the channel (our clock), if ever.
    presence_seen_ms: int | None = None

    @property
    def current(self) -> SegmentObs | None:
        return max(self.segments, key=lambda s: s.segment) if self.segments else None

    def session(self, sid: str | None) -> SessionObs | None:
        return next((s for s in self.sessions if s.sid == sid), None) if sid else None


def observe(
    room_row: dict[str, Any] | None,
    session_rows: list[dict[str, Any]],
    presence_row: dict[str, Any] | None,
    uids: UidRange,
) -> tuple[Desired | None, Observed]:
    """Turn projection rows (see ``reconcilers.projections``) into plan inputs."""
    desired: Desired | None = None
    segments: tuple[SegmentObs, ...] = ()
    rejected: int | None = None
    if room_row is not None:
        if not room_row.get("deleted") and room_row.get("spec"):
            name = room_row.get("name")
            room = f"{room_row.get('tenant')}/{name}" if name else ""
            desired = Desired(
                RecordingSpec.from_json(room_row["spec"]), room_row["generation"], room
            )
        segments = tuple(
            SegmentObs(
                segment=int(n),
                uid=seg["uid"],
                resource_id=seg.get("resource_id"),
                reserved_ms=seg.get("reserved_ms"),
                start_intent_ms=seg.get("start_intent_ms"),
                start_failed=seg.get("start_failed"),
                sid=seg.get("sid"),
                started_ms=seg.get("started_ms"),
                attempts=int(seg.get("attempts") or 0),
                doubt_resource_ids=tuple(
                    seg.get("doubt_resource_ids")
                    or ([seg["doubt_resource_id"]] if seg.get("doubt_resource_id") else [])
                ),
            )
            for n, seg in sorted(room_row.get("segments", {}).items(), key=lambda kv: int(kv[0]))
        )
        rejected = room_row.get("rejected_generation")
    sid_segment = {s.sid: s.segment for s in segments if s.sid}
    uid_segment = {s.uid: s.segment for s in segments}
    sessions = tuple(
        SessionObs(
            sid=row["sid"],
            uid=str(row.get("uid")),
            state=row.get("state", "unknown"),
            ours=uids.contains(row.get("recorder_uid") or row.get("uid")),
            segment=_segment_of(row, sid_segment, uid_segment),
            started_ms=row.get("started_ms"),
            last_progress_ms=row.get("last_progress_ms"),
            last_query_ms=row.get("last_query_ms"),
            not_found_since_ms=row.get("not_found_since_ms"),
            stop_requested=bool(row.get("stop_requested")),
            stop_intent_ms=row.get("stop_intent_ms"),
            stop_attempts=int(row.get("stop_attempts") or 0),
            stop_refused_ms=row.get("stop_refused_ms"),
            stop_refusals=int(row.get("stop_refusals") or 0),
            idle_exit_ms=row.get("idle_exit_ms"),
            state_since_ms=row.get("state_since_ms"),
            generation=row.get("generation"),
            applied_mode=row.get("applied_mode"),
            applied_storage=row.get("applied_storage"),
            applied_restart=row.get("applied_restart"),
            exit_reason=row.get("exit_reason"),
            applied_live=row.get("applied_live"),
        )
        for row in session_rows
        if row.get("sid")
    )
    empty: bool | None = None
    if presence_row is not None and presence_row.get("known"):
        present = any(u.get("present") for u in presence_row.get("users", {}).values())
        empty = not present and not presence_row.get("open")
    seen = presence_row.get("seen_ms") if presence_row else None
    return desired, Observed(segments, sessions, empty, rejected, seen)


def _segment_of(
    row: dict[str, Any], sid_segment: dict[str, int], uid_segment: dict[str, int]
) -> int | None:
    """The segment a session belongs to: the one whose sid it is, else the one its row names
    (started or adopted by it), else, for a session only known from notifications, the latest
    segment with its uid (a candidate for adoption). Never the uid's guess for a session of a
    segment the room's row has forgotten: that made segment 38 adopt segment 22's session, a
    duplicate event, every pass, for good (``make soak``, issue 20)."""
    if row["sid"] in sid_segment:
        return sid_segment[row["sid"]]
    if row.get("segment") is not None:
        return int(row["segment"])
    return uid_segment.get(str(row.get("recorder_uid")))
