"""The HTTP plumbing both provider clients share (``reconcilers.providers.http``)."""

from __future__ import annotations

import httpx
import pytest

from reconcilers.providers.http import (
    connection_pool,
    decode_json,
    default_timeout,
    retry_after,
    segment,
)


def test_a_segment_cannot_change_the_route() -> None:
    assert segment("a/b c?") == "a%2Fb%20c%3F"
    assert segment("rec-1_2.x~") == "rec-1_2.x~"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, json={"a": 1}), {"a": 1}),
        (httpx.Response(200, json=[1, 2]), {"value": [1, 2]}),
        (httpx.Response(502, text="Bad Gateway"), {"text": "Bad Gateway"}),
        (httpx.Response(502, text="x" * 600), {"text": "x" * 500}),
        (httpx.Response(204), {}),
    ],
)
def test_decode_json_never_raises(response: httpx.Response, expected: dict[str, object]) -> None:
    assert decode_json(response) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("3", 3.0), ("-1", 0.0), ("soon", None)]
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    headers = {} if value is None else {"retry-after": value}
    assert retry_after(httpx.Response(429, headers=headers)) == expected


async def test_a_shared_client_is_not_ours_to_close() -> None:
    timeout = default_timeout(10.0)
    assert timeout.connect == 5.0 and timeout.read == 10.0
    async with httpx.AsyncClient() as shared:
        assert connection_pool(shared, None, timeout) == (shared, False)
        with pytest.raises(ValueError, match="either http or transport"):
            connection_pool(shared, httpx.MockTransport(lambda r: httpx.Response(200)), timeout)
    pool, owned = connection_pool(None, None, default_timeout(2.0))
    assert owned and pool.timeout.connect == 2.0
    await pool.aclose()
