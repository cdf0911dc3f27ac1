"""The providers' documented payloads, kept as fixtures under ``tests/fixtures/providers/``
(each file names its public source and the section of ``docs/providers/`` that explains it),
replayed through our parsers: what the providers documented is what we understand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconcilers.providers.agora import notifications as ncs
from reconcilers.providers.agora.models import validate_options as agora_options
from reconcilers.providers.agora.responses import parse_stop
from reconcilers.providers.cloudflare.webhooks import parse_webhook
from service.webhooks import storage

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "providers"


def payloads(prefix: str) -> list[dict[str, Any]]:
    """The payload of every fixture whose file name starts with ``prefix``."""
    found = []
    for path in sorted(FIXTURES.glob(f"{prefix}*.json")):
        fixture = json.loads(path.read_text())
        assert fixture["source"].startswith("https://"), path
        documented_in = ROOT / fixture["documented_in"].split("#")[0]
        assert documented_in.is_file(), path
        found.append(fixture["payload"])
    return found


def test_agora_documented_payloads_parse() -> None:
    found = payloads("agora_")
    assert len(found) >= 6
    stops = [b for b in found if "serverResponse" in b]
    assert stops, "the stop response example"
    for body in stops:
        result = parse_stop(body)
        assert result.upload_status == "uploaded" and result.files
    details = [b for b in found if "msgName" in b]
    event_types = {"uploaded": 31, "web_recorder_stopped": 71}
    assert {d["msgName"] for d in details} == set(event_types)
    for d in details:
        body = {
            "noticeId": "doc", "productId": 3, "eventType": event_types[d["msgName"]],
            "notifyMs": 1, "payload": {"cname": "c", "uid": "1", "sid": "s", "sequence": 0,
                                       "sendts": 1, "serviceType": 0, "details": d},
        }
        parsed = ncs.details_of(ncs.parse_notification(body))
        assert getattr(parsed, "files", None), (d["msgName"], parsed)
    starts = [b for b in found if "clientRequest" in b and "recordingConfig" in b["clientRequest"]]
    for body in starts:
        request = {
            k: v for k, v in body["clientRequest"].items() if k not in ("token", "storageConfig")
        }
        assert agora_options("mix", request)["recordingConfig"]["maxIdleTime"] == 30


def test_cloudflare_documented_webhook_parses() -> None:
    (hook,) = [b for b in payloads("cloudflare_") if b.get("event") == "recording.statusUpdate"]
    parsed = parse_webhook(hook)
    assert parsed.recording is not None and parsed.recording.id == hook["recording"]["id"]
    assert parsed.meeting_id == hook["meeting"]["id"]


def test_storage_documented_notifications_parse() -> None:
    found = payloads("r2_") + payloads("s3_")
    events = [e for document in found for e in storage.parse(document)]
    formats = {e.payload["format"] for e in events}
    assert {"s3", "r2"} <= formats, formats
    for event in events:
        assert event.payload["bucket"] and event.payload["key"] and event.dedup_key
