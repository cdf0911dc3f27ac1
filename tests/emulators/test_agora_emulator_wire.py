"""End to end over real sockets: the CLI in a subprocess, and callbacks to a real receiver."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from service.emulators.agora import AgoraEmulator, sign_sha256

from .conftest import AUTH, BASE, Receiver, manual, start_request

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a loopback socket that is listening before we yield."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.mark.slow
async def test_the_cli_serves_agora_over_http() -> None:
    flags = ["--port", "0", "--speed", "0", "--log-level", "info", "--qps-limit", "0"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.emulators.agora",
        *flags,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert process.stderr is not None
    try:
        url = ""
        while not url:
            line = (await asyncio.wait_for(process.stderr.readline(), timeout=30)).decode()
            assert line, "the emulator exited before listening"
            found = re.search(r"Uvicorn running on (http://\S+)", line)
            url = found.group(1) if found else ""
        async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=10) as client:
            body = {"cname": "wire", "uid": "5", "clientRequest": {}}
            rid = (await client.post(f"{BASE}/acquire", json=body)).json()["resourceId"]
            body["clientRequest"] = start_request("mix")
            started = await client.post(f"{BASE}/resourceid/{rid}/mode/mix/start", json=body)
            sid = started.json()["sid"]
            joined = await client.post(
                "/_emulator/channels/wire/users", json={"uid": 9, "role": "host"}
            )
            assert joined.status_code == 201
            await client.post("/_emulator/clock/advance", json={"seconds": 15})
            query = await client.get(f"{BASE}/resourceid/{rid}/sid/{sid}/mode/mix/query")
            assert query.json()["serverResponse"]["status"] == 5
            unauthorised = await client.get("/v1/ncs/ip", auth=("x", "y"))
            assert unauthorised.status_code == 401
    finally:
        process.terminate()
        await process.wait()


async def test_signed_callbacks_reach_a_real_receiver() -> None:
    receiver = Receiver()
    async with serve(receiver.app) as receiver_url:
        config = manual(
            speed=200.0, callback_url=f"{receiver_url}/ncs", ncs_secret="wire", rtc_events=False
        )
        emu = AgoraEmulator(config)
        async with (
            serve(emu.app) as agora_url,
            httpx.AsyncClient(base_url=agora_url, auth=AUTH, timeout=10) as client,
        ):
            emu.join("room", 9, "host")
            body = {"cname": "room", "uid": "5", "clientRequest": {}}
            rid = (await client.post(f"{BASE}/acquire", json=body)).json()["resourceId"]
            body["clientRequest"] = start_request("mix")
            started = await client.post(f"{BASE}/resourceid/{rid}/mode/mix/start", json=body)
            assert started.status_code == 200
            while True:  # running clock: status 4 arrives after 1 emulated second (5 ms)
                got = await asyncio.wait_for(receiver.arrived.get(), timeout=10)
                assert got.headers["agora-signature-v2"] == sign_sha256(got.body, "wire")
                if got.event == 40:
                    break
    await receiver.client.aclose()
    assert got.json["payload"]["sid"] == started.json()["sid"]
