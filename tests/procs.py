"""Real processes on loopback: ``recctl serve`` (or any uvicorn app) started, awaited, killed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
_ENV_PREFIXES = ("AGORA_", "DATABASE_URL", "LOG_", "MAX_BODY", "API_TOKENS", "STORAGE_PROFILES")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without our settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    return {**env, "PYTHONUNBUFFERED": "1", **values}


def recctl(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``recctl`` to completion (as ``python -m service.cli``: no install needed)."""
    command = [sys.executable, "-m", "service.cli", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Server:
    """A server process writing its log to a file (a pipe nobody reads could block it)."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def start(
        cls, command: Sequence[str], port: int, env: dict[str, str], log_path: Path
    ) -> Server:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return cls(process, f"http://127.0.0.1:{port}", log_path)

    @classmethod
    def recctl_serve(cls, env: dict[str, str], log_path: Path) -> Server:
        port = free_port()
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
        return cls.start(command, port, env, log_path)

    async def wait_healthy(self, within: float = 30.0, path: str = "/healthz") -> None:
        """Poll ``path`` until it answers 200, the process dies, or the deadline passes."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited {self.process.returncode}: {self.log()}")
                try:
                    if (await client.get(path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)  # polling interval, not a synchronisation
        raise TimeoutError(f"{self.url} not healthy after {within}s: {self.log()}")

    def kill9(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
