"""``deploy/prometheus/alerts.yaml`` and ``deploy/grafana/dashboard.json`` against the service.

- The rules parse and have what an operator needs (a severity, a summary, a runbook link to a
  section of ``docs/operations.md`` that exists).
- Every metric a rule or a dashboard panel names is on ``/metrics`` of a running service:
  ``recctl serve`` on SQLite and on PostgreSQL (the lease metrics exist only with replicas).
- Where it can be done on loopback, the service is driven into an alert's condition and the
  metric checked past the rule's own threshold: bad signatures (verification failures), a
  killed SQLite writer (writer restarting), a room whose starts always fail (not recording for
  over five minutes of the emulator's clock, and provider 5xx).

PromQL is not evaluated here (no Prometheus in ``make test``): names are taken from each
expression by a small tokenizer. ``promtool check rules`` was run by hand (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.emulators.agora import EmulatorConfig, FaultConfig
from tests.helpers import encode, notification, signed
from tests.procs import ROOT, Server, clean_env
from tests.service_harness import service

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
RUNBOOK = ROOT / "docs" / "operations.md"
NCS = "alerts-ncs-secret"
TOKEN = "alerts-api-token-0001"

#: PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "rate",
    "irate",
    "increase",
    "delta",
    "changes",
    "histogram_quantile",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "abs",
    "clamp_min",
    "clamp_max",
    "topk",
    "bottomk",
    "le",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "time",
    "vector",
    "scalar",
}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule(name: str) -> dict[str, Any]:
    (found,) = [r for r in rules() if r["alert"] == name]
    return found


def threshold(name: str) -> float:
    """The number a rule compares with (``... > N``)."""
    match = re.search(r"(>|==)\s*([0-9.]+)\s*$", rule(name)["expr"].strip())
    assert match, rule(name)["expr"]
    return float(match.group(2))


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"[^"]*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_WORDS}


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def exposed(text: str) -> set[str]:
    """Every family and sample name of a /metrics page."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        names |= {sample.name for sample in family.samples}
    return names


def value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def anchors() -> set[str]:
    found = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


# -- the rules and the dashboard as files -------------------------------------------------------


def test_every_rule_is_complete_and_links_to_its_runbook_section() -> None:
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) >= 12
    known = anchors()
    for r in rules():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        url = r["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/operations.md", url
        assert anchor == "alert-" + r["alert"].lower(), url
        assert anchor in known, f"{url}: no such section in docs/operations.md"
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), r["for"]
        assert r["expr"].count("(") == r["expr"].count(")")
        assert metric_names(r["expr"]), r["alert"]


def test_the_alerts_cover_what_the_issue_asks() -> None:
    watched = set().union(*(metric_names(r["expr"]) for r in rules()))
    assert {
        "room_not_recording_seconds_max",
        "orphan_channels",
        "webhook_requests_total",
        "provider_rate_limit_wait_seconds_bucket",
        "query_budget_stretched",
        "provider_responses_total",
        "event_loop_lag_seconds_bucket",
        "store_commit_seconds_bucket",
        "lease_losses_total",
        "store_writer_starts",
    } <= watched


def test_the_promtool_unit_tests_name_only_rules_that_exist() -> None:
    """``make check-alerts`` runs them (promtool); here, that they test what the rules are."""
    document = yaml.safe_load((ALERTS.parent / "alerts.test.yaml").read_text())
    assert document["rule_files"] == [ALERTS.name]
    tested = {t["alertname"] for case in document["tests"] for t in case["alert_rule_test"]}
    assert tested <= {r["alert"] for r in rules()}
    assert len(tested) >= 6


def test_the_tokenizer_finds_names_and_only_names() -> None:
    expr = 'sum by (le, provider) (rate(x_bucket{status=~"5xx|error"}[5m])) / max(y) > 0.5'
    assert metric_names(expr) == {"x_bucket", "y"}


def test_the_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    alerting = set().union(*(metric_names(r["expr"]) for r in rules()))
    shown = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert alerting - shown == set(), "every alert's metric has a panel"


# -- against running services -------------------------------------------------------------------


def sqlite_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {"DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.db'}", **extra}
    return clean_env(
        AGORA_NCS_SECRET=NCS,
        API_TOKENS=f"{TOKEN}:acme",
        STORAGE_PROFILES=json.dumps({"default": {"kind": "s3", "bucket": "b"}}),
        CLOUDFLARE_ACCOUNT_ID="alerts-account",
        CLOUDFLARE_APP_ID="alerts-app",
        CLOUDFLARE_API_TOKEN="alerts-cloudflare-token",
        CLOUDFLARE_API_BASE_URL="http://127.0.0.1:9/client/v4",
        AGORA_API_BASE_URL="http://127.0.0.1:9",
        LOG_LEVEL="WARNING",
        **settings,
    )


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[Server]:
    server = Server.recctl_serve(sqlite_env(tmp_path), tmp_path / "sqlite.log")
    try:
        asyncio.run(server.wait_healthy(path="/readyz"))
        yield server
    finally:
        server.stop()


async def scrape(server: Server) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get("/metrics")
        assert response.status_code == 200
        return response.text


@pytest.mark.slow
async def test_every_metric_named_is_on_metrics_of_a_running_service(
    sqlite_service: Server, postgres_db: str, tmp_path: Path
) -> None:
    pg = Server.recctl_serve(
        sqlite_env(tmp_path, DATABASE_URL=postgres_db), tmp_path / "postgres.log"
    )
    try:
        await pg.wait_healthy(path="/readyz")
        on_postgres = exposed(await scrape(pg))
    finally:
        pg.stop()
    on_sqlite = exposed(await scrape(sqlite_service))
    available = on_sqlite | on_postgres
    for r in rules():
        missing = metric_names(r["expr"]) - available
        assert not missing, f"{r['alert']} names {missing}, not on /metrics"
    for expr in dashboard_exprs():
        assert not metric_names(expr) - available, expr
    assert "lease_losses_total" in on_postgres and "store_writer_starts" in on_sqlite


@pytest.mark.slow
async def test_bad_signatures_cross_the_verification_failures_threshold(
    sqlite_service: Server,
) -> None:
    window = 5 * 60  # the rule's rate window
    needed = int(threshold("WebhookVerificationFailures") * window) + 1
    async with httpx.AsyncClient(base_url=sqlite_service.url, timeout=10) as client:
        for i in range(needed):
            body = encode(notification(f"forged-{i}"))
            answer = await client.post(
                "/webhooks/agora", content=body, headers=signed(body, "not-the-secret")
            )
            assert answer.status_code == 401
    text = await scrape(sqlite_service)
    failures = value(text, "webhook_requests_total", source="agora", outcome="unauthorized")
    assert failures == needed
    assert failures / window > threshold("WebhookVerificationFailures")


@pytest.mark.slow
async def test_a_killed_writer_crosses_the_writer_restarting_threshold(
    sqlite_service: Server,
) -> None:
    assert value(await scrape(sqlite_service), "store_writer_starts") == 1
    (writer,) = psutil.Process(sqlite_service.process.pid).children()
    writer.send_signal(signal.SIGKILL)  # a zombie until the service reaps it: not waited on
    async with httpx.AsyncClient(base_url=sqlite_service.url, timeout=10) as client:
        for i in range(20):  # the first may fail with the writer; one after it restarts it
            body = encode(notification(f"after-kill-{i}"))
            answer = await client.post("/webhooks/agora", content=body, headers=signed(body, NCS))
            if answer.status_code == 200:
                break
        assert answer.status_code == 200, answer.text
    starts = value(await scrape(sqlite_service), "store_writer_starts")
    assert starts - 1 > threshold("StoreWriterRestarting")


async def test_a_room_that_cannot_start_crosses_the_not_recording_threshold(
    tmp_path: Path,
) -> None:
    """Every start fails (a 503 from the emulator): the room stays desired and not recording;
    five emulated minutes later the gauge is past the rule's threshold, and so are the
    provider's 5xx."""
    faults = FaultConfig(error_rates={"start": 1.0})
    config = EmulatorConfig(
        speed=0,
        qps_limit=None,
        ncs_secret="ncs-secret-service-tests",
        seed=3,
        callback_url="http://service/webhooks/agora",
        faults=faults,
    )
    async with service(tmp_path, config) as svc:
        spec = {
            "state": "recording",
            "mode": "mix",
            "options": {"recordingConfig": {"maxIdleTime": 30}},
        }
        put = await svc.a.put("/v1/rooms/stuck/recording", json=spec)
        assert put.status_code == 201, put.text
        registry = svc.app.state.context.metrics.registry

        def metrics() -> str:
            return generate_latest(registry).decode()

        async def failing() -> bool:
            return (
                value(metrics(), "rooms_not_recording") == 1
                and value(metrics(), "provider_responses_total", provider="agora", status="5xx") > 0
            )

        await svc.until(failing, what="the room tracked as not recording, a 5xx seen")
        assert value(metrics(), "room_not_recording_seconds_max") < threshold("RoomNotRecording")
        svc.emu.advance(threshold("RoomNotRecording") + 60)
        text = metrics()
        assert value(text, "room_not_recording_seconds_max") > threshold("RoomNotRecording")
        errors = value(text, "provider_responses_total", provider="agora", status="5xx")
        total = value(text, "provider_responses_total", provider="agora")
        assert errors / total > threshold("ProviderServerErrors")
