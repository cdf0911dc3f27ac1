"""Notifications: signing, envelope, sequence, retries, and delivery faults."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from service.emulators.agora import FaultConfig, sign_sha1, sign_sha256, signature_headers

from .conftest import RECEIVER_URL, Receiver, manual, running

# docs/providers/agora.md#9-signatures-retries-allowlist, the LEG ncs.md pairing.
VECTOR_BODY = (
    b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
    b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
)


def test_signatures_match_the_published_test_vector() -> None:
    assert sign_sha1(VECTOR_BODY, "secret") == "033c62f40f687675f17f0f41f91a40c71c0f134c"
    assert sign_sha256(VECTOR_BODY, "secret") == (
        "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99"
    )
    headers = signature_headers(VECTOR_BODY, "secret")
    assert headers["Agora-Signature"] == "033c62f40f687675f17f0f41f91a40c71c0f134c"
    assert headers["Content-Type"] == "application/json"


async def test_notifications_are_signed_enveloped_and_sequenced(receiver: Receiver) -> None:
    config = manual(
        callback_url=RECEIVER_URL, ncs_secret="s3cret", rtc_events=False, callback_concurrency=1
    )
    async with running(config, receiver) as (emu, agora):
        emu.join("room", 7, "host")
        _, sid = await agora.session("mix")
        emu.advance(15)
        await emu.settle()
    assert receiver.requests
    for got in receiver.requests:
        sha1 = hmac.new(b"s3cret", got.body, hashlib.sha1).hexdigest()
        sha256 = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
        assert got.headers["agora-signature"] == sha1
        assert got.headers["agora-signature-v2"] == sha256
        assert list(got.json) == ["noticeId", "productId", "eventType", "notifyMs", "payload"]
    payloads = [p["payload"] for p in receiver.recording()]
    assert [p["sequence"] for p in payloads] == list(range(len(payloads)))
    first = payloads[0]
    assert (first["cname"], first["uid"], first["sid"]) == ("room", "1001", sid)
    assert set(first) == {"cname", "uid", "sid", "sequence", "sendts", "serviceType", "details"}
    assert receiver.events()[:4] == [3, 3, 3, 30]
    assert {40, 42, 4}.issubset(receiver.events())
    assert len({r.json["noticeId"] for r in receiver.requests}) == len(receiver.requests)


async def test_a_receiver_failing_twice_gets_three_attempts_per_notice() -> None:
    receiver = Receiver(statuses=[500, 503, 200])
    config = manual(callback_url=RECEIVER_URL, callback_retry_delays=(0, 2, 5))
    async with running(config, receiver) as (emu, _):
        emu.join("room", 7, "host")  # two notices: 101 and 103
        await emu.settle()
        immediate = len(receiver.requests)
        emu.advance(2)
        await emu.settle()
    await receiver.client.aclose()
    assert immediate == 4  # first attempt and the immediate resend of each
    attempts: dict[str, list[int]] = {}
    for got in receiver.requests:
        attempts.setdefault(got.notice_id, []).append(got.json["notifyMs"])
    assert len(attempts) == 2
    for notify_ms in attempts.values():
        assert len(notify_ms) == 3
        assert notify_ms[1] == notify_ms[0] and notify_ms[2] == notify_ms[0] + 2000
    assert emu.notifier.stats["delivered"] == 2 and emu.notifier.stats["attempts"] == 6


async def test_a_receiver_that_always_fails_gets_four_attempts() -> None:
    receiver = Receiver(statuses=[500])
    config = manual(callback_url=RECEIVER_URL, callback_retry_delays=(0, 2, 5))
    async with running(config, receiver) as (emu, _):
        emu.join("room", 7, "host")
        for step in (0, 2, 5, 100):
            emu.advance(step)
            await emu.settle()
        log = list(emu.notifier.log)
    await receiver.client.aclose()
    assert len(receiver.requests) == 8
    per_notice = {r.notice_id for r in receiver.requests}
    assert len(per_notice) == 2
    assert [d.outcome for d in log] == ["failed", "failed"]
    assert [a.status for a in log[0].attempts] == [500, 500, 500, 500]


async def test_a_slow_receiver_times_out_and_is_retried() -> None:
    receiver = Receiver(statuses=[200])
    receiver.gate = asyncio.Event()
    config = manual(callback_url=RECEIVER_URL, callback_timeout=0.05, callback_retry_delays=(0,))
    async with running(config, receiver) as (emu, _):
        emu.join("room", 7)
        await emu.settle()
        log = list(emu.notifier.log)
        receiver.gate.set()
    await receiver.client.aclose()
    assert [a.error for a in log[0].attempts] == ["TimeoutError", "TimeoutError"]
    assert log[0].outcome == "failed"


async def test_delivery_never_blocks_the_api() -> None:
    receiver = Receiver()
    receiver.gate = asyncio.Event()
    async with running(manual(callback_url=RECEIVER_URL), receiver) as (emu, agora):
        emu.join("room", 7, "host")
        rid, sid = await agora.session("mix")
        emu.advance(15)
        assert (await agora.query(rid, sid)).status_code == 200
        assert await receiver.arrived.get()  # the sender is stuck inside the receiver
        assert (await agora.stop(rid, sid)).status_code == 200
        receiver.gate.set()
        await emu.settle()
    await receiver.client.aclose()
    assert emu.notifier.stats["delivered"] == emu.notifier.stats["emitted"]


async def test_dropped_notifications_are_never_sent(receiver: Receiver) -> None:
    faults = FaultConfig(callback_drop_rate=1.0)
    async with running(manual(callback_url=RECEIVER_URL, faults=faults), receiver) as (emu, _):
        emu.join("room", 7, "host")
        emu.leave("room", 7)
        await emu.settle()
    assert receiver.requests == []
    assert emu.notifier.stats["dropped"] == 4


async def test_duplicated_notifications_arrive_twice_with_one_notice_id(
    receiver: Receiver,
) -> None:
    faults = FaultConfig(callback_duplicate_rate=1.0)
    config = manual(callback_url=RECEIVER_URL, faults=faults, callback_concurrency=1)
    async with running(config, receiver) as (emu, _):
        emu.join("room", 7, "host")
        await emu.settle()
    ids = [r.json["noticeId"] for r in receiver.requests]
    assert len(ids) == 4 and ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]


async def test_redundant_delivery_sends_everything_twice(receiver: Receiver) -> None:
    config = manual(callback_url=RECEIVER_URL, redundant_callbacks=True)
    async with running(config, receiver) as (emu, _):
        emu.join("room", 7, "host")
        await emu.settle()
    assert receiver.events(None) == [101, 101, 103, 103]


async def test_delayed_notifications_wait_for_emulated_time(receiver: Receiver) -> None:
    faults = FaultConfig(callback_delay_rate=1.0, callback_delay=(3.0, 3.0))
    async with running(manual(callback_url=RECEIVER_URL, faults=faults), receiver) as (emu, _):
        emu.join("room", 7, "host")
        await emu.settle()
        assert receiver.requests == []
        emu.advance(3)
        await emu.settle()
    assert receiver.events(None) == [101, 103]


async def test_reordered_notifications_all_arrive_out_of_order(receiver: Receiver) -> None:
    faults = FaultConfig(callback_reorder_rate=0.5)
    config = manual(callback_url=RECEIVER_URL, faults=faults, callback_concurrency=1, seed=3)
    async with running(config, receiver) as (emu, agora):
        emu.join("room", 7, "host")
        await agora.session("mix")
        emu.advance(30)
        await emu.settle()
    sequences = [p["payload"]["sequence"] for p in receiver.recording()]
    assert sorted(sequences) == list(range(len(sequences)))
    assert sequences != sorted(sequences)
    assert emu.notifier.stats["reordered"] > 0


async def test_rtc_events_can_go_to_their_own_url_and_secret(receiver: Receiver) -> None:
    config = manual(
        callback_url="http://receiver.test/unused",
        rtc_callback_url=RECEIVER_URL,
        rtc_ncs_secret="rtc-secret",
    )
    async with running(config, receiver) as (emu, _):
        emu.join("room", 7, "host")
        await emu.settle()
    assert receiver.events(1) == [101, 103]
    got = receiver.requests[0]
    assert got.headers["agora-signature-v2"] == sign_sha256(got.body, "rtc-secret")
