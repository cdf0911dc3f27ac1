"""The recorder's RTC token (AccessToken2), built with Agora's own maintained builder.

Cloud recording cannot renew a token (``docs/providers/agora.md#2-start``): a token that expires
drops the recorder from the channel. So the token must outlive the planned segment. AccessToken2 is
valid for at most 24 hours, so a longer segment is capped there: the plan must roll a segment over
before then (its ``max_segment_seconds`` default of 12 h leaves room).
"""

from __future__ import annotations

import logging
import warnings

TOKEN_MAX_SECONDS = 24 * 3600
#: Covers acquire-to-start, the start confirmation and a final synchronous stop.
TOKEN_MARGIN_SECONDS = 15 * 60

_log = logging.getLogger(__name__)


def token_lifetime(max_seconds: int) -> int:
    """Seconds the token must live for a segment of ``max_seconds``: margin added, 24 h cap."""
    wanted = max(max_seconds, 0) + TOKEN_MARGIN_SECONDS
    if wanted > TOKEN_MAX_SECONDS:
        _log.warning("agora token capped at 24h: a segment of %ss outlives its token", max_seconds)
    return min(wanted, TOKEN_MAX_SECONDS)


def recorder_token(
    app_id: str, app_certificate: str, channel: str, uid: str, lifetime_seconds: int
) -> str:
    """An AccessToken2 ("007...") letting ``uid`` join ``channel`` for ``lifetime_seconds``.

    Raises ``ValueError`` when the builder refuses (it needs 32-hex app id and certificate).
    """
    # Imported here: the package's top level pulls in its whole REST client (and requests),
    # whose pydantic models still use the deprecated class-based config.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from agora_rest.utils.RtcTokenBuilder2 import Role_Publisher, RtcTokenBuilder

    account: int | str = int(uid) if uid.isdigit() else uid
    token = RtcTokenBuilder.build_token_with_uid(
        app_id,
        app_certificate,
        channel,
        account,
        Role_Publisher,  # the builder's recommended role; the recorder only joins and listens
        lifetime_seconds,
        lifetime_seconds,
    )
    if not isinstance(token, str) or not token:
        raise ValueError("token: app id and app certificate must be 32 hexadecimal characters")
    return token
