"""Request validation: the documented parameter rules, each failure a code 2 with a reason.

Pure functions from decoded JSON to frozen values. Agora accepts fields it does not know, so
only documented fields are checked; a wrong type, a range violation or a missing required field
is an :class:`InvalidParameter` whose reason reads like Agora's (``"Start: invalid maxIdleTime
value!"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ALL_STREAMS = "#allstream#"
_VENDORS = {1, 2, 3, 5, 6, 7, 8, 11}
_PREFIX_RE = re.compile(r"^[A-Za-z0-9]+$")
_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
_MAX_PIXELS = 1920 * 1080


class InvalidParameter(Exception):
    """A request that breaks a documented rule: answered 400 with code 2 and ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Subscription:
    """Which uids a recorder takes one kind of stream from (``None`` include = everyone)."""

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    def allows(self, uid: str) -> bool:
        if self.include is not None:
            return ALL_STREAMS in self.include or uid in self.include
        return uid not in self.exclude


@dataclass(frozen=True)
class AcquireRequest:
    cname: str
    uid: str
    scene: int
    expired_hour: int
    region: str | None
    start_parameter: dict[str, Any] | None


@dataclass(frozen=True)
class WebSpec:
    url: str
    max_recording_hour: int
    max_video_duration_min: int
    onhold: bool
    ready_timeout: int
    rtmp_outputs: tuple[str, ...]


@dataclass(frozen=True)
class StartSpec:
    """A validated start ``clientRequest``."""

    mode: str
    token: str | None
    channel_type: int
    stream_types: int
    max_idle_time: int
    av_file_types: tuple[str, ...]
    snapshot_interval: int | None
    file_prefix: tuple[str, ...]
    audio: Subscription
    video: Subscription
    web: WebSpec | None


@dataclass(frozen=True)
class UpdateRequest:
    audio: Subscription | None
    video: Subscription | None
    onhold: bool | None
    rtmp_outputs: tuple[str, ...] | None


class _Reader:
    """Typed field access that raises :class:`InvalidParameter` in Agora's words."""

    def __init__(self, command: str) -> None:
        self.cmd = command

    def fail(self, name: str) -> InvalidParameter:
        return InvalidParameter(f"{self.cmd}: invalid {name} value!")

    def missing(self, name: str) -> InvalidParameter:
        return InvalidParameter(f"{self.cmd}: {name} is required!")

    def obj(self, parent: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.missing(key)
            return {}
        if not isinstance(value, dict):
            raise self.fail(key)
        return value

    def int_(self, parent: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int:
        value = parent.get(key, default)
        if value is None:
            raise self.missing(key)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key)
        return value

    def num(self, parent: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
        value = parent.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key)
        return float(value)

    def str_(self, parent: dict[str, Any], key: str, *, required: bool = False) -> str | None:
        value = parent.get(key)
        if value is None:
            if required:
                raise self.missing(key)
            return None
        if not isinstance(value, str) or (required and not value):
            raise self.fail(key)
        return value

    def bool_(self, parent: dict[str, Any], key: str, default: bool) -> bool:
        value = parent.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key)
        return value

    def str_list(self, parent: dict[str, Any], key: str, max_len: int) -> list[str] | None:
        value = parent.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or len(value) > max_len
            or not all(isinstance(v, str) for v in value)
        ):
            raise self.fail(key)
        return value


def parse_ids(command: str, body: dict[str, Any]) -> tuple[str, str]:
    """``cname`` and ``uid`` of any request body: a channel name and a quoted 32-bit uid."""
    r = _Reader(command)
    cname = r.str_(body, "cname", required=True)
    uid = r.str_(body, "uid", required=True)
    assert cname is not None and uid is not None
    if len(cname.encode()) > 1024:
        raise r.fail("cname")
    if not uid.isdigit() or not 0 < int(uid) < 2**32:
        raise r.fail("uid")
    return cname, uid


def parse_acquire(body: dict[str, Any]) -> AcquireRequest:
    r = _Reader("Acquire")
    cname, uid = parse_ids("Acquire", body)
    req = r.obj(body, "clientRequest", required=True)
    scene = r.int_(req, "scene", 0, 0, 2)
    hours = r.int_(req, "resourceExpiredHour", 72, 1, 720)
    region = r.str_(req, "region")
    if region is not None and region not in ("CN", "AP", "EU", "NA"):
        raise r.fail("region")
    r.str_list(req, "excludeResourceIds", 100)
    start_parameter = r.obj(req, "startParameter") or None
    return AcquireRequest(cname, uid, scene, hours, region, start_parameter)


def _subscription(r: _Reader, cfg: dict[str, Any], kind: str) -> Subscription:
    sub = r.str_list(cfg, f"subscribe{kind}Uids", 32)
    unsub = r.str_list(cfg, f"unsubscribe{kind}Uids", 32)
    if sub is not None and unsub is not None:
        raise InvalidParameter(
            f"{r.cmd}: subscribe{kind}Uids and unsubscribe{kind}Uids cannot both be set!"
        )
    if sub is not None:
        return Subscription(include=frozenset(sub))
    return Subscription(exclude=frozenset(unsub or ()))


def _storage(r: _Reader, req: dict[str, Any]) -> tuple[str, ...]:
    storage = r.obj(req, "storageConfig", required=True)
    vendor = r.int_(storage, "vendor", None, 0, 100)
    if vendor not in _VENDORS:
        raise r.fail("vendor")
    r.int_(storage, "region", None, 0, 1000)
    for key in ("bucket", "accessKey", "secretKey"):
        r.str_(storage, key, required=True)
    prefix = r.str_list(storage, "fileNamePrefix", 128) or []
    if sum(len(p) for p in prefix) > 128 or not all(_PREFIX_RE.match(p) for p in prefix):
        raise r.fail("fileNamePrefix")
    if vendor == 11 and not r.obj(storage, "extensionParams").get("endpoint"):
        raise r.missing("extensionParams.endpoint")
    return tuple(prefix)


def _transcoding(r: _Reader, cfg: dict[str, Any]) -> None:
    tc = r.obj(cfg, "transcodingConfig")
    width = r.int_(tc, "width", 360, 16, 1920)
    height = r.int_(tc, "height", 640, 16, 1920)
    if width * height > _MAX_PIXELS:
        raise r.fail("width/height")
    r.int_(tc, "fps", 15, 1, 30)
    r.int_(tc, "bitrate", 500, 1, 10_000)
    _layout_fields(r, tc)


def _layout_fields(r: _Reader, cfg: dict[str, Any]) -> dict[str, Any]:
    layout = r.int_(cfg, "mixedVideoLayout", 0, 0, 3)
    max_uid = r.str_(cfg, "maxResolutionUid")
    if layout == 2 and not max_uid:
        raise r.missing("maxResolutionUid")
    color = r.str_(cfg, "backgroundColor")
    if color is not None and not _COLOR_RE.match(color):
        raise r.fail("backgroundColor")
    regions = cfg.get("layoutConfig")
    if layout == 3 and regions is None:
        raise r.missing("layoutConfig")
    if regions is not None:
        if not isinstance(regions, list) or len(regions) > 17:
            raise r.fail("layoutConfig")
        for region in regions:
            if not isinstance(region, dict):
                raise r.fail("layoutConfig")
            for key in ("x_axis", "y_axis", "width", "height", "alpha"):
                r.num(region, key, 0.0, 1.0)
            r.int_(region, "render_mode", 0, 0, 1)
    return {
        "mixedVideoLayout": layout,
        "maxResolutionUid": max_uid,
        "backgroundColor": color or "#000000",
        "layoutConfig": regions or [],
        "backgroundConfig": cfg.get("backgroundConfig") or [],
    }


def _web(r: _Reader, req: dict[str, Any]) -> WebSpec:
    ext = r.obj(req, "extensionServiceConfig", required=True)
    services = ext.get("extensionServices")
    if not isinstance(services, list) or not services:
        raise r.missing("extensionServices")
    web: dict[str, Any] | None = None
    outputs: list[str] = []
    for service in services:
        if not isinstance(service, dict):
            raise r.fail("extensionServices")
        name = service.get("serviceName")
        param = r.obj(service, "serviceParam", required=True)
        if name == "web_recorder_service":
            web = param
        elif name == "rtmp_publish_service":
            outputs = _rtmp_outputs(r, param)
        else:
            raise r.fail("serviceName")
        policy = service.get("errorHandlePolicy", "error_abort")
        if policy not in ("error_abort", "error_ignore"):
            raise r.fail("errorHandlePolicy")
    if web is None:
        raise r.missing("web_recorder_service")
    url = r.str_(web, "url", required=True)
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise r.fail("url")
    width = r.int_(web, "videoWidth", 1280, 16, 1920)
    height = r.int_(web, "videoHeight", 720, 16, 1920)
    if width * height > _MAX_PIXELS:
        raise r.fail("videoWidth/videoHeight")
    r.int_(web, "audioProfile", 0, 0, 2)
    r.int_(web, "videoFps", 15, 5, 60)
    r.int_(web, "videoBitrate", 1500, 1, 10_000)
    r.bool_(web, "mobile", False)
    return WebSpec(
        url=url,
        max_recording_hour=r.int_(web, "maxRecordingHour", None, 1, 720),
        max_video_duration_min=r.int_(web, "maxVideoDuration", 120, 30, 240),
        onhold=r.bool_(web, "onhold", False),
        ready_timeout=r.int_(web, "readyTimeout", 0, 0, 60),
        rtmp_outputs=tuple(outputs),
    )


def _rtmp_outputs(r: _Reader, param: dict[str, Any]) -> list[str]:
    outputs = param.get("outputs", [])
    if not isinstance(outputs, list) or len(outputs) > 1:
        raise r.fail("outputs")
    urls = []
    for output in outputs:
        url = r.str_(output if isinstance(output, dict) else {}, "rtmpUrl", required=True)
        assert url is not None
        if not url.startswith(("rtmp://", "rtmps://")):
            raise r.fail("rtmpUrl")
        urls.append(url)
    return urls


def parse_start(mode: str, req: dict[str, Any]) -> StartSpec:
    """Validate a start ``clientRequest`` for ``mode`` (individual, mix or web)."""
    r = _Reader("Start")
    token = r.str_(req, "token")
    prefix = _storage(r, req)
    file_cfg = r.obj(req, "recordingFileConfig")
    av = r.str_list(file_cfg, "avFileType", 2) or ["hls"]
    if "hls" not in av or not set(av) <= {"hls", "mp4"} or ("mp4" in av and mode == "individual"):
        raise r.fail("avFileType")
    if mode == "web":
        web = _web(r, req)
        everyone = Subscription()
        return StartSpec(mode, token, 0, 2, 0, tuple(av), None, prefix, everyone, everyone, web)
    cfg = r.obj(req, "recordingConfig", required=mode == "individual")
    channel_type = r.int_(cfg, "channelType", 0, 0, 1)
    stream_types = r.int_(cfg, "streamTypes", 2, 0, 2)
    max_idle = r.int_(cfg, "maxIdleTime", 30, 5, 2_592_000)
    r.int_(cfg, "videoStreamType", 0, 0, 1)
    if mode == "individual":
        r.int_(cfg, "subscribeUidGroup", None, 0, 5)
        if cfg.get("streamMode", "default") not in ("default", "standard", "original"):
            raise r.fail("streamMode")
    else:
        r.int_(cfg, "audioProfile", 0, 0, 2)
        _transcoding(r, cfg)
    snapshot: int | None = None
    if "snapshotConfig" in req:
        if mode != "individual":
            raise r.fail("snapshotConfig")
        snap = r.obj(req, "snapshotConfig")
        snapshot = r.int_(snap, "captureInterval", 10, 5, 3600)
        if snap.get("fileType") != ["jpg"]:
            raise r.fail("fileType")
    return StartSpec(
        mode=mode,
        token=token,
        channel_type=channel_type,
        stream_types=stream_types,
        max_idle_time=max_idle,
        av_file_types=tuple(av),
        snapshot_interval=snapshot,
        file_prefix=prefix,
        audio=_subscription(r, cfg, "Audio"),
        video=_subscription(r, cfg, "Video"),
        web=None,
    )


def parse_update(mode: str, req: dict[str, Any]) -> UpdateRequest:
    r = _Reader("Update")
    sub = r.obj(req, "streamSubscribe")
    web_cfg = r.obj(req, "webRecordingConfig")
    rtmp = r.obj(req, "rtmpPublishConfig")
    if sub and mode == "web":
        raise r.fail("streamSubscribe")
    if (web_cfg or rtmp) and mode != "web":
        raise r.fail("webRecordingConfig" if web_cfg else "rtmpPublishConfig")
    if "storageConfig" in req:
        _storage(r, req)
    audio = _subscription(r, r.obj(sub, "audioUidList"), "Audio") if "audioUidList" in sub else None
    video = _subscription(r, r.obj(sub, "videoUidList"), "Video") if "videoUidList" in sub else None
    onhold = r.bool_(web_cfg, "onhold", False) if "onhold" in web_cfg else None
    outputs = tuple(_rtmp_outputs(r, rtmp)) if rtmp else None
    return UpdateRequest(audio, video, onhold, outputs)


def parse_layout(req: dict[str, Any]) -> dict[str, Any]:
    """Validate an updateLayout ``clientRequest``; the result replaces the whole layout."""
    return _layout_fields(_Reader("UpdateLayout"), req)


def parse_stop(body: dict[str, Any]) -> bool:
    """``async_stop`` from a stop body (older clients send ``clientRequest: {}`` or nothing)."""
    r = _Reader("Stop")
    return r.bool_(r.obj(body, "clientRequest"), "async_stop", False)
