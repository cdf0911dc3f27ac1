"""Lenient readers for Agora's JSON: numbers as strings, two spellings, seconds or milliseconds.

Agora's payloads drift from its documentation (``docs/providers/agora.md#3-query`` "Parser
pitfalls", §11), and the same file list shape appears in query, stop and notifications. These
helpers never raise: a value that cannot be read becomes ``None`` (or is skipped), so one odd field
never loses a whole event.
"""

from __future__ import annotations

import math
from typing import Any

from reconcilers.providers.base import RecordedFile

#: Below this a timestamp is in seconds (10**11 s is the year 5138; 10**11 ms is 1973).
_MS_THRESHOLD = 10**11


def as_int(value: Any) -> int | None:
    """An int from an int, a finite float or a numeric string; ``None`` otherwise."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if math.isfinite(number) else None
    return None


def as_str(value: Any) -> str | None:
    """A non-empty string from a string or a number; ``None`` for anything else or ``""``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value) or None
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def as_bool(value: Any, default: bool) -> bool:
    """A bool from a bool, 0/1 or "true"/"false"; ``default`` when unreadable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1"):
        return value.strip().lower() in ("true", "1")
    return default


def as_ms(value: Any) -> int | None:
    """A UTC timestamp in milliseconds from seconds or milliseconds (the docs disagree)."""
    number = as_int(value)
    if number is None or number <= 0:
        return number
    return number * 1000 if number < _MS_THRESHOLD else number


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def recorded_file(entry: Any) -> RecordedFile | None:
    """One ``fileList`` entry (``fileName`` or ``filename``); ``None`` if it names no file."""
    if isinstance(entry, str):
        return RecordedFile(name=entry) if entry else None
    if not isinstance(entry, dict):
        return None
    name = as_str(entry.get("fileName")) or as_str(entry.get("filename"))
    if name is None:
        return None
    return RecordedFile(
        name=name,
        track=as_str(entry.get("trackType")),
        uid=as_str(entry.get("uid")),
        slice_start_ms=as_ms(entry.get("sliceStartTime")),
        playable=as_bool(entry.get("isPlayable"), True),
    )


def recorded_files(value: Any) -> tuple[RecordedFile, ...]:
    """A ``fileList``: a JSON array of entries, or one M3U8 name as a string (``fileListMode``
    ``"string"``). Unreadable entries are skipped."""
    if isinstance(value, str):
        return (RecordedFile(name=value),) if value else ()
    files = (recorded_file(entry) for entry in as_list(value))
    return tuple(f for f in files if f is not None)
