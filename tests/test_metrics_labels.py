"""Metric labels come from closed sets only: after a real run (a room recorded, its recorder
killed and healed, webhooks in), every label value of every series on ``/metrics`` is checked
against the set it must come from. A session id in a label (``outcome="started 65f3…"``) was
one series per session."""

from __future__ import annotations

import math
from pathlib import Path
from typing import get_args

from prometheus_client.parser import text_string_to_metric_families

from reconcilers.actions import ActionKind
from reconcilers.events import Source
from reconcilers.report import ACTION_OUTCOMES
from reconcilers.workqueue import ResultKind
from service.metrics import WEBHOOK_OUTCOMES
from service.provider_metrics import PROVIDERS, STATUS_CLASSES
from tests.service_harness import service

SPEC = {"state": "recording", "mode": "mix", "options": {"recordingConfig": {"maxIdleTime": 30}}}

#: (metric family, label) -> the values allowed; ``le``/``quantile`` must be numbers.
CLOSED: dict[tuple[str, str], frozenset[str]] = {
    ("reconcile_actions", "kind"): frozenset(get_args(ActionKind)),
    ("reconcile_actions", "outcome"): ACTION_OUTCOMES,
    ("reconcile_passes", "result"): frozenset(get_args(ResultKind)),
    ("webhook_requests", "source"): frozenset(get_args(Source)),
    ("webhook_requests", "outcome"): WEBHOOK_OUTCOMES,
    ("events_appended", "source"): frozenset(get_args(Source)),
    ("provider_responses", "provider"): frozenset(PROVIDERS),
    ("provider_responses", "status"): frozenset(STATUS_CLASSES),
    ("provider_rate_limit_wait_seconds", "provider"): frozenset(PROVIDERS),
}
NUMERIC = {"le", "quantile"}


async def test_every_label_value_on_metrics_comes_from_a_closed_set(tmp_path: Path) -> None:
    async with service(tmp_path, query_interval_seconds=2, failover_window_seconds=3) as svc:
        svc.emu.join("standup", 11)
        r = await svc.a.put("/v1/rooms/standup/recording", json=SPEC)
        assert r.status_code == 201

        async def recording() -> bool:
            svc.emu.advance(1)
            return any(t.status in (4, 5) for t in svc.emu.tasks(cname="standup", live=True))

        await svc.until(recording, within=20, what="standup recording")
        (first,) = svc.emu.tasks(cname="standup", live=True)
        svc.emu.kill(first.sid, failover=False)

        async def healed() -> bool:
            svc.emu.advance(1)
            live = svc.emu.tasks(cname="standup", live=True)
            return any(t.sid != first.sid and t.status in (4, 5) for t in live)

        await svc.until(healed, within=20, what="a replacement recorder")
        await svc.anonymous.post("/webhooks/agora", content=b"{not json")  # a rejected one
        text = (await svc.anonymous.get("/metrics")).text

    seen: dict[tuple[str, str], set[str]] = {}
    sids = {first.sid, *(t.sid for t in svc.emu.tasks(cname="standup"))}
    for family in text_string_to_metric_families(text):
        name = family.name.removesuffix("_created").removesuffix("_total")
        for sample in family.samples:
            for label, value in sample.labels.items():
                assert not any(sid in value for sid in sids), (sample.name, label, value)
                if label in NUMERIC:
                    assert not math.isnan(float(value)), (sample.name, label, value)
                    continue
                allowed = CLOSED.get((name, label))
                assert allowed is not None, f"{name}{{{label}}}: no closed set known"
                assert value in allowed, (name, label, value)
                seen.setdefault((name, label), set()).add(value)
    # The run did exercise the labels it checks.
    assert {"reserved", "started"} <= seen[("reconcile_actions", "outcome")]
    assert "accepted" in seen[("webhook_requests", "outcome")]
    assert seen[("webhook_requests", "outcome")] - {"accepted", "duplicate"}, "a rejection"
