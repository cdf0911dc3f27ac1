"""Issue 20, Medium 6: a second ``recctl serve`` on the same SQLite file is refused.

Two services on one file reconciled the same rooms twice, each with its own rate limiter. The
first holds an exclusive lock for its life; the second exits at once saying why; once the first
is gone (``kill -9`` included: the kernel drops the lock), a new one starts.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT, Server, clean_env

pytestmark = pytest.mark.slow


async def test_a_second_serve_on_one_sqlite_file_is_refused_and_the_lock_dies_with_its_holder(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    env = clean_env(DATABASE_URL=f"sqlite:///{db}", AGORA_NCS_SECRET="lock-ncs-secret",
                    LOG_LEVEL="WARNING")
    first = Server.recctl_serve(env, tmp_path / "first.log")
    try:
        await first.wait_healthy()
        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "service.cli", "serve", "--port", "0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert second.returncode == 2, second.stderr
        assert str(db) in second.stderr and "already served by pid" in second.stderr
        assert str(first.process.pid) in second.stderr, "names the holder"
        assert "PostgreSQL" in second.stderr, "says what to do instead"
    finally:
        first.kill9()
    again = Server.recctl_serve(env, tmp_path / "again.log")
    try:
        await again.wait_healthy()
    finally:
        again.stop()
