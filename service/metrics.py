"""Prometheus metrics of the intake and the event log, on a registry owned by one app.

Each :func:`service.app.create_app` builds its own :class:`CollectorRegistry`, so several apps
in one process (the tests) never clash; lifespan components register their own metrics on
``Metrics.registry`` too.
"""

from __future__ import annotations

from collections import Counter as Counts
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from reconcilers.providers.registry import names as provider_names
from service.store.base import BatchReport

#: Every outcome a webhook request is counted under: a closed set, so one label value per
#: outcome and never one per request (anything else is counted as ``other``).
WEBHOOK_OUTCOMES = frozenset(
    {
        "accepted",
        "duplicate",
        "healthcheck",
        "test",
        "bad_json",
        "invalid",
        "too_large",
        "unauthorized",
        "unavailable",
        "quarantined",
        "other",
    }
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """The service's own metrics. ``observe_batch`` is the store's :data:`BatchObserver`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.webhooks = Counter(
            "webhook_requests",
            "Webhook requests by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self._webhook_children: dict[tuple[str, str], Counter] = {}
        self.append_seconds = Histogram(
            "event_append_seconds",
            "Time a webhook waited for its append to be durable",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "store_batch_size",
            "Appends resolved by one group-commit transaction",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "store_commit_seconds",
            "Duration of one group-commit transaction, fsync included",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sync_seconds = Histogram(
            "store_sync_seconds",
            "Duration of a group commit's COMMIT alone (the fsync), timed beside the disk",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "event_loop_lag_seconds",
            "How late the event loop ran a timer due now (the watchdog's beats)",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
            registry=self.registry,
        )
        self.events = Counter(
            "events_appended",
            "New events stored in the log, by source",
            ["source"],
            registry=self.registry,
        )

        # Clients that went wrong (issue 20): counted, never a traceback each.
        self.client_disconnects = Counter(
            "http_client_disconnects",
            "Requests whose client hung up before its body was read",
            registry=self.registry,
        )
        self.body_timeouts = Counter(
            "http_body_timeouts",
            "Requests answered 408: the body did not arrive within HTTP_BODY_TIMEOUT_SECONDS",
            registry=self.registry,
        )
        self.header_timeouts = Counter(
            "http_header_timeouts",
            "Connections closed: a request's headers did not arrive within "
            "HTTP_HEADER_TIMEOUT_SECONDS",
            registry=self.registry,
        )
        self.connections_open = Gauge(
            "http_connections_open",
            "HTTP connections open now (past HTTP_LIMIT_CONCURRENCY requests are answered 503)",
            registry=self.registry,
        )

        # The series alerts read exist from the start, at 0.
        for source in (*provider_names(), "storage"):
            self.webhooks.labels(source, "unauthorized")
        ProcessCollector(registry=self.registry)  # process_start_time_seconds, memory, CPU

    def watch_writer(self, starts: Callable[[], int]) -> None:
        """``store_writer_starts``: the SQLite writer processes started; more than one means
        the writer died and was started again (every append in flight failed with it)."""
        gauge = Gauge(
            "store_writer_starts",
            "SQLite writer processes started since this process started",
            registry=self.registry,
        )
        gauge.set_function(lambda: float(starts()))

    def webhook(self, source: str, outcome: str) -> None:
        # ``labels()`` validates and locks on every call: each child kept once made (with
        # ``inc``, 1.24 µs a call becomes 0.46).
        key = (source, outcome if outcome in WEBHOOK_OUTCOMES else "other")
        if (child := self._webhook_children.get(key)) is None:
            child = self._webhook_children[key] = self.webhooks.labels(*key)
        child.inc()

    def observe_batch(self, report: BatchReport) -> None:
        self.batch_size.observe(report.size)
        self.commit_seconds.observe(report.seconds)
        self.sync_seconds.observe(report.sync_seconds)
        for source, count in Counts(event.source for event in report.appended).items():
            self.events.labels(source).inc(count)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics`` in the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
