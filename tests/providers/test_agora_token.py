"""The recorder token: present with a certificate (not in web mode), absent otherwise, and
valid by the package's own AccessToken2 parser and signature."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import httpx

from reconcilers.outcomes import Rejected
from reconcilers.providers.agora.token import (
    TOKEN_MARGIN_SECONDS,
    TOKEN_MAX_SECONDS,
    recorder_token,
    token_lifetime,
)
from reconcilers.providers.base import Reservation
from tests.providers.agora_fakes import (
    APP_ID,
    CERTIFICATE,
    CONFIG,
    FakeAgora,
    provider,
    start_request,
)

WITH_CERT = dataclasses.replace(CONFIG, app_certificate=CERTIFICATE)

with warnings.catch_warnings():  # the package's REST models use pydantic's deprecated config
    warnings.simplefilter("ignore", DeprecationWarning)
    from agora_rest.utils.AccessToken2 import AccessToken, ServiceRtc


def parse(token: str) -> dict[str, Any]:
    parsed = AccessToken()
    assert parsed.from_string(token)
    fields = {k.removeprefix("_AccessToken__"): v for k, v in vars(parsed).items()}
    rtc = fields["service"][ServiceRtc.kServiceType]
    fields["channel"] = rtc._ServiceRtc__channel_name
    fields["uid"] = rtc._ServiceRtc__uid
    fields["privileges"] = rtc._Service__privileges
    return fields


def resign(fields: dict[str, Any], certificate: str) -> str:
    """Rebuild the token from its parsed fields with ``certificate``: equal iff the signature is."""
    token = AccessToken(APP_ID, certificate, issue_ts=fields["issue_ts"], expire=fields["expire"])
    token._AccessToken__salt = fields["salt"]
    service = ServiceRtc(fields["channel"].decode(), int(fields["uid"]))
    for privilege, expire in fields["privileges"].items():
        service.add_privilege(privilege, expire)
    token.add_service(service)
    built: str = token.build()
    return built


async def started_body(config: Any, mode: str = "mix", **changes: Any) -> dict[str, Any]:
    fake = FakeAgora(httpx.Response(200, json={"sid": "s"}))
    p = provider(fake, config)
    await p.start(start_request(mode, **changes), Reservation(resource_id="res"))
    await p.aclose()
    request: dict[str, Any] = fake.body()["clientRequest"]
    return request


async def test_token_sent_when_a_certificate_is_set() -> None:
    body = await started_body(WITH_CERT, max_seconds=7200)
    token = body["token"]
    assert token.startswith("007")
    fields = parse(token)
    assert fields["app_id"] == APP_ID.encode()
    assert (fields["channel"], fields["uid"]) == (b"room", b"4000000001")
    assert fields["expire"] == 7200 + TOKEN_MARGIN_SECONDS
    assert set(fields["privileges"].values()) == {7200 + TOKEN_MARGIN_SECONDS}
    assert resign(fields, CERTIFICATE) == token
    assert resign(fields, "0" * 32) != token


async def test_no_token_without_a_certificate_or_in_web_mode() -> None:
    assert "token" not in await started_body(CONFIG)
    assert "token" not in await started_body(WITH_CERT, "web")
    assert "token" in await started_body(WITH_CERT, "individual")


async def test_a_certificate_the_builder_refuses_is_rejected_before_any_call() -> None:
    fake = FakeAgora(httpx.Response(200, json={"sid": "s"}))
    p = provider(fake, dataclasses.replace(CONFIG, app_certificate="not-hex"))
    outcome = await p.start(start_request(), Reservation(resource_id="res"))
    await p.aclose()
    assert isinstance(outcome, Rejected)
    assert outcome.message.startswith("token:")
    assert fake.requests == []


def test_lifetime_covers_the_segment_and_is_capped_at_24_hours() -> None:
    assert token_lifetime(3600) == 3600 + TOKEN_MARGIN_SECONDS
    assert token_lifetime(24 * 3600) == TOKEN_MAX_SECONDS
    token = recorder_token(APP_ID, CERTIFICATE, "c", "42", 60)
    assert parse(token)["expire"] == 60
