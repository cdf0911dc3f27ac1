"""What the controller asks of the replica layer: may I act on this key, with which fence?

:class:`SoleOwner` is the single process on SQLite: it owns every key and needs no fence.
:class:`service.replicas.replica.Replica` answers from the shard leases it holds.

A pass runs inside :meth:`Ownership.acting_on`: it counts the passes in flight per shard (a
shard is released only once its passes are over) and exposes the pass's fence to the
provider-call hook (:func:`check_current_pass`), which refuses a call once the lease is gone
by the replica's own clock, however long the call waited for the rate limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Protocol

from reconcilers.events import Fence


class NotOwner(Exception):
    """This replica no longer holds the lease of the key's shard: the pass stops here."""


class Ownership(Protocol):
    @property
    def recheck_after(self) -> float:
        """Seconds after which a pass refused by our own clock looks again (a renewal)."""
        ...

    def owns(self, key: str) -> bool:
        """Whether this replica holds, by its own clock, the lease of ``key``'s shard."""
        ...

    def forward(self, key: str, delay: float) -> None:
        """Wake ``key`` on the replica that owns it (a hint: it may be lost)."""
        ...

    def acting_on(self, key: str) -> contextlib.AbstractContextManager[Fence | None]:
        """Enter a pass on ``key``: its fence (``None``: no fencing); raises :class:`NotOwner`."""
        ...


class SoleOwner:
    """One replica, no leases (SQLite): every key is ours."""

    recheck_after = 1.0

    def owns(self, key: str) -> bool:
        return True

    def forward(self, key: str, delay: float) -> None:  # pragma: no cover - never called
        raise AssertionError("a sole owner has nobody to forward to")

    @contextlib.contextmanager
    def acting_on(self, key: str) -> Iterator[Fence | None]:
        yield None


#: The running pass's check (set by the replica around each pass; a task sees its own).
_current_check: ContextVar[Callable[[], None] | None] = ContextVar("pass_check", default=None)


@contextlib.contextmanager
def pass_check(check: Callable[[], None]) -> Iterator[None]:
    token = _current_check.set(check)
    try:
        yield
    finally:
        _current_check.reset(token)


def check_current_pass() -> None:
    """Raise :class:`NotOwner` if the pass this call belongs to has lost its lease."""
    check = _current_check.get()
    if check is not None:
        check()
