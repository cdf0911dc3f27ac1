"""Every documented status and code, per endpoint, through the client and a fake server."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest

from reconcilers.outcomes import (
    AlreadyRecording,
    Ended,
    Failure,
    RateLimited,
    Rejected,
    Retryable,
    WrongResource,
)
from reconcilers.providers.agora.client import AgoraClient, Reply
from reconcilers.providers.agora.errors import ResourceExpired, classify, needs_reacquire
from reconcilers.providers.base import Reservation, SessionHandle
from tests.providers.agora_fakes import (
    CONFIG,
    KEY,
    SECRET,
    FakeAgora,
    client,
    provider,
    start_request,
)

HANDLE = SessionHandle("agora", "room", "1", "mix", "sid", "res")

NOT_FOUND_SHORT = {"cname": "24080002", "code": 404, "reason": "failed to find worker", "uid": "1"}
NOT_FOUND_LONG = {
    "cname": "64ce638a934f",
    "code": 404,
    "resourceId": "s1pH1NB-",
    "serverResponse": {
        "command": "StopCloudRecorder",
        "payload": {"message": "failed to find worker"},
        "subscribeModeBitmask": 1,
        "vid": "1209",
    },
    "sid": "746d1de45d2780add6f055",
    "uid": "18761",
}


def err(code: int | str, reason: str = "") -> dict[str, Any]:
    return {"code": code, "reason": reason}


# (endpoint, HTTP status, body, outcome class, code kept)
TABLE: list[tuple[str, int, dict[str, Any], type[Failure], int | str | None]] = [
    # acquire (docs/providers/agora.md#1-acquire)
    ("acquire", 400, err(2, "Acquire: invalid resourceExpiredHour value!"), Rejected, 2),
    ("acquire", 400, err(400, "invalid_appid"), Rejected, 400),
    ("acquire", 400, err(401, "invalid_channel_name"), Rejected, 401),
    ("acquire", 400, err(405, "no_active_status"), Rejected, 405),
    ("acquire", 400, err(406, "vendor_over_load"), RateLimited, 406),
    ("acquire", 500, err(500, "internal_error"), Retryable, 500),
    ("acquire", 500, err(501, "no_worker_manager_available"), Retryable, 501),
    ("acquire", 500, err(504, "allocate_timeout"), Retryable, 504),
    ("acquire", 500, err(62, "request timeout"), Retryable, 62),
    # start (§2)
    ("start", 201, err(7, "already started"), AlreadyRecording, 7),
    ("start", 400, err(53, "task conflict"), AlreadyRecording, 53),
    ("start", 206, err(65, "request not completed"), Retryable, 65),
    ("start", 400, err(2, "invalid parameter"), Rejected, 2),
    ("start", 500, err(502, "Failed to allocate worker"), ResourceExpired, 502),
    ("start", 500, err(62, "request timeout"), Retryable, 62),
    ("start", 500, err(15, ""), ResourceExpired, 15),
    ("start", 400, err(433, "resource expired"), ResourceExpired, 433),
    ("start", 400, err(1001, "resource id invalid"), ResourceExpired, 1001),
    ("start", 400, err(432, "parameter mismatch"), Rejected, 432),
    ("start", 400, err(1003, "sid mismatch"), WrongResource, 1003),
    ("start", 400, err(109, "token expired"), Rejected, 109),
    ("start", 400, err(110, "token invalid"), Rejected, 110),
    ("start", 400, err(8, "http error"), Rejected, 8),
    ("start", 400, err("53", "task conflict"), AlreadyRecording, 53),
    # acquire, unusual codes that only make sense elsewhere
    ("acquire", 400, err(1013, "invalid channel name"), Rejected, 1013),
    # query (§3)
    ("query", 404, NOT_FOUND_SHORT, Ended, 404),
    ("query", 404, NOT_FOUND_LONG, Ended, 404),
    ("query", 206, err(65, "request not completed"), Retryable, 65),
    ("query", 504, err(62, "request timeout"), Retryable, 62),
    ("query", 500, err(501, "recording service is exiting"), Retryable, 501),
    ("query", 400, err(433, "resource expired"), Ended, 433),
    ("query", 400, err(1001, "resource id invalid"), Rejected, 1001),
    # update / updateLayout (§4)
    ("update", 404, NOT_FOUND_SHORT, Ended, 404),
    ("update", 400, err(2), Rejected, 2),
    ("update", 206, err(65), Retryable, 65),
    ("update", 504, err(62), Retryable, 62),
    ("updateLayout", 400, err(1028, "invalid layout"), Rejected, 1028),
    ("updateLayout", 404, NOT_FOUND_LONG, Ended, 404),
    # stop (§5)
    ("stop", 404, NOT_FOUND_SHORT, Ended, 404),
    ("stop", 404, NOT_FOUND_LONG, Ended, 404),
    ("stop", 400, err(49, "invalid operation"), Ended, 49),
    ("stop", 206, err(435, "no recorded data"), Ended, 435),
    ("stop", 206, err(65, "request not completed"), Retryable, 65),
    ("stop", 504, err(62, "request timeout"), Retryable, 62),
    ("stop", 500, err(501, "recording service is exiting"), Ended, 501),
    # HTTP level (§6), without a code
    ("acquire", 401, {"message": "Unauthorized"}, Rejected, None),
    ("query", 401, {"message": "Invalid authentication credentials"}, Rejected, None),
    ("acquire", 400, {"message": "appid is invalid"}, Rejected, None),
    ("query", 404, {"message": "no Route matched with those values"}, Rejected, None),
    ("stop", 404, {"message": "no Route matched with those values"}, Rejected, None),
    ("acquire", 429, {"message": "API rate limit exceeded"}, RateLimited, None),
    ("query", 429, {"message": "API rate limit exceeded"}, RateLimited, None),
    ("start", 503, {}, Retryable, None),
    ("stop", 502, {}, Retryable, None),
    ("start", 400, err(9999, "new code"), Rejected, 9999),
    ("query", 500, err(9999, "new code"), Retryable, 9999),
]


async def call(c: AgoraClient, endpoint: str) -> Reply | Failure:
    if endpoint == "acquire":
        return await c.acquire("room", "1", {})
    if endpoint == "start":
        return await c.start("res", "mix", "room", "1", {})
    if endpoint == "query":
        return await c.query("res", "sid", "mix")
    if endpoint == "update":
        return await c.update("res", "sid", "mix", "room", "1", {})
    if endpoint == "updateLayout":
        return await c.update_layout("res", "sid", "room", "1", {})
    return await c.stop("res", "sid", "mix", "room", "1")


@pytest.mark.parametrize(("endpoint", "status", "body", "kind", "code"), TABLE)
async def test_status_and_code_to_outcome(
    endpoint: str, status: int, body: dict[str, Any], kind: type[Failure], code: int | None
) -> None:
    c = client(FakeAgora(httpx.Response(status, json=body)))
    outcome = await call(c, endpoint)
    await c.aclose()
    assert type(outcome) is kind
    assert isinstance(outcome, Failure)
    assert (outcome.code, outcome.http_status, outcome.body) == (code, status, body)
    if body.get("reason") or body.get("message"):
        assert outcome.message == (body.get("reason") or body.get("message"))


async def test_both_404_forms_keep_the_message() -> None:
    for body in (NOT_FOUND_SHORT, NOT_FOUND_LONG):
        c = client(FakeAgora(httpx.Response(404, json=body)))
        outcome = await c.query("res", "sid", "mix")
        await c.aclose()
        assert isinstance(outcome, Ended)
        assert outcome.message == "failed to find worker"


async def test_rate_limited_keeps_retry_after() -> None:
    fake = FakeAgora(
        httpx.Response(429, text="API rate limit exceeded", headers={"Retry-After": "2"})
    )
    c = client(fake)
    outcome = await c.query("res", "sid", "mix")
    await c.aclose()
    assert isinstance(outcome, RateLimited)
    assert (outcome.retry_after, outcome.message) == (2.0, "API rate limit exceeded")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.ConnectTimeout("connect timed out"), "timeout"),
        (httpx.PoolTimeout("pool"), "timeout"),
        (httpx.ConnectError("refused"), "transport"),
        (httpx.RemoteProtocolError("closed"), "transport"),
    ],
)
async def test_transport_failures_are_retryable(exc: Exception, code: str) -> None:
    for endpoint in ("acquire", "start", "query", "update", "updateLayout", "stop"):
        c = client(FakeAgora(exc))
        outcome = await call(c, endpoint)
        await c.aclose()
        assert type(outcome) is Retryable, endpoint
        assert outcome.code == code
        assert outcome.message.startswith(endpoint)


async def test_a_start_without_sid_needs_a_new_resource() -> None:
    fake = FakeAgora(httpx.Response(200, json={"cname": "room", "uid": "1", "sid": ""}))
    p = provider(fake)
    outcome = await p.start(start_request(), Reservation(resource_id="res"))
    await p.aclose()
    assert isinstance(outcome, ResourceExpired)
    assert isinstance(outcome, Retryable)  # what the executor sees
    assert needs_reacquire(outcome)
    assert (outcome.code, outcome.http_status) == (15, 200)


def test_only_resource_failures_need_reacquire() -> None:
    assert not needs_reacquire(Retryable(65))
    assert needs_reacquire(ResourceExpired(433))


def test_a_synchronous_stop_that_outlived_the_upload_is_a_stop() -> None:
    assert classify("stop", 200, err(50, "upload timeout")) is None
    assert isinstance(classify("query", 200, err(50)), Retryable)


def test_success_bodies_and_code_zero() -> None:
    assert classify("query", 200, {"sid": "s", "serverResponse": {}}) is None
    assert classify("stop", 206, {"serverResponse": {"uploadingStatus": "backuped"}}) is None
    assert classify("acquire", 200, {"code": 0, "resourceId": "r"}) is None


async def test_requests_carry_auth_content_type_and_the_hook_runs_before_each() -> None:
    taken: list[int] = []
    fake = FakeAgora(httpx.Response(200, json={"resourceId": "r"}))

    async def take() -> None:
        taken.append(len(fake.requests))  # before the request reaches the server

    c = client(fake, before_request=take)
    for endpoint in ("acquire", "start", "query", "update", "updateLayout", "stop"):
        await call(c, endpoint)
    await c.aclose()
    assert taken == [0, 1, 2, 3, 4, 5]
    expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert {r.headers["authorization"] for r in fake.requests} == {expected}
    posts = [r for r in fake.requests if r.method == "POST"]
    assert {r.headers["content-type"] for r in posts} == {"application/json;charset=utf-8"}
    assert fake.body() == {"cname": "room", "uid": "1", "clientRequest": {"async_stop": False}}
    assert [p.split("/cloud_recording")[1] for p in fake.paths] == [
        "/acquire",
        "/resourceid/res/mode/mix/start",
        "/resourceid/res/sid/sid/mode/mix/query",
        "/resourceid/res/sid/sid/mode/mix/update",
        "/resourceid/res/sid/sid/mode/mix/updateLayout",
        "/resourceid/res/sid/sid/mode/mix/stop",
    ]


async def test_secrets_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeAgora(httpx.Response(200, json={"sid": "s"}), httpx.ReadTimeout("t"))
    p = provider(fake)
    await p.start(start_request(), Reservation(resource_id="res"))
    await p.query(HANDLE)
    await p.aclose()
    assert caplog.records
    text = caplog.text + repr(p.config)
    for secret in (KEY, SECRET, "SK", base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()):
        assert secret not in text


async def test_an_injected_client_is_shared_not_closed() -> None:
    fake = FakeAgora(httpx.Response(200, json={"resourceId": "r"}))
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    c = AgoraClient(CONFIG, http=http)
    assert isinstance(await c.acquire("room", "1", {}), Reply)
    await c.aclose()
    assert not http.is_closed
    await http.aclose()
    with pytest.raises(ValueError):
        AgoraClient(c.config, http=http, transport=httpx.MockTransport(fake))
