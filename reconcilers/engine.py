"""One reconcile pass for one key: observe → plan → execute, ending in one of four results.

Keys are room keys (``tenant/room``) or channel keys for sessions nobody desires
(``channel:agora/<channel>``). Webhooks and API calls only enqueue keys; every decision reads the
projections afresh (level-triggered), so a lost or repeated hint changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconcilers.actions import Query, Reserve, Start
from reconcilers.conditions import RECORDED, holding
from reconcilers.events import Fence, NewEvent, Row, Store
from reconcilers.executor import Executor
from reconcilers.observed import Desired, Observed, observe
from reconcilers.outcomes import Failure, RateLimited, Rejected, Retryable
from reconcilers.plan import Plan, PlanConfig, plan
from reconcilers.providers.base import Provider, SessionHandle, StorageTarget
from reconcilers.providers.registry import DEFAULT_PROVIDER
from reconcilers.report import ExecutionReport
from reconcilers.workqueue import Done, RequeueAfter, Result, Retry, Terminal

CHANNEL_PREFIX = "channel:"


@dataclass(frozen=True)
class RoomState:
    """The inputs of a pass, kept so that ``recctl reconcile --dry-run`` can show them."""

    key: str
    desired: Desired | None
    observed: Observed
    handles: dict[str, SessionHandle]
    room_row: Row | None


@dataclass(frozen=True)
class PassResult:
    """A pass's plan, what its execution reported, and how the workqueue should treat the key."""

    key: str
    plan: Plan
    report: ExecutionReport | None
    result: Result
    #: The room's conditions as the pass found them (``reconcilers.conditions.holding``).
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueryRequest:
    """Sessions to ask the provider about in ``key``'s worker (:meth:`Reconciler.query`)."""

    key: str
    provider: str
    sids: Collection[str]
    reason: str
    #: The key whose state holds the sessions' handles (a channel's), when not ``key``'s own.
    state_of: str | None = None


@dataclass
class Reconciler:
    """Reads state, plans, and executes for one key at a time (the workqueue serialises keys)."""

    store: Store
    providers: Mapping[str, Provider]
    storage_for: Callable[[str], StorageTarget]
    config: PlanConfig = field(default_factory=PlanConfig)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    async def state(self, key: str) -> RoomState:
        room_row: Row | None = None
        if key.startswith(CHANNEL_PREFIX):
            channel_key = key.removeprefix(CHANNEL_PREFIX)
            owners = await self.store.rows("rooms", room=channel_key)
            if any(not r.data.get("deleted") for r in owners):
                # A room wants this channel now (it may have been declared since the key was
                # queued): its own passes look after the channel's recorders, not this one.
                channel_key = ""
        else:
            room_row = await self.store.get_row("rooms", key)
            channel_key = (room_row.data.get("channel_key") if room_row else None) or ""
        segments = room_row.data.get("segments", {}) if room_row else {}
        segment_sids = {seg.get("sid") for seg in segments.values()}
        session_rows, presence = await self._channel_rows(channel_key, _current_sid(segments))
        in_doubt = _resources_in_doubt(segments)
        relevant = [
            r.data
            for r in session_rows
            if (r.data.get("state") != "ended" or r.data.get("sid") in segment_sids)
            and (room_row is None or self._of_room(key, r.data, segment_sids))
        ]
        desired, observed = observe(
            room_row.data if room_row else None,
            relevant,
            presence.data if presence else None,
            self.config.uids,
        )
        handles = {d["sid"]: _handle(d, in_doubt) for d in relevant if d.get("sid")}
        return RoomState(key, desired, observed, handles, room_row)

    async def _channel_rows(
        self, channel_key: str, current_sid: str | None
    ) -> tuple[list[Row], Row | None]:
        """The channel's live sessions and presence, and the current segment's session.

        Ended sessions are filed apart (``closed_index``): a channel gathers them by the
        thousand, and the plan reads one, its current segment's, which is read by key
        (whether or not it ended, so that a pass reads as much with a long history as with
        none). The reads go to the store together."""
        if not channel_key:
            return [], None
        provider = channel_key.split("/", 1)[0] if "/" in channel_key else DEFAULT_PROVIDER
        live, presence, current = await asyncio.gather(
            self.store.rows("sessions", room=channel_key),
            self.store.get_row("presence", channel_key),
            self.store.get_row("sessions", f"{provider}:{current_sid}") if current_sid else _none(),
        )
        if current is not None and all(r.key != current.key for r in live):
            live = sorted([*live, current], key=lambda r: r.key)  # as the index orders them
        return live, presence

    def _of_room(self, key: str, session: dict[str, Any], segment_sids: set[Any]) -> bool:
        """Whether a room's pass may see a session of its channel: its own (a sid it started,
        or one of its two recorder uids: adoptable), or a recorder we did not start. Another
        room's recorder is that room's business: a deleted room sharing the channel with a new
        one must not stop the new one's session."""
        uids = self.config.uids
        uid = session.get("recorder_uid") or session.get("uid")
        if session.get("sid") in segment_sids or not uids.contains(uid):
            return True
        return str(uid) in (uids.recorder_uid(key, 0), uids.recorder_uid(key, 1))

    def plan(self, state: RoomState, config: PlanConfig | None = None) -> Plan:
        now_ms = int(self.clock().timestamp() * 1000)
        return plan(state.desired, state.observed, now_ms, config or self.config)

    async def reconcile(
        self, key: str, config: PlanConfig | None = None, fence: Fence | None = None
    ) -> PassResult:
        """``fence``: the lease this pass acts under (several replicas); every append of the
        pass carries it, and the store refuses them all once another replica holds the key."""
        state = await self.state(key)
        the_plan = self.plan(state, config)
        await self._record_conditions(state, fence)
        conditions = holding(state.desired, state.observed)
        if not the_plan.actions:
            return _result(key, the_plan, None, conditions)
        provider_name = state.desired.spec.provider if state.desired else _provider_of(state)
        provider = self.providers.get(provider_name)
        if provider is None:
            failed = Terminal(f"no provider {provider_name!r}")
            return PassResult(key, the_plan, None, failed, conditions)
        executor = Executor(
            self.store, provider, self.storage_for, self.clock, self.config.uids.contains, fence
        )
        report = await executor.run(key, state.desired, the_plan.actions, state.handles)
        return _result(key, the_plan, report, conditions)

    async def query(self, request: QueryRequest, fence: Fence | None = None) -> ExecutionReport:
        """Query the provider about ``request.sids`` now, outside the plan (the recordings
        API's sync and recover), under ``request.key``; sessions the state of
        ``request.state_of`` holds no handle for are skipped. Run by the key's worker, like a
        pass, so that one worker per key holds."""
        report = ExecutionReport()
        provider = self.providers.get(request.provider)
        if provider is None or not request.sids:
            return report
        state = await self.state(request.state_of or request.key)
        sids = sorted(sid for sid in request.sids if sid in state.handles)
        if not sids:
            return report
        executor = Executor(
            self.store, provider, self.storage_for, self.clock, self.config.uids.contains, fence
        )
        queries = tuple(Query(request.reason, sid=sid) for sid in sids)
        handles = {sid: state.handles[sid] for sid in sids}
        return await executor.run(request.key, None, queries, handles)

    async def _record_conditions(self, state: RoomState, fence: Fence | None) -> None:
        """Log the room's conditions when they differ from what its row last recorded: the
        ``room_conditions`` index a filtered listing reads (:mod:`reconcilers.conditions`)."""
        row = state.room_row
        if row is None or row.data.get("deleted"):
            return
        now = holding(state.desired, state.observed)
        if tuple(row.data.get("holding") or ()) == now:
            return
        await self.store.append(
            NewEvent(
                source="reconciler",
                dedup_key=f"{state.key}|conditions|{row.seq}|{','.join(now)}",
                type=RECORDED,
                payload={"holding": list(now)},
                room=state.key,
                occurred_at=self.clock(),
                fence=fence,
            )
        )


_MAYBE_STARTED = (None, "retryable")
"""A start's outcomes after which its own session may run: no answer yet, or one that may have
reached the backend (Agora's 62/65, a timeout). Not "this uid records already": that session
was started with an earlier resource id, which a stop with this one would not match."""


def _resources_in_doubt(segments: dict[str, Any]) -> dict[str, list[str]]:
    """Recorder uid -> every resource its segments' starts were sent on that may have landed
    unseen (the service died between intent and result, the answer was lost, or it was an
    error that Agora documents as "may have happened"), oldest first. Agora's notifications
    tell a session's sid but not its resource id, and a stop needs both: the right one is
    among these (issue 20: a start answered 65 had landed on A, the retries on B and C
    answered 62, and a stop with C was refused with 1003).

    Rows folded before the list existed keep one resource (``doubt_resource_id``), or none:
    then the latest start's, when its answer never came or was retryable."""
    found: dict[str, list[str]] = {}
    for _, seg in sorted(segments.items(), key=lambda item: int(item[0])):
        if "doubt_resource_ids" in seg:
            resources = list(seg["doubt_resource_ids"] or [])
        elif "doubt_resource_id" in seg:
            resources = [seg["doubt_resource_id"]] if seg["doubt_resource_id"] else []
        elif seg.get("start_intent_ms") and seg.get("start_failed") in _MAYBE_STARTED:
            resources = [seg["resource_id"]] if seg.get("resource_id") else []
        else:
            resources = []
        known = found.setdefault(str(seg.get("uid")), [])
        known.extend(r for r in resources if r not in known)
    return {uid: resources for uid, resources in found.items() if resources}


def _handle(session: dict[str, Any], in_doubt: dict[str, list[str]]) -> SessionHandle:
    """A session's handle: the resource it is known by, else the first in doubt for its uid,
    and the others in doubt to try when the provider says that one is not the session's."""
    uid = str(session.get("recorder_uid") or session.get("uid"))
    wrong = set(session.get("wrong_resources") or [])
    known = session.get("resource_id")
    candidates = [r for r in ([known] if known else []) + in_doubt.get(uid, []) if r not in wrong]
    candidates = list(dict.fromkeys(candidates))
    return SessionHandle(
        provider=session.get("provider", DEFAULT_PROVIDER),
        channel=session.get("channel") or "",
        recorder_uid=uid,
        mode=session.get("mode") or "mix",
        sid=session["sid"],
        resource_id=candidates[0] if candidates else None,
        resource_candidates=tuple(candidates[1:]),
    )


async def _none() -> Row | None:
    return None


def _current_sid(segments: dict[str, Any]) -> str | None:
    """The sid of the room's latest segment, if it has one."""
    if not segments:
        return None
    sid = segments[max(segments, key=int)].get("sid")
    return str(sid) if sid else None


def _provider_of(state: RoomState) -> str:
    """The provider when nothing is desired (a deleted room, an orphan channel): the one named
    by its channel key ``<provider>/<channel>``."""
    ckey = state.key.removeprefix(CHANNEL_PREFIX) if state.key.startswith(CHANNEL_PREFIX) else ""
    if state.room_row is not None:
        ckey = state.room_row.data.get("channel_key") or ckey
    return ckey.split("/", 1)[0] if "/" in ckey else DEFAULT_PROVIDER


def retry_after(failures: Sequence[Failure]) -> float:
    """The longest ``Retry-After`` a provider asked for in this pass (0: none): the workqueue
    waits at least that long, whatever its own backoff says."""
    asked = [f.retry_after or 0.0 for f in failures if isinstance(f, RateLimited)]
    return max(asked, default=0.0)


def pass_result(the_plan: Plan, report: ExecutionReport | None) -> Result:
    """How the workqueue treats the key after a pass: every outcome's consequence, here alone.

    A transient failure (a 5xx, a timeout, a 429) retries with the key's backoff, and no sooner
    than the longest ``Retry-After`` asked for. A rejected reserve or start (credentials,
    storage, parameters: the spec's fault) is terminal: the plan waits for a spec change, so
    only a new event (a ``PUT``) or the resync brings the key back. Any other outcome is an
    answer the next plan reads from the log: the key comes back when this plan said to.
    """
    done = report.done if report is not None else []
    transient = [d.outcome for d in done if isinstance(d.outcome, Retryable | RateLimited)]
    if transient:
        return Retry(transient[0], min_delay=retry_after(transient))
    rejected = [
        d.outcome
        for d in done
        if isinstance(d.action, Reserve | Start) and isinstance(d.outcome, Rejected)
    ]
    if rejected:
        return Terminal(rejected[0])
    if the_plan.requeue_after is None:
        return Done()
    return RequeueAfter(the_plan.requeue_after)


def _result(
    key: str, the_plan: Plan, report: ExecutionReport | None, conditions: tuple[str, ...] = ()
) -> PassResult:
    return PassResult(key, the_plan, report, pass_result(the_plan, report), conditions)
