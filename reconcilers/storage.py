"""The object-storage port: the few calls the catalog needs of a bucket (S3, R2, MinIO).

The catalog reads storage only to confirm, serve and archive files the provider uploaded;
``service.storage`` implements :class:`ObjectStorage` with boto3. Credentials stay inside the
implementation: nothing here (or in the values it returns) carries them, so they cannot leak
into the event log or an API answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """A storage call failed (network, credentials, missing bucket): the caller may retry."""


@dataclass(frozen=True)
class StoredObject:
    """What a HEAD or a listing says about one object."""

    key: str
    size: int
    etag: str | None = None
    storage_class: str = "STANDARD"


class ObjectStorage(Protocol):
    """One configured bucket (a storage profile)."""

    kind: str
    bucket: str

    async def list(self, prefix: str) -> list[StoredObject]:
        """Every object whose key starts with ``prefix``."""
        ...

    async def head(self, key: str) -> StoredObject | None:
        """The object, or ``None`` when it does not exist."""
        ...

    async def presign_get(self, key: str, expires_seconds: int) -> str:
        """A URL anyone may GET for ``expires_seconds``."""
        ...

    async def archive(self, key: str) -> StoredObject:
        """Copy the object to cold storage and return what a HEAD of the copy says."""
        ...
