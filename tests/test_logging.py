"""JSON logs with the request id, and secrets that never reach the output, whatever the path."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import structlog

from service.config import Settings
from service.logging import REDACTED, REQUEST_ID, SecretRedactor, configure_logging
from service.runtime import create_app
from tests.helpers import Boom, encode, notification, running, signed

NCS_SECRET = "ncs-Secret-0f1e2d"
CUSTOMER_SECRET = "cust-Secret-9a8b7c"
API_TOKEN = "tok-Secret-5566-77"


def lines(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_the_redactor_masks_secret_keys_and_known_values() -> None:
    redact = SecretRedactor(["hunter22"])
    out = redact(
        None,
        "info",
        {
            "event": "login with hunter22",
            "password": "anything",
            "nested": {"Authorization": "Bearer x", "note": "x-hunter22-y"},
            "items": ["hunter22", 3],
        },
    )
    assert out == {
        "event": f"login with {REDACTED}",
        "password": REDACTED,
        "nested": {"Authorization": REDACTED, "note": f"x-{REDACTED}-y"},
        "items": [REDACTED, 3],
    }


def test_logs_are_json_lines_carrying_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    token = REQUEST_ID.set("req-1")  # as RequestIdMiddleware does for each request
    try:
        structlog.get_logger("t").info("hello", n=1)
        logging.getLogger("uvicorn.error").info("from the standard library")
    finally:
        REQUEST_ID.reset(token)
    structlog.get_logger("t").info("after the request")
    first, second, third = lines(capsys.readouterr().err)
    assert "request_id" not in third
    assert first["event"] == "hello" and first["request_id"] == "req-1" and first["n"] == 1
    assert first["level"] == "info" and "timestamp" in first
    assert second["event"] == "from the standard library" and second["request_id"] == "req-1"


async def test_no_secret_reaches_the_log_on_any_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/events.db",
            "AGORA_NCS_SECRET": f"{NCS_SECRET},other-secret-1",
            "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
            "API_TOKENS": f"{API_TOKEN}:acme",
            "LOG_LEVEL": "DEBUG",
        }
    )
    configure_logging(settings.log_level, settings.secret_values())
    good = encode(notification("n1"))
    async with running(create_app(settings)) as client:
        await client.post("/webhooks/agora", content=good, headers=signed(good, NCS_SECRET))
        await client.post("/webhooks/agora", content=good, headers=signed(good, NCS_SECRET))
        leaked = encode({"noticeId": NCS_SECRET, "token": API_TOKEN})
        await client.post("/webhooks/agora", content=leaked, headers=signed(leaked, "wrong"))
        await client.post("/webhooks/agora", content=leaked, headers={"Agora-Signature": "x"})
        await client.post("/webhooks/agora", content=b"{", headers=signed(b"{", NCS_SECRET))
        await client.post("/webhooks/agora", content=leaked, headers=signed(leaked, NCS_SECRET))
        await client.post("/webhooks/agora", content=b"x" * 70_000)
        await client.get("/readyz", headers={"Authorization": f"Bearer {API_TOKEN}"})
    failing = create_app(settings, projections=[Boom(always=True)])
    fresh = encode(notification("n2"))
    async with running(failing) as client:
        await client.post("/webhooks/agora", content=fresh, headers=signed(fresh, NCS_SECRET))
    structlog.get_logger("t").info(f"config is {settings!r}", secret=CUSTOMER_SECRET)
    structlog.get_logger("t").info("customer", value=CUSTOMER_SECRET, api=[API_TOKEN])
    logging.getLogger("uvicorn.error").warning("stdlib says %s", CUSTOMER_SECRET)
    try:
        raise RuntimeError(f"failed with {NCS_SECRET}")
    except RuntimeError:
        structlog.get_logger("t").exception("boom")

    output = capsys.readouterr()
    everything = output.out + output.err
    events = {line["event"] for line in lines(output.err)}
    assert {"started", "notification stored", "notification rejected", "append failed"} <= events
    for secret in (NCS_SECRET, CUSTOMER_SECRET, API_TOKEN, "other-secret-1"):
        assert secret not in everything


@pytest.mark.parametrize(
    "env, level, text",
    [
        ({"AGORA_NCS_VERIFY": "false"}, "warning", "NOT verified"),
        ({}, "error", "AGORA_NCS_SECRET is not set"),
    ],
)
async def test_startup_warns_about_unverifiable_callbacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str], level: str, text: str
) -> None:
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/e.db", **env})
    configure_logging("INFO")
    async with running(create_app(settings)):
        pass
    found = [line for line in lines(capsys.readouterr().err) if text in line["event"]]
    assert [line["level"] for line in found] == [level]


async def test_a_request_logs_under_its_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/e.db"})
    configure_logging("INFO")
    async with running(create_app(settings)) as client:
        await client.post("/webhooks/agora", content=b"{}", headers={"X-Request-Id": "trace-7"})
    rejected = [line for line in lines(capsys.readouterr().err) if "rejected" in line["event"]]
    assert [line.get("request_id") for line in rejected] == ["trace-7"]


async def _routine_work() -> None:
    """What the service does all day: provider calls over httpx, whose URLs carry a resource
    id (the resync is our own loop now, :mod:`service.periodic`, and logs nothing routine)."""
    import httpx

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            await client.get("https://api.test/v1/apps/a/cloud_recording/resourceid/RID-123/query")


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_routine_library_lines_stay_out_of_info(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level)
    await _routine_work()
    logging.getLogger("httpx").warning("a job was missed")
    found = lines(capsys.readouterr().err)
    routine = [
        e for e in found if "RID-123" in e["event"] or e["event"].startswith("Running job")
    ]
    if level == "INFO":
        assert routine == [], routine
    else:
        assert {e["level"] for e in routine} == {"info"} and len(routine) >= 2, found
    assert [e["event"] for e in found if e["level"] == "warning"] == ["a job was missed"]
