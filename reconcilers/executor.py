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
from typing import Any, Literal, TypeVar, get_args

from reconcilers.events import Fence, NewEvent, Store
from reconcilers.identity import intent_id
from reconcilers.observed import Desired
from reconcilers.outcomes import (
    AlreadyRecording,
    ChannelEmpty,
    Ended,
    Failure,
    Outcome,
    RateLimited,
    Rejected,
    Retryable,
    WrongResource,
)
from reconcilers.plan import Action, live_hash
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

T = TypeVar("T")

ActionOutcome = Literal[
    "reserved",
    "started",
    "adopted",
    "queried",
    "not_found",
    "presence",
    "stopped",
    "already_ended",
    "updated",
    "skipped",
    "retryable",
    "rate_limited",
    "channel_empty",
    "already_recording",
    "ended",
    "rejected",
]
"""What an action came to: a closed set, so that it can label a metric (the detail, which may
name a session, goes only to the log and the CLI)."""

ACTION_OUTCOMES: frozenset[str] = frozenset(get_args(ActionOutcome))


OUTCOME_KIND: dict[type[Failure], ActionOutcome] = {
    Retryable: "retryable",
    RateLimited: "rate_limited",
    ChannelEmpty: "channel_empty",
    AlreadyRecording: "already_recording",
    Ended: "ended",
    Rejected: "rejected",
}


def outcome_kind(failure: Failure) -> ActionOutcome:
    for cls in type(failure).__mro__:
        if cls in OUTCOME_KIND:
            return OUTCOME_KIND[cls]
    return "retryable"




@dataclass(frozen=True)
class ActionDone:
    """One action carried out: its outcome (closed set) and a detail for people."""

    action: Action
    outcome: ActionOutcome
    detail: str = ""

    @property
    def text(self) -> str:
        return f"{self.outcome}: {self.detail}" if self.detail else self.outcome


@dataclass
class ExecutionReport:
    """What a pass did: the actions run and the failures that should back the key off."""

    done: list[ActionDone] = field(default_factory=list)
    transient: list[Failure] = field(default_factory=list)
    rejected: list[Failure] = field(default_factory=list)

    def record(self, action: Action, outcome: ActionOutcome, detail: str = "") -> None:
        self.done.append(ActionDone(action, outcome, detail))


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
        report = ExecutionReport()
        for action in actions:
            handle = handles.get(action.sid or "")
            if action.kind == "reserve" and desired is not None:
                await self._reserve_and_start(room, desired, action, report)
            elif action.kind == "start" and desired is not None:
                await self._start(room, desired, action, action.resource_id, report)
            elif action.kind == "adopt" and desired is not None:
                await self._append(
                    room,
                    "session.adopted",
                    f"{room}|adopt|{action.segment}|{action.sid}",
                    {
                        "segment": action.segment,
                        "uid": action.uid,
                        "sid": action.sid,
                        "provider": self.provider.name,
                        "channel": desired.spec.channel,
                        "mode": desired.spec.mode,
                        "storage": desired.spec.storage,
                        "restart_hash": desired.spec.restart_fingerprint(),
                        "generation": desired.generation,
                        "resource_id": action.resource_id,
                    },
                    session=action.sid,
                )
                report.record(action, "adopted", str(action.sid))
            elif action.kind == "query" and handle is not None:
                await self._query(room, action, handle, report)
            elif action.kind == "presence" and desired is not None:
                await self._presence(room, desired, action, report)
            elif action.kind == "stop" and handle is not None:
                await self._stop(room, desired, action, handle, report)
            elif action.kind == "update" and handle is not None:
                await self._update(room, desired, action, handle, report)
            else:
                report.record(action, "skipped", "nothing to act on")
        return report

    # -- actions ---------------------------------------------------------------------------

    def _request(self, room: str, desired: Desired, action: Action) -> StartRequest:
        spec = desired.spec
        storage = self.storage_for(spec.storage)
        prefix = (*storage.prefix, *_safe_prefix(room), f"seg{action.segment or 0}")
        return StartRequest(
            room=room,
            channel=spec.channel,
            mode=spec.mode,
            recorder_uid=action.uid or "",
            options=spec.options,
            storage=storage,
            file_prefix=prefix,
            max_seconds=spec.max_segment_seconds,
        )

    async def _reserve_and_start(
        self, room: str, desired: Desired, action: Action, report: ExecutionReport
    ) -> None:
        base = {
            "segment": action.segment,
            "uid": action.uid,
            "generation": desired.generation,
            "provider": self.provider.name,
        }
        key = intent_id(room, desired.generation, action.segment or 0, "reserve", action.attempt)
        # Why, for people and for the chaos checks (a rollover is the one allowed overlap).
        await self._append(room, "intent.reserve", key, {**base, "reason": action.reason})
        result = await self.provider.reserve(self._request(room, desired, action))
        if isinstance(result, Reservation):
            await self._append(
                room, "result.reserve", key + "|result", {**base, "resource_id": result.resource_id}
            )
            report.record(action, "reserved", str(result.resource_id))
            await self._start(room, desired, action, result.resource_id, report)
            return
        await self._append(room, "result.reserve", key + "|result", {**base, **_failure(result)})
        self._note(report, action, result)

    async def _start(
        self,
        room: str,
        desired: Desired,
        action: Action,
        resource_id: str | None,
        report: ExecutionReport,
    ) -> None:
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
            room, desired.generation, action.segment or 0, f"start:{resource_id}", action.attempt
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
            report.record(action, "started", result.sid)
            return
        await self._append(room, "result.start", key + "|result", {**base, **_failure(result)})
        self._note(report, action, result)

    async def _query(
        self, room: str, action: Action, handle: SessionHandle, report: ExecutionReport
    ) -> None:
        handle, result = await self._on_session(room, handle, self.provider.query)
        now = self.clock()
        key = f"{room}|query|{handle.sid}|{now.timestamp():.6f}"
        payload: dict[str, Any] = {"sid": handle.sid, "provider": handle.provider}
        if isinstance(result, SessionStatus):
            payload.update(
                state=result.state,
                raw_status=result.raw_status,
                files=[f.name for f in result.files],
            )
            if result.detail.get("exit_reason"):
                payload["exit_reason"] = result.detail["exit_reason"]
        elif isinstance(result, Ended):
            payload.update(not_found=True, **_failure(result))
        else:
            self._note(report, action, result)
            return
        await self._append(room, "observed.query", key, payload, session=handle.sid)
        if isinstance(result, Ended):
            report.record(action, "not_found", str(result.code))
        else:
            report.record(action, "queried", str(payload.get("state")))

    async def _presence(
        self, room: str, desired: Desired, action: Action, report: ExecutionReport
    ) -> None:
        """Ask the provider who is in the channel and log the answer; the presence projection
        takes it as a snapshot. Our own recorders are left out: they keep nobody busy."""
        spec = desired.spec
        result = await self.provider.channel_users(spec.channel)
        if result is None:
            report.record(action, "skipped", "the provider cannot tell")
            return
        if not isinstance(result, ChannelUsers):
            self._note(report, action, result)
            return
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
        report.record(
            action, "presence", f"{len(users)} in the channel" if users else "nobody in the channel"
        )

    async def _stop(
        self,
        room: str,
        desired: Desired | None,
        action: Action,
        handle: SessionHandle,
        report: ExecutionReport,
    ) -> None:
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
            report.record(action, "stopped", handle.sid)
            return
        await self._append(
            room, "result.stop", key + "|result", {**base, **_failure(result)}, session=handle.sid
        )
        if isinstance(result, Ended):
            report.record(action, "already_ended", str(result.code))
        else:
            self._note(report, action, result)

    async def _update(
        self,
        room: str,
        desired: Desired | None,
        action: Action,
        handle: SessionHandle,
        report: ExecutionReport,
    ) -> None:
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
            self._note(report, action, result)
        else:
            report.record(action, "updated", handle.sid)
        await self._append(room, "result.update", key, payload, session=handle.sid)

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

    @staticmethod
    def _note(report: ExecutionReport, action: Action, failure: Failure) -> None:
        kind = outcome_kind(failure)
        report.record(action, kind, f"{failure.code} {failure.message}".strip())
        if isinstance(failure, Rejected):
            report.rejected.append(failure)
        elif isinstance(failure, Retryable | RateLimited):
            report.transient.append(failure)


def _failure(failure: Failure) -> dict[str, Any]:
    return {
        "outcome": outcome_kind(failure),
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
