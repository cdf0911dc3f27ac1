"""The executor against a scripted provider adapter: each outcome an adapter can give becomes one
``(action, outcome)`` in the report, with its label and detail, and the intents and results
around each call are in the log."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconcilers.actions import Action, Adopt, Presence, Query, Reserve, Start, Stop, Update
from reconcilers.events import Store
from reconcilers.executor import Executor
from reconcilers.observed import Desired
from reconcilers.outcomes import (
    AlreadyRecording,
    ChannelEmpty,
    Ended,
    Failure,
    RateLimited,
    Rejected,
    Retryable,
    WrongResource,
)
from reconcilers.projections import PROJECTIONS
from reconcilers.providers.base import (
    ChannelUsers,
    Mode,
    Reservation,
    SessionHandle,
    SessionStatus,
    StartRequest,
    StopResult,
    StorageTarget,
)
from reconcilers.report import (
    ExecutionReport,
    Present,
    Queried,
    Reserved,
    Skipped,
    Started,
    Stopped,
    Updated,
)
from reconcilers.spec import RecordingSpec
from service.store import open_store

ROOM = "acme/standup"
NOW = datetime(2026, 1, 6, 10, 30, tzinfo=UTC)
STORAGE = StorageTarget("s3", "bucket", "us-east-1", "AKIATEST", "secret-key-for-tests")
DESIRED = Desired(RecordingSpec(channel="standup"), generation=3)
HANDLE = SessionHandle("agora", "standup", "900001", "mix", "sid1", resource_id="res1")
RECORDER = "900001"


class Scripted:
    """A provider adapter that answers each call with the next answer scripted for it, and
    remembers the resource each session call was made with."""

    name = "agora"

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = answers
        self.resources: list[str | None] = []

    def _next(self, call: str) -> Any:
        return self.answers[call].pop(0)

    def validate_options(self, mode: Mode, options: dict[str, Any]) -> dict[str, Any]:
        return options

    async def reserve(self, request: StartRequest) -> Any:
        return self._next("reserve")

    async def start(self, request: StartRequest, reservation: Reservation) -> Any:
        self.resources.append(reservation.resource_id)
        return self._next("start")

    async def query(self, handle: SessionHandle) -> Any:
        self.resources.append(handle.resource_id)
        return self._next("query")

    async def update(self, handle: SessionHandle, options: dict[str, Any]) -> Any:
        self.resources.append(handle.resource_id)
        return self._next("update")

    async def stop(self, handle: SessionHandle) -> Any:
        self.resources.append(handle.resource_id)
        return self._next("stop")

    async def channel_users(self, channel: str) -> Any:
        return self._next("channel_users")

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'x.db'}", PROJECTIONS)
    try:
        yield opened
    finally:
        await opened.close()


async def execute(
    store: Store,
    provider: Scripted,
    *actions: Action,
    desired: Desired | None = DESIRED,
    handle: SessionHandle = HANDLE,
) -> ExecutionReport:
    ticks = itertools.count()

    def clock() -> datetime:  # a second per read: each look is its own event
        return NOW + timedelta(seconds=next(ticks))

    executor = Executor(
        store, provider, lambda _: STORAGE, clock, is_recorder=lambda uid: uid == RECORDER
    )
    return await executor.run(ROOM, desired, actions, {handle.sid: handle})


async def logged(store: Store) -> list[tuple[str, dict[str, Any]]]:
    return [(event.type, event.payload) for event in await store.read_log(room=ROOM)]


FAILURES: list[tuple[Failure, str]] = [
    (Retryable(65, "request timeout"), "retryable"),
    (RateLimited(429, "slow down", retry_after=7.0), "rate_limited"),
    (ChannelEmpty("channel_empty", "nobody there"), "channel_empty"),
    (AlreadyRecording(53, "task exists"), "already_recording"),
    (Ended(404, "failed to find worker"), "ended"),
    (Rejected(2, "bad storage"), "rejected"),
    (WrongResource(1003, "sid does not match resourceId"), "rejected"),
]


async def test_a_reserve_is_reported_then_the_start_on_it(store: Store) -> None:
    provider = Scripted(reserve=[Reservation("res1")], start=[HANDLE])
    reserve = Reserve("start: nothing running", segment=0, uid=RECORDER)
    report = await execute(store, provider, reserve)
    assert [(d.action, d.outcome) for d in report.done] == [
        (reserve, Reserved("res1")),
        (reserve, Started("sid1")),
    ]
    assert [(d.label, d.detail) for d in report.done] == [("reserved", "res1"), ("started", "sid1")]
    assert provider.resources == ["res1"], "the start goes to the resource just reserved"
    types = [kind for kind, _ in await logged(store)]
    assert types == ["intent.reserve", "result.reserve", "intent.start", "result.start"]


@pytest.mark.parametrize(("failure", "label"), FAILURES)
async def test_a_failed_reserve_is_its_failure_and_no_start(
    store: Store, failure: Failure, label: str
) -> None:
    reserve = Reserve("start: nothing running", segment=0, uid=RECORDER)
    report = await execute(store, Scripted(reserve=[failure]), reserve)
    (done,) = report.done
    assert (done.action, done.outcome, done.label) == (reserve, failure, label)
    assert done.detail == f"{failure.code} {failure.message}"
    (intent, _), (result, payload) = await logged(store)
    assert (intent, result) == ("intent.reserve", "result.reserve")
    assert (payload["outcome"], payload["code"]) == (label, failure.code)


@pytest.mark.parametrize(("failure", "label"), FAILURES)
async def test_a_failed_start_on_an_earlier_reservation(
    store: Store, failure: Failure, label: str
) -> None:
    start = Start("start: resource reserved", segment=0, uid=RECORDER, resource_id="res9")
    provider = Scripted(start=[failure])
    report = await execute(store, provider, start)
    assert [(d.outcome, d.label) for d in report.done] == [(failure, label)]
    assert provider.resources == ["res9"]


async def test_a_query_reports_the_state_and_a_404_as_not_found(store: Store) -> None:
    gone = Ended(404, "failed to find worker")
    provider = Scripted(query=[SessionStatus("recording", 5), gone, Retryable(500)])
    looks = [Query("refresh", sid="sid1") for _ in range(3)]
    report = await execute(store, provider, *looks)
    assert [d.outcome for d in report.done] == [Queried("recording"), gone, Retryable(500)]
    assert [(d.label, d.detail) for d in report.done] == [
        ("queried", "recording"),
        ("not_found", "404"),
        ("retryable", "500"),
    ]
    answers = [payload for kind, payload in await logged(store) if kind == "observed.query"]
    assert [a.get("state") for a in answers] == ["recording", None], "a 5xx tells nothing"
    assert answers[1]["not_found"] is True


async def test_a_stop_reports_stopped_already_ended_or_its_failure(store: Store) -> None:
    provider = Scripted(stop=[StopResult(), Ended(435, "no recording"), Rejected(1001, "no")])
    stops = [Stop("not desired", sid="sid1", uid=RECORDER, segment=0, attempt=n) for n in range(3)]
    report = await execute(store, provider, *stops)
    assert [d.outcome for d in report.done][:1] == [Stopped("sid1")]
    assert [(d.label, d.detail) for d in report.done] == [
        ("stopped", "sid1"),
        ("already_ended", "435"),
        ("rejected", "1001 no"),
    ]
    results = [payload for kind, payload in await logged(store) if kind == "result.stop"]
    assert [r.get("outcome") for r in results] == [None, "ended", "rejected"]


async def test_a_stop_tries_the_sessions_other_candidate_resources(store: Store) -> None:
    """Agora 1003: the session is not under that resource; the next candidate is tried."""
    handle = SessionHandle(
        "agora", "standup", RECORDER, "mix", "sid1", "resA", resource_candidates=("resB",)
    )
    provider = Scripted(stop=[WrongResource(1003, "sid does not match resourceId"), StopResult()])
    stop = Stop("not desired", sid="sid1", uid=RECORDER, segment=0)
    report = await execute(store, provider, stop, handle=handle)
    assert [d.outcome for d in report.done] == [Stopped("sid1")]
    assert provider.resources == ["resA", "resB"]
    types = [kind for kind, _ in await logged(store)]
    assert types == ["intent.stop", "observed.wrong_resource", "observed.resource", "result.stop"]


async def test_an_update_reports_updated_or_its_failure(store: Store) -> None:
    provider = Scripted(
        query=[SessionStatus("recording")], update=[None, RateLimited(429, "", retry_after=3.0)]
    )
    updates = [Update("live options", sid="sid1", options={"layout": n}) for n in range(2)]
    report = await execute(store, provider, Query("refresh", sid="sid1"), *updates)
    assert [(d.outcome, d.label) for d in report.done[1:]] == [
        (Updated("sid1"), "updated"),
        (RateLimited(429, "", retry_after=3.0), "rate_limited"),
    ]
    results = [payload for kind, payload in await logged(store) if kind == "result.update"]
    assert [r.get("outcome") for r in results] == [None, "rate_limited"]


async def test_presence_counts_people_not_our_recorders(store: Store) -> None:
    provider = Scripted(
        channel_users=[ChannelUsers(True, ("11", RECORDER)), ChannelUsers(True, (RECORDER,)), None]
    )
    ask = Presence("channel empty: ask the provider who is in it")
    report = await execute(store, provider, ask, ask, ask)
    assert [(d.outcome, d.detail) for d in report.done] == [
        (Present(1), "1 in the channel"),
        (Present(0), "nobody in the channel"),
        (Skipped("the provider cannot tell"), "the provider cannot tell"),
    ]
    assert [d.label for d in report.done] == ["presence", "presence", "skipped"]
    snapshots = [payload for kind, payload in await logged(store) if kind == "observed.presence"]
    assert [s["users"] for s in snapshots] == [["11"], []]


async def test_an_adoption_is_logged_without_a_provider_call(store: Store) -> None:
    adopt = Adopt("adopt", segment=0, uid=RECORDER, sid="sidX", resource_id="res1")
    report = await execute(store, Scripted(), adopt)
    assert [(d.label, d.detail) for d in report.done] == [("adopted", "sidX")]
    ((kind, payload),) = await logged(store)
    assert (kind, payload["sid"], payload["generation"]) == ("session.adopted", "sidX", 3)


async def test_actions_with_nothing_to_act_on_are_skipped(store: Store) -> None:
    """A session call for a sid the pass has no handle for, or a start with nothing desired."""
    unknown = Query("refresh", sid="gone")
    reserve = Reserve("start", segment=0, uid=RECORDER)
    report = await execute(store, Scripted(), unknown, desired=DESIRED)
    report.done += (await execute(store, Scripted(), reserve, desired=None)).done
    assert [(d.outcome, d.label) for d in report.done] == [
        (Skipped("nothing to act on"), "skipped"),
        (Skipped("nothing to act on"), "skipped"),
    ]
    assert await logged(store) == []
