"""At start, ``recctl serve`` says in its log what will stop it doing its job though it runs:
no API token (every ``/v1`` call 401) and no storage profile (no recording can start)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.procs import Server, clean_env

pytestmark = pytest.mark.slow


async def started_log(tmp_path: Path, **env: str) -> list[dict[str, object]]:
    """The JSON log lines of a server that started, then was stopped with SIGTERM (exit 0)."""
    server = Server.recctl_serve(
        clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'start.db'}", **env),
        tmp_path / "server.log",
    )
    try:
        await server.wait_healthy(path="/readyz")
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()
    text = server.log_path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def warnings_about(lines: list[dict[str, object]]) -> dict[object, str]:
    return {
        line["env"]: str(line["event"])
        for line in lines
        if line.get("level") == "warning" and line.get("env") in ("API_TOKENS", "STORAGE_PROFILES")
    }


async def test_start_warns_without_api_tokens_or_storage_profiles(tmp_path: Path) -> None:
    found = warnings_about(await started_log(tmp_path))
    assert "401" in found["API_TOKENS"]
    assert "storage profile" in found["STORAGE_PROFILES"]


async def test_start_is_quiet_when_both_are_configured(tmp_path: Path) -> None:
    lines = await started_log(
        tmp_path,
        API_TOKENS="start-check-token:acme",
        STORAGE_PROFILES=json.dumps({"default": {"kind": "s3", "bucket": "b"}}),
    )
    assert warnings_about(lines) == {}
    assert any(line.get("event") == "started" for line in lines)
    assert "start-check-token" not in json.dumps(lines), "a token was logged"
