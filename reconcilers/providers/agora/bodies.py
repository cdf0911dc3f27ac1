"""Request bodies for each call, built from validated options (``docs/providers/agora.md`` §1, §2,
§4, §5).

A spec's options hold the start ``clientRequest`` fields plus the keys the engine may change
live (``reconcilers.providers.agora.bundle.LIVE_OPTION_KEYS``). At start the live keys are
folded into their start places, so a new segment records what is wanted now; while recording
they go to ``update`` or ``updateLayout`` instead:

=====================  ===========  =====================================================
live key               modes        at start                    / while recording
=====================  ===========  =====================================================
``streamSubscribe``    individual,  ``recordingConfig``'s       / ``update``
                       mix          (un)subscribe lists
``layout``             mix          ``transcodingConfig``'s     / ``updateLayout`` (both
                                    layout fields                 replace the whole layout)
``webRecordingConfig`` web          ``serviceParam.onhold``     / ``update``
``rtmpPublishConfig``  web          an ``rtmp_publish_service`` / ``update``
=====================  ===========  =====================================================
"""

from __future__ import annotations

import copy
import math
from typing import Any

from reconcilers.providers.agora.models import Layout, validate_options

WEB_SCENE = 1
LIVE_KEYS = ("streamSubscribe", "layout", "webRecordingConfig", "rtmpPublishConfig")
#: Keep the REST calls working a day past the planned end, for the last query and stop.
RESOURCE_SLACK_HOURS = 24


def resource_expired_hour(max_seconds: int) -> int:
    """``resourceExpiredHour`` (1..720) for a segment of ``max_seconds``: the session must stay
    queryable and stoppable until it ends, and a little after."""
    hours = math.ceil(max(max_seconds, 0) / 3600) + RESOURCE_SLACK_HOURS
    return max(1, min(hours, 720))


def acquire_request(mode: str, max_seconds: int) -> dict[str, Any]:
    """The acquire ``clientRequest``: web pages need scene 1."""
    request: dict[str, Any] = {"resourceExpiredHour": resource_expired_hour(max_seconds)}
    if mode == "web":
        request["scene"] = WEB_SCENE
    return request


def start_request(
    mode: str, options: dict[str, Any], storage: dict[str, Any], token: str | None
) -> dict[str, Any]:
    """The start ``clientRequest``: the options with live keys folded in, the token (never in
    web mode) and ``storageConfig``. Raises ``ValueError`` naming the field."""
    folded = fold_live(mode, validate_options(mode, options))
    request = validate_options(mode, folded)
    if token and mode != "web":
        request["token"] = token
    request["storageConfig"] = storage
    return request


def fold_live(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """Options with each live key moved to where start expects it (see the module table)."""
    out = copy.deepcopy({k: v for k, v in options.items() if k not in LIVE_KEYS})
    subscribe = options.get("streamSubscribe")
    if subscribe and mode in ("individual", "mix"):
        config = out.setdefault("recordingConfig", {})
        for media, lists in (("Audio", "audioUidList"), ("Video", "videoUidList")):
            if lists in subscribe:
                config.pop(f"subscribe{media}Uids", None)
                config.pop(f"unsubscribe{media}Uids", None)
                config.update(subscribe[lists])
    layout = options.get("layout")
    if layout and mode == "mix":
        # Like updateLayout, the layout replaces every layout field, leaving size and rate.
        config = out.setdefault("recordingConfig", {})
        kept = config.get("transcodingConfig", {}).items()
        config["transcodingConfig"] = {
            **{k: v for k, v in kept if k not in Layout.model_fields},
            **layout,
        }
    if mode == "web":
        services = out.get("extensionServiceConfig", {}).get("extensionServices", [])
        onhold = options.get("webRecordingConfig", {}).get("onhold")
        for service in services:
            if service.get("serviceName") == "web_recorder_service" and onhold is not None:
                service.setdefault("serviceParam", {})["onhold"] = onhold
        rtmp = options.get("rtmpPublishConfig")
        if rtmp and services:
            services[:] = [s for s in services if s.get("serviceName") != "rtmp_publish_service"]
            services.append(
                {
                    "serviceName": "rtmp_publish_service",
                    "errorHandlePolicy": "error_ignore",
                    "serviceParam": rtmp,
                }
            )
    return out


def update_requests(mode: str, live: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The calls that apply ``live`` options: ``("update" | "updateLayout", clientRequest)``.

    Keys that do not apply to ``mode`` are skipped (validation refuses them in a spec).
    """
    calls: list[tuple[str, dict[str, Any]]] = []
    if mode in ("individual", "mix") and live.get("streamSubscribe"):
        calls.append(("update", {"streamSubscribe": live["streamSubscribe"]}))
    if mode == "mix" and live.get("layout"):
        calls.append(("updateLayout", dict(live["layout"])))
    if mode == "web":
        web = {k: live[k] for k in ("webRecordingConfig", "rtmpPublishConfig") if live.get(k)}
        if web:
            calls.append(("update", web))
    return calls
