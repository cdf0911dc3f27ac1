"""The runbook's SQLite backup, done as written while the service runs and takes webhooks, then
restored: every event acknowledged before the copy is in the restored log, and the service
starts on it (docs/operations.md#backing-up-and-restoring)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import encode, notification, signed
from tests.procs import Server, clean_env, recctl

pytestmark = pytest.mark.slow

NCS = "backup-ncs-secret"


def sqlite3_cli() -> str:
    found = shutil.which("sqlite3")
    if found is None:
        pytest.fail("the sqlite3 command-line shell is missing: apt-get install sqlite3")
    return found


@pytest.mark.parametrize("command", [".backup '{copy}'", "VACUUM INTO '{copy}'"])
async def test_an_online_backup_restores_every_acknowledged_event(
    tmp_path: Path, command: str
) -> None:
    db, copy = tmp_path / "recorder.db", tmp_path / "backup" / "recorder.db"
    copy.parent.mkdir()
    env = clean_env(DATABASE_URL=f"sqlite:///{db}", AGORA_NCS_SECRET=NCS, LOG_LEVEL="WARNING")
    server = Server.recctl_serve(env, tmp_path / "server.log")
    acked: dict[str, int] = {}
    try:
        await server.wait_healthy(path="/readyz")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            for i in range(50):
                body = encode(notification(f"backup-{i}"))
                answer = await client.post(
                    "/webhooks/agora", content=body, headers=signed(body, NCS)
                )
                assert answer.status_code == 200
                acked[f"backup-{i}"] = answer.json()["seq"]
        done = await asyncio.to_thread(  # online: the service still runs
            subprocess.run,
            [sqlite3_cli(), str(db), command.format(copy=copy)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    restored = tmp_path / "restored" / "recorder.db"
    restored.parent.mkdir()
    shutil.copy2(copy, restored)
    restored_env = {**env, "DATABASE_URL": f"sqlite:///{restored}"}
    replayed = recctl("replay", env=restored_env)
    assert replayed.returncode == 0, replayed.stderr
    listed = recctl("events", "--json", env=restored_env)
    assert listed.returncode == 0, listed.stderr
    found = {e["dedup_key"]: e["seq"] for e in map(json.loads, listed.stdout.splitlines())}
    assert {k: found.get(k) for k in acked} == acked
    again = Server.recctl_serve(restored_env, tmp_path / "restored.log")
    try:
        await again.wait_healthy(path="/readyz")
    finally:
        again.stop()
    assert again.process.returncode == 0, again.log()
