"""The keyed workqueue: dedup, one worker per key, delays, backoff, the four results, shutdown.

Time-based tests run on a virtual-time event loop: when nothing is ready the loop's clock jumps
to the next timer, so "300 s of backoff" takes microseconds and every timestamp is exact.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reconcilers.workqueue import (
    Backoff,
    Done,
    RequeueAfter,
    Result,
    Retry,
    ShutDown,
    Terminal,
    Workers,
    WorkQueue,
    run_workers,
)
from tests.support.virtual_time import now, run


class MaxRandom(random.Random):
    """Full jitter always at its ceiling, so backoff delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


# -- dedup and per-key serialisation ------------------------------------------------------------


def test_adds_of_a_waiting_key_collapse_and_order_is_fifo() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "c", "b", "a"]:
        q.add(key)
    assert len(q) == q.depth == 3
    assert [q.get_nowait() for _ in range(3)] == ["a", "b", "c"]
    assert q.processing == 3
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


def test_a_key_added_while_processing_runs_again_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get_nowait() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0, "never handed to a second worker while the first holds it"
    assert q.is_processing("a")
    q.done("a")
    assert len(q) == 1 and not q.is_processing("a")
    assert q.get_nowait() == "a"
    q.done("a")
    assert len(q) == 0 and q.processing == 0


def test_done_requeues_at_the_back_and_is_a_noop_for_a_key_not_processing() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    assert q.get_nowait() == "a"
    q.add("a")
    q.done("a")
    assert [q.get_nowait(), q.get_nowait()] == ["b", "a"]
    q.add("c")
    q.done("c")  # misuse: "c" is waiting, not processing
    q.done("zzz")
    assert len(q) == 1


class QueueModel(RuleBasedStateMachine):
    """Random add / get / done sequences, at two priorities, against a plain model of
    client-go's queue with controller-runtime's priorities."""

    def __init__(self) -> None:
        super().__init__()
        self.q: WorkQueue[int] = WorkQueue()
        self.ready: list[int] = []
        self.ready_low: list[int] = []
        self.dirty: dict[int, bool] = {}  # key -> waits at the low priority
        self.processing: set[int] = set()
        self.owed: set[int] = set()  # added since it was last handed out: must be handed out

    @rule(key=st.integers(0, 5), low=st.booleans())
    def add(self, key: int, low: bool) -> None:
        self.q.add(key, low=low)
        self.owed.add(key)
        if key in self.dirty:
            if self.dirty[key] and not low:  # promoted
                self.dirty[key] = False
                if key in self.ready_low:
                    self.ready_low.remove(key)
                    self.ready.append(key)
            return
        self.dirty[key] = low
        if key not in self.processing:
            (self.ready_low if low else self.ready).append(key)

    @rule()
    def get(self) -> None:
        if not self.ready and not self.ready_low:
            with pytest.raises(asyncio.QueueEmpty):
                self.q.get_nowait()
            return
        key = self.q.get_nowait()
        expected = self.ready.pop(0) if self.ready else self.ready_low.pop(0)
        assert key == expected, "FIFO among ready keys, normal priority first"
        assert key not in self.processing, "handed out a key that is being processed"
        del self.dirty[key]
        self.processing.add(key)
        self.owed.discard(key)

    @precondition(lambda self: bool(self.processing))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.processing)))
        self.q.done(key)
        self.processing.discard(key)
        if key in self.dirty:
            (self.ready_low if self.dirty[key] else self.ready).append(key)

    @invariant()
    def agrees_with_the_model(self) -> None:
        queued = self.ready + self.ready_low
        assert len(self.q) == len(queued) and self.q.depth_low == len(self.ready_low)
        assert len(set(queued)) == len(queued), "a key queued twice"
        assert self.q.processing == len(self.processing)
        for key in self.owed:  # never loses an add
            assert key in queued or (key in self.processing and key in self.dirty)

    def teardown(self) -> None:
        """Drain: finishing everything must hand out every owed key exactly once more."""
        while self.processing or self.ready or self.ready_low:
            for key in sorted(self.processing):
                self.q.done(key)
                self.processing.discard(key)
                if key in self.dirty:
                    (self.ready_low if self.dirty[key] else self.ready).append(key)
            while self.ready or self.ready_low:
                self.get()
        assert not self.owed


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


@given(
    adds=st.lists(st.tuples(st.integers(0, 7), st.floats(0, 0.05)), min_size=1, max_size=80),
    workers=st.integers(1, 4),
)
@settings(max_examples=40, deadline=None)
def test_concurrent_workers_never_share_a_key_and_never_lose_an_add(
    adds: list[tuple[int, float]], workers: int
) -> None:
    async def main() -> None:
        q: WorkQueue[int] = WorkQueue()
        active: set[int] = set()
        last_add: dict[int, float] = {}
        last_start: dict[int, float] = {}

        async def handler(key: int) -> Result:
            assert key not in active, "two workers on one key"
            active.add(key)
            last_start[key] = now()
            await asyncio.sleep(0.01)  # simulated work, in virtual time
            active.discard(key)
            return Done()

        async def producer() -> None:
            for key, gap in adds:
                await asyncio.sleep(gap)
                last_add[key] = now()
                q.add(key)

        pool = Workers(q, handler, workers)
        running = asyncio.create_task(pool.run())
        await producer()
        await asyncio.sleep(1.0)  # lets every pass finish; virtual time, costs nothing
        q.shutdown()
        await running
        for key, added in last_add.items():
            assert last_start[key] >= added, f"the last add of {key} was never processed"
        assert pool.counts["done"] >= len(last_add)

    run(main)


# -- get, waiting getters, shutdown -----------------------------------------------------------


def test_get_waits_for_an_add_and_serves_getters_in_order() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        assert not first.done()
        q.add("a")
        q.add("b")
        assert await first == "a"
        assert await second == "b"

    run(main)


def test_a_woken_getter_that_is_cancelled_passes_the_key_on() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("a")  # wakes ``first``...
        first.cancel()  # ...which is cancelled before it runs
        assert await asyncio.wait_for(second, 1) == "a"
        assert first.cancelled()

    run(main)


def test_shutdown_drains_ready_keys_then_raises_and_ignores_new_adds() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        q.add_after("later", 5)
        q.shutdown()
        q.add("b")
        q.add_after("c", 1)
        assert q.shutting_down and q.waiting == 0 and q.next_due("later") is None
        assert await q.get() == "a"
        with pytest.raises(ShutDown):
            await q.get()
        with pytest.raises(ShutDown):
            q.get_nowait()

    run(main)


def test_shutdown_without_drain_raises_at_once_and_wakes_waiting_getters() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        waiting = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.shutdown(drain=False)
        with pytest.raises(ShutDown):
            await waiting
        q2: WorkQueue[str] = WorkQueue()
        q2.add("a")
        q2.shutdown(drain=False)
        assert len(q2) == 0
        with pytest.raises(ShutDown):
            await q2.get()

    run(main)


def test_a_key_dirtied_before_shutdown_is_still_handed_out_after_done() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("a")
        q.shutdown()
        q.done(key)
        assert await q.get() == "a"
        q.done("a")
        with pytest.raises(ShutDown):
            await q.get()

    run(main)


# -- add_after ----------------------------------------------------------------------------------


def test_add_after_releases_keys_in_due_order_at_their_time() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 3.0)
        q.add_after("b", 1.0)
        q.add_after("c", 2.0)
        assert (q.waiting, len(q)) == (3, 0)
        assert q.next_due("b") == 1.0 and q.next_due("zzz") is None
        got = [(await q.get(), now()) for _ in range(3)]
        assert got == [("b", 1.0), ("c", 2.0), ("a", 3.0)]
        assert q.waiting == 0 and q.next_due("a") is None

    run(main)


def test_routine_keys_wait_behind_woken_ones_and_a_wake_promotes_a_routine_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("r1", "r2", "r3"):
        q.add(key, low=True)  # thousands of requeues, say
    q.add("heal")  # a provider's event
    q.add("r3")  # an event for a key that was only due for a routine look
    assert (len(q), q.depth_low) == (4, 2)
    assert [q.get_nowait() for _ in range(4)] == ["heal", "r3", "r1", "r2"]


def test_a_delayed_add_keeps_the_higher_priority_of_two() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 5.0, low=True)  # a requeue
        q.add_after("a", 9.0)  # an event's coalescing window, later: the time stays 5 s
        q.add_after("b", 1.0, low=True)
        q.add_after("c", 1.0)
        q.add_after("d", 1.0, low=True)
        assert await q.get() == "c" and now() == 1.0
        assert [q.get_nowait(), q.get_nowait()] == ["b", "d"]
        assert await q.get() == "a" and now() == 5.0
        q.add("z", low=True)
        q.done("a")
        q.add("a", low=True)
        q.add_after("a", 0.0)  # an immediate normal add promotes the waiting low one
        assert [q.get_nowait(), q.get_nowait()] == ["a", "z"]

    run(main)


def test_add_after_keeps_the_sooner_of_two_schedules() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 5.0)
        q.add_after("a", 2.0)
        q.add_after("a", 10.0)
        assert q.next_due("a") == 2.0 and q.waiting == 1
        assert await q.get() == "a" and now() == 2.0
        q.done("a")
        with pytest.raises(TimeoutError):  # the superseded 5 s and 10 s schedules never fire
            await asyncio.wait_for(q.get(), 60)

    run(main)


def test_add_after_of_zero_is_an_add_and_a_due_key_that_is_waiting_collapses() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 0)
        q.add_after("b", -1)
        assert len(q) == 2 and q.waiting == 0
        q.add_after("a", 1.0)
        await asyncio.sleep(2.0)
        assert len(q) == 2, "the delayed add found 'a' already waiting"

    run(main)


def test_a_delayed_add_of_a_key_being_processed_runs_after_done() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        await q.get()
        q.add_after("a", 1.0)
        await asyncio.sleep(1.5)
        assert len(q) == 0 and q.waiting == 0
        q.done("a")
        assert await q.get() == "a"

    run(main)


def test_ten_thousand_delayed_keys_use_one_timer_and_come_out_in_order() -> None:
    async def main() -> None:
        rng = random.Random(7)
        q: WorkQueue[int] = WorkQueue()
        tasks_before = len(asyncio.all_tasks())
        due = {key: rng.uniform(1, 600) for key in range(10_000)}
        for key, delay in due.items():
            q.add_after(key, delay)
        for key in range(0, 10_000, 2):  # every other key rescheduled sooner, several times
            for _ in range(3):
                due[key] /= 2
                q.add_after(key, due[key])
        assert len(asyncio.all_tasks()) == tasks_before, "no task per key"
        assert q.waiting == 10_000
        assert len(q._heap) <= 2 * q.waiting + 64, "stale heap entries are compacted"
        seen: list[int] = []
        while len(seen) < 10_000:
            key = await q.get()
            assert now() == pytest.approx(due[key], abs=1e-6)
            seen.append(key)
            q.done(key)
        assert seen == sorted(due, key=due.__getitem__)

    run(main)


def test_next_due_is_loop_time_and_an_injected_clock_shifts_it() -> None:
    async def main() -> None:
        await asyncio.sleep(10)
        q: WorkQueue[str] = WorkQueue()
        q.add_after("a", 5)
        assert q.next_due("a") == 15.0
        offset: WorkQueue[str] = WorkQueue(clock=lambda: now() + 1000.0)
        offset.add_after("a", 5)
        assert offset.next_due("a") == 1015.0
        assert await offset.get() == "a" and now() == 15.0

    run(main)


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_forget_resets_it() -> None:
    backoff: Backoff[str] = Backoff(base=0.5, cap=10.0, rng=MaxRandom())
    assert [backoff.when("a") for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.num_requeues("a") == 7 and backoff.num_requeues("b") == 0
    assert backoff.when("b") == 0.5, "keys back off independently"
    backoff.forget("a")
    assert backoff.num_requeues("a") == 0
    assert backoff.when("a") == 0.5


def test_backoff_survives_a_huge_failure_count() -> None:
    backoff: Backoff[str] = Backoff(base=0.5, cap=300.0, rng=MaxRandom())
    assert backoff.ceiling(10**6) == 300.0


@given(
    seed=st.integers(0, 2**32),
    failures=st.integers(0, 40),
    base=st.floats(0.001, 5),
    cap=st.floats(5, 1000),
)
def test_full_jitter_stays_between_zero_and_the_ceiling(
    seed: int, failures: int, base: float, cap: float
) -> None:
    backoff: Backoff[str] = Backoff(base=base, cap=cap, rng=random.Random(seed))
    for _ in range(failures):
        backoff.when("k")
    delay = backoff.when("k")
    assert 0.0 <= delay <= min(cap, base * 2**failures)


def test_full_jitter_spreads_over_the_whole_window() -> None:
    rng = random.Random(1)
    delays = []
    for _ in range(2000):
        backoff: Backoff[str] = Backoff(base=1.0, cap=300.0, rng=rng)
        for _ in range(4):
            backoff.when("k")
        delays.append(backoff.when("k"))  # window [0, 16)
    assert min(delays) < 0.5 and max(delays) > 15.5
    assert sum(delays) / len(delays) == pytest.approx(8.0, rel=0.05)


def test_backoff_rejects_a_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0, cap=1)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


def test_add_rate_limited_schedules_after_the_backoff_and_honours_a_minimum() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue(backoff=Backoff(base=0.5, cap=4.0, rng=MaxRandom()))
        expected = [0.5, 1.0, 2.0, 4.0, 4.0]
        for delay in expected:
            start = now()
            q.add_rate_limited("a")
            assert q.next_due("a") == start + delay
            assert await q.get() == "a" and now() == start + delay
            q.done("a")
        assert q.num_requeues("a") == 5
        q.forget("a")
        assert q.num_requeues("a") == 0
        start = now()
        q.add_rate_limited("a", min_delay=30.0)
        assert q.next_due("a") == start + 30.0

    run(main)


# -- workers and the four results ---------------------------------------------------------------


def test_each_result_kind_is_routed_like_controller_runtime() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue(backoff=Backoff(base=0.5, cap=60.0, rng=MaxRandom()))
        outcomes: dict[str, Callable[[], Result]] = {
            "ok": Done,
            "later": lambda: RequeueAfter(30.0),
            "flaky": lambda: Retry("503", min_delay=0.0),
            "slow-down": lambda: Retry("429", min_delay=20.0),
            "bad": lambda: Terminal("bad credentials"),
        }

        async def handler(key: str) -> Result:
            if key == "boom":
                raise RuntimeError("a bug")
            return outcomes[key]()

        seen: list[tuple[str, Result, float]] = []
        all_seen = asyncio.Event()

        def on_result(key: str, result: Result, seconds: float) -> None:
            seen.append((key, result, seconds))
            if len(seen) == 6:
                all_seen.set()

        for key in ["ok", "later", "flaky", "slow-down", "bad", "boom"]:
            for _ in range(3):  # earlier failures, to see which results forget them
                q.backoff.when(key)
            q.add(key)
        pool = Workers(q, handler, concurrency=2, on_result=on_result)
        running = asyncio.create_task(pool.run())
        await all_seen.wait()
        t = now()
        assert pool.counts == {"done": 1, "requeue": 1, "retry": 3, "terminal": 1}
        results = {key: result for key, result, _ in seen}
        assert isinstance(results["boom"], Retry)
        assert isinstance(results["boom"].error, RuntimeError)
        assert all(seconds >= 0 for _, _, seconds in seen)
        # success: backoff forgotten, nothing scheduled
        assert (q.num_requeues("ok"), q.next_due("ok")) == (0, None)
        # terminal: forgotten and dropped
        assert (q.num_requeues("bad"), q.next_due("bad")) == (0, None)
        # requeue-after: backoff reset, scheduled after the given seconds
        assert (q.num_requeues("later"), q.next_due("later")) == (0, t + 30.0)
        # retry (and an exception): one more failure, scheduled at base * 2**3
        assert (q.num_requeues("flaky"), q.next_due("flaky")) == (4, t + 4.0)
        assert (q.num_requeues("boom"), q.next_due("boom")) == (4, t + 4.0)
        assert (q.num_requeues("slow-down"), q.next_due("slow-down")) == (4, t + 20.0)
        q.shutdown()
        await running

    run(main)


def test_requeue_after_runs_a_key_periodically_and_retry_backs_off_until_success() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue(backoff=Backoff(base=1.0, cap=60.0, rng=MaxRandom()))
        passes: dict[str, list[float]] = {"poll": [], "flaky": []}
        finished = asyncio.Event()

        async def handler(key: str) -> Result:
            passes[key].append(now())
            if len(passes["poll"]) >= 4 and len(passes["flaky"]) >= 4:
                finished.set()
            if key == "poll":
                return RequeueAfter(10.0)
            return Retry("503") if len(passes["flaky"]) < 4 else Done()

        q.add("poll")
        q.add("flaky")
        running = asyncio.create_task(run_workers(q, handler, 3))
        await finished.wait()
        q.shutdown()
        counts = await running
        assert passes["poll"] == [0.0, 10.0, 20.0, 30.0]
        assert passes["flaky"] == [0.0, 1.0, 3.0, 7.0]  # 1, 2, 4 s of backoff, then success
        assert q.num_requeues("flaky") == 0
        assert counts["retry"] == 3 and counts["done"] == 1 and counts["requeue"] == 4

    run(main)


def test_a_failing_hook_or_a_non_result_does_not_stop_the_workers() -> None:
    async def main() -> None:
        q: WorkQueue[str] = WorkQueue(backoff=Backoff(base=1.0, cap=1.0, rng=MaxRandom()))
        results: list[Result] = []
        both = asyncio.Event()

        async def handler(key: str) -> Result:
            return None if key == "none" else Done()  # type: ignore[return-value]

        def on_result(key: str, result: Result, seconds: float) -> None:
            results.append(result)
            if len(results) == 2:
                both.set()
            raise RuntimeError("metrics are down")

        q.add("none")
        q.add("ok")
        pool = Workers(q, handler, on_result=on_result)
        running = asyncio.create_task(pool.run())
        await asyncio.wait_for(both.wait(), 60)
        q.shutdown()
        await running
        assert isinstance(results[0], Retry) and isinstance(results[0].error, TypeError)
        assert results[1] == Done()

    run(main)


def test_result_values_are_validated() -> None:
    with pytest.raises(ValueError):
        RequeueAfter(-1.0)
    with pytest.raises(ValueError):
        RequeueAfter(float("nan"))
    with pytest.raises(ValueError):
        Workers(WorkQueue[str](), _never, concurrency=0)
    assert [r.kind for r in (Done(), RequeueAfter(1), Retry(), Terminal())] == [
        "done",
        "requeue",
        "retry",
        "terminal",
    ]


async def _never(key: str) -> Result:
    raise AssertionError("not called")


async def test_on_a_real_loop_a_delayed_key_arrives_after_its_delay() -> None:
    loop = asyncio.get_running_loop()
    q: WorkQueue[str] = WorkQueue()
    start = loop.time()
    q.add_after("b", 0.010)
    q.add_after("a", 0.005)
    assert await asyncio.wait_for(q.get(), 5) == "a"
    assert await asyncio.wait_for(q.get(), 5) == "b"
    assert loop.time() - start >= 0.010
    q.shutdown()
