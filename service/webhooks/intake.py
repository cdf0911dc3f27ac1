"""What every provider's webhook intake does once a body is verified and parsed: stamp the
provider's time, append durably (timed), and acknowledge what was stored.

Verification, parsing, dedup keys and which answers a provider retries stay in its module.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.responses import Response

from reconcilers.events import Appended, NewEvent
from service.context import AppContext


def from_ms(ms: int | None) -> datetime | None:
    """A provider's epoch milliseconds as a UTC time; ``None`` when absent or impossible."""
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None  # a nonsense provider clock must not cost us the event


async def append_timed(ctx: AppContext, event: NewEvent) -> Appended:
    """Append ``event`` durably and observe how long it took; raises what the store raises."""
    started = time.perf_counter()
    appended = await ctx.store.append(event)
    ctx.metrics.append_seconds.observe(time.perf_counter() - started)
    return appended


def stored(appended: Appended) -> Response:
    """The 200 that tells the provider the event is safe (a duplicate too: no resend wanted).

    ``{"ok": true, "seq": N, "duplicate": B}``, rendered without the JSON encoder: it is the
    answer to every webhook.
    """
    duplicate = b"true" if appended.duplicate else b"false"
    body = b'{"ok":true,"seq":%d,"duplicate":%s}' % (appended.event.seq, duplicate)
    return Response(body, media_type="application/json")
