"""Rotating the secrets the service checks, without refusing anything valid at any moment: the
three phases of a rolling rotation (old; old and new; new), each a real ``recctl serve`` on
the same event log, as a rolling restart runs them (docs/operations.md#rotating-secrets)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.helpers import encode, notification, signed
from tests.procs import Server, clean_env

pytestmark = pytest.mark.slow

OLD, NEW = "ncs-secret-before-rotation", "ncs-secret-after-rotation"
OLD_TOKEN, NEW_TOKEN = "api-token-before-rotation", "api-token-after-rotation"
OLD_HOOK, NEW_HOOK = "storage-hook-before", "storage-hook-after"
SPEC = {"state": "stopped", "mode": "mix"}


async def phase(tmp_path: Path, name: str, ncs: str, tokens: str, hooks: str) -> dict[str, int]:
    """Start a replica with these secrets; the status of a call signed with each old/new one."""
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'rotation.db'}",
        AGORA_NCS_SECRET=ncs,
        API_TOKENS=tokens,
        STORAGE_WEBHOOK_SECRET=hooks,
        STORAGE_PROFILES=json.dumps({"default": {"kind": "s3", "bucket": "b"}}),
        AGORA_API_BASE_URL="http://127.0.0.1:9",  # nothing listens: no provider is called
        LOG_LEVEL="WARNING",
    )
    server = Server.recctl_serve(env, tmp_path / f"{name}.log")
    seen: dict[str, int] = {}
    try:
        await server.wait_healthy(path="/readyz")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            if name == "before":
                auth = {"Authorization": f"Bearer {OLD_TOKEN}"}
                put = await client.put("/v1/rooms/standup/recording", json=SPEC, headers=auth)
                assert put.status_code == 201, put.text
            for label, secret in (("ncs_old", OLD), ("ncs_new", NEW)):
                body = encode(notification(f"{name}-{label}"))
                answer = await client.post(
                    "/webhooks/agora", content=body, headers=signed(body, secret)
                )
                seen[label] = answer.status_code
            for label, token in (("api_old", OLD_TOKEN), ("api_new", NEW_TOKEN)):
                auth = {"Authorization": f"Bearer {token}"}
                answer = await client.get("/v1/rooms/standup/recording", headers=auth)
                seen[label] = answer.status_code
            for label, hook in (("hook_old", OLD_HOOK), ("hook_new", NEW_HOOK)):
                answer = await client.head(
                    "/webhooks/storage", headers={"Authorization": f"Bearer {hook}"}
                )
                seen[label] = answer.status_code
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log()
    return seen


async def test_a_rolling_rotation_never_refuses_a_valid_caller(tmp_path: Path) -> None:
    before = await phase(tmp_path, "before", OLD, f"{OLD_TOKEN}:acme", OLD_HOOK)
    both = await phase(
        tmp_path,
        "during",
        f"{NEW},{OLD}",
        f"{NEW_TOKEN}:acme,{OLD_TOKEN}:acme",
        f"{NEW_HOOK},{OLD_HOOK}",
    )
    after = await phase(tmp_path, "after", NEW, f"{NEW_TOKEN}:acme", NEW_HOOK)
    assert before == {
        "ncs_old": 200,
        "ncs_new": 401,
        "api_old": 200,
        "api_new": 401,
        "hook_old": 200,
        "hook_new": 401,
    }
    # While both are configured, the callers on either side of the switch are served, and the
    # new token sees the room the old one declared (a token names its tenant, not its rooms).
    assert both == {
        "ncs_old": 200,
        "ncs_new": 200,
        "api_old": 200,
        "api_new": 200,
        "hook_old": 200,
        "hook_new": 200,
    }
    assert after == {
        "ncs_old": 401,
        "ncs_new": 200,
        "api_old": 401,
        "api_new": 200,
        "hook_old": 401,
        "hook_new": 200,
    }
