"""The executor: carries out a plan's actions, each provider call between an intent and a result.

Crash safety comes from the order of writes: the intent (with the resource id and the recorder
uid) is durable before the call, the result after it. A pass that finds an intent without a
result re-runs it with the same identity, and the provider's own uniqueness (Agora: channel +
uid, resource single use) refuses a second task; notifications carrying channel, uid and sid
then let the plan adopt the task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from reconcilers.actions import Action, Adopt, Presence, Query, Reserve, Start, Stop, Update
from reconcilers.events import Fence, NewEvent, Store
from reconcilers.identity import intent_id
from reconcilers.observed import Desired
from reconcilers.outcomes import Ended, Failure, Outcome, WrongResource
from reconcilers.plan import live_hash
from reconcilers.projections import channel_key
from reconcilers.providers.base import (
    ChannelUsers,
    Provider,
    Reservation,
    SessionHandle,
    SessionStatus,
    StartRequest,
    StopResult,
    StorageTarget,
)
from reconcilers.report import (
    Adopted,
    ExecutionReport,
    Present,
    Queried,
    Reserved,
    Skipped,
    Started,
    Stopped,
    Updated,
    failure_label,
)

T = TypeVar("T")


@dataclass
class Executor:
    """Runs actions for one room against a provider, writing intents and results to the store."""

    store: Store
    provider: Provider
    storage_for: Callable[[str], StorageTarget]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Whether a uid is one of our own recorders (they do not count as people in a channel).
    is_recorder: Callable[[str], bool] = field(default=lambda uid: False)
    #: The lease the pass holds (several replicas): on every append, checked by the store.
    fence: Fence | None = None

    async def run(
        self,
        room: str,
        desired: Desired | None,
        actions: tuple[Action, ...],
        handles: dict[str, SessionHandle],
    ) -> ExecutionReport:
        """Carry out ``actions`` in order; one ``(action, outcome)`` per step in the report
        (two for a reserve: the reservation, then the start on it)."""
        report = ExecutionReport()
        for action in actions:
            match action:
                case Reserve() if desired is not None:
                    reserved = await self._reserve(room, desired, action)
                    report.record(action, reserved)
                    if isinstance(reserved, Reserved):
                        started = await self._start(room, desired, action, reserved.resource_id)
                        report.record(action, started)
                case Start() if desired is not None:
                    report.record(
                        action, await self._start(room, desired, action, action.resource_id)
                    )
                case Adopt() if desired is not None:
                    report.record(action, await self._adopt(room, desired, action))
                case Presence() if desired is not None:
                    report.record(action, await self._presence(room, desired))
                case Query() if action.sid in handles:
                    report.record(action, await self._query(room, handles[action.sid]))
                case Stop() if action.sid in handles:
                    report.record(action, await self._stop(room, desired, action, handles))
                case Update() if action.sid in handles:
                    report.record(action, await self._update(room, desired, action, handles))
                case _:
                    report.record(action, Skipped("nothing to act on"))
        return report

    # -- actions ---------------------------------------------------------------------------

    def _request(self, room: str, desired: Desired, action: Reserve | Start) -> StartRequest:
        spec = desired.spec
        storage = self.storage_for(spec.storage)
        prefix = (*storage.prefix, *_safe_prefix(room), f"seg{action.segment}")
        return StartRequest(
            room=room,
            channel=spec.channel,
            mode=spec.mode,
            recorder_uid=action.uid,
            options=spec.options,
            storage=storage,
            file_prefix=prefix,
            max_seconds=spec.max_segment_seconds,
        )

    async def _reserve(self, room: str, desired: Desired, action: Reserve) -> Reserved | Outcome:
        base = {
            "segment": action.segment,
            "uid": action.uid,
            "generation": desired.generation,
            "provider": self.provider.name,
        }
        key = intent_id(room, desired.generation, action.segment, "reserve", action.attempt)
        # Why, for people and for the chaos checks (a rollover is the one allowed overlap).
        await self._append(room, "intent.reserve", key, {**base, "reason": action.reason})
        result = await self.provider.reserve(self._request(room, desired, action))
        if isinstance(result, Reservation):
            await self._append(
                room, "result.reserve", key + "|result", {**base, "resource_id": result.resource_id}
            )
            return Reserved(result.resource_id)
        await self._append(room, "result.reserve", key + "|result", {**base, **_failure(result)})
        return result

    async def _start(
        self, room: str, desired: Desired, action: Reserve | Start, resource_id: str | None
    ) -> Started | Outcome:
        spec = desired.spec
        base = {
            "segment": action.segment,
            "uid": action.uid,
            "generation": desired.generation,
            "provider": self.provider.name,
            "resource_id": resource_id,
            "channel": spec.channel,
            "mode": spec.mode,
            "storage": spec.storage,
            "restart_hash": spec.restart_fingerprint(),
        }
        key = intent_id(
            room, desired.generation, action.segment, f"start:{resource_id}", action.attempt
        )
        await self._append(room, "intent.start", key, base)
        result = await self.provider.start(
            self._request(room, desired, action), Reservation(resource_id=resource_id)
        )
        if isinstance(result, SessionHandle):
            applied = {"sid": result.sid, "live_hash": live_hash(spec.live_options())}
            await self._append(
                room, "result.start", key + "|result", {**base, **applied}, session=result.sid
            )
            return Started(result.sid)
        await self._append(room, "result.start", key + "|result", {**base, **_failure(result)})
        return result

    async def _adopt(self, room: str, desired: Desired, action: Adopt) -> Adopted:
        spec = desired.spec
        await self._append(
            room,
            "session.adopted",
            f"{room}|adopt|{action.segment}|{action.sid}",
            {
                "segment": action.segment,
                "uid": action.uid,
                "sid": action.sid,
                "provider": self.provider.name,
                "channel": spec.channel,
                "mode": spec.mode,
                "storage": spec.storage,
                "restart_hash": spec.restart_fingerprint(),
                "generation": desired.generation,
                "resource_id": action.resource_id,
            },
            session=action.sid,
        )
        return Adopted(action.sid)

    async def _query(self, room: str, handle: SessionHandle) -> Queried | Outcome:
        """Ask about the session and log the answer; a 404 (``Ended``) is an answer too."""
        handle, result = await self._on_session(room, handle, self.provider.query)
        now = self.clock()
        key = f"{room}|query|{handle.sid}|{now.timestamp():.6f}"
        payload: dict[str, Any] = {"sid": handle.sid, "provider": handle.provider}
        match result:
            case SessionStatus():
                payload.update(
                    state=result.state,
                    raw_status=result.raw_status,
                    files=[f.name for f in result.files],
                )
                if result.detail.get("exit_reason"):
                    payload["exit_reason"] = result.detail["exit_reason"]
                outcome: Queried | Outcome = Queried(result.state)
            case Ended():
                payload.update(not_found=True, **_failure(result))
                outcome = result
            case _:
                return result  # no answer about the session: nothing to log
        await self._append(room, "observed.query", key, payload, session=handle.sid)
        return outcome

    async def _presence(self, room: str, desired: Desired) -> Present | Skipped | Outcome:
        """Ask the provider who is in the channel and log the answer; the presence projection
        takes it as a snapshot. Our own recorders are left out: they keep nobody busy."""
        spec = desired.spec
        result = await self.provider.channel_users(spec.channel)
        if result is None:
            return Skipped("the provider cannot tell")
        if not isinstance(result, ChannelUsers):
            return result
        users = [uid for uid in result.users if not self.is_recorder(uid)]
        now = self.clock()
        await self._append(
            room,
            "observed.presence",
            f"{room}|presence|{now.timestamp():.6f}",
            {
                "provider": self.provider.name,
                "channel_key": channel_key(self.provider.name, spec.channel),
                "exists": result.exists,
                "users": users,
            },
        )
        return Present(len(users))

    async def _stop(
        self,
        room: str,
        desired: Desired | None,
        action: Stop,
        handles: dict[str, SessionHandle],
    ) -> Stopped | Outcome:
        handle = handles[action.sid]
        generation = desired.generation if desired else 0
        key = intent_id(
            room, generation, action.segment or -1, f"stop:{handle.sid}", action.attempt
        )
        base = {
            "sid": handle.sid,
            "provider": handle.provider,
            "segment": action.segment,
            "reason": action.reason,
        }
        await self._append(room, "intent.stop", key, base, session=handle.sid)
        handle, result = await self._on_session(room, handle, self.provider.stop)
        if isinstance(result, StopResult):
            payload = {
                **base,
                "files": [f.name for f in result.files],
                "upload_status": result.upload_status,
            }
            await self._append(room, "result.stop", key + "|result", payload, session=handle.sid)
            return Stopped(handle.sid)
        await self._append(
            room, "result.stop", key + "|result", {**base, **_failure(result)}, session=handle.sid
        )
        return result

    async def _update(
        self,
        room: str,
        desired: Desired | None,
        action: Update,
        handles: dict[str, SessionHandle],
    ) -> Updated | Outcome:
        handle = handles[action.sid]
        digest = live_hash(action.options)
        generation = desired.generation if desired else None
        key = f"{room}|update|{handle.sid}|g{generation}|{digest}"
        # The intent changes no projection (no sid, no segment): it is there so that the
        # store's fence check comes before the call, as for every other change a pass makes.
        await self._append(
            room,
            "intent.update",
            key + "|intent",
            {"target_sid": handle.sid, "provider": handle.provider, "live_hash": digest},
        )

        async def update(h: SessionHandle) -> Outcome | None:
            return await self.provider.update(h, action.options)

        handle, result = await self._on_session(room, handle, update)
        payload: dict[str, Any] = {
            "sid": handle.sid,
            "provider": handle.provider,
            "live_hash": digest,
            "generation": generation,  # the session's observed generation, once it took it
        }
        if result is not None:
            payload.update(_failure(result))
        await self._append(room, "result.update", key, payload, session=handle.sid)
        return Updated(handle.sid) if result is None else result

    # -- helpers ---------------------------------------------------------------------------

    async def _on_session(
        self,
        room: str,
        handle: SessionHandle,
        call: Callable[[SessionHandle], Awaitable[T]],
    ) -> tuple[SessionHandle, T]:
        """Call with the handle's resource and, while the provider says the session is not
        under it (Agora 1003), with each of its other candidates. Each refusal is logged (the
        resource is never tried for that session again), and so is the resource that worked."""
        resources = [handle.resource_id, *handle.resource_candidates]
        result: T | None = None
        for tried, resource in enumerate(resources):
            attempt = replace(handle, resource_id=resource, resource_candidates=())
            result = await call(attempt)
            if not isinstance(result, WrongResource):
                if tried and not isinstance(result, Failure):
                    await self._resource_event(room, "observed.resource", attempt)
                return attempt, result
            await self._resource_event(room, "observed.wrong_resource", attempt)
        assert result is not None
        return handle, result

    async def _resource_event(self, room: str, type_: str, handle: SessionHandle) -> None:
        payload = {
            "sid": handle.sid,
            "provider": handle.provider,
            "resource_id": handle.resource_id,
        }
        key = f"{room}|{type_}|{handle.sid}|{handle.resource_id}"
        await self._append(room, type_, key, payload, session=handle.sid)

    async def _append(
        self, room: str, type_: str, key: str, payload: dict[str, Any], session: str | None = None
    ) -> None:
        await self.store.append(
            NewEvent(
                source="reconciler",
                dedup_key=key,
                type=type_,
                payload=payload,
                room=room,
                session=session,
                occurred_at=self.clock(),
                fence=self.fence,
            )
        )


def _failure(failure: Failure) -> dict[str, Any]:
    return {
        "outcome": failure_label(failure),
        "code": failure.code,
        "message": failure.message,
        "http_status": failure.http_status,
    }


def _safe_prefix(room: str) -> tuple[str, ...]:
    """File prefixes allow a-z, A-Z and 0-9 only: keep those from the room key's parts."""
    parts = (
        "".join(ch for ch in part if ch.isascii() and ch.isalnum()) for part in room.split("/")
    )
    return tuple(p[:40] for p in parts if p)
