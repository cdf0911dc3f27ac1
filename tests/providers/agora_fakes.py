"""Shared fakes for the Agora tests: a plain function as the server, behind httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from reconcilers.providers.agora.adapter import AgoraProvider
from reconcilers.providers.agora.client import AgoraClient, AgoraConfig
from reconcilers.providers.base import StartRequest, StorageTarget

APP_ID = "970ca35de60c44645bbae8a215061b33"
CERTIFICATE = "5cfd2fd1755d40ecb72977518be15d3b"
KEY, SECRET = "customer-key-1234", "customer-secret-5678"
CONFIG = AgoraConfig(
    app_id=APP_ID, customer_key=KEY, customer_secret=SECRET, base_url="https://agora.test"
)
S3 = StorageTarget(
    kind="s3", bucket="rec", region="us-west-2", access_key_id="AK", secret_access_key="SK"
)

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeAgora:
    """Answers each request with the next queued answer (the last one repeats); keeps requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers) or [httpx.Response(200, json={})]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    def body(self, index: int = -1) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.requests[index].content)
        return data

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.raw_path.decode()}" for r in self.requests]


def client(fake: FakeAgora, config: AgoraConfig = CONFIG, **kw: Any) -> AgoraClient:
    return AgoraClient(config, transport=httpx.MockTransport(fake), **kw)


def provider(fake: FakeAgora, config: AgoraConfig = CONFIG, **kw: Any) -> AgoraProvider:
    return AgoraProvider(config, transport=httpx.MockTransport(fake), **kw)


def start_request(mode: str = "mix", **changes: Any) -> StartRequest:
    by_mode: dict[str, dict[str, Any]] = {
        "individual": {"recordingConfig": {"subscribeUidGroup": 0}},
        "mix": {},
        "web": {
            "extensionServiceConfig": {
                "extensionServices": [
                    {
                        "serviceName": "web_recorder_service",
                        "serviceParam": {"url": "https://example.com/room", "maxRecordingHour": 2},
                    }
                ]
            }
        },
    }
    options = by_mode[mode]
    values: dict[str, Any] = {
        "room": "t1/room",
        "channel": "room",
        "mode": mode,
        "recorder_uid": "4000000001",
        "options": options,
        "storage": S3,
        "file_prefix": ("t1", "room", "seg0"),
        "max_seconds": 3600,
    }
    values.update(changes)
    return StartRequest(**values)
