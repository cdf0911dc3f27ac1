"""structlog set-up: JSON lines, a request id in context, secrets redacted wherever they appear."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

REDACTED = "[REDACTED]"
_SECRET_KEYS = re.compile(
    r"(secret|password|token|authorization|signature|access_?key|customer_?key|certificate|credential)",
    re.IGNORECASE,
)


#: Libraries that log routine work at INFO: httpx and aiohttp a line per request (with the
#: provider's resource and session ids in the URL), werkzeug (moto's S3 server in the
#: playground) likewise. Nothing there for an operator to act on: below DEBUG they log
#: warnings only.
CHATTY_LIBRARIES = (
    "httpx", "httpcore", "aiohttp", "botocore", "boto3", "urllib3", "werkzeug",
)


REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request being served. One variable set per request: structlog's
``bound_contextvars`` copies and scans the whole context, which cost the intake ~5% of its CPU."""


def add_request_id(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """A structlog processor: the current request's id, when there is one."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


class SecretRedactor:
    """A structlog processor: masks values under secret-looking keys and any known secret value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        return {key: self._clean(key, value) for key, value in event.items()}

    def _clean(self, key: str, value: Any) -> Any:
        if key != "event" and _SECRET_KEYS.search(key):
            return REDACTED
        if isinstance(value, str):
            return self._pattern.sub(REDACTED, value) if self._pattern else value
        if isinstance(value, dict):
            return {str(k): self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean("", v) for v in value]
        return value


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), fmt: str = "json") -> None:
    """Route structlog and the standard library's loggers (uvicorn's too) through one pipeline."""
    redactor = SecretRedactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        stdlib_logger = logging.getLogger(name)
        stdlib_logger.handlers[:] = []
        stdlib_logger.propagate = True
        # An earlier uvicorn.Config (its own dictConfig) may have disabled or levelled it.
        stdlib_logger.disabled = False
        stdlib_logger.setLevel(logging.NOTSET)
    chatty = logging.NOTSET if logging.getLevelName(level) <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(chatty)
