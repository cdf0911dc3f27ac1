"""``recctl dev`` as a user meets it: a real process, its printed curl lines sent as printed
(parsed, then sent with httpx), its ``recctl`` lines run in a shell, and Ctrl-C (SIGINT) or
SIGTERM stopping every process it started."""

from __future__ import annotations

import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.procs import ROOT, clean_env

START_SECONDS = 90.0
WAIT_SECONDS = 60.0


@dataclass
class Dev:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def read_until(self, done: Callable[[str], bool], within: float = START_SECONDS) -> None:
        """Collect printed lines until one satisfies ``done`` (the process's output is the
        event awaited; the deadline only bounds a broken start)."""
        deadline = time.monotonic() + within
        while True:
            line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"recctl dev exited: {self.lines} {self.stderr()}")
            self.lines.append(line)
            if done(line):
                return

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def curls(self) -> list[list[str]]:
        return [shlex.split(line) for line in self.lines if line.startswith("curl ")]


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    command = [sys.executable, "-m", "service.cli", "dev", "--db", str(tmp_path / "dev.db")]
    for option in ("--port", "--agora-port", "--cloudflare-port", "--s3-port"):
        command += [option, "0"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    running = Dev(process)
    try:
        running.read_until(lambda line: line.startswith("DATABASE_URL=") and "status" in line)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def send(client: httpx.Client, argv: list[str]) -> httpx.Response:
    """A printed curl line, sent with httpx: ``-X``, ``-H``, ``-d`` and the URL."""
    assert argv[0] == "curl"
    method, headers, body, url = "GET", {}, None, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _, value = next(args).partition(": ")
            headers[name] = value
        elif arg == "-d":
            body = next(args)
        elif arg.startswith("-"):
            assert arg == "-sS", f"an option the test does not know: {arg}"
        else:
            url = arg
    assert url is not None
    return client.request(method, url, headers=headers, content=body)


def until(what: str, check: Callable[[], Any]) -> Any:
    """Poll the API, as a user would, until ``check()`` is truthy."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_SECONDS}s"
        time.sleep(0.2)
    return found


def stops_everything(dev: Dev, signum: int) -> None:
    parent = psutil.Process(dev.process.pid)
    children = parent.children(recursive=True)
    assert children, "the store's writer runs in a child process"
    dev.process.send_signal(signum)
    assert dev.process.wait(timeout=60) == 0, dev.stderr()
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"left running: {alive}"
    assert dev.stderr() == "", "a clean stop says nothing on stderr"


def test_the_printed_calls_work_and_ctrl_c_stops_everything(dev: Dev) -> None:
    join, declare, view, catalog, stop = dev.curls()
    recctl_lines = [line for line in dev.lines if line.startswith("DATABASE_URL=")]
    service_url = declare[declare.index("-X") + 2].split("/v1/")[0]
    with httpx.Client(timeout=10) as client:
        response = send(client, join)
        assert response.is_success, response.text
        response = send(client, declare)
        assert response.is_success, response.text

        def recording() -> bool:
            conditions = send(client, view).json()["conditions"]
            found = next(c for c in conditions if c["type"] == "Recording")
            return bool(found["status"] == "True")

        until("the room recording", recording)
        listed = send(client, catalog)
        assert listed.is_success and listed.json()["data"][0]["status"] == "recording"
        assert send(client, stop).is_success

        def ready() -> dict[str, Any] | None:
            item = send(client, catalog).json()["data"][0]
            return item if item["status"] == "ready" else None

        item = until("the recording ready", ready)
        token = dict(h.split(": ", 1) for h in view[view.index("-H") + 1 :: 2])["Authorization"]
        download = client.get(
            f"{service_url}/api/v1/recordings/{item['id']}/download",
            headers={"Authorization": token},
        )
        assert download.is_success, download.text
        fetched = client.get(download.json()["download_url"])
        assert fetched.status_code == 200 and fetched.content, "served by the S3 API server"

    for line in recctl_lines:  # as printed, in a shell
        done = subprocess.run(
            ["bash", "-c", line], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
            timeout=60, check=False,
        )
        assert done.returncode == 0, (line, done.stderr)
        assert "dev/standup" in done.stdout
    stops_everything(dev, signal.SIGINT)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{service_url}/healthz", timeout=2)


def test_sigterm_stops_everything_too(dev: Dev) -> None:
    stops_everything(dev, signal.SIGTERM)
