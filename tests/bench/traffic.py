"""Realistic Agora NCS traffic, and a long history of it, for the benchmarks.

What a busy deployment's intake sees (``docs/benchmarks.md`` describes the mix and its sources):

- many channels at once, their notifications interleaved: each channel runs one recording
  session after another, and each session sends the documented sequence of cloud-recording
  events (productId 3) in the order Agora's own logs show (recorder started, stream states,
  status updates, file infos, slice starts, upload progress, recorder leave, session exit,
  uploaded with its file list), while its users join and leave (productId 1, with
  ``clientSeq``: a pool of regulars and some newcomers);
- redundant deliveries (the same body twice) and retries (the same ``noticeId`` with a fresh
  ``notifyMs``, so a different body and signature), which the intake answers as duplicates.

:func:`notices` yields the HTTP bodies (for the intake bench); :func:`history` yields the
log a running service would have written for the same traffic (the reconciler's intents,
results and queries, the API's room declarations, the notifications) as ``NewEvent`` values,
to build a store with millions of events quickly (:func:`build_store`).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconcilers.events import NewEvent
from reconcilers.identity import UidRange, intent_id
from reconcilers.projections import PROJECTIONS
from reconcilers.providers.agora.notifications import parse_notification
from reconcilers.spec import RecordingSpec
from service.webhooks.agora import to_event

TENANT = "bench"
START = datetime(2026, 1, 1, tzinfo=UTC)
REDUNDANT = 0.03  # share of notices NCS delivers twice (redundant notifications)
RETRIED = 0.01  # share resent with a fresh notifyMs (no 200 in time)
UPLOAD_PROGRESS_EVERY = 4  # an upload progress report every this many other events
QUERY_EVERY = 12  # the reconciler queries a live session every this many of its events
REGULARS = 8  # users who come back to a channel session after session


def channel_name(i: int) -> str:
    return f"ch-{i:05d}"


def room_key(i: int) -> str:
    return f"{TENANT}/{channel_name(i)}"


@dataclass
class _Channel:
    """One channel's state as the traffic unfolds: its session, its users, its script."""

    index: int
    rng: random.Random
    session: int = 0
    segment: int = -1
    sid: str = ""
    sequence: int = 0
    client_seq: dict[int, int] = field(default_factory=dict)
    present: set[int] = field(default_factory=set)
    script: list[tuple[str, Any]] = field(default_factory=list)
    newcomer: int = 0

    @property
    def name(self) -> str:
        return channel_name(self.index)


class Traffic:
    """The interleaved event stream of ``channels`` channels (deterministic for a seed)."""

    def __init__(
        self,
        channels: int,
        seed: int = 1,
        *,
        with_reconciler: bool = False,
        uids: UidRange | None = None,
        ours: bool = True,
    ) -> None:
        """``ours``: the recorders have our uids (the reconciler's); else another tool's."""
        self.rng = random.Random(seed)
        self.ours = ours
        self.channels = [_Channel(i, random.Random(seed * 1_000_003 + i)) for i in range(channels)]
        self.with_reconciler = with_reconciler
        self.uids = uids or UidRange()
        self.now = START
        self._ms = int(START.timestamp() * 1000)

    def tick(self) -> int:
        """Time moves ~20 ms per event (50 events/s): a day of a busy deployment ~ 4.3M."""
        self._ms += self.rng.randint(5, 35)
        self.now = START + timedelta(milliseconds=self._ms - int(START.timestamp() * 1000))
        return self._ms

    def _recorder(self, ch: _Channel) -> str:
        if self.ours:
            return self.uids.recorder_uid(room_key(ch.index), ch.segment)
        return str(50_000 + ch.index * 2 + ch.segment % 2)

    # -- the scripts --------------------------------------------------------------------------

    def _next_session(self, ch: _Channel) -> None:
        ch.session += 1
        ch.segment += 1
        ch.sid = uuid.UUID(int=ch.rng.getrandbits(128)).hex
        ch.sequence = 0
        uid = self._recorder(ch)
        users = ch.rng.sample(range(1000, 1000 + REGULARS), ch.rng.randint(1, 4))
        if ch.rng.random() < 0.3:
            ch.newcomer += 1
            users.append(100_000 + ch.newcomer)
        s: list[tuple[str, Any]] = []
        if ch.session == 1 and self.with_reconciler:
            s.append(("declare", None))
        if not ch.present:
            s.append(("rtc", (101, None)))
        s += [("rtc", (103, u)) for u in users if u not in ch.present]
        if self.with_reconciler:
            s += [("rec", ("start", uid))]
        s += [
            ("ncs", (40, {"status": 0})),
            ("ncs", (30, {"status": 0})),
            ("ncs", (44, {"streamUid": 0, "state": 0})),
            ("ncs", (43, {"streamUid": 0, "state": 0})),
            ("ncs", (3, {"status": 4, "recordingMode": 1, "fileList": ""})),
            ("ncs", (42, {"mixedAllUser": True, "streamUid": "0", "trackType": "audio_and_video"})),
            ("ncs", (4, {"fileList": "PLAYLIST"})),
            ("ncs", (4, {"fileList": "PLAYLIST"})),
            ("ncs", (3, {"status": 5, "recordingMode": 1, "fileList": "PLAYLIST"})),
        ]
        middle: list[tuple[str, Any]] = []
        for _ in range(ch.rng.randint(6, 30)):
            pick = ch.rng.random()
            if pick < 0.35:
                middle.append(
                    (
                        "ncs",
                        (ch.rng.choice((43, 44)), {"streamUid": 0, "state": ch.rng.randint(0, 1)}),
                    )
                )
            elif pick < 0.5:
                middle.append(
                    (
                        "ncs",
                        (
                            42,
                            {
                                "mixedAllUser": True,
                                "streamUid": "0",
                                "trackType": "audio_and_video",
                            },
                        ),
                    )
                )
            elif pick < 0.7:
                u = ch.rng.choice(users)
                middle.append(("rtc", (ch.rng.choice((104, 103)), u)))
            elif pick < 0.8:
                middle.append(("rtc", (ch.rng.choice((105, 106)), 200_000 + ch.rng.randint(0, 50))))
            else:
                middle.append(("ncs", (33, {"progress": ch.rng.randint(1, 9999)})))
            if self.with_reconciler and len(middle) % QUERY_EVERY == 0:
                middle.append(("rec", ("query", None)))
        s += middle
        if self.with_reconciler and ch.rng.random() < 0.5:
            s += [("rec", ("stop", None))]
        s += [
            ("ncs", (41, {"leaveCode": 16 if ch.rng.random() < 0.7 else 4})),
            ("ncs", (43, {"streamUid": 0, "state": 1})),
            ("ncs", (11, {"exitStatus": 0})),
            ("ncs", (44, {"streamUid": 0, "state": 1})),
            ("ncs", (31, {"status": 0, "fileList": "FILES"})),
            ("ncs", (33, {"progress": 10000})),
        ]
        if ch.rng.random() < 0.4:  # everyone leaves: the channel is destroyed
            s += [("rtc", (104, u)) for u in sorted(set(users) | ch.present)]
            s.append(("rtc", (102, None)))
        ch.script = s
        ch.script.reverse()

    def _ncs(self, ch: _Channel, event_type: int, details: dict[str, Any]) -> dict[str, Any]:
        ms = self._ms
        uid = self._recorder(ch)
        prefix = f"rec/{TENANT}/{ch.name}/seg{ch.segment}/{ch.sid}_{ch.name}"
        details = dict(details)
        if details.get("fileList") == "PLAYLIST":
            details["fileList"] = f"{prefix}.m3u8"
        elif details.get("fileList") == "FILES":
            details["fileList"] = [
                {"fileName": f"{prefix}{ext}", "trackType": "audio_and_video", "uid": "0",
                 "mixedAllUser": True, "isPlayable": True, "sliceStartTime": ms - 600_000}
                for ext in (".m3u8", "_0.mp4")
            ]  # fmt: skip
        if event_type in (43, 44):
            details["UtcMs"] = ms
        if event_type == 42:
            details.update(startUtcMs=ms, discontinueUtcMs=ms)
        from reconcilers.providers.agora.notifications import RECORDING_EVENTS

        ch.sequence += 1
        return {
            "noticeId": uuid.UUID(int=self.rng.getrandbits(128)).hex,
            "productId": 3,
            "eventType": event_type,
            "notifyMs": ms + self.rng.randint(1, 40),
            "sid": ch.sid,
            "payload": {
                "cname": ch.name,
                "uid": uid,
                "sid": ch.sid,
                "sequence": ch.sequence,
                "sendts": ms,
                "serviceType": {40: 1, 41: 1, 42: 1, 43: 1, 44: 1, 30: 2, 31: 2, 33: 2}.get(
                    event_type, 0
                ),
                "details": {"msgName": RECORDING_EVENTS[event_type], **details},
            },
        }

    def _rtc(self, ch: _Channel, event_type: int, uid: int | None) -> dict[str, Any] | None:
        ts = self._ms // 1000
        payload: dict[str, Any] = {"channelName": ch.name, "ts": ts}
        if uid is None:
            if event_type == 102:
                payload["lastUid"] = next(iter(ch.present), 0)
                ch.present.clear()
        else:
            joining = event_type in (103, 105, 107)
            if joining == (uid in ch.present) and event_type in (103, 104):
                return None  # already in (or out): nothing to say
            (ch.present.add if joining else ch.present.discard)(uid)
            ch.client_seq[uid] = ch.client_seq.get(uid, 0) + 1
            payload.update(uid=uid, platform=7, clientSeq=ch.client_seq[uid])
            if not joining:
                payload.update(reason=1, duration=ch.rng.randint(10, 3600))
        return {
            "noticeId": uuid.UUID(int=self.rng.getrandbits(128)).hex,
            "productId": 1,
            "eventType": event_type,
            "notifyMs": self._ms + self.rng.randint(1, 40),
            "payload": payload,
        }

    # -- the streams --------------------------------------------------------------------------

    def _step(self) -> tuple[_Channel, str, Any]:
        ch = self.rng.choice(self.channels)
        if not ch.script:
            self._next_session(ch)
        kind, arg = ch.script.pop()
        return ch, kind, arg

    def notices(self) -> Iterator[tuple[bytes, str]]:
        """NCS bodies, for ever: ``(body, kind)``, kind ``new``, ``redundant`` or ``retry``."""
        while True:
            self.tick()
            ch, kind, arg = self._step()
            if kind != "ncs" and kind != "rtc":
                continue
            doc = self._ncs(ch, *arg) if kind == "ncs" else self._rtc(ch, *arg)
            if doc is None:
                continue
            body = json.dumps(doc, separators=(",", ":")).encode()
            yield body, "new"
            if self.rng.random() < REDUNDANT:
                yield body, "redundant"
            if self.rng.random() < RETRIED:
                doc["notifyMs"] += self.rng.randint(1000, 9000)
                yield json.dumps(doc, separators=(",", ":")).encode(), "retry"

    def history(self) -> Iterator[NewEvent]:
        """The log the service would have written for this traffic, for ever."""
        while True:
            yield from self.step()

    def step(self) -> list[NewEvent]:
        """The events of the traffic's next step (none, one, or a few together)."""
        at = self.now
        self.tick()
        ch, kind, arg = self._step()
        if kind in ("ncs", "rtc"):
            doc = self._ncs(ch, *arg) if kind == "ncs" else self._rtc(ch, *arg)
            if doc is None:
                return []
            raw = json.dumps(doc, separators=(",", ":"))
            event = to_event(parse_notification(doc), doc, self.now, raw)
            if self.rng.random() < REDUNDANT + RETRIED:  # answered as a duplicate
                return [event, event]
            return [event]
        if kind == "declare":
            return [self._declare(ch)]
        return list(self._reconciler(ch, arg[0], arg[1], at))

    def _declare(self, ch: _Channel) -> NewEvent:
        spec = RecordingSpec(channel=ch.name, options={"transcodingConfig": {"width": 640}})
        key = room_key(ch.index)
        return NewEvent(
            source="api",
            dedup_key=f"{key}|{uuid.UUID(int=self.rng.getrandbits(128))}",
            type="room.desired",
            room=key,
            payload={
                "tenant": TENANT,
                "name": ch.name,
                "spec": spec.to_json(),
                "channel_key": f"agora/{ch.name}",
            },
            occurred_at=self.now,
            received_at=self.now,
        )

    def _reconciler(
        self, ch: _Channel, what: str, uid: str | None, at: datetime
    ) -> Iterator[NewEvent]:
        room = room_key(ch.index)

        def event(
            type_: str, key: str, payload: dict[str, Any], session: str | None = None
        ) -> NewEvent:
            return NewEvent("reconciler", key, type_, payload, room, session, self.now, self.now)

        if what == "start":
            base = {"segment": ch.segment, "uid": uid, "generation": 1, "provider": "agora"}
            key = intent_id(room, 1, ch.segment, "reserve")
            resource = f"res-{ch.sid[:16]}"
            yield event("intent.reserve", key, base)
            yield event("result.reserve", key + "|result", {**base, "resource_id": resource})
            base |= {"resource_id": resource, "channel": ch.name, "mode": "mix"}
            key = intent_id(room, 1, ch.segment, f"start:{resource}")
            yield event("intent.start", key, base)
            yield event(
                "result.start", key + "|result", {**base, "sid": ch.sid, "live_hash": "h"}, ch.sid
            )
        elif what == "query":
            payload = {
                "sid": ch.sid,
                "provider": "agora",
                "state": "recording",
                "raw_status": 5,
                "files": [],
            }
            yield event(
                "observed.query",
                f"{room}|query|{ch.sid}|{self.now.timestamp():.6f}",
                payload,
                ch.sid,
            )
        else:
            base = {
                "sid": ch.sid,
                "provider": "agora",
                "segment": ch.segment,
                "reason": "segment rollover",
            }
            key = intent_id(room, 1, ch.segment, f"stop:{ch.sid}")
            yield event("intent.stop", key, base, ch.sid)
            yield event(
                "result.stop",
                key + "|result",
                {**base, "files": [], "upload_status": "uploaded"},
                ch.sid,
            )


def history(channels: int, count: int, seed: int = 1) -> Iterator[NewEvent]:
    """``count`` events of a service's log over ``channels`` channels."""
    stream = Traffic(channels, seed, with_reconciler=True).history()
    for _ in range(count):
        yield next(stream)


def build_store(path: Path, channels: int, count: int, seed: int = 1, batch: int = 500) -> int:
    """Write ``count`` history events into a fresh SQLite store at ``path`` through the real
    writer (projections folded as live), without the fsync; returns the last seq."""
    from service.store.sqlite.writer import SqliteWriter

    writer = SqliteWriter(path, PROJECTIONS)
    writer.open()
    writer.conn.execute("PRAGMA synchronous=OFF")
    pending: list[NewEvent] = []
    last = 0
    try:
        for event in history(channels, count, seed):
            pending.append(event)
            if len(pending) >= batch:
                _, new = writer.write(pending)
                last = new[-1].seq if new else last
                pending = []
        if pending:
            _, new = writer.write(pending)
            last = new[-1].seq if new else last
    finally:
        writer.close()
    return last
