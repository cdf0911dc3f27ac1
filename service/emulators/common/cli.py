"""Command-line plumbing the emulators share: the fault flags and how they become a config."""

from __future__ import annotations

import argparse
import json
from typing import Any, TypeVar

from service.emulators.common.faults import FaultConfig

C = TypeVar("C", bound=FaultConfig)
#: (flag dest == FaultConfig field, type, help)
FaultFlags = tuple[tuple[str, Any, str], ...]


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def add_fault_arguments(
    parser: argparse.ArgumentParser, endpoints: tuple[str, ...], flags: FaultFlags
) -> None:
    """The ``faults`` argument group: a JSON config, per-endpoint rates, and ``flags``."""
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--faults",
        dest="faults_json",
        default=None,
        metavar="JSON|@FILE",
        help="a FaultConfig JSON object (flags below override it)",
    )
    for name in ("error-rate", "timeout-rate"):
        faults.add_argument(
            f"--{name}",
            action="append",
            default=[],
            metavar="[ENDPOINT=]RATE",
            help=f"per endpoint ({', '.join(endpoints)}) or for all; repeatable",
        )
    faults.add_argument(
        "--latency",
        default=None,
        metavar="MIN[,MAX]",
        help="added latency per request, real seconds",
    )
    faults.add_argument(
        "--callback-delay",
        default=None,
        metavar="MIN[,MAX]",
        help="delay of delayed callbacks, emulated seconds (default 1,5)",
    )
    faults.add_argument("--fault-seed", type=int, default=None, help="seed of the fault streams")
    for dest, kind, text in flags:
        faults.add_argument(flag(dest), dest=dest, type=kind, default=None, help=text)


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _rates(items: list[str]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for item in items:
        endpoint, _, rate = item.rpartition("=")
        rates[endpoint or "*"] = float(rate)
    return rates


def fault_config(args: argparse.Namespace, cls: type[C], flags: FaultFlags) -> C:
    """The fault config the flags describe (``--faults`` first, the other flags over it)."""
    data: dict[str, Any] = {}
    if args.faults_json:
        text = args.faults_json
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        data.update(json.loads(text))
    if args.error_rate:
        data["error_rates"] = _rates(args.error_rate)
    if args.timeout_rate:
        data["timeout_rates"] = _rates(args.timeout_rate)
    for name in ("latency", "callback_delay"):
        value = getattr(args, name)
        if value is not None:
            values = numbers(value)
            data[name] = values if len(values) == 2 else values[0]
    if args.fault_seed is not None:
        data["seed"] = args.fault_seed
    for dest, _, _ in flags:
        value = getattr(args, dest)
        if value is not None:
            data[dest] = value
    return cls.from_json(data)
