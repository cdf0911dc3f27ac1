"""Agora Cloud Recording request schemas (``docs/providers/agora.md`` §2, §4), checked before
anything is sent.

Field names are Agora's own (camelCase, and ``x_axis``/``render_mode`` where Agora spells them
so), so a model dumps straight into a request body. Every documented range and exclusion is a
validation rule here: a bad spec is refused at the API with the field named, instead of costing
an acquire and coming back from Agora as code ``2`` minutes later.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from reconcilers.providers.base import InvalidOptions

M = TypeVar("M", bound=BaseModel)

MAX_PIXELS = 1920 * 1080
MAX_UIDS = 32

Uid = Annotated[str, StringConstraints(pattern=r"^\d+$")]
SubscribeUid = Annotated[str, StringConstraints(pattern=r"^(\d+|#allstream#)$")]
UidList = Annotated[list[SubscribeUid], Field(max_length=MAX_UIDS)]
Unit = Annotated[float, Field(ge=0, le=1)]


class FieldRuleError(ValueError):
    """A cross-field rule broken; ``field`` is the offending field, relative to the model."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AgoraModel(BaseModel):
    """Strict about unknown fields: Agora answers a misspelled one with code 2, late."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def _exclusive(model: BaseModel, first: str, second: str) -> None:
    if getattr(model, first) is not None and getattr(model, second) is not None:
        raise FieldRuleError(second, f"cannot be set together with {first}")


def _area(model: BaseModel, width: str, height: str) -> None:
    w, h = getattr(model, width), getattr(model, height)
    if w is not None and h is not None and w * h > MAX_PIXELS:
        raise FieldRuleError(width, f"{width} x {height} must not exceed 1920 x 1080")


# -- composite layout ------------------------------------------------------------------------


class LayoutRegion(AgoraModel):
    """One window of a custom layout, in relative coordinates of the canvas."""

    uid: Uid | None = None
    x_axis: Unit
    y_axis: Unit
    width: Unit
    height: Unit
    alpha: Unit | None = None
    render_mode: Literal[0, 1] | None = None


class BackgroundImage(AgoraModel):
    uid: Uid
    image_url: str
    render_mode: Literal[0, 1] | None = None


class Layout(AgoraModel):
    """The layout fields, shared by ``transcodingConfig`` and the ``updateLayout`` body."""

    mixedVideoLayout: Literal[0, 1, 2, 3] | None = None
    maxResolutionUid: Uid | None = None
    backgroundColor: Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = None
    backgroundImage: str | None = None
    defaultUserBackgroundImage: str | None = None
    layoutConfig: Annotated[list[LayoutRegion], Field(max_length=17)] | None = None
    backgroundConfig: list[BackgroundImage] | None = None

    @model_validator(mode="after")
    def _layout_rules(self) -> Self:
        if self.mixedVideoLayout == 2 and self.maxResolutionUid is None:
            raise FieldRuleError("maxResolutionUid", "required by the vertical layout (2)")
        if self.layoutConfig is not None and self.mixedVideoLayout != 3:
            raise FieldRuleError("layoutConfig", "needs mixedVideoLayout 3 (custom)")
        return self


class TranscodingConfig(Layout):
    width: Annotated[int, Field(ge=1)] | None = None
    height: Annotated[int, Field(ge=1)] | None = None
    fps: Annotated[int, Field(ge=1)] | None = None
    bitrate: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _size(self) -> Self:
        _area(self, "width", "height")
        return self


# -- individual and composite ----------------------------------------------------------------


class RecordingConfig(AgoraModel):
    channelType: Literal[0, 1] | None = None
    streamTypes: Literal[0, 1, 2] | None = None
    decryptionMode: Annotated[int, Field(ge=0, le=8)] | None = None
    secret: str | None = None
    salt: str | None = None
    maxIdleTime: Annotated[int, Field(ge=5, le=2_592_000)] | None = None
    videoStreamType: Literal[0, 1] | None = None
    subscribeAudioUids: UidList | None = None
    unsubscribeAudioUids: UidList | None = None
    subscribeVideoUids: UidList | None = None
    unsubscribeVideoUids: UidList | None = None
    subscribeUidGroup: Annotated[int, Field(ge=0, le=5)] | None = None
    streamMode: Literal["default", "standard", "original"] | None = None
    audioProfile: Literal[0, 1, 2] | None = None
    transcodingConfig: TranscodingConfig | None = None

    @model_validator(mode="after")
    def _subscriptions(self) -> Self:
        _exclusive(self, "subscribeAudioUids", "unsubscribeAudioUids")
        _exclusive(self, "subscribeVideoUids", "unsubscribeVideoUids")
        if self.decryptionMode and self.secret is None:
            raise FieldRuleError("secret", "required when decryptionMode is not 0")
        return self


class RecordingFileConfig(AgoraModel):
    avFileType: Annotated[list[Literal["hls", "mp4"]], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _mp4_needs_hls(self) -> Self:
        kinds = self.avFileType or []
        if "mp4" in kinds and "hls" not in kinds:
            raise FieldRuleError("avFileType", 'use ["hls","mp4"]: "mp4" alone is an error')
        return self


class SnapshotConfig(AgoraModel):
    captureInterval: Annotated[int, Field(ge=5, le=3600)] | None = None
    fileType: list[Literal["jpg"]]


class AudioUidList(AgoraModel):
    subscribeAudioUids: UidList | None = None
    unsubscribeAudioUids: UidList | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        _exclusive(self, "subscribeAudioUids", "unsubscribeAudioUids")
        return self


class VideoUidList(AgoraModel):
    subscribeVideoUids: UidList | None = None
    unsubscribeVideoUids: UidList | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        _exclusive(self, "subscribeVideoUids", "unsubscribeVideoUids")
        return self


class StreamSubscribe(AgoraModel):
    """The ``update`` body's subscription change (individual and composite)."""

    audioUidList: AudioUidList | None = None
    videoUidList: VideoUidList | None = None


# -- web page recording ----------------------------------------------------------------------


class WebRecorderParam(AgoraModel):
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    audioProfile: Literal[0, 1, 2] | None = None
    videoWidth: Annotated[int, Field(ge=1)] | None = None
    videoHeight: Annotated[int, Field(ge=1)] | None = None
    maxRecordingHour: Annotated[int, Field(ge=1, le=720)]
    videoBitrate: Annotated[int, Field(ge=1)] | None = None
    videoFps: Annotated[int, Field(ge=5, le=60)] | None = None
    mobile: bool | None = None
    maxVideoDuration: Annotated[int, Field(ge=30, le=240)] | None = None
    onhold: bool | None = None
    readyTimeout: Annotated[int, Field(ge=0, le=60)] | None = None

    @model_validator(mode="after")
    def _size(self) -> Self:
        _area(self, "videoWidth", "videoHeight")
        return self


class RtmpOutput(AgoraModel):
    rtmpUrl: Annotated[str, StringConstraints(pattern=r"^rtmps?://\S+$")]


class RtmpPublishConfig(AgoraModel):
    """CDN push outputs: in ``rtmp_publish_service`` at start, and in ``update`` (at most one)."""

    outputs: Annotated[list[RtmpOutput], Field(max_length=1)]


class WebRecorderService(AgoraModel):
    serviceName: Literal["web_recorder_service"]
    errorHandlePolicy: Literal["error_abort", "error_ignore"] | None = None
    serviceParam: WebRecorderParam


class RtmpPublishService(AgoraModel):
    serviceName: Literal["rtmp_publish_service"]
    errorHandlePolicy: Literal["error_abort", "error_ignore"] | None = None
    serviceParam: RtmpPublishConfig


ExtensionService = Annotated[
    WebRecorderService | RtmpPublishService, Field(discriminator="serviceName")
]
SERVICE_TAGS = frozenset({"web_recorder_service", "rtmp_publish_service"})


class ExtensionServiceConfig(AgoraModel):
    errorHandlePolicy: str | None = None
    extensionServices: Annotated[list[ExtensionService], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_recorder(self) -> Self:
        names = [s.serviceName for s in self.extensionServices]
        if names.count("web_recorder_service") != 1:
            raise FieldRuleError("extensionServices", "needs exactly one web_recorder_service")
        if names.count("rtmp_publish_service") > 1:
            raise FieldRuleError("extensionServices", "at most one rtmp_publish_service")
        return self


class WebRecordingConfig(AgoraModel):
    onhold: bool


# -- storage ---------------------------------------------------------------------------------


class ExtensionParams(AgoraModel):
    sse: Literal["kms", "aes256"] | None = None
    tag: str | None = None
    endpoint: str | None = None


class StorageConfig(AgoraModel):
    vendor: Literal[1, 2, 3, 5, 6, 7, 8, 11]
    region: Annotated[int, Field(ge=0)]
    bucket: Annotated[str, StringConstraints(min_length=1)]
    accessKey: str
    secretKey: str
    stsToken: str | None = None
    stsExpiration: int | None = None
    fileNamePrefix: list[Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9]+$")]] | None = None
    extensionParams: ExtensionParams | None = None

    @model_validator(mode="after")
    def _rules(self) -> Self:
        prefix = self.fileNamePrefix or []
        if len("/".join(prefix)) + (1 if prefix else 0) > 128:
            raise FieldRuleError("fileNamePrefix", "longer than 128 characters in total")
        if self.vendor == 11 and not (self.extensionParams and self.extensionParams.endpoint):
            raise FieldRuleError("extensionParams.endpoint", "required for vendor 11")
        return self


# -- a spec's options, per mode --------------------------------------------------------------


class IndividualOptions(AgoraModel):
    """Start ``clientRequest`` fields for individual mode, plus the live ``streamSubscribe``."""

    recordingConfig: RecordingConfig
    recordingFileConfig: RecordingFileConfig | None = None
    snapshotConfig: SnapshotConfig | None = None
    streamSubscribe: StreamSubscribe | None = None

    @model_validator(mode="after")
    def _individual(self) -> Self:
        if self.recordingConfig.subscribeUidGroup is None:
            raise FieldRuleError("recordingConfig.subscribeUidGroup", "required in individual mode")
        if self.recordingConfig.transcodingConfig is not None:
            raise FieldRuleError("recordingConfig.transcodingConfig", "composite (mix) mode only")
        if self.recordingFileConfig and "mp4" in (self.recordingFileConfig.avFileType or []):
            raise FieldRuleError("recordingFileConfig.avFileType", 'individual mode keeps ["hls"]')
        return self


class MixOptions(AgoraModel):
    """Start fields for composite mode, plus the live ``streamSubscribe`` and ``layout``."""

    recordingConfig: RecordingConfig | None = None
    recordingFileConfig: RecordingFileConfig | None = None
    streamSubscribe: StreamSubscribe | None = None
    layout: Layout | None = None


class WebOptions(AgoraModel):
    """Start fields for web page recording, plus the live ``webRecordingConfig`` and
    ``rtmpPublishConfig``. No ``recordingConfig`` and no token in this mode."""

    extensionServiceConfig: ExtensionServiceConfig
    recordingFileConfig: RecordingFileConfig | None = None
    webRecordingConfig: WebRecordingConfig | None = None
    rtmpPublishConfig: RtmpPublishConfig | None = None


OPTIONS_BY_MODE: dict[str, type[AgoraModel]] = {
    "individual": IndividualOptions,
    "mix": MixOptions,
    "web": WebOptions,
}


def validate_options(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check a spec's ``options`` for ``mode``; return them normalised (numbers as Agora types).

    The options are the start ``clientRequest`` fields other than ``token`` and
    ``storageConfig``, plus the live-changeable keys named on each mode's model. Raises
    :class:`InvalidOptions`.
    """
    model = OPTIONS_BY_MODE.get(mode)
    if model is None:
        raise InvalidOptions("mode", f"unknown mode {mode!r}")
    return dump(check(model, options))


def check(model: type[M], data: Any, at: str = "") -> M:
    """Validate ``data``; a failure becomes :class:`InvalidOptions` naming the field (under
    ``at``, the path of ``data`` in the request)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, reason = first_error(exc)
        raise InvalidOptions(f"{at}.{field}" if at else field, reason) from None


def dump(model: BaseModel) -> dict[str, Any]:
    """The fields that were given, in Agora's spelling (defaults are Agora's to apply)."""
    return model.model_dump(mode="json", exclude_unset=True)


def first_error(exc: ValidationError) -> tuple[str, str]:
    """``("recordingConfig.maxIdleTime", "Input should be ...")``: the first error's field
    and reason."""
    err = exc.errors()[0]
    parts = [str(p) for p in err["loc"] if p not in SERVICE_TAGS]
    message = err["msg"]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldRuleError):
        parts.append(cause.field)
        message = str(cause)
    return ".".join(parts) or "options", message
