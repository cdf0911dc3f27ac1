"""A keyed asyncio workqueue with client-go semantics, and workers that route four results.

The queue holds *keys*, not events (level-based reconciliation): adding a key that is already
waiting changes nothing, and adding a key that a worker is processing only marks it dirty so it
runs once more after the current pass. One worker holds a key at a time; keys run in parallel.

Three ways in, as in client-go's ``RateLimitingInterface``:

* ``add(key)``: ready now (deduplicated);
* ``add_after(key, delay)``: ready later; a sooner pending add-after wins. All delayed keys live
  in one heap behind one timer, so 10,000 scheduled keys cost a dict entry and a heap entry each;
* ``add_rate_limited(key)``: ready after the key's exponential backoff with full jitter;
  ``forget(key)`` resets it.

Two priorities, as in controller-runtime's priority queue: ``low=True`` marks routine work (a
requeue to look again, a resync) that waits behind everything else. A key a provider's event or
the API wakes is never stuck behind thousands of routine checks (seen at 10,000 rooms: a killed
recorder waited 25 s in a FIFO of 8,000 requeues). Adding a waiting key at the normal priority
promotes it.

Time is read from ``clock`` (the running loop's ``time()`` by default) and waited for with the
loop's own timers, so tests can run on a virtual-time loop instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import ClassVar, Final, Generic, Literal, TypeAlias, TypeVar

__all__ = [
    "Backoff",
    "Done",
    "Handler",
    "OnResult",
    "RequeueAfter",
    "Result",
    "ResultKind",
    "Retry",
    "ShutDown",
    "Terminal",
    "WorkQueue",
    "Workers",
    "run_workers",
]

K = TypeVar("K", bound=Hashable)

_log = logging.getLogger(__name__)

#: Rebuild the delay heap once stale entries (superseded by a sooner add-after) outnumber live ones.
_COMPACT_MIN: Final = 64


class ShutDown(Exception):
    """Raised by ``get()`` once the queue is shut down and no ready key is left to hand out."""


# -- backoff ----------------------------------------------------------------------------------


class Backoff(Generic[K]):
    """Per-key exponential backoff with full jitter (client-go's item failure rate limiter).

    The n-th consecutive failure of a key (n from 0) waits ``uniform(0, min(cap, base * 2**n))``:
    full jitter spreads a burst of failing keys over the whole window instead of retrying them
    in lockstep against a provider that is already struggling.
    """

    def __init__(
        self, base: float = 0.5, cap: float = 300.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._rng = rng if rng is not None else random.Random()
        self._failures: dict[K, int] = {}

    def ceiling(self, failures: int) -> float:
        """The upper bound of the jittered delay after ``failures`` earlier failures."""
        # 2.0 ** n raises OverflowError past ~1023; the cap is reached long before that.
        return min(self.cap, self.base * 2.0 ** min(failures, 1000))

    def when(self, key: K) -> float:
        """Count one more failure of ``key`` and return how long to wait before retrying it."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return self._rng.uniform(0.0, self.ceiling(failures))

    def forget(self, key: K) -> None:
        """The key succeeded (or was dropped): its next failure starts from ``base`` again."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        """Consecutive failures counted for ``key`` since it was last forgotten."""
        return self._failures.get(key, 0)


# -- the queue --------------------------------------------------------------------------------


class WorkQueue(Generic[K]):
    """Deduplicating, per-key-serialising, delaying and rate-limiting queue of keys.

    Invariants: a key is in the ready FIFO at most once; a key handed out by ``get()`` is not
    handed out again before ``done(key)``; an add is never lost (an add during processing is
    replayed by ``done``).

    ``shutdown()`` stops accepting adds and drops delayed ones; ``get()`` keeps handing out the
    keys that were already ready, then raises :class:`ShutDown` (``shutdown(drain=False)`` drops
    them too, so ``get()`` raises at once).
    """

    def __init__(
        self,
        *,
        backoff: Backoff[K] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.backoff: Backoff[K] = backoff if backoff is not None else Backoff()
        self._clock = clock
        # Ready keys, one FIFO per priority, as (ticket, key). ``_queued`` holds the ticket of
        # each ready key's live entry and its priority; an entry left behind by a promotion has
        # an older ticket and is skipped when it surfaces.
        self._ready: deque[tuple[int, K]] = deque()
        self._ready_low: deque[tuple[int, K]] = deque()
        self._queued: dict[K, tuple[int, bool]] = {}
        self._tickets = 0
        self._low_ready = 0
        # Keys to (re)run, ready or being processed, with their priority (True = low).
        self._dirty: dict[K, bool] = {}
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        # Delayed adds: key -> (due, seq) for the live entry, plus a heap that may hold stale
        # entries (superseded by a sooner add-after) which are skipped when they surface.
        self._delayed: dict[K, tuple[float, int]] = {}
        self._delayed_low: dict[K, bool] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    # -- introspection --------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out (client-go's ``Len``)."""
        return len(self._queued)

    @property
    def depth(self) -> int:
        """Keys ready to be handed out: the ``workqueue_depth`` metric."""
        return len(self._queued)

    @property
    def depth_low(self) -> int:
        """Ready keys waiting at the low priority (routine checks)."""
        return self._low_ready

    @property
    def processing(self) -> int:
        """Keys handed out and not yet ``done``."""
        return len(self._processing)

    @property
    def waiting(self) -> int:
        """Keys scheduled by ``add_after`` / ``add_rate_limited`` and not yet due."""
        return len(self._delayed)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def is_processing(self, key: K) -> bool:
        return key in self._processing

    def next_due(self, key: K) -> float | None:
        """The clock time at which a delayed add of ``key`` is due, or None if none is pending.

        This is the "next reconcile" a status page shows; a key that is ready now, or only
        being processed, has no delayed add and answers None.
        """
        entry = self._delayed.get(key)
        return entry[0] if entry is not None else None

    def now(self) -> float:
        """The queue's clock: the injected one, else the running loop's time."""
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    # -- adding -------------------------------------------------------------------------------

    def add(self, key: K, *, low: bool = False) -> None:
        """Make ``key`` ready, unless it already is; if it is being processed, run it again after.

        ``low``: routine work, handed out only when no normal key is ready. A key already
        waiting at the low priority is promoted by a normal add. Ignored after ``shutdown()``.
        """
        if self._shutting_down:
            return
        waiting_low = self._dirty.get(key)
        if waiting_low is not None:
            if waiting_low and not low:
                self._dirty[key] = False
                if key in self._queued:
                    self._make_ready(key, low=False)
            return
        self._dirty[key] = low
        if key in self._processing:
            return  # ``done`` requeues it: never two workers on one key
        self._make_ready(key, low=low)

    def add_after(self, key: K, delay: float, *, low: bool = False) -> None:
        """Make ``key`` ready after ``delay`` seconds; a sooner pending add-after is kept (and
        takes the normal priority if either add has it).

        A delay <= 0 is an immediate ``add``. A pending add-after is not cancelled by ``add``
        (as in client-go): the key simply runs again when it falls due, which a level-based
        reconciler tolerates.
        """
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key, low=low)
            return
        due = self.now() + delay
        current = self._delayed.get(key)
        if current is not None and current[0] <= due:
            if not low:
                self._delayed_low[key] = False
            return
        self._seq += 1
        self._delayed[key] = (due, self._seq)
        self._delayed_low[key] = low and self._delayed_low.get(key, True)
        heapq.heappush(self._heap, (due, self._seq, key))
        if len(self._heap) > _COMPACT_MIN and len(self._heap) > 2 * len(self._delayed):
            self._heap = [(d, s, k) for k, (d, s) in self._delayed.items()]
            heapq.heapify(self._heap)
        self._arm()

    def add_rate_limited(self, key: K, *, min_delay: float = 0.0) -> None:
        """Retry ``key`` after its backoff (counting one more failure), or ``min_delay`` if longer.

        ``min_delay`` carries a provider's ``Retry-After`` without giving up the jitter.
        """
        self.add_after(key, max(min_delay, self.backoff.when(key)))

    def forget(self, key: K) -> None:
        """Reset ``key``'s failure count; it does not cancel a pending delayed add."""
        self.backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        """Consecutive ``add_rate_limited`` calls for ``key`` since it was last forgotten."""
        return self.backoff.num_requeues(key)

    # -- taking -------------------------------------------------------------------------------

    async def get(self) -> K:
        """Wait for the next ready key (FIFO) and mark it processing; pair with ``done(key)``.

        Raises :class:`ShutDown` once the queue is shut down and no ready key remains. Waiting
        getters are served in the order they started waiting.
        """
        while not self._queued:
            if self._shutting_down:
                raise ShutDown
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter in self._getters:
                    self._getters.remove(getter)
                elif not getter.cancelled():
                    self._wake_getter()  # we were woken then cancelled: pass the wake-up on
                raise
        return self._take()

    def get_nowait(self) -> K:
        """Take the next ready key without waiting: :class:`asyncio.QueueEmpty` if there is none."""
        if not self._queued:
            if self._shutting_down:
                raise ShutDown
            raise asyncio.QueueEmpty
        return self._take()

    def done(self, key: K) -> None:
        """End processing of ``key``; if it was added meanwhile it is ready again (at the back).

        ``done`` for a key that is not being processed does nothing.
        """
        if key not in self._processing:
            return
        self._processing.remove(key)
        low = self._dirty.get(key)
        if low is not None:
            self._make_ready(key, low=low)

    def shutdown(self, *, drain: bool = True) -> None:
        """Stop accepting adds, drop delayed ones and wake every getter.

        With ``drain`` (the default) the keys already ready are still handed out; without it
        they are dropped and ``get()`` raises :class:`ShutDown` straight away. Keys being
        processed are left to their workers; an add they received before shutdown still
        makes them ready on ``done``, as in client-go.
        """
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._delayed.clear()
        self._delayed_low.clear()
        self._heap.clear()
        if not drain:
            for key in self._queued:
                del self._dirty[key]
            self._queued.clear()
            self._low_ready = 0
            self._ready.clear()
            self._ready_low.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    # -- internals ----------------------------------------------------------------------------

    def _make_ready(self, key: K, *, low: bool) -> None:
        self._tickets += 1
        previous = self._queued.get(key)
        self._low_ready += low - (previous is not None and previous[1])
        self._queued[key] = (self._tickets, low)
        (self._ready_low if low else self._ready).append((self._tickets, key))
        self._wake_getter()

    def _take(self) -> K:
        """The next ready key, normal priority first, skipping entries left by promotions."""
        while True:
            ticket, key = (self._ready or self._ready_low).popleft()
            live = self._queued.get(key)
            if live is not None and live[0] == ticket:
                break
        del self._queued[key]
        self._low_ready -= live[1]
        del self._dirty[key]
        self._processing.add(key)
        return key

    def _wake_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def _arm(self) -> None:
        """Keep the single timer set for the earliest live delayed add."""
        heap = self._heap
        while heap and self._delayed.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)  # stale: superseded by a sooner add-after, or already fired
        if not heap:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        due = heap[0][0]
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        # A relative delay, so an injected clock that runs at loop speed works too; ``_fire``
        # re-checks the clock, so firing early only re-arms.
        delay = max(0.0, due - self.now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)
        self._timer_due = due

    def _fire(self) -> None:
        self._timer = None
        now = self.now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, seq, key = heapq.heappop(heap)
            if self._delayed.get(key) == (due, seq):
                del self._delayed[key]
                self.add(key, low=self._delayed_low.pop(key, False))
        self._arm()


# -- results and workers ----------------------------------------------------------------------

ResultKind: TypeAlias = Literal["done", "requeue", "retry", "terminal"]


@dataclass(frozen=True)
class Done:
    """Success: forget the backoff; nothing is scheduled (an event or a resync brings it back)."""

    kind: ClassVar[ResultKind] = "done"


@dataclass(frozen=True)
class RequeueAfter:
    """Success, look again in ``seconds``: forget the backoff, then ``add_after``."""

    seconds: float
    kind: ClassVar[ResultKind] = "requeue"

    def __post_init__(self) -> None:
        if not self.seconds >= 0:  # also rejects NaN
            raise ValueError(f"RequeueAfter needs seconds >= 0, got {self.seconds!r}")


@dataclass(frozen=True)
class Retry:
    """A transient failure: requeue with the key's backoff (at least ``min_delay`` seconds).

    A handler that raises is treated as ``Retry(exception)``.
    """

    error: object = None
    min_delay: float = 0.0
    kind: ClassVar[ResultKind] = "retry"


@dataclass(frozen=True)
class Terminal:
    """A failure retrying cannot fix (needs a human or a new spec): forget and drop the key."""

    error: object = None
    kind: ClassVar[ResultKind] = "terminal"


Result: TypeAlias = Done | RequeueAfter | Retry | Terminal
Handler: TypeAlias = Callable[[K], Awaitable[Result]]
OnResult: TypeAlias = Callable[[K, Result, float], None]


class Workers(Generic[K]):
    """``concurrency`` workers taking keys from ``queue``, each pass ending in one of four results.

    ``counts`` holds passes per result kind; ``on_result(key, result, seconds)`` is called after
    each pass (before the key is marked done) so the service can feed metrics and logs without
    this module knowing about them. A hook that raises is logged and otherwise ignored.
    """

    def __init__(
        self,
        queue: WorkQueue[K],
        handler: Handler[K],
        concurrency: int = 1,
        *,
        on_result: OnResult[K] | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.on_result = on_result
        self._timer = timer
        self.counts: dict[ResultKind, int] = {"done": 0, "requeue": 0, "retry": 0, "terminal": 0}

    async def run(self) -> None:
        """Run the workers until the queue is shut down and drained (cancel to stop at once)."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.concurrency):
                group.create_task(self._work())

    async def _work(self) -> None:
        queue = self.queue
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await self._pass(key)
            finally:
                queue.done(key)

    async def _pass(self, key: K) -> None:
        started = self._timer()
        try:
            result = await self.handler(key)
            if not isinstance(result, Done | RequeueAfter | Retry | Terminal):
                raise TypeError(f"handler returned {result!r}, not a workqueue Result")
        except Exception as exc:
            _log.exception("reconcile handler failed for %r; retrying with backoff", key)
            result = Retry(exc)
        self.route(key, result)
        self.counts[result.kind] += 1
        if self.on_result is not None:
            try:
                self.on_result(key, result, self._timer() - started)
            except Exception:
                _log.exception("on_result hook failed for %r", key)

    def route(self, key: K, result: Result) -> None:
        """Apply controller-runtime's rule for ``result`` to ``key`` in the queue."""
        queue = self.queue
        if isinstance(result, Retry):
            queue.add_rate_limited(key, min_delay=result.min_delay)
        elif isinstance(result, RequeueAfter):
            queue.forget(key)
            queue.add_after(key, result.seconds, low=True)  # routine: a look again
        else:  # Done, Terminal
            queue.forget(key)


async def run_workers(
    queue: WorkQueue[K],
    handler: Handler[K],
    concurrency: int = 1,
    *,
    on_result: OnResult[K] | None = None,
) -> dict[ResultKind, int]:
    """Run :class:`Workers` until ``queue`` is shut down and drained; return the result counts."""
    workers = Workers(queue, handler, concurrency, on_result=on_result)
    await workers.run()
    return workers.counts
