"""``pass_result``: every outcome of a pass's actions to one of the workqueue's four results, in
one place (a transient failure retries, no sooner than its ``Retry-After``; a rejected reserve
or start is terminal; anything else follows the plan's own requeue)."""

from __future__ import annotations

import pytest

from reconcilers.actions import Action, Query, Reserve, Start, Stop
from reconcilers.engine import pass_result
from reconcilers.outcomes import (
    AlreadyRecording,
    ChannelEmpty,
    Ended,
    RateLimited,
    Rejected,
    Retryable,
    WrongResource,
)
from reconcilers.plan import Plan
from reconcilers.report import ActionOutcome, ExecutionReport, Started, Stopped
from reconcilers.workqueue import Done, RequeueAfter, Retry, Terminal

RESERVE = Reserve("start: nothing running", segment=0, uid="900001")
START = Start("start: resource reserved", segment=0, uid="900001", resource_id="res1")
STOP = Stop("not desired", sid="sid1", uid="900001")
QUERY = Query("refresh", sid="sid1")


def plan(requeue_after: float | None = 5.0) -> Plan:
    return Plan((RESERVE,), requeue_after, "starting")


def report(*done: tuple[Action, ActionOutcome]) -> ExecutionReport:
    executed = ExecutionReport()
    for action, outcome in done:
        executed.record(action, outcome)
    return executed


def test_without_a_report_the_plan_decides() -> None:
    assert pass_result(plan(5.0), None) == RequeueAfter(5.0)
    assert pass_result(plan(None), None) == Done()


def test_a_transient_failure_retries_no_sooner_than_the_longest_retry_after() -> None:
    first = Retryable(65, "timeout")
    done = report((STOP, first), (QUERY, RateLimited(429, retry_after=9.0)),
                  (RESERVE, RateLimited(429, retry_after=4.0)))
    assert pass_result(plan(), done) == Retry(first, min_delay=9.0)
    assert pass_result(plan(), report((QUERY, first))) == Retry(first, min_delay=0.0)


@pytest.mark.parametrize("action", [RESERVE, START])
def test_a_rejected_reserve_or_start_is_terminal(action: Action) -> None:
    rejected = Rejected(2, "invalid storage credentials")
    assert pass_result(plan(), report((action, rejected))) == Terminal(rejected)


def test_a_transient_failure_beside_a_rejection_still_retries() -> None:
    flaky = Retryable(500)
    done = report((STOP, flaky), (RESERVE, Rejected(2, "bad storage")))
    assert pass_result(plan(), done) == Retry(flaky, min_delay=0.0)


@pytest.mark.parametrize(
    "done",
    [
        (STOP, Rejected(1001, "refused")),  # a refused stop: the plan backs off its own retry
        (STOP, WrongResource(1003, "sid does not match resourceId")),
        (QUERY, Ended(404, "failed to find worker")),
        (STOP, Ended(435, "no recording")),
        (RESERVE, ChannelEmpty("channel_empty")),
        (START, AlreadyRecording(53)),
        (START, Started("sid1")),
        (STOP, Stopped("sid1")),
    ],
)
def test_other_outcomes_follow_the_plans_requeue(done: tuple[Action, ActionOutcome]) -> None:
    assert pass_result(plan(5.0), report(done)) == RequeueAfter(5.0)
    assert pass_result(plan(None), report(done)) == Done()
