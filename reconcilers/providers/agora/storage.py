"""A neutral :class:`StorageTarget` as Agora's ``storageConfig``
(``docs/providers/agora.md#2-start``).

Agora numbers vendors and regions instead of naming them. The region tables are Agora's
"Third-party cloud storage regions" page (docs.agora.io/en/cloud-recording/reference/region-vendor,
source ``AgoraIO/Docs-Source`` ``cloud-recording/reference/region-vendor.mdx``), keyed here by
each cloud's own region id. Azure and Google Cloud ignore ``region``; S3-compatible storage
(vendor 11, R2 included) is reached through ``extensionParams.endpoint``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconcilers.providers.agora.models import StorageConfig, check, dump
from reconcilers.providers.base import StorageTarget

VENDORS: dict[str, int] = {
    "s3": 1,
    "alibaba": 2,
    "tencent": 3,
    "azure": 5,
    "gcs": 6,
    "huawei": 7,
    "baidu": 8,
    "r2": 11,
    "s3-compatible": 11,
}
S3_COMPATIBLE = 11

#: vendor 1, Amazon S3: AWS region id -> Agora region number.
AWS_REGIONS: dict[str, int] = {
    "us-east-1": 0,
    "us-east-2": 1,
    "us-west-1": 2,
    "us-west-2": 3,
    "eu-west-1": 4,
    "eu-west-2": 5,
    "eu-west-3": 6,
    "eu-central-1": 7,
    "ap-southeast-1": 8,
    "ap-southeast-2": 9,
    "ap-northeast-1": 10,
    "ap-northeast-2": 11,
    "sa-east-1": 12,
    "ca-central-1": 13,
    "ap-south-1": 14,
    "cn-north-1": 15,
    "cn-northwest-1": 16,
    "af-south-1": 18,
    "ap-east-1": 19,
    "ap-northeast-3": 20,
    "eu-north-1": 21,
    "me-south-1": 22,
    "ap-southeast-3": 24,
    "eu-south-1": 25,
}

#: vendor 2, Alibaba Cloud OSS: Agora's names (``CN_Hangzhou``...) as region ids.
ALIBABA_REGIONS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        [
            "cn-hangzhou",
            "cn-shanghai",
            "cn-qingdao",
            "cn-beijing",
            "cn-zhangjiakou",
            "cn-huhehaote",
            "cn-shenzhen",
            "cn-hongkong",
            "us-west-1",
            "us-east-1",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ap-southeast-5",
            "ap-northeast-1",
            "ap-south-1",
            "eu-central-1",
            "eu-west-1",
            "eu-east-1",
            "ap-southeast-6",
            "cn-heyuan",
            "cn-guangzhou",
            "cn-chengdu",
            "cn-nanjing",
            "cn-fuzhou",
            "cn-wulanchabu",
            "cn-northeast-2",
            "cn-southeast-7",
        ]
    )
}

#: vendor 3, Tencent Cloud COS: Agora's names match COS region ids (``ap-beijing``...).
TENCENT_REGIONS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        [
            "ap-beijing-1",
            "ap-beijing",
            "ap-shanghai",
            "ap-guangzhou",
            "ap-chengdu",
            "ap-chongqing",
            "ap-shenzhen-fsi",
            "ap-shanghai-fsi",
            "ap-beijing-fsi",
            "ap-hongkong",
            "ap-singapore",
            "ap-mumbai",
            "ap-seoul",
            "ap-bangkok",
            "ap-tokyo",
            "na-siliconvalley",
            "na-ashburn",
            "na-toronto",
            "eu-frankfurt",
            "eu-moscow",
        ]
    )
}

_REGION_TABLES: dict[int, dict[str, int]] = {1: AWS_REGIONS, 2: ALIBABA_REGIONS, 3: TENCENT_REGIONS}


def vendor_of(target: StorageTarget) -> int:
    """Agora's vendor number; any target with an endpoint is S3-compatible (11)."""
    if target.endpoint:
        return S3_COMPATIBLE
    try:
        return VENDORS[target.kind.lower()]
    except KeyError:
        known = ", ".join(sorted(VENDORS))
        message = f"storageConfig.vendor: unknown storage kind {target.kind!r} ({known})"
        raise ValueError(message) from None


def region_of(vendor: int, region: str) -> int:
    """Agora's region number for ``region`` (a cloud region id, or already a number)."""
    text = region.strip()
    if text.isdigit():
        return int(text)
    table = _REGION_TABLES.get(vendor)
    if table is None:
        return 0  # Azure, Google Cloud and S3-compatible: Agora ignores the region
    key = text.lower().replace("_", "-")
    if key not in table:
        message = f"storageConfig.region: {region!r} has no Agora number for vendor {vendor}"
        raise ValueError(message)
    return table[key]


def storage_config(target: StorageTarget, prefix: Sequence[str] = ()) -> dict[str, Any]:
    """The ``storageConfig`` object, validated; ``ValueError`` names the field if it cannot be.

    ``prefix`` (the directories under the bucket) replaces ``target.prefix`` when given. The
    result holds the storage credentials: never log it.
    """
    vendor = vendor_of(target)
    config: dict[str, Any] = {
        "vendor": vendor,
        "region": region_of(vendor, target.region),
        "bucket": target.bucket,
        "accessKey": target.access_key_id,
        "secretKey": target.secret_access_key,
    }
    parts = list(prefix or target.prefix)
    if parts:
        config["fileNamePrefix"] = parts
    if vendor == S3_COMPATIBLE:
        config["extensionParams"] = {"endpoint": _host(target.endpoint or "")}
    return dump(check(StorageConfig, config, at="storageConfig"))


def _host(endpoint: str) -> str:
    """Agora wants the endpoint's domain (``xxx.r2.cloudflarestorage.com``), not a URL."""
    text = endpoint.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    return text.rstrip("/")
