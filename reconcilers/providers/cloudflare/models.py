"""RealtimeKit start-recording options (``docs/providers/cloudflare.md#13-start-options``), checked
before anything is sent, and the start body built from a spec.

A spec's ``options`` are the start body's optional fields, in RealtimeKit's own snake_case
spelling, minus what the service decides: ``meeting_id`` (the spec's ``channel``),
``storage_config`` (from the storage profile, so keys never sit in a spec) and
``allow_multiple_recordings`` (refused: one active recording per meeting is what makes a
retried start unable to record twice). ``max_seconds`` may only shorten the spec's segment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from reconcilers.providers.base import InvalidOptions, StartRequest, StorageTarget

MIN_SECONDS, MAX_SECONDS = 60, 86_400


class _Model(BaseModel):
    """Unknown fields are refused: a typo should fail at the API, not silently record wrong."""

    model_config = ConfigDict(extra="forbid")


class WatermarkSize(_Model):
    width: Annotated[int, Field(ge=1)]
    height: Annotated[int, Field(ge=1)]


class Watermark(_Model):
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    size: WatermarkSize | None = None
    position: Literal["left top", "right top", "left bottom", "right bottom"] | None = None


class VideoConfig(_Model):
    codec: Literal["H264", "VP8", "VP9"] | None = None
    width: Annotated[int, Field(ge=1, le=1920)] | None = None
    height: Annotated[int, Field(ge=1, le=1920)] | None = None
    watermark: Watermark | None = None
    export_file: bool | None = None


class AudioConfig(_Model):
    codec: Literal["AAC", "MP3"] | None = None
    channel: Literal["mono", "stereo"] | None = None
    export_file: bool | None = None


class BucketConfig(_Model):
    enabled: bool


class InteractiveConfig(_Model):
    type: Literal["ID3"]


class RtmpOutConfig(_Model):
    rtmp_url: Annotated[str, StringConstraints(pattern=r"^rtmps?://\S+$")]


class CloudflareOptions(_Model):
    """The options a Cloudflare room's spec may carry (all optional)."""

    file_name_prefix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,100}$")] | None = (
        None
    )
    max_seconds: Annotated[int, Field(ge=MIN_SECONDS, le=MAX_SECONDS)] | None = None
    video_config: VideoConfig | None = None
    audio_config: AudioConfig | None = None
    realtimekit_bucket_config: BucketConfig | None = None
    interactive_config: InteractiveConfig | None = None
    rtmp_out_config: RtmpOutConfig | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None


_DECIDED_BY_US = {
    "meeting_id": "set from the spec's channel",
    "storage_config": "set from the spec's storage profile",
    "allow_multiple_recordings": "not allowed: one recording per meeting keeps starts idempotent",
}


def validate_options(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check a spec's options; return them normalised. Raises :class:`InvalidOptions`.

    Only composite recording (``mode: "mix"``) exists behind ``POST /recordings``.
    """
    if mode != "mix":
        raise InvalidOptions("mode", 'Cloudflare records composite only: use "mix"')
    for name, why in _DECIDED_BY_US.items():
        if name in options:
            raise InvalidOptions(name, why)
    try:
        model = CloudflareOptions.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "options"
        raise InvalidOptions(field, err["msg"]) from None
    return model.model_dump(mode="json", exclude_unset=True)


#: Our storage kinds as ``storage_config.type`` (the OpenAPI enum, §1.3). R2 (``cloudflare``) is
#: in the guide but not in the enum, and its account-id field is unnamed (gap 1): refused.
STORAGE_TYPES = {"s3": "aws", "gcs": "gcs", "azure": "azure"}


def storage_config(storage: StorageTarget, prefix: tuple[str, ...]) -> dict[str, Any]:
    """``storage_config`` for a profile; raises ``ValueError`` for a kind RealtimeKit lacks."""
    kind = STORAGE_TYPES.get(storage.kind)
    if kind is None:
        known = ", ".join(sorted(STORAGE_TYPES))
        raise ValueError(
            f"storage: kind {storage.kind!r} is not supported by RealtimeKit ({known})"
        )
    config: dict[str, Any] = {
        "type": kind,
        "access_key": storage.access_key_id,
        "secret": storage.secret_access_key,
        "bucket": storage.bucket,
        "region": storage.region,
    }
    if prefix:
        config["path"] = "/".join(prefix) + "/"
    return config


def start_body(request: StartRequest) -> dict[str, Any]:
    """The ``POST /recordings`` body for one segment (raises ``ValueError`` if it cannot be)."""
    options = validate_options(request.mode, request.options)
    limit = max(MIN_SECONDS, min(request.max_seconds, MAX_SECONDS))
    body: dict[str, Any] = {
        **options,
        "meeting_id": request.channel,
        "max_seconds": min(options.get("max_seconds", limit), limit),
        "storage_config": storage_config(request.storage, request.file_prefix),
        "allow_multiple_recordings": False,
    }
    return body
