"""Configuration, read from the environment in one place and validated at start-up.

Nothing else in the code base reads ``os.environ``: the composition root builds a
:class:`Settings` once (``Settings.from_env()``) and hands it down.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from reconcilers.providers.cloudflare.signature import load_public_key

AGORA_DEFAULT_BASE_URL = "https://api.sd-rtn.com"
CLOUDFLARE_DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
_PEM_END = "-----END PUBLIC KEY-----"
_AGORA_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_AGORA_HOSTS = ("api.sd-rtn.com", "api.agora.io")

#: A tenant name: it is the first part of every room key (``tenant/room``), so never a ``/``
#: (``acme/eu`` made acme's lists show acme/eu's rooms: issue 20).
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: An API token is a bearer secret: long enough not to be guessed.
MIN_TOKEN_LENGTH = 16


def is_postgres(url: str) -> bool:
    """Whether ``url`` names PostgreSQL: then replicas share its leases and pacers."""
    return url.partition(":")[0].lower() in ("postgres", "postgresql")


class ConfigError(Exception):
    """A bad environment variable; the message names it."""


class StorageProfile(BaseModel):
    """Where a provider uploads files. Credentials live only here, never in the API or log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["s3", "r2", "gcs", "azure", "s3-compatible", "alibaba", "tencent"] = "s3"
    bucket: str
    region: str = "us-east-1"
    endpoint: str | None = None
    access_key_id: SecretStr = SecretStr("")
    secret_access_key: SecretStr = SecretStr("")
    prefix: list[str] = Field(default_factory=list)


class Settings(BaseModel):
    """Every setting of the service. Field names are the environment variable names, lowercased."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    database_url: str = "sqlite:///./recorder.db"
    # PostgreSQL's connection pool, per replica: replicas x max must stay under the server's
    # max_connections. A statement slower than the timeout fails its append (not acknowledged).
    database_pool_min: int = Field(default=1, ge=0, le=100)
    database_pool_max: int = Field(default=10, ge=1, le=100)
    # The replica's own pool (leases, pacers, NOTIFY), beside the store's.
    database_replica_pool_max: int = Field(default=4, ge=1, le=100)
    database_command_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Where the SQLite writer runs: its own process keeps the commits off the event loop's GIL.
    store_writer: Literal["process", "thread"] = "process"
    # Milliseconds between two group commits at least: under load, fewer and fuller commits
    # (see service.store.sqlite.DEFAULT_BATCH_INTERVAL); 0 commits as often as the disk allows.
    store_batch_interval_ms: float = Field(default=1.0, ge=0, le=100)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    access_log: bool = False  # a line per HTTP request: webhooks come by the thousand
    # The server's event loop and HTTP parser: uvloop + httptools when installed (the fastest
    # measured: docs/benchmarks.md), or asyncio + h11.
    server_stack: Literal["auto", "uvloop", "asyncio"] = "auto"
    # recctl compact: days of events kept in the log (those of open recordings whatever their
    # age), and where older ones are exported before they are deleted (a directory).
    event_retention_days: float | None = Field(default=None, gt=0)
    event_export_dir: str | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # The event loop held this long is logged, with the code that holds it.
    loop_stall_seconds: float = Field(default=1.0, gt=0)
    # How often the event loop beats for the watchdog: each beat's lateness is a histogram
    # (``event_loop_lag_seconds``); shorter beats catch shorter spells of a busy loop.
    loop_beat_seconds: float = Field(default=0.1, ge=0.001, le=10)
    # SIGTERM to exit, at most: the drain (passes in flight, leases) and the HTTP requests in
    # flight. Keep it under the orchestrator's grace period (Kubernetes: 30 s by default).
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0, le=3600)
    # Slow or silent clients (issue 20: 4,000 half-sent connections held 4,022 descriptors):
    # a request's headers must arrive within the first, its body within the second (answered
    # 408 past it); past the third, connections are answered 503 (uvicorn's limit).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    http_body_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    http_limit_concurrency: int = Field(default=1000, ge=1)
    # An append not durable within this long is answered 503 with Retry-After (a frozen or
    # full disk), and ``/readyz`` says not ready while commits fail or hang.
    store_append_timeout_seconds: float = Field(default=10.0, gt=0, le=600)

    # Agora notifications (NCS). Several comma-separated secrets: one per product, and rotation.
    agora_ncs_secret: list[SecretStr] = Field(default_factory=list)
    agora_ncs_verify: bool = True

    # Agora REST API.
    agora_app_id: str = ""
    agora_customer_key: SecretStr = SecretStr("")
    agora_customer_secret: SecretStr = SecretStr("")
    agora_app_certificate: SecretStr = SecretStr("")
    agora_api_base_url: str = AGORA_DEFAULT_BASE_URL
    agora_rate_limit_qps: float = Field(default=10.0, gt=0)
    agora_recorder_uid_base: int = Field(default=4_000_000_000, ge=1, le=2**32 - 1)
    agora_recorder_uid_span: int = Field(default=200_000_000, ge=2)

    # Cloudflare RealtimeKit (the provider is built when account and app id are set).
    cloudflare_account_id: str = Field(default="", max_length=32)
    cloudflare_app_id: str = Field(default="", max_length=32)
    cloudflare_api_token: SecretStr = SecretStr("")
    cloudflare_api_base_url: str = CLOUDFLARE_DEFAULT_BASE_URL
    # PEM public key(s) of webhooks.json; several concatenated for a rotation. Not a secret.
    cloudflare_webhook_public_key: list[str] = Field(default_factory=list)
    cloudflare_webhook_verify: bool = True
    # Cloudflare's API-wide limit is 1200 requests per 5 minutes per user; Dyte allowed 2000/min:
    # stay under the stricter one (docs/providers/cloudflare.md#3-api-rate-limit,
    # https://developers.cloudflare.com/fundamentals/api/reference/limits/).
    cloudflare_rate_limit_qps: float = Field(default=4.0, gt=0)

    # Desired-state API.
    api_tokens: dict[str, str] = Field(default_factory=dict)  # token -> tenant
    storage_profiles: dict[str, StorageProfile] = Field(default_factory=dict)

    # Reconciler.
    reconcile_workers: int = Field(default=8, ge=1, le=256)
    query_interval_seconds: float = Field(default=60.0, gt=0)
    resync_interval_seconds: float = Field(default=30.0, gt=0)
    stall_threshold_seconds: float = Field(default=180.0, gt=0)
    failover_window_seconds: float = Field(default=90.0, ge=0)
    # Several replicas (PostgreSQL): a shard's lease lives this long unless its owner renews
    # it (every third of it); a dead replica's rooms are taken over this long after it died.
    lease_seconds: float = Field(default=15.0, ge=1, le=600)

    # Recordings catalog and storage (storage credentials: only in STORAGE_PROFILES).
    storage_webhook_secret: list[SecretStr] = Field(default_factory=list)
    download_url_expiry_seconds: int = Field(default=3600, ge=1, le=604_800)
    archive_storage_class: Literal["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"] = "GLACIER"
    archive_bucket: str | None = None  # None: archive in place (a copy onto itself)

    @field_validator("agora_ncs_secret", "storage_webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @field_validator("cloudflare_webhook_public_key", mode="before")
    @classmethod
    def _split_pems(cls, value: Any) -> Any:
        """One or more PEM blocks (``\\n`` escapes allowed, as env files often need)."""
        if isinstance(value, str):
            text = value.replace("\\n", "\n").strip()
            blocks = [b.strip() + "\n" + _PEM_END for b in text.split(_PEM_END) if b.strip()]
            value = blocks
        if isinstance(value, list):
            for pem in value:
                load_public_key(pem)  # ValueError names the variable via from_env
        return value

    @field_validator("agora_app_certificate")
    @classmethod
    def _certificate_shape(cls, value: SecretStr) -> SecretStr:
        """Agora's App Certificate is 32 hexadecimal characters: a malformed one is refused at
        start-up (it would only fail when a room starts), and the message never shows it."""
        secret = value.get_secret_value()
        if secret and not _AGORA_HEX32.fullmatch(secret):
            raise ValueError(f"expected 32 hexadecimal characters, got {len(secret)} characters")
        return value

    @model_validator(mode="after")
    def _app_id_shape(self) -> Settings:
        """Against Agora itself (not an emulator) the App ID is 32 hexadecimal characters."""
        agora = any(host in self.agora_api_base_url for host in _AGORA_HOSTS)
        if agora and self.agora_app_id and not _AGORA_HEX32.fullmatch(self.agora_app_id):
            raise ValueError("AGORA_APP_ID: expected 32 hexadecimal characters")
        return self

    @property
    def cloudflare_configured(self) -> bool:
        return bool(self.cloudflare_account_id and self.cloudflare_app_id)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs: dict[str, str] = {}
            for item in filter(None, (p.strip() for p in value.split(","))):
                token, sep, tenant = item.partition(":")
                if not sep or not token or not tenant:
                    raise ValueError("expected 'token:tenant,token:tenant'")
                pairs[token] = tenant
            value = pairs
        if isinstance(value, Mapping):
            for token, tenant in value.items():
                if not isinstance(tenant, str) or not TENANT_NAME.fullmatch(tenant):
                    raise ValueError(
                        f"tenant {tenant!r}: 1-64 characters of A-Z a-z 0-9 _ . - "
                        "(starting with a letter or digit)"
                    )
                if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
                    raise ValueError(
                        f"the token of tenant {tenant!r} is shorter than "
                        f"{MIN_TOKEN_LENGTH} characters"
                    )
        return value

    @field_validator("storage_profiles", mode="before")
    @classmethod
    def _parse_profiles(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); ConfigError names a bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            name: env[name.upper()] for name in cls.model_fields if name.upper() in env
        }
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["loc"]:
                name = str(err["loc"][0]).upper()
            else:  # a check of several fields names its variable first: "NAME: why"
                name, _, msg = msg.partition(": ")
            raise ConfigError(f"invalid environment variable {name}: {msg}") from None

    def startup_warnings(self) -> list[tuple[str, str]]:
        """``(message, variable)`` for each setting that leaves the service unable to do its job
        though it starts: said once at start, so that an operator sees why before a user does."""
        found: list[tuple[str, str]] = []
        if not self.api_tokens:
            found.append(("API_TOKENS is empty: every /v1 call will be answered 401", "API_TOKENS"))
        if not self.storage_profiles:
            found.append(
                (
                    "no storage profile is configured: no recording can be started",
                    "STORAGE_PROFILES",
                )
            )
        return found

    def secret_values(self) -> list[str]:
        """Every configured secret, so that the log redactor can hide them wherever they appear."""
        found = [s.get_secret_value() for s in self.agora_ncs_secret]
        found += [s.get_secret_value() for s in self.storage_webhook_secret]
        found += [
            self.agora_customer_key.get_secret_value(),
            self.agora_customer_secret.get_secret_value(),
            self.agora_app_certificate.get_secret_value(),
            self.cloudflare_api_token.get_secret_value(),
        ]
        found += list(self.api_tokens)
        if password := urlsplit(self.database_url).password:
            found.append(password)
        for profile in self.storage_profiles.values():
            found += [
                profile.access_key_id.get_secret_value(),
                profile.secret_access_key.get_secret_value(),
            ]
        return [s for s in found if s]  # however short: a short secret is still a secret
