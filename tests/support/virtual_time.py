"""A virtual-time event loop: when nothing is ready, its clock jumps to the next timer.

"300 s of backoff" then takes microseconds and every timestamp is exact, with no sleeping and
no mocked clock: the code under test reads ``loop.time()`` and waits on the loop's own timers,
as it does in production.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpSelector(selectors.DefaultSelector):
    """Polls without blocking; when the loop would sleep until a timer, advances its clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.jumps = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            return ready if ready or timeout is not None else super().select(None)
        self.now += timeout
        self.jumps += 1
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.selector = _JumpSelector()
        super().__init__(self.selector)

    def time(self) -> float:
        return self.selector.now


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())


def now() -> float:
    """The running loop's (virtual) time."""
    return asyncio.get_running_loop().time()


def jumps() -> int:
    """How many times the loop has slept (on a timer) so far."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    return loop.selector.jumps
