"""``deploy/compose.yaml``: valid by the Compose specification's schema, and wired together.

No container runtime runs here, so ``docker compose up`` is not run. What can be checked is:
the file against the specification's schema; every replica's environment accepted by the
service's own ``Settings``; every URL aimed at a service and port that exist, with a path the
service serves; every shared secret equal on both ends; the emulators' commands accepted by
their own parsers; and the one-shot storage set-up run against a real S3 API (moto).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.config import Settings
from tests.catalog_harness import moto_server
from tests.deploy_schemas import compose_schema
from tests.procs import ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"
SETUP = ROOT / "deploy" / "compose" / "storage_setup.py"
IMAGE = "recording-reconciler:local"
REPLICAS = ("recorder-1", "recorder-2")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def flags(service: dict[str, Any]) -> dict[str, str]:
    """``--name=value`` items of a command, as a dict."""
    pairs = (item.removeprefix("--").partition("=") for item in service["command"][2:])
    return {name: value for name, _, value in pairs}


def schema_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """The schema says draft 2019-09 by an address jsonschema does not know (it has no
    ``/draft/`` in today's form): that draft's validator, named."""
    assert "2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_the_file_is_valid_by_the_compose_specification() -> None:
    schema = compose_schema()
    validator = schema_validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors


def test_the_schema_check_catches_a_mistake() -> None:
    schema = compose_schema()
    broken = compose()
    broken["services"]["postgres"]["restart"] = 3
    broken["services"]["postgres"]["healtcheck"] = {}  # a typo the schema must refuse
    validator = schema_validator(schema)
    assert len(list(validator.iter_errors(broken))) >= 2


def test_two_replicas_of_the_service_share_one_postgresql() -> None:
    found = services()
    replicas = [
        name for name, s in found.items() if "recctl serve" in " ".join(s.get("entrypoint") or [])
    ]
    assert sorted(replicas) == list(REPLICAS)
    envs = [found[name]["environment"] for name in REPLICAS]
    assert envs[0] == envs[1]
    database = urlsplit(envs[0]["DATABASE_URL"])
    postgres = found["postgres"]["environment"]
    assert database.scheme == "postgresql" and database.hostname == "postgres"
    assert (database.username, database.password, database.path) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        "/" + postgres["POSTGRES_DB"],
    )
    for name in REPLICAS:
        assert found[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "recorder" in found[name]["networks"]["default"]["aliases"]
    published = [p for name in REPLICAS for p in found[name]["ports"]]
    assert all(str(p).startswith("127.0.0.1:") for p in published), "loopback only"
    assert len({str(p).split(":")[1] for p in published}) == 2, "one host port each"


def test_the_replicas_environment_is_a_valid_configuration() -> None:
    env = dict(services()["recorder-1"]["environment"])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    # What the entrypoint reads from the file the Cloudflare emulator writes at start.
    env["CLOUDFLARE_WEBHOOK_PUBLIC_KEY"] = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    settings = Settings.from_env(env)
    assert settings.api_tokens and settings.storage_profiles, "no start-up warning"
    assert settings.cloudflare_configured
    assert settings.startup_warnings() == []


def test_the_service_reaches_the_emulators_with_their_own_credentials() -> None:
    found = services()
    env = found["recorder-1"]["environment"]
    agora, cloudflare = flags(found["agora-emulator"]), flags(found["cloudflare-emulator"])
    url = urlsplit(env["AGORA_API_BASE_URL"])
    assert (url.hostname, str(url.port)) == ("agora-emulator", agora["port"])
    assert env["AGORA_APP_ID"] == agora["app-id"]
    assert env["AGORA_CUSTOMER_KEY"] == agora["customer-key"]
    assert env["AGORA_CUSTOMER_SECRET"] == agora["customer-secret"]
    assert env["AGORA_NCS_SECRET"] == agora["ncs-secret"]
    url = urlsplit(env["CLOUDFLARE_API_BASE_URL"])
    assert (url.hostname, str(url.port)) == ("cloudflare-emulator", cloudflare["port"])
    assert url.path == "/client/v4"
    assert env["CLOUDFLARE_ACCOUNT_ID"] == cloudflare["account-id"]
    assert env["CLOUDFLARE_APP_ID"] == cloudflare["app-id"]
    assert env["CLOUDFLARE_API_TOKEN"] == cloudflare["api-token"]
    for name in ("agora-emulator", "cloudflare-emulator"):
        assert found["recorder-1"]["depends_on"][name]["condition"] == "service_healthy"
        assert f":{flags(found[name])['port']}/_emulator/health" in " ".join(
            found[name]["healthcheck"]["test"]
        )


def test_the_emulators_accept_their_commands() -> None:
    from service.emulators.agora import cli as agora_cli
    from service.emulators.cloudflare import cli as cloudflare_cli

    for name, module in (("agora-emulator", agora_cli), ("cloudflare-emulator", cloudflare_cli)):
        command = services()[name]["command"]
        assert command[:2] == ["emulate", name.split("-")[0]]
        parser = argparse.ArgumentParser(exit_on_error=False)
        module.add_arguments(parser)
        args = parser.parse_args(command[2:])
        config = module.config_from_args(args)  # the values are valid, not only the flags
        assert config is not None


def test_callbacks_go_to_the_replicas_on_paths_they_serve() -> None:
    from service.runtime import create_app

    paths = {getattr(route, "path", "") for route in create_app(Settings.from_env({})).routes}
    found = services()
    minio = found["minio"]["environment"]
    targets = {
        "agora": flags(found["agora-emulator"])["callback-url"],
        "cloudflare": flags(found["cloudflare-emulator"])["webhook-url"],
        "storage": minio["MINIO_NOTIFY_WEBHOOK_ENDPOINT_RECORDER"],
    }
    for source, target in targets.items():
        url = urlsplit(target)
        assert (url.hostname, url.port) == ("recorder", 8080), target
        assert url.path == f"/webhooks/{source}" and url.path in paths
    env = found["recorder-1"]["environment"]
    assert minio["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_RECORDER"] == env["STORAGE_WEBHOOK_SECRET"]


def test_the_storage_profile_is_minio_and_its_bucket_is_made() -> None:
    found = services()
    profile = Settings.from_env(found["recorder-1"]["environment"]).storage_profiles["default"]
    minio, setup = found["minio"]["environment"], found["storage-setup"]["environment"]
    assert profile.endpoint == setup["S3_ENDPOINT"] == "http://minio:9000"
    assert profile.bucket == setup["S3_BUCKET"]
    assert profile.access_key_id.get_secret_value() == minio["MINIO_ROOT_USER"]
    assert profile.secret_access_key.get_secret_value() == minio["MINIO_ROOT_PASSWORD"]
    assert setup["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    target = setup["S3_NOTIFY_ARN"].split(":")[-2]  # arn:minio:sqs::<TARGET>:webhook
    assert minio[f"MINIO_NOTIFY_WEBHOOK_ENABLE_{target}"] == "on"
    for name in REPLICAS:
        condition = found[name]["depends_on"]["storage-setup"]["condition"]
        assert condition == "service_completed_successfully"
    mount = found["storage-setup"]["volumes"][0].split(":")
    assert (COMPOSE.parent / mount[0]).resolve() == SETUP
    assert found["storage-setup"]["entrypoint"] == ["python", mount[1]]


def test_the_cloudflare_key_reaches_the_replicas() -> None:
    found = services()
    written = flags(found["cloudflare-emulator"])["public-key-out"]
    volume, directory = found["cloudflare-emulator"]["volumes"][0].split(":")[:2]
    assert written.startswith(directory + "/")
    for name in REPLICAS:
        mine = {v.split(":")[0]: v.split(":")[1] for v in found[name]["volumes"]}
        read_at = mine[volume] + written.removeprefix(directory)
        script = found[name]["entrypoint"][2]
        assert f"$(cat {read_at})" in script.replace("$$", "$")
        assert (
            shlex.split(script)[-6:]
            == ["exec", "recctl", "serve", "--host", "0.0.0.0", "--port", "8080"][-6:]
        )
    assert volume in compose()["volumes"]


def test_every_image_is_pinned_or_built_here() -> None:
    for name, service in services().items():
        image = service.get("image", "")
        if image == IMAGE:
            assert service["build"]["context"] == ".."
            assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").exists()
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and any(c.isdigit() for c in tag), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services()


@pytest.mark.slow
def test_the_storage_setup_makes_the_bucket_on_a_real_s3_api(tmp_path: Path) -> None:
    with moto_server() as endpoint:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "S3_ENDPOINT": endpoint,
            "S3_BUCKET": "recordings",
            "S3_NOTIFY_ARN": "",  # moto takes only AWS ARNs; MinIO's is checked above
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for expected in ("created bucket recordings", "bucket recordings exists"):
            done = subprocess.run(
                [sys.executable, str(SETUP)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert expected in done.stdout
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["recordings"]
