"""schemathesis against ``/openapi.json``: generated requests to every operation of a real
``recctl serve`` process; not one may be answered with a server error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.procs import Server, clean_env

TOKEN = "schemathesis-api-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp / 'fuzz.db'}",
        API_TOKENS=f"{TOKEN}:acme",
        AGORA_API_BASE_URL="http://127.0.0.1:9",  # nothing there: provider calls fail fast
        STORAGE_PROFILES=json.dumps({"default": {"kind": "s3", "bucket": "b"}}),
        LOG_LEVEL="WARNING",
    )
    process = Server.recctl_serve(env, tmp / "server.log")
    try:
        asyncio.run(process.wait_healthy())
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_no_operation_answers_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    """Each operation gets generated cases (valid and invalid); none may get a 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 16, "every route is in the schema"
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, suppress_health_check=list(HealthCheck),
            derandomize=True, database=None,
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            calls += 1
            case.validate_response(response, checks=[not_a_server_error])

        check()
    assert calls >= len(operations) * 3, calls
