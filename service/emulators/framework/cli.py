"""An emulator's command line, written once: the server flags, one flag per setting, the
yes/no switches, the fault flags, how they become the provider's config, and serving its app
with uvicorn. A provider describes itself in an :class:`EmulatorCommand`; its flag tables and
help texts are its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import uvicorn
from starlette.types import ASGIApp

from service.emulators.framework.config import EmulatorSettings
from service.emulators.framework.faults import FaultConfig

C = TypeVar("C", bound=FaultConfig)
S = TypeVar("S", bound=EmulatorSettings)
#: (flag dest == config field, type, help)
Flags = tuple[tuple[str, Any, str], ...]

#: The clock's flags, the same for every emulator.
CLOCK_FLAGS: Flags = (
    ("seed", int, "seed of every id and fault stream (default 0)"),
    ("speed", float, "emulated seconds per real second; 0 = manual clock (default 1)"),
    ("epoch", float, "emulated start time, epoch seconds (default now)"),
)


@dataclass(frozen=True)
class Switch:
    """A yes/no flag: ``flag`` sets the config field ``dest`` to ``value`` (unset: default)."""

    flag: str
    dest: str
    value: bool
    help: str


class Served(Protocol):
    """What the command line serves of an emulator."""

    @property
    def app(self) -> ASGIApp: ...


E = TypeVar("E", bound=Served)


class EmulatorCommand(Generic[S, E]):
    """One emulator's command line (``recctl emulate NAME``, ``python -m ...``).

    The flags come in this order: the server's, ``config_flags``, the provider's own
    (:meth:`add_provider_arguments`), ``switches``, ``--callback-retry-delays`` (``retry_help``)
    and the ``faults`` group (``fault_flags``). ``build`` makes the emulator from its config;
    :meth:`provider_values` and :meth:`prepare` are a provider's hooks for flags that are not
    config fields.
    """

    def __init__(
        self,
        *,
        name: str,
        description: str | None,
        port: int,
        settings: type[S],
        faults: type[FaultConfig],
        build: Callable[[S], E],
        config_flags: Flags,
        fault_flags: Flags,
        retry_help: str,
        switches: tuple[Switch, ...] = (),
    ) -> None:
        self.name = name
        self.description = description
        self.port = port
        self.settings = settings
        self.faults = faults
        self.build = build
        self.config_flags = config_flags
        self.fault_flags = fault_flags
        self.retry_help = retry_help
        self.switches = switches

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add every emulator flag to ``parser`` (the host command owns the parser)."""
        add_server_arguments(parser, port=self.port)
        add_config_arguments(parser, self.config_flags)
        self.add_provider_arguments(parser)
        for switch in self.switches:
            parser.add_argument(
                switch.flag,
                dest=switch.dest,
                action="store_true" if switch.value else "store_false",
                default=None,
                help=switch.help,
            )
        parser.add_argument(
            "--callback-retry-delays", default=None, metavar="S,S,S", help=self.retry_help
        )
        add_fault_arguments(parser, self.faults.ENDPOINTS, self.fault_flags)

    def add_provider_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Flags of this provider's that are not config fields (none by default)."""

    def provider_values(self, args: argparse.Namespace) -> dict[str, Any]:
        """Config fields those flags give (none by default)."""
        return {}

    def prepare(self, emulator: E, args: argparse.Namespace) -> None:
        """Anything to do with the built emulator before it serves (nothing by default)."""

    def fault_config(self, args: argparse.Namespace) -> FaultConfig:
        return fault_config(args, self.faults, self.fault_flags)

    def config_from_args(self, args: argparse.Namespace) -> S:
        """The config the flags describe (unset flags keep the defaults)."""
        switches = tuple(switch.dest for switch in self.switches)
        values = config_values(args, self.config_flags, switches)
        values.update(self.provider_values(args))
        values["faults"] = self.fault_config(args)
        return self.settings(**values)

    def main(self, args: argparse.Namespace) -> int:
        """Serve the emulator until interrupted; returns the process exit status."""
        try:
            emulator = self.build(self.config_from_args(args))
            self.prepare(emulator, args)
        except (ValueError, OSError) as exc:
            print(f"{self.name} emulator: {exc}", file=sys.stderr)
            return 2
        return serve(emulator.app, args)

    def run(self, argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=f"{self.name}-emulator", description=self.description)
        self.add_arguments(parser)
        return self.main(parser.parse_args(argv))


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def add_server_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    """Where and how uvicorn serves the emulator (``port`` is the emulator's default)."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help="listen port; 0 = any free one")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")
    parser.add_argument("--access-log", action="store_true", help="log every request")


def add_config_arguments(parser: argparse.ArgumentParser, flags: Flags) -> None:
    """One optional flag per config field in ``flags`` (unset: ``None``, the default is kept)."""
    for dest, kind, text in flags:
        parser.add_argument(flag(dest), dest=dest, type=kind, default=None, help=text)


def config_values(
    args: argparse.Namespace, flags: Flags, switches: tuple[str, ...]
) -> dict[str, Any]:
    """The config fields the flags set: ``flags``, the boolean ``switches`` and
    ``--callback-retry-delays``; unset ones are left out so the config keeps its defaults."""
    values: dict[str, Any] = {
        dest: getattr(args, dest) for dest, _, _ in flags if getattr(args, dest) is not None
    }
    for dest in switches:
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    if args.callback_retry_delays is not None:
        values["callback_retry_delays"] = tuple(numbers(args.callback_retry_delays))
    return values


def serve(app: ASGIApp, args: argparse.Namespace) -> int:
    """Serve ``app`` with the server flags until interrupted; returns the exit status."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
            lifespan="on",
            # Longer than a client's idle expiry (httpx: 5 s), so an idle connection is never
            # closed by the server just as the client reuses it.
            timeout_keep_alive=75,
        )
    )
    server.run()
    return 0


def add_fault_arguments(
    parser: argparse.ArgumentParser, endpoints: tuple[str, ...], flags: Flags
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


def fault_config(args: argparse.Namespace, cls: type[C], flags: Flags) -> C:
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
